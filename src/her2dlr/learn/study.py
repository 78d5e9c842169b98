"""The learning stage of a study: manifest + feature tables in ``<run>/features`` -> ``<run>/learn/<set>``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from her2dlr.cohort.build import manifest_path
from her2dlr.cohort.manifest import Manifest
from her2dlr.errors import InputError
from her2dlr.learn.settings import LearnSettings
from her2dlr.learn.stage import LearnStageResult, run_learn_stage

if TYPE_CHECKING:  # the study model composes every stage; a stage only reads it
    from her2dlr.config import Study

__all__ = [
    "feature_table_provenance",
    "load_feature_tables",
    "radiomics_params_of",
    "resolve_feature_table",
    "run_study_learning",
]


#: Feature tables a user brings (computed by another tool), given by path.
USER_TABLE_SUFFIXES = (".parquet", ".csv", ".tsv", ".xlsx")


def _user_table(path: Path) -> pd.DataFrame:
    """A CSV/TSV/XLSX feature table: ``case_id`` column (or the first column) as index, numeric columns."""
    from her2dlr.cohort.feature_tables import read_feature_table

    return read_feature_table(path)


def resolve_feature_table(study: Study, name: str) -> Path:
    """Path of a feature table given by path, by exact name under ``<run>/features``, or by unique prefix."""
    if name.lower().endswith(USER_TABLE_SUFFIXES):
        path = study.resolve(name)
        if not path.exists():
            raise InputError(f"Feature table {path} does not exist.")
        return path
    folder = study.paths.features
    exact = study.paths.feature_table(name)
    if exact.exists():
        return exact
    matches = sorted(folder.glob(f"{name}*.parquet"))
    if len(matches) == 1:
        return matches[0]
    have = sorted(p.stem for p in folder.glob("*.parquet"))
    if not matches:
        raise InputError(
            f"No feature table '{name}' under {folder}. Tables: {have or 'none (run `her2dlr extract radiomics` first)'}."
        )
    raise InputError(f"Feature table name '{name}' matches several tables {[p.stem for p in matches]}: give the full name.")


def load_feature_tables(study: Study, names: list[str]) -> tuple[pd.DataFrame, str]:
    """Join the named tables by case id (columns prefixed by table when names collide); return table and set name."""
    tables = []
    for name in names:
        path = resolve_feature_table(study, name)
        df = pd.read_parquet(path) if path.suffix == ".parquet" else _user_table(path)
        if df.index.name != "case_id":
            if "case_id" not in df.columns:
                raise InputError(f"Feature table {path} has no case_id index or column.")
            df = df.set_index("case_id")
        dup = df.index[df.index.duplicated()].astype(str).unique().tolist()
        if dup:
            raise InputError(f"Feature table {path} has case id(s) {dup[:10]} on several rows; a feature table has "
                             "one row per case.")
        tables.append((path.stem, df))
    clash = set()
    seen: set[str] = set()
    for _, df in tables:
        clash |= seen & set(df.columns)
        seen |= set(df.columns)
    joined = pd.concat(
        [df.rename(columns={c: f"{stem}:{c}" for c in df.columns if c in clash}) for stem, df in tables],
        axis=1, join="inner",
    )
    return joined, "+".join(stem for stem, _ in tables)


def run_study_learning(
    study: Study,
    *,
    features: list[str] | None = None,
    models: list[str] | None = None,
    schemes: list[str] | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
    pairs: bool = False,
) -> list[LearnStageResult]:
    """Run the learning stage of the study (its ``learn:`` section, overridden by the arguments).

    The feature name ``clinical`` adds the clinical model (and fusions) from the manifest's
    clinical columns (see :mod:`her2dlr.learn.settings`).
    """
    from her2dlr.io.atomic import check_writable

    check_writable(study.paths.root)
    settings = study.learn or LearnSettings()
    updates = {k: v for k, v in {"models": models, "schemes": schemes, "n_jobs": n_jobs}.items() if v}
    if updates:
        # exclude_unset: keys the study file left out stay unset (a 3-class label skips a default fusion
        # it has no form for, but refuses one the study names; see learn.multiclass_stage)
        settings = LearnSettings.model_validate({**settings.model_dump(mode="json", exclude_unset=True), **updates})
    if pairs and "pairs" not in settings.clinical.fusion:
        settings = settings.model_copy(deep=True)
        named = "fusion" in settings.clinical.model_fields_set
        settings.clinical.fusion = [*settings.clinical.fusion, "pairs"]
        if not named:  # --pairs asks for the pairings only, not for the other default fusions by name
            settings.clinical.model_fields_set.discard("fusion")
    from her2dlr.learn.fusion import CLINICAL_FEATURE

    manifest = Manifest.load(manifest_path(study))
    names = list(features or settings.features)
    clinical = CLINICAL_FEATURE in names
    names = [n for n in names if n != CLINICAL_FEATURE]
    table, set_name = load_feature_tables(study, names) if names else (None, "")
    provenance = [feature_table_provenance(study, n) for n in names]
    folder = "+".join([set_name] * bool(set_name) + [CLINICAL_FEATURE] * clinical)
    if table is not None and any(t.get("roi") == "auto" for t in provenance):
        manifest = _without_automatic_roi(manifest, table, study.paths.learn_set(folder))
    result = run_learn_stage(
        table, manifest, settings, study.paths.learn_set(folder), feature_set=set_name or "features",
        progress=progress, clinical=clinical, models_dir=study.paths.models, feature_tables=provenance,
        radiomics_params=radiomics_params_of(provenance), segmenter=_segmenter(study, provenance),
    )
    return [result]


def feature_table_provenance(study: Study, name: str) -> dict[str, Any]:
    """Name, path and extraction settings (params, roi, params hash) of a feature table, from its JSON sidecar."""
    path = resolve_feature_table(study, name)
    info: dict[str, Any] = {"name": path.stem, "path": str(path)}
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        meta = json.loads(sidecar.read_text())
        info.update({k: meta[k] for k in ("params", "roi", "params_hash", "pyradiomics", "images", "pixel_size")
                     if k in meta})
    return info


def _without_automatic_roi(manifest: Manifest, table: pd.DataFrame, out_dir: Path) -> Manifest:
    """Leave out, with a warning and ``excluded_cases.csv``, the cases whose automatic mask was empty.

    A model of automatic-mask features gives no answer for such a case (there is no ROI), so
    its metrics hold for the cases it can read; how many it cannot is part of the result.
    """
    import warnings

    from her2dlr.io.atomic import write_csv_atomic
    from her2dlr.runfolder import EXCLUDED_CASES

    rows = manifest.table.copy()
    ids = rows["case_id"].astype(str)
    have = set(table.index.astype(str)) if "case_id" not in table.columns else set(table["case_id"].astype(str))
    include = rows["include"].fillna(True).astype(bool) if "include" in rows.columns else pd.Series(True, index=rows.index)
    lost = include & rows["label"].notna() & ~ids.isin(have)
    if lost.any():
        warnings.warn(f"{int(lost.sum())} case(s) have no automatic ROI (empty segmentation) and are left out of "
                      f"learning: {ids[lost].tolist()[:10]}", stacklevel=3)
        rows.loc[lost, "include"] = False
        rows.loc[lost, "exclude_reason"] = "no automatic ROI"
    write_csv_atomic(pd.DataFrame({"case_id": ids[lost], "reason": "no automatic ROI (empty segmentation)"}),
                     out_dir / EXCLUDED_CASES)
    return manifest.copy(rows)


def _segmenter(study: Study, provenance: list[dict[str, Any]]) -> Path | None:
    """The final segmentation network, for models of features extracted from automatic masks (``roi: auto``)."""
    if not any(t.get("roi") == "auto" for t in provenance):
        return None
    from her2dlr.runfolder import BEST_CHECKPOINT
    from her2dlr.segment.settings import SegmentSettings

    path = study.paths.segment_arch((study.segment or SegmentSettings()).arch) / "final" / BEST_CHECKPOINT
    return path if path.is_file() else None


def radiomics_params_of(provenance: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The resolved parameters of the one radiomics table, when they still hash to what was extracted."""
    from her2dlr.radiomics.parameters import load_params, params_hash

    tables = [t for t in provenance if t.get("params_hash")]
    if len(tables) != 1:
        return None
    try:
        params = load_params(tables[0]["params"])
    except Exception:  # a params file that moved: the model still predicts from feature rows
        return None
    return params if params_hash(params) == tables[0]["params_hash"] else None
