"""Cohort build on the real public datasets (skipped when ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from her2dlr.bench.cohort_benches import busi_study
from her2dlr.cohort.build import build_cohort
from her2dlr.config import study_from_dict

pytestmark = pytest.mark.realdata

BREAST_CLINICAL = ["Age", "Tissue_composition", "Signs", "Symptoms", "Shape", "Margin", "Echogenicity",
                   "Posterior_features", "Halo", "Calcifications", "Skin_thickening"]


def test_busi_duplicates_grouped_and_never_straddle(shared_data: Path, tmp_path: Path):
    build = build_cohort(busi_study(shared_data / "busi", tmp_path / "busi"), n_jobs=2, progress=False)
    s = build.qc.summary
    # BUSI is known for well over 100 groups of near-identical images and ~10 cross-label lesions
    # (Pawlowska et al. 2023).
    assert s["near_duplicate_groups"] > 100
    assert 5 <= s["cross_label_pairs"] <= 20
    assert (build.splits["groups_straddling"] == 0).all()
    parts = set(build.splits["partition"])
    assert parts == {"holdout", "fold_r0", "fold_r1", "fold_r2"}
    m = build.manifest.table
    # normal images have no lesion label: excluded from analyses, but QC'd and grouped
    assert m.loc[m["class"] == "normal", "include"].eq(False).all()
    inc = build.manifest.included
    assert inc["label"].value_counts().to_dict() == {0: (inc["class"] == "benign").sum(), 1: (inc["class"] == "malignant").sum()}
    # every row of a duplicate group lands on one side of the hold-out
    assert (inc.groupby("group")["split"].nunique() <= 1).all()


def test_breast_lesions_usg_table_with_clinical_columns(shared_data: Path, tmp_path: Path):
    root = shared_data / "breast-lesions-usg"
    raw = {
        "name": "breast",
        "cohort": {"sources": [{
            "kind": "table", "path": str(root / "BrEaST-Lesions-USG-clinical-data-Dec-15-2023.xlsx"),
            "image_root": str(root / "images"), "image_column": "Image_filename",
            "mask_column": "Mask_tumor_filename", "spacing_column": "Pixel_size", "spacing_unit": "cm",
            "clinical_columns": BREAST_CLINICAL, "label_columns": ["Classification", "BIRADS"],
        }]},
        "label": {"rule": "column", "column": "Classification", "positive": ["malignant"], "negative": ["benign"]},
    }
    build = build_cohort(study_from_dict(raw, base_dir=tmp_path), n_jobs=2, progress=False)
    m = build.manifest
    assert len(m) == 256
    inc = m.included
    assert inc["label"].value_counts().to_dict() == {0: 154, 1: 98}
    assert m.clinical_types["Age"] == "numeric"  # 'not available' read as missing
    assert m.table["Age"].isna().sum() > 0
    assert m.clinical_types["Margin"] == "multi"  # '&'-joined cells
    assert build.qc.summary["rgb_converted"] >= 150  # 163 colour images in the set
    assert m.table["spacing"].between(0.03, 0.2).all()  # Pixel_size cm -> mm
    back = pd.read_parquet(tmp_path / "runs" / "breast" / "cohort" / "manifest.parquet")
    assert len(back) == 256
