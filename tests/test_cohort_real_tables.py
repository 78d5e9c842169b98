"""Tables as users have them: feature-only cohorts, path templates, quoted headers, BOM, missing tokens,
numeric-looking clinical columns, header-only and duplicate-id tables, and the cohort QC's account."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import lesion_image, lesion_mask, write_png
from her2dlr.cohort.build import build_cohort
from her2dlr.cohort.feature_tables import read_feature_table
from her2dlr.cohort.importers import import_sources
from her2dlr.config import load_study, study_from_dict
from her2dlr.errors import InputError, StudyFileError
from her2dlr.io.tables import read_table


def _study(tmp_path: Path, source: dict, **extra):
    raw = {"name": "t", "cohort": {"sources": [source]},
           "label": {"rule": "column", "column": "y", "positive": ["malignant"], "negative": ["benign"]},
           "split": {"seed": 1, "holdout": {"test_size": 0.3}, "kfold": {"n_splits": 2, "n_repeats": 1}}, **extra}
    return study_from_dict(raw, base_dir=tmp_path)


def _feature_only(tmp_path: Path, n: int = 20, duplicate: bool = False) -> dict:
    rng = np.random.default_rng(0)
    ids = [f"case{i}" for i in range(n)]
    pd.DataFrame({"ID": ids, "Patient": [f"pt{i // 2}" for i in range(n)],
                  "y": ["benign", "malignant"] * (n // 2), "Age": rng.integers(30, 80, n)}).to_csv(
        tmp_path / "clinical.csv", index=False)
    feats = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"f{k}" for k in range(4)])
    if duplicate:
        feats.iloc[5] = feats.iloc[2]
    feats.insert(0, "ID", ids)
    feats.to_csv(tmp_path / "features.csv", index=False)
    return {"kind": "table", "path": "clinical.csv", "case_id_column": "ID", "patient_id_column": "Patient",
            "clinical_columns": ["Age"], "label_columns": ["y"]}


# ----------------------------------------------------------------------------- feature-only cohorts
def test_table_source_without_images_is_a_cohort(tmp_path: Path):
    study = _study(tmp_path, _feature_only(tmp_path, duplicate=True),
                   learn={"features": ["features.csv"], "models": ["lr"]})
    build = build_cohort(study, n_jobs=1, progress=False)
    t = build.manifest.table
    assert len(t) == 20 and t["image"].isna().all() and t["include"].all()
    assert build.qc.summary["rows_without_image"] == 20
    # identical feature rows are exact duplicates, so the two cases share a group (and a side of every split)
    pair = build.qc.duplicate_pairs
    assert set(pair[["case_a", "case_b"]].iloc[0]) == {"case2", "case5"}
    assert pair["method"].tolist() == ["identical features"]
    groups = t.set_index("case_id")["group"]
    assert groups["case2"] == groups["case5"]
    assert (build.splits["groups_straddling"] == 0).all()


def test_feature_only_case_without_features_is_excluded(tmp_path: Path):
    src = _feature_only(tmp_path)
    feats = pd.read_csv(tmp_path / "features.csv")
    feats[feats["ID"] != "case7"].to_csv(tmp_path / "features.csv", index=False)
    build = build_cohort(_study(tmp_path, src, learn={"features": ["features.csv"], "models": ["lr"]}),
                         n_jobs=1, progress=False)
    row = build.manifest.table.set_index("case_id").loc["case7"]
    assert not row["include"] and "no row in the feature table" in row["exclude_reason"]


def test_id_column_as_image_column_says_how_to_fix(tmp_path: Path):
    src = _feature_only(tmp_path)
    with pytest.raises(InputError, match="holds ids, not file names.*image_template"):
        import_sources(_study(tmp_path, {**src, "image_column": "ID"}))


def test_missing_required_key_is_named_without_the_whole_mapping(tmp_path: Path):
    with pytest.raises(StudyFileError) as err:
        study_from_dict({"name": "t", "cohort": {"sources": [{"kind": "table", "path": "x.csv"}]},
                         "label": {"rule": "column", "column": "y"}}, base_dir=tmp_path)
    assert "{...}" not in str(err.value) and "case_id_column" in str(err.value)
    with pytest.raises(StudyFileError) as err:
        study_from_dict({"name": "t", "cohort": {"sources": [{"kind": "table", "image_column": "f"}]},
                         "label": {"rule": "column", "column": "y"}}, base_dir=tmp_path)
    assert "cohort.sources[0].path: required, not given" in str(err.value).replace("table.", "")


# ----------------------------------------------------------------------------- templates
def test_image_and_mask_paths_from_templates(tmp_path: Path):
    for i in range(4):
        write_png(tmp_path / "images" / f"L{i}.png", lesion_image(i))
        write_png(tmp_path / "masks" / f"L{i}_seg.png", lesion_mask())
    pd.DataFrame({"ID": [f"L{i}" for i in range(4)], "y": ["benign", "malignant"] * 2}).to_csv(
        tmp_path / "t.csv", index=False)
    m = import_sources(_study(tmp_path, {"kind": "table", "path": "t.csv", "case_id_column": "ID",
                                         "image_template": "images/{ID}.png", "mask_template": "masks/{ID}_seg.png",
                                         "label_columns": ["y"]}))
    assert [Path(p).name for p in m.table["image"]] == ["L0.png", "L1.png", "L2.png", "L3.png"]
    assert Path(json.loads(m.table.loc[0, "masks"])[0]).name == "L0_seg.png"
    with pytest.raises(InputError, match="image_template.*names column 'Id', which is not in the table"):
        import_sources(_study(tmp_path, {"kind": "table", "path": "t.csv", "case_id_column": "ID",
                                         "image_template": "images/{Id}.png", "label_columns": ["y"]}))


# ----------------------------------------------------------------------------- reading tables
def test_quoted_newline_in_header_and_bom(tmp_path: Path):
    df = pd.DataFrame({"case_id": ["a", "b"], "Tumour size\n(mm)": [12.5, 20.0], "note": ["x, y", "z"]})
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    back = read_table(path)
    assert list(back.columns) == ["case_id", "Tumour size\n(mm)", "note"]
    assert back["note"].tolist() == ["x, y", "z"]
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffcase_id;Age\na;41\nb;52\n".encode())
    back = read_table(bom)
    assert list(back.columns) == ["case_id", "Age"] and back["Age"].tolist() == [41, 52]


def test_missing_tokens_are_read_and_reported(tmp_path: Path):
    src = _feature_only(tmp_path)
    df = pd.read_csv(tmp_path / "clinical.csv")
    df["Grade"] = ["NP", "2", "NC", "3", "unknown", "1", "N/A", "NA", ""] + ["2"] * 11
    df["Site"] = ["left", "ND?"] + ["right"] * 18
    df.to_csv(tmp_path / "clinical.csv", index=False)
    study = _study(tmp_path, {**src, "clinical_columns": ["Age", "Grade", "Site"]},
                   cohort={"sources": [{**src, "clinical_columns": ["Age", "Grade", "Site"]}],
                           "extra_missing_values": ["ND?"]})
    m = import_sources(study)
    assert m.clinical_types["Grade"] == "numeric"
    assert m.table["Grade"].isna().sum() == 6 and m.table["Site"].isna().sum() == 1
    assert m.meta["missing_cells"]["clinical.csv"] == {"Grade": {"NP": 1, "NC": 1, "unknown": 1, "N/A": 1, "NA": 1},
                                                       "Site": {"ND?": 1}}
    build = build_cohort(study, n_jobs=1, progress=False)
    assert "cells read as missing in clinical.csv: Grade: 'NP' x1" in build.qc.summary_text()


def test_numeric_column_with_many_text_cells_is_refused_or_follows_declaration(tmp_path: Path):
    src = _feature_only(tmp_path)
    df = pd.read_csv(tmp_path / "clinical.csv").astype({"Age": object})
    for k in (1, 4, 6, 9, 11, 13, 15, 18):  # 12 of 20 cells numeric (60 %), many distinct ages
        df.loc[k, "Age"] = f"{40 + k} y"
    df.to_csv(tmp_path / "clinical.csv", index=False)
    with pytest.raises(InputError, match=r"'Age'.*60% of its cells are numbers.*row\(s\) \[3, 6, 8,.*'41 y'"):
        import_sources(_study(tmp_path, src))
    m = import_sources(_study(tmp_path, {**src, "clinical_types": {"Age": "categorical"}}))
    assert m.clinical_types["Age"] == "categorical"


def test_header_only_table_and_duplicate_feature_ids(tmp_path: Path):
    (tmp_path / "clinical.csv").write_text("ID,Patient,y,Age\n")
    with pytest.raises(InputError, match="clinical.csv has a header but no rows"):
        import_sources(_study(tmp_path, {"kind": "table", "path": "clinical.csv", "case_id_column": "ID",
                                         "label_columns": ["y"]}))
    pd.DataFrame({"case_id": ["a", "b", "a", "c"], "f": [1.0, 2.0, 3.0, 4.0]}).to_csv(tmp_path / "f.csv", index=False)
    with pytest.raises(InputError, match=r"f.csv has 1 case id\(s\) on several rows.*'a': \[2, 4\]"):
        read_feature_table(tmp_path / "f.csv")
    (tmp_path / "g.csv").write_text("case_id,f\n")
    with pytest.raises(InputError, match="g.csv has a header but no rows"):
        read_feature_table(tmp_path / "g.csv")


def test_xlsx_conditional_formatting_warning_is_not_shown(tmp_path: Path):
    import zipfile

    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["case_id", "Age"])
    ws.append(["a", 41])
    wb.save(tmp_path / "plain.xlsx")
    # what Excel writes for data bars / icon sets: a conditional-formatting extension openpyxl cannot read
    ext = ('<extLst><ext uri="{78C0D931-6437-407d-A8EE-F0AAD7539E65}" '
           'xmlns:x14="http://schemas.microsoft.com/office/spreadsheetml/2009/9/main">'
           '<x14:conditionalFormattings/></ext></extLst></worksheet>')
    with zipfile.ZipFile(tmp_path / "plain.xlsx") as src, zipfile.ZipFile(tmp_path / "t.xlsx", "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.decode().replace("</worksheet>", ext).encode()
            dst.writestr(item, data)
    with pytest.warns(UserWarning, match="Conditional Formatting extension"):
        pd.read_excel(tmp_path / "t.xlsx")  # the warning a user saw
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_table(tmp_path / "t.xlsx")["Age"].tolist() == [41]


# ----------------------------------------------------------------------------- QC account and splits
def test_qc_names_excluded_cases_and_writes_qc_when_splitting_fails(tmp_path: Path):
    for i in range(6):
        write_png(tmp_path / "img" / f"c{i}.png", lesion_image(0))  # six copies of one image
        write_png(tmp_path / "img" / f"c{i}_m.png", lesion_mask())
    pd.DataFrame({"id": [f"c{i}" for i in range(6)], "image": [f"c{i}.png" for i in range(6)],
                  "mask": [f"c{i}_m.png" for i in range(6)], "y": ["benign", "malignant", "benign", "malignant",
                                                                 "benign", "other"]}).to_csv(tmp_path / "t.csv",
                                                                                             index=False)
    src = {"kind": "table", "path": "t.csv", "image_root": "img", "image_column": "image", "mask_column": "mask",
           "case_id_column": "id", "label_columns": ["y"]}
    study = _study(tmp_path, src)
    with pytest.raises(InputError) as err:
        build_cohort(study, n_jobs=1, progress=False)
    message = str(err.value)
    assert "Class 0 has 1 patient group(s) (3 row(s) of 3 patient(s); QC merged them into 1 group(s)" in message
    assert "QC results written to" in message
    qc = pd.read_csv(study.paths.cohort / "qc.csv")
    assert len(qc) == 6
    text = (study.paths.cohort / "qc_summary.txt").read_text()
    assert "excluded cases (1" in text and "c5:" in text


def test_split_by_centre_reports_cross_centre_duplicates_as_warning(tmp_path: Path):
    rows = []
    for i in range(12):
        seed = 100 if i in (0, 6) else i  # c0 (centre A) and c6 (centre B) are the same image
        write_png(tmp_path / "img" / f"c{i}.png", lesion_image(seed, texture="rough" if i % 2 else "smooth"))
        write_png(tmp_path / "img" / f"c{i}_m.png", lesion_mask())
        rows.append({"id": f"c{i}", "image": f"c{i}.png", "mask": f"c{i}_m.png", "y": ["benign", "malignant"][i % 2],
                     "site": "A" if i < 6 else "B"})
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    src = {"kind": "table", "path": "t.csv", "image_root": "img", "image_column": "image", "mask_column": "mask",
           "case_id_column": "id", "centre_column": "site", "label_columns": ["y"]}
    raw = {"name": "t", "cohort": {"sources": [src]},
           "label": {"rule": "column", "column": "y", "positive": ["malignant"], "negative": ["benign"]},
           "split": {"seed": 1, "by_centre": {"test_centres": ["B"]}, "kfold": None}}
    build = build_cohort(study_from_dict(raw, base_dir=tmp_path), n_jobs=1, progress=False)
    assert (build.splits["groups_straddling"] == 0).all()
    assert build.splits["partition"].eq("by_centre").all()
    across = build.qc.summary["cross_centre_pairs"]
    assert {(p["case_a"], p["case_b"]) for p in across} == {("c0", "c6")}
    text = build.qc.summary_text()
    assert "WARNING: 1 duplicate pair(s) across centres" in text and "c0.png (A) ~" in text


def test_cli_cohort_qc_prints_the_summary_once(tmp_path: Path):
    from typer.testing import CliRunner

    from her2dlr.cli import app

    src = _feature_only(tmp_path)
    clinical = pd.read_csv(tmp_path / "clinical.csv")
    clinical.loc[3, "y"] = "unclear"
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    path = tmp_path / "study.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"name": "t", "cohort": {"sources": [src]},
                                    "label": {"rule": "column", "column": "y", "positive": ["malignant"],
                                              "negative": ["benign"]},
                                    "split": {"seed": 1, "kfold": {"n_splits": 2, "n_repeats": 1}}}))
    out = CliRunner().invoke(app, ["cohort", "qc", str(path), "--n-jobs", "1"])
    assert out.exit_code == 0, out.output
    assert out.output.count("near-duplicate groups") == 1  # one account of the QC, not two
    assert "excluded cases (1; all in qc.csv):" in out.output and "case3: label 'y' = 'unclear'" in out.output
    assert load_study(path).paths.manifest.exists()
