"""Importers: folders, flat files, tables (CSV/XLSX, boxes, multi-valued cells, mixed types)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import lesion_image, lesion_mask, write_png
from her2dlr.cohort.importers import import_sources
from her2dlr.cohort.manifest import Manifest
from her2dlr.config import study_from_dict
from her2dlr.errors import InputError


def _study(tmp_path: Path, source: dict, label: dict | None = None):
    raw = {"name": "t", "cohort": {"sources": [source]},
           "label": label or {"rule": "column", "column": "class", "positive": ["malignant"]}}
    return study_from_dict(raw, base_dir=tmp_path)


def test_folder_layout_with_several_masks(folder_cohort: Path, tmp_path: Path):
    write_png(folder_cohort / "benign" / "benign (1)_mask_1.png", lesion_mask())
    m = import_sources(_study(tmp_path, {"kind": "folders", "path": str(folder_cohort)}))
    assert len(m) == 24
    row = m.table.set_index("case_id").loc["benign (1)"]
    assert [Path(p).name for p in json.loads(row["masks"])] == ["benign (1)_mask.png", "benign (1)_mask_1.png"]
    assert row["class"] == "benign"
    # natural order: (2) before (10)
    ids = m.table["case_id"].tolist()
    assert ids.index("benign (2)") < ids.index("benign (10)")


def test_missing_folder_is_named(tmp_path: Path):
    with pytest.raises(InputError, match="does not exist"):
        import_sources(_study(tmp_path, {"kind": "folders", "path": "nowhere"}))


def _table_cohort(tmp_path: Path, n: int = 6, **cols) -> Path:
    rows = []
    for i in range(n):
        write_png(tmp_path / "img" / f"c{i}.png", lesion_image(i))
        write_png(tmp_path / "img" / f"c{i}_m.png", lesion_mask())
        rows.append({"id": f"c{i}", "pid": f"p{i // 2}", "image": f"c{i}.png", "mask": f"c{i}_m.png",
                     "age": 40 + i, "y": ["benign", "malignant"][i % 2], "size": "0.01"})
    df = pd.DataFrame(rows)
    for k, v in cols.items():
        df[k] = v
    return df


def _table_source(path: Path, **kw) -> dict:
    return {"kind": "table", "path": str(path), "image_root": str(path.parent / "img"), "image_column": "image",
            "mask_column": "mask", "case_id_column": "id", "patient_id_column": "pid",
            "clinical_columns": ["age"], "label_columns": ["y"], **kw}


def test_table_csv_and_xlsx_give_the_same_manifest(tmp_path: Path):
    df = _table_cohort(tmp_path)
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_excel(tmp_path / "t.xlsx", index=False)
    label = {"rule": "column", "column": "y", "positive": ["malignant"]}
    a = import_sources(_study(tmp_path, _table_source(tmp_path / "t.csv"), label))
    b = import_sources(_study(tmp_path, _table_source(tmp_path / "t.xlsx"), label))
    cols = ["case_id", "patient_id", "image", "masks", "age", "y"]
    pd.testing.assert_frame_equal(a.table[cols], b.table[cols])
    assert a.table["patient_id"].tolist() == ["p0", "p0", "p1", "p1", "p2", "p2"]
    assert a.clinical_types == {"age": "numeric"}


def test_table_spacing_in_cm_becomes_mm(tmp_path: Path):
    df = _table_cohort(tmp_path)
    df.to_csv(tmp_path / "t.csv", index=False)
    m = import_sources(_study(tmp_path, _table_source(tmp_path / "t.csv", spacing_column="size", spacing_unit="cm"),
                              {"rule": "column", "column": "y", "positive": ["malignant"]}))
    assert np.allclose(m.table["spacing"], 0.1)


def test_missing_image_file_names_row_and_file(tmp_path: Path):
    df = _table_cohort(tmp_path)
    df.loc[3, "image"] = "gone.png"
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match=r"table t.csv row 5: .*gone.png"):
        import_sources(_study(tmp_path, _table_source(tmp_path / "t.csv")))


def test_duplicate_case_id_names_rows(tmp_path: Path):
    df = _table_cohort(tmp_path)
    df.loc[4, "id"] = "c1"
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match=r"Duplicate case id.*'c1'.*rows \[3, 6\]"):
        import_sources(_study(tmp_path, _table_source(tmp_path / "t.csv")))


def test_missing_column_suggests_nearest(tmp_path: Path):
    df = _table_cohort(tmp_path)
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match=r"Column 'agee'.*Did you mean 'age'"):
        import_sources(_study(tmp_path, _table_source(tmp_path / "t.csv", clinical_columns=["agee"])))


def test_mixed_type_clinical_column_is_refused_with_rows(tmp_path: Path):
    ages = [41, 52, 63, "sixty", 45, 38, 50, 47, 49, 55]
    df = _table_cohort(tmp_path, n=10)
    df["age"] = ages
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match=r"'age'.*mixed types.*row\(s\) \[5\].*'sixty'"):
        import_sources(_study(tmp_path, _table_source(tmp_path / "t.csv")))


def test_missing_tokens_and_multi_values(tmp_path: Path):
    df = _table_cohort(tmp_path)
    df["age"] = [41, "not available", 63, "N/A", 45, 38]
    df["signs"] = ["no", "palpable&skin retraction", "no", "palpable", None, "no"]
    df["birads"] = ["2", "4a", "4b", "3", "5", "4c"]
    df.to_csv(tmp_path / "t.csv", index=False)
    m = import_sources(_study(tmp_path, _table_source(tmp_path / "t.csv", clinical_columns=["age", "signs", "birads"]),
                              {"rule": "column", "column": "y", "positive": ["malignant"]}))
    assert m.clinical_types == {"age": "numeric", "signs": "multi", "birads": "categorical"}
    assert m.table["age"].isna().tolist() == [False, True, False, True, False, False]


def test_declared_numeric_with_text_names_rows(tmp_path: Path):
    df = _table_cohort(tmp_path)
    df["age"] = [41, "old", 63, 50, 45, 38]
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match=r"declared numeric.*row\(s\) \[3\]"):
        import_sources(_study(tmp_path, _table_source(tmp_path / "t.csv", clinical_types={"age": "numeric"})))


def test_bbox_columns_and_json_column(tmp_path: Path):
    df = _table_cohort(tmp_path)
    df["x"], df["y0"], df["w"], df["h"] = 10, 12, 30, 20
    df["box"] = "[10, 12, 30, 20]"
    df.to_csv(tmp_path / "t.csv", index=False)
    label = {"rule": "column", "column": "y", "positive": ["malignant"]}
    a = import_sources(_study(tmp_path, _table_source(tmp_path / "t.csv", mask_column=None, bbox_columns=["x", "y0", "w", "h"]), label))
    b = import_sources(_study(tmp_path, _table_source(tmp_path / "t.csv", mask_column=None, bbox_column="box"), label))
    assert a.table["bbox"].tolist() == b.table["bbox"].tolist() == ["[10.0, 12.0, 30.0, 20.0]"] * 6
    assert a.table["masks"].tolist() == ["[]"] * 6


def test_bad_bbox_names_row(tmp_path: Path):
    df = _table_cohort(tmp_path)
    df["box"] = "[10, 12, 30, 20]"
    df.loc[2, "box"] = "[10, 12, -3, 20]"
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match=r"row 4, column 'box': bounding box"):
        import_sources(_study(tmp_path, _table_source(tmp_path / "t.csv", mask_column=None, bbox_column="box")))
    df["x"], df["y0"], df["w"], df["h"] = "10", 12, 30, 20
    df.loc[1, "x"] = "left"
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match=r"row 3, columns \['x', 'y0', 'w', 'h'\]: bounding box .* must be numbers"):
        import_sources(_study(tmp_path, _table_source(tmp_path / "t.csv", mask_column=None,
                                                      bbox_columns=["x", "y0", "w", "h"])))


def test_files_source_for_volumes(shared_data: Path, tmp_path: Path):
    src = {"kind": "files", "path": str(shared_data / "mri-breast1"), "modality": "MR",
           "image_glob": "*_image.nrrd", "strip_from_stem": "_image", "mask_template": "{stem_base}_label.nrrd"}
    m = import_sources(_study(tmp_path, src))
    assert m.table["case_id"].tolist() == ["breast1"]
    assert json.loads(m.table["masks"].iloc[0])[0].endswith("breast1_label.nrrd")
    assert m.table["modality"].iloc[0] == "MR"


def test_manifest_roundtrip_keeps_metadata_and_mixed_columns(tmp_path: Path):
    table = pd.DataFrame({"case_id": ["a", "b"], "patient_id": ["a", "b"], "image": ["x", "y"],
                          "BIRADS": [2, "4a"], "F1 (T=0.5,0.8)": [1.0, 2.0]})
    m = Manifest(table, clinical_columns=["BIRADS"], clinical_types={"BIRADS": "categorical"}, meta={"k": 1})
    path = m.save(tmp_path / "manifest.parquet")
    back = Manifest.load(path)
    assert back.clinical_types == {"BIRADS": "categorical"}
    assert back.meta == {"k": 1}
    assert back.table["BIRADS"].tolist() == ["2", "4a"]
    assert back.table["F1 (T=0.5,0.8)"].tolist() == [1.0, 2.0]
    assert not list(tmp_path.glob("*.tmp"))


def test_manifest_refuses_duplicate_case_ids():
    with pytest.raises(InputError, match="Duplicate case_id"):
        Manifest(pd.DataFrame({"case_id": ["a", "a"], "patient_id": ["1", "2"], "image": ["x", "y"]}))


def test_folder_layout_with_dicom_files(tmp_path: Path):
    import SimpleITK as sitk

    for cls, offset in (("a", 0), ("b", 50)):
        (tmp_path / "dcm" / cls).mkdir(parents=True)
        for i in range(3):
            sitk.WriteImage(sitk.GetImageFromArray(lesion_image(offset + i).astype(np.uint16)), str(tmp_path / "dcm" / cls / f"x{i}.dcm"))
            sitk.WriteImage(sitk.GetImageFromArray((lesion_mask() > 0).astype(np.uint8)), str(tmp_path / "dcm" / cls / f"x{i}_mask.dcm"))
    m = import_sources(_study(tmp_path, {"kind": "folders", "path": str(tmp_path / "dcm")}, {"rule": "column", "column": "class", "positive": ["b"]}))
    assert len(m) == 6
    # same file names in two class folders: ids are made unique by the folder
    assert sorted(m.table["case_id"])[:3] == ["a/x0", "a/x1", "a/x2"]
    assert all(json.loads(s)[0].endswith("_mask.dcm") for s in m.table["masks"])
