"""The survival stage of a study: its manifest (or a table) + ``survival:`` settings -> ``RUN/survival/``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from her2dlr.errors import StudyFileError
from her2dlr.survival.driver import SurvivalReport

if TYPE_CHECKING:  # the study model composes every stage; a stage only reads it
    from her2dlr.config import Study

__all__ = ["run_survival_stage"]


def _with_source_names(df: Any, source_columns: dict[str, str]) -> Any:
    """The cohort table with each renamed column also under the source's name (``rfs_days`` for ``time``).

    The cohort stores a table source's time, event and treatment columns as ``time``, ``event``
    and ``treatment``; a study file may name either.
    """
    out = df.copy()
    for original, stored in source_columns.items():
        if original not in out.columns and stored in out.columns:
            out[original] = out[stored]
    return out


def _with_cohort_types(settings: Any, clinical_types: dict[str, str]) -> Any:
    """``settings`` whose ``categorical`` also lists the covariates the cohort typed as categorical."""
    used = {*settings.covariates, *settings.risk_covariates, *(settings.score_covariates or []),
            *(settings.psm.covariates or [])}
    if settings.her2low is not None:
        used |= set(settings.her2low.covariates or [])
    extra = [c for c, kind in clinical_types.items() if kind == "categorical" and c in used
             and c not in settings.categorical]
    if not extra:
        return settings
    return settings.model_copy(update={"categorical": [*settings.categorical, *extra]})


def run_survival_stage(study: Study | None = None, *, settings_from: Study | None = None,
                       data: str | os.PathLike[str] | None = None, out: str | os.PathLike[str] | None = None,
                       **overrides: Any) -> tuple[SurvivalReport, Path]:
    """Run the survival analyses of a study, or of a table, and write them.

    Parameters
    ----------
    study : Study, optional
        Its manifest's included rows are the data (unless ``data`` is given), its ``survival:``
        section the settings (unless ``settings_from`` is given), ``RUN/survival`` the output
        (unless ``out`` is given).
    settings_from : Study, optional
        Another study whose ``survival:`` section to use.
    data : path, optional
        A cohort table (CSV, TSV, XLSX, Parquet) instead of the study's manifest.
    out : path, optional
        Output folder (needed without a study).
    **overrides
        Settings that replace the study's (None values are ignored), e.g. from command-line flags.

    Returns
    -------
    (SurvivalReport, Path)
        What was computed, and the folder it was written to.

    Raises
    ------
    StudyFileError
        Neither a study nor both ``data`` and ``out``; settings that do not validate (names the key).
    """
    from her2dlr.io.tables import read_table
    from her2dlr.survival.driver import run_survival
    from her2dlr.survival.settings import load_survival_settings

    if study is None and (data is None or out is None):
        raise StudyFileError("Give a study file, or both --data and --out.")
    from her2dlr.io.atomic import check_writable

    check_writable(Path(out) if out is not None else study.paths.survival)  # type: ignore[union-attr]
    source: Any = settings_from if settings_from is not None else study
    settings = load_survival_settings(source, **overrides)
    notes: list[str] = []
    if data is not None:
        df = read_table(data)
    else:
        from her2dlr.cohort.manifest import Manifest

        manifest = Manifest.load(study.paths.manifest)  # type: ignore[union-attr]
        df = _with_source_names(manifest.included, manifest.meta.get("source_columns", {}))
        settings = _with_cohort_types(settings, manifest.clinical_types)
        if df["patient_id"].duplicated().any():  # follow-up belongs to the patient, not to each image or lesion
            n_rows = len(df)
            df = df.drop_duplicates("patient_id", keep="first")
            notes.append(f"the cohort has {n_rows} rows of {len(df)} patients: one row per patient (the first) "
                         "enters the survival analyses")
        if settings.score_from is not None:
            column = settings.score_column or "model_score"
            scores, note = out_of_fold_scores(study.run_dir, settings.score_from)  # type: ignore[union-attr]
            df = df.assign(**{column: df["case_id"].astype(str).map(scores)})
            settings = settings.model_copy(update={"score_column": column})
            notes.append(note)
    folder = Path(out) if out is not None else study.paths.survival  # type: ignore[union-attr]
    return run_survival(df, settings, folder, notes=notes), folder


def out_of_fold_scores(run_dir: str | os.PathLike[str], model: str) -> tuple[Any, str]:
    """Each case's k-fold out-of-fold probability of ``model`` (mean over repetitions), from the run folder.

    Parameters
    ----------
    run_dir : path
        The study's run folder; ``learn/*/predictions.parquet`` and ``deep/*/predictions.parquet``
        are searched for rows of ``model``.
    model : str
        A model name as in those files' ``model`` column (and in ``metrics.csv``).

    Returns
    -------
    scores : Series
        Indexed by case id (str).
    note : str
        Where the scores came from, for the survival summary.

    Raises
    ------
    InputError
        No such model (the known ones are listed), or no k-fold test predictions of it.
    """
    import pandas as pd

    from her2dlr.errors import InputError, nearest
    from her2dlr.runfolder import PREDICTIONS

    run = Path(run_dir)
    files = sorted([*run.glob(f"learn/*/{PREDICTIONS}"), *run.glob(f"deep/*/{PREDICTIONS}")])
    known: set[str] = set()
    for path in files:
        pred = pd.read_parquet(path)
        known.update(pred["model"].astype(str).unique())
        if "prob_2" in pred.columns and pred.loc[pred["model"] == model, "prob_2"].notna().any():
            raise InputError(f"survival.score_from: '{model}' in {path} is a multi-class model: its 'prob' is the "
                             "probability of whichever class it predicts, not a risk score. Use a binary model.")
        rows = pred[(pred["model"] == model) & (pred["split"] == "test")
                    & pred["fold"].astype(str).str.fullmatch(r"r\d+f\d+")]
        if (pred["model"] == model).any():
            if rows.empty:
                raise InputError(f"survival.score_from: model '{model}' in {path} has no k-fold test predictions; "
                                 "out-of-fold scores need the k-fold scheme (schemes: [kfold]).")
            scores = rows.groupby(rows["case_id"].astype(str))["prob"].mean()
            n_rep = rows["fold"].str.extract(r"r(\d+)f", expand=False).nunique()
            return scores, (f"score '{model}': out-of-fold probability of {len(scores)} cases from "
                            f"{path.relative_to(run)} (mean over {n_rep} k-fold repetition(s))")
    listed = ", ".join(sorted(known)) or "none (run the learn or deep stage first)"
    raise InputError(f"survival.score_from: no model '{model}' in {run}/learn or {run}/deep predictions. "
                     f"Known: {listed}.{nearest(model, sorted(known))}")
