"""Cohort build: import -> label rule -> QC -> splits -> ``<run>/cohort/``.

Everything is computed first and written at the end, each file atomically, so a failure leaves
the previous cohort folder as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from her2dlr.cohort.dicom_source import add_dce_columns
from her2dlr.cohort.feature_tables import study_feature_tables
from her2dlr.cohort.importers import import_sources
from her2dlr.cohort.labels import apply_label_rule
from her2dlr.cohort.manifest import Manifest
from her2dlr.cohort.qc import QCResult, run_qc
from her2dlr.cohort.splits import assign_splits, groups_straddling
from her2dlr.errors import InputError
from her2dlr.io.atomic import write_csv_atomic, write_text_atomic

if TYPE_CHECKING:  # the study model composes every stage; a stage only reads it
    from her2dlr.config import Study

__all__ = ["CohortBuild", "build_cohort", "cross_centre_pairs", "manifest_path", "split_class_names", "split_summary"]


def manifest_path(study: Study) -> Path:
    """Where the study's manifest lives."""
    return study.paths.manifest


@dataclass
class CohortBuild:
    """What :func:`build_cohort` made: the manifest, the QC result and the split summary."""

    manifest: Manifest
    qc: QCResult
    splits: pd.DataFrame
    out_dir: Path


def split_summary(manifest: Manifest) -> pd.DataFrame:
    """Counts per split / fold and class, plus how many groups straddle each partition (must be 0).

    A split by centre cannot move images between centres, so its hold-out counts patients
    straddling (``partition`` ``"by_centre"``); near duplicates across centres are a QC warning
    (:func:`cross_centre_pairs`), not a split error.

    A binary label gives ``n_pos`` / ``n_neg`` (label 1 / label 0); a label with more classes
    (e.g. ``her2_three_class``) gives one ``n_<class name>`` column per class instead, in label order
    (:func:`split_class_names`).
    """
    t = manifest.table
    names = split_class_names(manifest)
    rows = []
    labelled = t[t.get("split", pd.Series(index=t.index, dtype=object)).notna()] if "split" in t else t.iloc[:0]
    groups = t["group"] if "group" in t.columns else t["patient_id"]
    by_centre = (manifest.meta.get("split") or {}).get("by_centre") is not None
    if len(labelled):
        holdout_groups = t["patient_id"] if by_centre else groups
        for name, part in labelled.groupby("split"):
            rows.append({"partition": "by_centre" if by_centre else "holdout", "part": name, "n": len(part),
                         **_class_counts(part["label"], names),
                         "patients": part["patient_id"].nunique(),
                         "groups_straddling": groups_straddling(holdout_groups[labelled.index], labelled["split"])})
    for col in manifest.fold_columns:
        part_rows = t[t[col] >= 0]
        straddle = groups_straddling(groups[part_rows.index], part_rows[col])
        for k, part in part_rows.groupby(col):
            rows.append({"partition": col, "part": f"fold {k}", "n": len(part),
                         **_class_counts(part["label"], names),
                         "patients": part["patient_id"].nunique(), "groups_straddling": straddle})
    return pd.DataFrame(rows)


def split_class_names(manifest: Manifest) -> list[str] | None:
    """Class names of a label with more than two classes (the rule's, else ``"0"``, ``"1"`` ...); None when binary.

    The names are those the label rule recorded in ``manifest.meta["label"]["classes"]`` (e.g.
    ``HER2-zero, HER2-low, HER2-positive``), the names the learn stage and the report use.
    """
    classes = (manifest.meta.get("label") or {}).get("classes")
    labels = manifest.table["label"] if "label" in manifest.table.columns else pd.Series(dtype=float)
    top = int(pd.to_numeric(labels, errors="coerce").max()) if labels.notna().any() else -1
    n_classes = max(len(classes) if isinstance(classes, list) else 0, top + 1)
    if n_classes <= 2:
        return None
    if isinstance(classes, list) and len(classes) == n_classes:
        return [str(c) for c in classes]
    return [str(k) for k in range(n_classes)]


def _class_counts(labels: pd.Series, names: list[str] | None) -> dict[str, int]:
    """``n_pos`` / ``n_neg`` of a binary label, else ``n_<name>`` for each class."""
    vc = labels.astype(int).value_counts()
    if names is None:
        return {"n_pos": int(vc.get(1, 0)), "n_neg": int(vc.get(0, 0))}
    return {f"n_{name}": int(vc.get(k, 0)) for k, name in enumerate(names)}


def cross_centre_pairs(manifest: Manifest, pairs: pd.DataFrame) -> pd.DataFrame:
    """Duplicate pairs (QC) whose two images come from different centres, with their file names.

    Returns
    -------
    DataFrame
        ``case_a, case_b, centre_a, centre_b, image_a, image_b, distance, method``.
    """
    cols = ["case_a", "case_b", "centre_a", "centre_b", "image_a", "image_b", "distance", "method"]
    if not len(pairs) or "centre" not in manifest.table.columns:
        return pd.DataFrame(columns=cols)
    rows = manifest.table.drop_duplicates("case_id")
    info = rows.set_index(rows["case_id"].astype(str))
    a, b = pairs["case_a"].astype(str), pairs["case_b"].astype(str)
    known = a.isin(info.index) & b.isin(info.index)
    out = pd.DataFrame({
        "case_a": a[known], "case_b": b[known],
        "centre_a": info["centre"].reindex(a[known]).to_numpy(), "centre_b": info["centre"].reindex(b[known]).to_numpy(),
        "image_a": info["image"].reindex(a[known]).to_numpy(), "image_b": info["image"].reindex(b[known]).to_numpy(),
        "distance": pairs["distance"][known].to_numpy(), "method": pairs["method"][known].to_numpy(),
    })
    return out[out["centre_a"].astype(str) != out["centre_b"].astype(str)].reset_index(drop=True)[cols]


def build_cohort(study: Study, *, n_jobs: int = 1, progress: bool = True) -> CohortBuild:
    """Build the study's cohort and write it to ``<run>/cohort/``.

    Writes ``manifest.parquet`` (+ ``.csv``), ``qc.csv``, ``qc_pairs.csv``, ``qc_summary.txt``,
    ``qc_summary.json``, ``labels.csv`` and ``splits.csv``.
    """
    from her2dlr.io.atomic import check_writable

    check_writable(study.paths.root)
    paths = study.paths
    out_dir = paths.cohort
    manifest = import_sources(study)
    rule = study.label
    labels = apply_label_rule(
        manifest.table, rule.rule, column=rule.column, positive=rule.positive, negative=rule.negative,
        ihc_column=rule.ihc_column, ish_column=rule.ish_column,
    )
    table = manifest.table.copy()
    table["label"] = labels.label
    table["include"] = labels.label.notna()
    table["exclude_reason"] = labels.reason.astype(object).where(labels.label.isna(), None)
    manifest = manifest.copy(table)
    manifest.meta["label"] = {**rule.model_dump(mode="json"), "classes": labels.classes}
    qc_kwargs = {}
    if study.qc.near_duplicate_distance is not None:
        qc_kwargs["near_duplicate_distance"] = study.qc.near_duplicate_distance
    qc = run_qc(
        manifest, lesion_policy=study.qc.lesion_policy, derived_mask_dir=paths.derived_masks,
        n_jobs=n_jobs, progress=progress, features=study_feature_tables(study) or None,
        resample_mask=study.qc.resample_mask, **qc_kwargs,
    )
    if manifest.meta.get("missing_cells"):
        qc.summary["missing_cells"] = manifest.meta["missing_cells"]
    if study.split.by_centre is not None:
        across = cross_centre_pairs(qc.manifest, qc.duplicate_pairs)
        qc.summary["cross_centre_pairs"] = across.to_dict(orient="records")
    qc.table = add_dce_columns(qc.table, qc.manifest.table)  # which DICOM tags gave each case's phases
    try:
        manifest = assign_splits(qc.manifest, study.split)
    except InputError as exc:  # the QC tables explain most split failures (e.g. merged duplicates)
        qc.write(out_dir)
        raise InputError(f"{exc}\nQC results written to {out_dir} (qc.csv, qc_pairs.csv, qc_summary.txt).") from None
    manifest.meta["qc"] = study.qc.model_dump(mode="json")
    manifest.meta["study"] = study.name
    splits = split_summary(manifest)
    qc.write(out_dir)
    label_report = pd.DataFrame({
        "case_id": table["case_id"], "label": labels.label, "reason": labels.reason, "flag": labels.flags,
    })
    write_csv_atomic(label_report, paths.labels)
    write_csv_atomic(splits, paths.splits)
    manifest.save(paths.manifest)
    write_text_atomic(paths.label_counts, json.dumps(labels.counts(), indent=2))
    return CohortBuild(manifest=manifest, qc=qc, splits=splits, out_dir=out_dir)
