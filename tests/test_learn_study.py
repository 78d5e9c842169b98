"""Feature tables of a study: the run's own tables and tables a user brings, joined by case id."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from her2dlr.config import study_from_dict
from her2dlr.errors import InputError
from her2dlr.learn.study import feature_table_provenance, load_feature_tables


@pytest.fixture
def study(tmp_path):
    raw = {"name": "s", "output_dir": str(tmp_path / "run"),
           "cohort": {"sources": [{"kind": "folders", "path": str(tmp_path)}]},
           "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]}}
    s = study_from_dict(raw, base_dir=tmp_path)
    feats = s.run_dir / "features"
    feats.mkdir(parents=True)
    ids = pd.Index([f"c{i}" for i in range(5)], name="case_id")
    pd.DataFrame({"original_shape_Area": np.arange(5.0), "F1 (T=0.5,0.8)": 1.0}, index=ids).to_parquet(
        feats / "radiomics_us2d_mask.parquet")
    (feats / "radiomics_us2d_mask.json").write_text(json.dumps({"params": "us2d", "roi": "mask",
                                                                "params_hash": "abc"}))
    return s


def test_user_csv_joins_by_case_id_and_clashing_names_are_prefixed(study, tmp_path):
    pd.DataFrame({"case_id": ["c4", "c0", "c1", "c9"], "F1 (T=0.5,0.8)": [4.0, 0.0, 1.0, 9.0],
                  "tool_score": [0.4, 0.0, 0.1, 0.9]}).to_csv(tmp_path / "other_tool.csv", index=False)
    table, name = load_feature_tables(study, ["radiomics_us2d", str(tmp_path / "other_tool.csv")])
    assert name == "radiomics_us2d_mask+other_tool"
    assert sorted(table.index) == ["c0", "c1", "c4"]  # inner join on case id
    assert {"radiomics_us2d_mask:F1 (T=0.5,0.8)", "other_tool:F1 (T=0.5,0.8)", "tool_score"} <= set(table.columns)
    assert table.loc["c4", "tool_score"] == 0.4 and table.loc["c4", "original_shape_Area"] == 4.0


def test_user_table_errors_name_the_file(study, tmp_path):
    pd.DataFrame({"case_id": ["c0"], "grade": ["high"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match=r"bad.csv has non-numeric column\(s\) \['grade'\]"):
        load_feature_tables(study, [str(tmp_path / "bad.csv")])
    with pytest.raises(InputError, match="does not exist"):
        load_feature_tables(study, [str(tmp_path / "absent.csv")])
    with pytest.raises(InputError, match="No feature table 'deep'"):
        load_feature_tables(study, ["deep"])


def test_provenance_reads_the_sidecar(study):
    info = feature_table_provenance(study, "radiomics_us2d_mask")
    assert info["params"] == "us2d" and info["params_hash"] == "abc" and info["roi"] == "mask"
