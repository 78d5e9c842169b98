"""Selection steps from a study file, and the selection funnel of a fitted pipeline."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator

from her2dlr.errors import Her2dlrError, StudyFileError, nearest
from her2dlr.io.tables import read_table
from her2dlr.learn.selection.embedded import LassoSelector, RFESelector
from her2dlr.learn.selection.filters import MissingVarianceFilter, ZScore
from her2dlr.learn.selection.icc import ICCFilter
from her2dlr.learn.selection.redundancy import (
    MRMR,
    GreedyElimination,
    PearsonRedundancy,
)
from her2dlr.learn.selection.univariate import (
    ChiSquareSelector,
    MutualInfoSelector,
    UnivariateFilter,
)

__all__ = ["SELECTION_STEPS", "build_selection", "selection_funnel", "step_parameters"]

#: Study-file step name -> (class, fixed constructor arguments).
SELECTION_STEPS: dict[str, tuple[type[BaseEstimator], dict[str, Any]]] = {
    "variance": (MissingVarianceFilter, {}),
    "zscore": (ZScore, {}),
    "ttest": (UnivariateFilter, {"test": "ttest"}),
    "mannwhitney": (UnivariateFilter, {"test": "mannwhitney"}),
    "anova": (UnivariateFilter, {"test": "anova"}),
    "kruskal": (UnivariateFilter, {"test": "kruskal"}),
    "pearson": (PearsonRedundancy, {}),
    "greedy": (GreedyElimination, {}),
    "mrmr": (MRMR, {}),
    "lasso": (LassoSelector, {}),
    "rfe": (RFESelector, {}),
    "chi2": (ChiSquareSelector, {}),
    "mutual_info": (MutualInfoSelector, {}),
    "icc": (ICCFilter, {}),
}


def step_parameters(name: str) -> list[str]:
    """Keys a study file may give for selection step ``name`` (besides ``name``)."""
    cls, fixed = SELECTION_STEPS[name]
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    return [p for p in params if p not in fixed]


def _read_table(value: Any, where: str, base_dir: Path | None) -> pd.DataFrame:
    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        if not path.exists():
            raise StudyFileError(f"{where}: repeat feature table not found: {path}.")
        table = read_table(path)
        if "case_id" in table.columns:
            table = table.set_index("case_id")
        return table
    raise StudyFileError(f"{where}: 'repeat' must be a path to a feature table; got {type(value).__name__}.")


def build_selection(steps: Sequence[Mapping[str, Any]], *, base_dir: str | os.PathLike[str] | None = None,
                    check_only: bool = False) -> list[tuple[str, BaseEstimator]]:
    """Turn study-file selection steps into ``(name, transformer)`` pairs for a Pipeline.

    Parameters
    ----------
    steps : list of dict
        Each ``{"name": <step>, **params}`` in the order to apply, e.g.
        ``[{"name": "variance"}, {"name": "ttest", "alpha": 0.05}, {"name": "pearson", "threshold": 0.9},
        {"name": "lasso"}]``. Names: see :data:`SELECTION_STEPS`. A repeated name gets a ``_2``
        suffix in the pipeline. ``icc`` takes ``repeat`` as a path (or list of paths) to a feature
        table and must come first.
    base_dir : path, optional
        Folder that relative ``repeat`` paths are relative to (the study file's folder).
    check_only : bool, default=False
        Validate names, keys and values without reading any table (study-file validation);
        the ICC step is then returned without its repeat table.

    Returns
    -------
    list of (str, transformer)
        Unfitted transformers.

    Raises
    ------
    StudyFileError
        Unknown step name (lists the allowed names and suggests the nearest), unknown key or bad
        value (names the step, its position and the allowed keys / values).

    Examples
    --------
    >>> [n for n, _ in build_selection([{"name": "variance"}, {"name": "ttest", "alpha": 0.01}])]
    ['variance', 'ttest']
    """
    out: list[tuple[str, BaseEstimator]] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(steps, start=1):
        if not isinstance(raw, Mapping) or "name" not in raw:
            raise StudyFileError(
                f"learn.selection step {i} must be a mapping with a 'name' key, e.g. {{name: ttest, alpha: 0.05}}; "
                f"got {raw!r}."
            )
        name = str(raw["name"])
        if name not in SELECTION_STEPS:
            raise StudyFileError(
                f"learn.selection step {i}: unknown step '{name}'. Allowed: {', '.join(SELECTION_STEPS)}."
                f"{nearest(name, SELECTION_STEPS)}"
            )
        where = f"learn.selection step {i} ('{name}')"
        params = {k: v for k, v in raw.items() if k != "name"}
        allowed = step_parameters(name)
        for key in params:
            if key not in allowed:
                raise StudyFileError(
                    f"{where}: unknown key '{key}'. Allowed: {', '.join(allowed) or '(none)'}.{nearest(key, allowed)}"
                )
        if name == "icc":
            if i != 1:
                raise StudyFileError(f"{where}: the ICC filter must be the first step (it needs the raw feature values).")
            rep = params.get("repeat")
            if rep is None:
                raise StudyFileError(f"{where}: 'repeat' (path to the repeat-segmentation feature table) is required.")
            if check_only:
                if not isinstance(rep, (str, os.PathLike, list, pd.DataFrame)):
                    raise StudyFileError(f"{where}: 'repeat' must be a path (or list of paths); got {rep!r}.")
                params["repeat"] = None
            else:
                base = Path(base_dir) if base_dir is not None else None
                params["repeat"] = (
                    [_read_table(r, where, base) for r in rep] if isinstance(rep, list) else _read_table(rep, where, base)
                )
        cls, fixed = SELECTION_STEPS[name]
        try:
            step = cls(**fixed, **params)
            check = getattr(step, "_check_params", None)
            if check is not None and not (check_only and name == "icc"):
                check()
        except (Her2dlrError, TypeError, ValueError) as exc:
            raise StudyFileError(f"{where}: {exc}") from None
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else f"{name}_{seen[name]}", step))
    return out


def selection_funnel(steps: Any) -> pd.DataFrame:
    """How many features entered and survived each fitted selection step.

    Parameters
    ----------
    steps : fitted Pipeline, or list of (name, fitted transformer)
        Steps without ``get_support`` (the model, a scaler) are skipped; the steps of nested
        pipelines and of a ``ColumnTransformer`` (early fusion) are listed as
        ``<outer>/<inner>`` (e.g. ``fusion/clinical/clinical_select``).

    Returns
    -------
    DataFrame with columns ``step, n_in, n_out``
    """
    pairs = steps.steps if hasattr(steps, "steps") else list(steps)
    rows = []
    for name, step in pairs:
        inner = getattr(step, "steps", None)
        if inner is None and hasattr(step, "transformers_"):
            inner = [(n, t) for n, t, _ in step.transformers_ if hasattr(t, "fit")]
        if inner is not None:
            sub = selection_funnel(inner)
            rows += [{**r, "step": f"{name}/{r['step']}"} for r in sub.to_dict("records")]
            continue
        if not hasattr(step, "get_support") or not hasattr(step, "n_features_in_"):
            continue
        rows.append({"step": name, "n_in": int(step.n_features_in_), "n_out": int(step.get_support().sum())})
    return pd.DataFrame(rows, columns=["step", "n_in", "n_out"])
