"""A model artefact as an MLflow ``pyfunc`` model, so a team can load and serve it with MLflow's own tools.

The wrapper holds no model of its own: the artefact folder travels as an MLflow artifact, and
:meth:`Her2dlrPyfunc.predict` calls :func:`her2dlr.predict.predict`, the toolkit's one entry
point, on it, so a case gets the same answer (and the same input checks) from ``mlflow models
serve``, ``mlflow.pyfunc.load_model`` and ``her2dlr predict``. Loading verifies the artefact's
checksums (:func:`her2dlr.learn.artefact.load_artefact`). Needs MLflow
(``pip install her2dlr[tracking]``); importing this module imports it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from her2dlr.learn.artefact import ModelArtefact, artefact_slug, load_artefact
from her2dlr.predict.api import predict, results_frame
from her2dlr.predict.cases import cases_from_frame

__all__ = ["ARTEFACT_KEY", "Her2dlrPyfunc", "log_pyfunc_model"]

#: Name of the artefact folder among the MLflow model's artifacts.
ARTEFACT_KEY = "artefact"


class Her2dlrPyfunc(mlflow.pyfunc.PythonModel):
    """``her2dlr.predict`` behind MLflow's ``pyfunc`` interface.

    ``predict`` takes a DataFrame of cases, as :func:`her2dlr.predict.cases_from_frame` reads it:
    feature rows (the model's feature and clinical columns, ``case_id`` optional), or image rows
    (``image`` with ``mask`` or ``box``, optional ``case_id``, ``spacing`` and clinical columns).
    It returns one row per case: ``case_id, model, prob, class, threshold`` (the class at the
    model's stored threshold).
    """

    def load_context(self, context: Any) -> None:
        """Load the artefact folder (checksums verified)."""
        self.artefact_: ModelArtefact = load_artefact(context.artifacts[ARTEFACT_KEY])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Probability and class of every case of ``model_input``."""
        if not hasattr(self, "artefact_"):
            raise RuntimeError("Her2dlrPyfunc.predict before load_context: load it with mlflow.pyfunc.load_model.")
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        cases = cases_from_frame(frame, source="the model input")
        return results_frame(predict(self.artefact_, cases, progress=False))


def log_pyfunc_model(artefact: str | os.PathLike[str], *, name: str | None = None) -> Any:
    """Log an artefact folder as a ``pyfunc`` model of the active MLflow run.

    Parameters
    ----------
    artefact : path
        A model artefact folder (``RUN/models/<name>``); checked by loading it first.
    name : str, optional
        The MLflow model name (default: the folder's name).

    Returns
    -------
    mlflow.models.model.ModelInfo
        Its ``model_uri`` loads it back (``mlflow.pyfunc.load_model``).
    """
    from her2dlr import __version__

    folder = Path(artefact)
    load_artefact(folder)  # a damaged folder is refused here, not by whoever loads it later
    return mlflow.pyfunc.log_model(
        name=artefact_slug(name or folder.name), python_model=Her2dlrPyfunc(),
        artifacts={ARTEFACT_KEY: str(folder)},
        # the serving environment is the toolkit's own; stated, not inferred (inference loads the model in a subprocess)
        pip_requirements=[f"her2dlr=={__version__}"])
