"""Experiment tracking with MLflow (optional): what a finished stage wrote, logged as one MLflow run.

Off by default; one study-file section turns it on::

    tracking:
      mlflow: true
      uri: null          # default: a store inside the run folder, RUN/mlruns
      experiment: null   # default: the study's name

Each tracked stage (``her2dlr learn run``, ``train deep``, ``train seg``, and every stage that
``her2dlr run`` runs, as child runs of one parent run) becomes one MLflow run holding:

* the study hash (param and tag ``her2dlr.study_hash``: SHA-256 of the study file's settings, so
  runs of one study group together) and the stage's settings, flattened (``selection.0.name``);
* metrics: per model, split and scope of ``metrics.csv`` its AUC with ``ci_low`` / ``ci_high``,
  accuracy, sensitivity and specificity (``<model>/<split>/<scope>/auc``); Dice, IoU and
  detection with their CIs for segmentation;
* the stage's figures (its PNGs) under ``figures/``, its small tables under ``tables/``;
* its model artefacts: each as an MLflow ``pyfunc`` model when a model logger is given (see
  :mod:`her2dlr.predict.pyfunc`), else as plain folders under ``artefacts/``; a segmentation
  network for new cases under ``network/``.

Tracking reads what the stage wrote, after it wrote it: a failure while logging (a tracking
server that does not answer) is a warning and never costs the run folder anything. MLflow 3
refuses its plain-file store unless told otherwise (the file store is in maintenance mode), so
the default store is a SQLite file, ``RUN/mlruns/mlflow.db``, with the artifacts beside it in
``RUN/mlruns/artifacts`` (SQLAlchemy and Alembic come with the ``tracking`` extra).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from her2dlr.errors import InputError
from her2dlr.provenance import config_hash
from her2dlr.runfolder import METRICS, SETTINGS, RunPaths
from her2dlr.schema import StrictModel

__all__ = [
    "INSTALL_HINT",
    "StageRecord",
    "TrackingSettings",
    "check_tracking",
    "flatten_params",
    "metric_key",
    "require_mlflow",
    "results_record",
    "segment_record",
    "store_location",
    "study_hash",
    "track_stage",
    "tracked_pipeline",
]

INSTALL_HINT = "pip install her2dlr[tracking]"
#: MLflow's longest param value (characters); longer values are cut with a note.
MAX_PARAM_CHARS = 6000
#: Columns of a metrics table logged per model, split and scope.
LOGGED_METRICS = ("auc", "ci_low", "ci_high", "accuracy", "sensitivity", "specificity")
#: Tables small enough to keep with every run (the predictions stay in the run folder).
_TABLE_SUFFIXES = (".csv", ".json")
_STORE_DB = "mlflow.db"
_STORE_ARTIFACTS = "artifacts"
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
#: Writes a model artefact folder as an MLflow model of the active run.
ModelLogger = Callable[[Path], Any]


class TrackingSettings(StrictModel):
    """The ``tracking:`` section of a study file (off by default)."""

    mlflow: bool = Field(False, description="Log every learn / deep / segmentation stage to MLflow.")
    uri: str | None = Field(None, description="MLflow tracking URI (a server, sqlite:///..., or a folder); "
                                              "default: a SQLite store in RUN/mlruns.")
    experiment: str | None = Field(None, min_length=1, description="Experiment name (default: the study's name).")


# ---------------------------------------------------------------------------- the package
def require_mlflow() -> Any:
    """The ``mlflow`` module, or an InputError saying how to install it."""
    try:
        import mlflow
    except ImportError as exc:
        raise InputError(f"The study file turns MLflow tracking on (tracking.mlflow: true) but MLflow is not "
                         f"installed ({exc}). Install it with `{INSTALL_HINT}`, or set tracking.mlflow: false.") from None
    return mlflow


def check_tracking(study: Any) -> None:
    """Refuse, before any work, a study that turns tracking on without MLflow installed."""
    if _settings(study).mlflow:
        require_mlflow()


def _settings(study: Any) -> TrackingSettings:
    return getattr(study, "tracking", None) or TrackingSettings()


def study_hash(study: Any) -> str:
    """SHA-256 (16 hex digits) of the study's settings, its ``tracking`` section left out."""
    return config_hash(study.model_dump(mode="json", exclude={"tracking"}))


def store_location(study: Any) -> tuple[str, str | None]:
    """The tracking URI and, for a store in a folder, where its artifacts go (``None``: the server decides).

    ``uri`` unset: ``RUN/mlruns``; a URI with a scheme (``http://``, ``sqlite:///``, ``file:``) is
    used as given; any other text is a folder (relative to the study file) for a SQLite store.
    """
    uri = _settings(study).uri
    if uri is not None and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", uri) and not re.match(r"^[a-zA-Z]:[\\/]", uri):
        return uri, None
    folder = RunPaths(study.run_dir).mlruns if uri is None else study.resolve(uri)
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / _STORE_DB).resolve().as_posix()}", (folder / _STORE_ARTIFACTS).resolve().as_uri()


# ---------------------------------------------------------------------------- what a stage wrote
@dataclass
class StageRecord:
    """What one finished stage logs: its settings, metrics, figures, tables and model artefacts.

    Attributes
    ----------
    stage : str
        ``learn``, ``deep``, ``segment`` or ``dlr``.
    name : str
        The MLflow run name (``learn radiomics_us2d_mask``).
    params : dict
        The stage's settings (nested; flattened when logged).
    metrics : dict of str -> float
    figures, tables : list of Path
    artefacts : list of Path
        Model artefact folders (``RUN/models/<name>``).
    files : list of Path
        Other files kept with the run (the segmentation network for new cases).
    """

    stage: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    artefacts: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def metric_key(*parts: Any) -> str:
    """An MLflow metric or param name from its parts: ``/``-joined, characters MLflow refuses as ``_``."""
    return "/".join(re.sub(r"[^\w.\- :]", "_", str(p)) for p in parts)


def flatten_params(settings: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as MLflow params: ``{"selection": [{"name": "zscore"}]}`` -> ``{"selection.0.name": "zscore"}``.

    Empty lists and dicts keep their key (as ``[]`` / ``{}``); values longer than MLflow allows
    are cut, with a note.
    """
    out: dict[str, str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_params(value, f"{name}."))
        elif isinstance(value, list | tuple) and value and any(isinstance(v, Mapping) for v in value):
            out.update(flatten_params({str(i): v for i, v in enumerate(value)}, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            if len(text) > MAX_PARAM_CHARS:
                text = text[: MAX_PARAM_CHARS - 20] + " ... (cut)"
            out[re.sub(r"[^\w.\- :/]", "_", name)] = text
    return out


def _top_files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes) if folder.is_dir() else []


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def results_record(stage: str, folder: str | os.PathLike[str], *,
                   artefacts: Sequence[str | os.PathLike[str]] = ()) -> StageRecord:
    """The record of a results folder (``learn/<set>``, ``deep/<arch>``): its metrics table, settings and figures.

    Metrics: :data:`LOGGED_METRICS` of every row of ``metrics.csv`` as ``<model>/<split>/<scope>/<name>``.
    """
    import pandas as pd

    folder = Path(folder)
    metrics: dict[str, float] = {}
    if (folder / METRICS).is_file() and (folder / METRICS).stat().st_size:
        table = pd.read_csv(folder / METRICS)
        for row in table.to_dict(orient="records"):
            for name in LOGGED_METRICS:
                value = row.get(name)
                if isinstance(value, int | float) and math.isfinite(value):
                    metrics[metric_key(row["model"], row["split"], row["scope"], name)] = float(value)
    return StageRecord(stage=stage, name=f"{stage} {folder.name}", params=_read_json(folder / SETTINGS),
                       metrics=metrics, figures=_top_files(folder, (".png",)),
                       tables=_top_files(folder, _TABLE_SUFFIXES), artefacts=[Path(a) for a in artefacts])


def segment_record(folder: str | os.PathLike[str], *, network: str | os.PathLike[str] | None = None) -> StageRecord:
    """The record of a segmentation folder (``segment/<arch>``): Dice, IoU, detection with their CIs, the montage.

    ``network``: the network for new cases (``final/best.pt``), kept with the run.
    """
    folder = Path(folder)
    summary = _read_json(folder / "summary.json")
    metrics = {metric_key(k): float(v) for k, v in summary.items()
               if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
    params = summary.get("settings", {})
    return StageRecord(stage="segment", name=f"segment {folder.name}",
                       params=params if isinstance(params, dict) else {}, metrics=metrics,
                       figures=_top_files(folder, (".png",)), tables=_top_files(folder, _TABLE_SUFFIXES),
                       files=[Path(network)] if network is not None else [])


# ---------------------------------------------------------------------------- logging
@contextmanager
def _quiet_mlflow(mlflow: Any) -> Iterator[None]:
    """MLflow's own INFO lines, advice warnings (database set-up, type hints) and artifact-copy progress bars
    kept off the user's console (the toolkit's own progress bars are the ones that matter)."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    bar = os.environ.get(_PROGRESS_BAR)
    logger.setLevel(logging.ERROR)
    os.environ[_PROGRESS_BAR] = "false"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
        if bar is None:
            os.environ.pop(_PROGRESS_BAR, None)
        else:
            os.environ[_PROGRESS_BAR] = bar


@contextmanager
def _experiment(study: Any) -> Iterator[tuple[Any, str]]:
    """The mlflow module pointed at the study's store, and the id of the study's experiment (created when new).

    The previous tracking URI is restored after; the user's active experiment is left alone
    (runs are started with an explicit ``experiment_id``).
    """
    mlflow = require_mlflow()
    uri, artifacts = store_location(study)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    try:
        with _quiet_mlflow(mlflow):
            mlflow.set_tracking_uri(uri)
            name = _settings(study).experiment or study.name
            client = mlflow.MlflowClient()
            found = client.get_experiment_by_name(name)
            exp_id = found.experiment_id if found is not None else client.create_experiment(name, artifact_location=artifacts)
        yield mlflow, exp_id
    finally:
        mlflow.set_tracking_uri(previous)


def _rank_zero() -> bool:
    """False in the other processes of a distributed launch (only rank 0 writes)."""
    return int(os.environ.get("RANK", "0")) == 0


def track_stage(study: Any, record: StageRecord, *, model_logger: ModelLogger | None = None) -> str | None:
    """Log a finished stage as one MLflow run (a child run when ``her2dlr run``'s parent run is open).

    Parameters
    ----------
    study : Study
        Its ``tracking`` section decides whether anything is logged.
    record : StageRecord
        From :func:`results_record` or :func:`segment_record`, read after the stage wrote its files.
    model_logger : callable, optional
        Logs one model artefact folder as an MLflow model of the active run
        (:func:`her2dlr.predict.pyfunc.log_pyfunc_model`); without it the folders are logged as
        plain artifacts.

    Returns
    -------
    str or None
        The MLflow run id; None when tracking is off, in the non-zero ranks of a distributed
        launch, or when logging failed (a warning says why: the run folder is complete anyway).

    Raises
    ------
    InputError
        Tracking on and MLflow not installed.
    """
    if not _settings(study).mlflow or not _rank_zero():
        return None
    digest = study_hash(study)
    try:
        with _experiment(study) as (mlflow, exp_id), _quiet_mlflow(mlflow):
            nested = mlflow.active_run() is not None
            with mlflow.start_run(experiment_id=exp_id, run_name=record.name, nested=nested,
                                  tags={"her2dlr.stage": record.stage, "her2dlr.study_hash": digest,
                                        "her2dlr.run_folder": str(study.run_dir)}) as run:
                _log_record(mlflow, record, digest, model_logger)
                return str(run.info.run_id)
    except InputError:
        raise
    except Exception as exc:  # the stage's outputs are written; tracking must not turn that into a failure
        warnings.warn(f"MLflow tracking of stage '{record.stage}' failed ({type(exc).__name__}: {exc}); the run "
                      f"folder {study.run_dir} holds every result.", stacklevel=2)
        return None


def _log_record(mlflow: Any, record: StageRecord, digest: str, model_logger: ModelLogger | None) -> None:
    mlflow.log_params({"study_hash": digest, "stage": record.stage, **flatten_params(record.params)})
    if record.metrics:
        mlflow.log_metrics(record.metrics)
    for path in record.figures:
        mlflow.log_artifact(str(path), artifact_path="figures")
    for path in record.tables:
        mlflow.log_artifact(str(path), artifact_path="tables")
    for path in record.files:
        if path.is_file():
            mlflow.log_artifact(str(path), artifact_path="network")
    for folder in record.artefacts:
        if model_logger is not None:
            model_logger(folder)
        else:
            mlflow.log_artifacts(str(folder), artifact_path=f"artefacts/{folder.name}")


@contextmanager
def tracked_pipeline(study: Any) -> Iterator[Callable[[Mapping[str, Any]], None] | None]:
    """``her2dlr run``'s parent run: the stages' runs nest in it; yields a function that logs the stage outcomes.

    Yields None (and logs nothing) when tracking is off. A failure to open the parent run is a
    warning; the stages then log runs of their own.
    """
    if not _settings(study).mlflow or not _rank_zero():
        yield None
        return
    digest = study_hash(study)
    state = {"failed": False}
    with ExitStack() as stack:
        try:
            mlflow, exp_id = stack.enter_context(_experiment(study))
            with _quiet_mlflow(mlflow):
                mlflow.start_run(experiment_id=exp_id, run_name="her2dlr run", tags={
                    "her2dlr.stage": "run", "her2dlr.study_hash": digest, "her2dlr.run_folder": str(study.run_dir)})
                stack.callback(_end_run, mlflow, state)
                mlflow.log_params({"study_hash": digest, "stage": "run",
                                   **flatten_params(study.model_dump(mode="json", exclude={"tracking"}))})
        except InputError:
            raise
        except Exception as exc:
            warnings.warn(f"MLflow tracking of `her2dlr run` failed ({type(exc).__name__}: {exc}).", stacklevel=3)
            stack.close()
            yield None
            return

        def outcomes(stages: Mapping[str, Any]) -> None:
            """Per stage: its status as a tag, its seconds as a metric."""
            try:
                with _quiet_mlflow(mlflow):
                    mlflow.set_tags({f"her2dlr.stage.{k}": v["status"] for k, v in stages.items()})
                    mlflow.log_metrics({metric_key("seconds", k): float(v["seconds"]) for k, v in stages.items()})
            except Exception as exc:
                warnings.warn(f"MLflow tracking of `her2dlr run` failed ({type(exc).__name__}: {exc}).", stacklevel=2)

        try:
            yield outcomes
        except BaseException:
            state["failed"] = True
            raise


def _end_run(mlflow: Any, state: Mapping[str, bool]) -> None:
    """End the parent run, FAILED when a stage raised."""
    with _quiet_mlflow(mlflow):
        mlflow.end_run(status="FAILED" if state["failed"] else "FINISHED")
