"""A DICOM DCE cohort end to end: cohort build -> 3D radiomics (mri3d) -> learning, with no identifying attribute
in any output; and the cohort source's bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from her2dlr.bench.dce_benches import files_containing
from her2dlr.cli import app
from her2dlr.cohort.dicom_source import import_dicom
from her2dlr.cohort.settings import DicomSource
from her2dlr.errors import InputError
from her2dlr.io.synthetic_dce import write_synthetic_cohort
from her2dlr.runfolder import RunPaths

SHAPE = (8, 28, 28)
IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName",
               "ReferringPhysicianName")


def _study(dicom: Path, run: Path, **source: Any) -> dict[str, Any]:
    return {
        "name": "dce",
        "output_dir": str(run),
        "cohort": {"sources": [{
            "kind": "dicom", "path": str(dicom), "phase": "peak", "maps": ["ser"], "table": str(dicom / "clinical.csv"),
            "clinical_columns": ["age"], "label_columns": ["ihc", "ish"],
            "pseudonym_key": str(run.parent / "secret.key"), **source,
        }]},
        "label": {"rule": "her2_low"},
        "split": {"seed": 4, "holdout": None, "kfold": {"n_splits": 3, "n_repeats": 1}},
        "radiomics": {"params": "mri3d", "roi": "mask", "n_jobs": 2},
        "learn": {"features": ["radiomics_mri3d_mask"],
                  "selection": [{"name": "variance"}, {"name": "zscore"}, {"name": "mrmr", "n_features": 3}],
                  "models": [{"name": "lr", "grid": {}, "params": {"C": 1.0}}], "schemes": ["kfold"],
                  "search": {"inner_splits": 2}, "save_models": True},
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, str]:
    root = tmp_path_factory.mktemp("dce-cohort")
    truth = write_synthetic_cohort(root / "dicom", n_cases=15, seed=7, shape=SHAPE, n_phases=3)
    study_file = root / "study.yaml"
    study_file.write_text(yaml.safe_dump(_study(root / "dicom", root / "run")))
    runner = CliRunner()
    printed = []
    for command in (["cohort", "build", str(study_file), "--n-jobs", "1"], ["extract", "radiomics", str(study_file)],
                    ["learn", "run", str(study_file)]):
        out = runner.invoke(app, command)
        assert out.exit_code == 0, out.output
        printed.append(out.output)
    return root, truth, "\n".join(printed)


def test_manifest_rows_are_pseudonymous_volumes_with_the_phase_split_recorded(built) -> None:
    root, truth, _ = built
    paths = RunPaths(root / "run")
    manifest = pd.read_parquet(paths.manifest)
    assert len(manifest) == len(truth)
    assert manifest["case_id"].str.match(r"^case-[0-9a-f]{12}$").all()
    assert manifest["patient_id"].str.match(r"^patient-[0-9a-f]{12}$").all()
    assert manifest["image"].map(lambda p: Path(p).parent == paths.dce_volumes).all()
    assert manifest["image_ser"].map(lambda p: Path(p).is_file()).all()
    # the label rule saw the table's IHC/ISH: HER2-positive (class 2) excluded, zero and low kept
    assert sorted(manifest["label"].dropna().astype(int).value_counts().tolist()) == [5, 5]
    qc = pd.read_csv(paths.qc_table)
    expected = {"series-per-phase": "AcquisitionNumber", "temporal-position": "TemporalPositionIdentifier",
                "trigger-time": "TriggerTime", "acquisition-time": "AcquisitionTime",
                "enhanced-temporal-index": "TemporalPositionIndex", "enhanced-datetime": "FrameAcquisitionDateTime"}
    assert sorted(qc["dce_order_tag"]) == sorted(expected[layout] for layout in truth["layout"])
    assert (qc["dce_n_phases"] == 3).all() and qc["dce_phase"].str.startswith("post").all()


def test_radiomics_sees_the_kinetic_signal_and_learning_predicts_every_case(built) -> None:
    root, _, _ = built
    paths = RunPaths(root / "run")
    manifest = pd.read_parquet(paths.manifest).set_index("case_id")
    features = pd.read_parquet(paths.feature_table("radiomics_mri3d_mask"))
    assert features.shape == (10, 1288)  # 5 HER2-zero + 5 HER2-low, all 3D features of the shipped set
    labels = manifest.loc[features.index, "label"].astype(int)
    # HER2-low lesions of the generator enhance more at the chosen phase: the lesion's mean grey level shows it
    assert roc_auc_score(labels, features["original_firstorder_Mean"]) >= 0.9
    predictions = pd.read_parquet(paths.root / "learn" / "radiomics_mri3d_mask" / "predictions.parquet")
    test = predictions[predictions["split"] == "test"]
    assert sorted(test["case_id"]) == sorted(features.index) and test["prob"].between(0, 1).all()
    assert (paths.root / "models").is_dir()  # a model card to search for identifying attributes


def test_no_identifying_attribute_reaches_any_output(built) -> None:
    root, truth, printed = built
    needles = sorted({str(v) for col in IDENTIFYING for v in truth[col]} | {"Testpatient", "Alba0"})
    assert files_containing(root / "dicom", needles)  # the search finds them where they are
    leaks = files_containing(root / "run", needles)
    assert not leaks, leaks[:5]
    assert not [n for n in needles if n in printed]
    assert not files_containing(root / "run", [f"case{k:03d}" for k in range(len(truth))])  # nor the folder names


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def two_cases(tmp_path: Path) -> Path:
    write_synthetic_cohort(tmp_path / "dicom", n_cases=2, seed=3, shape=(6, 20, 20), n_phases=3)
    return tmp_path


def _import(root: Path, **settings: Any) -> pd.DataFrame:
    src = DicomSource(kind="dicom", path=root / "dicom", pseudonym_key=root / "key", **settings)
    return import_dicom(src, root, RunPaths(root / "run"), [], progress=False)[0]


def test_mask_of_another_geometry_is_refused_unless_resampling_is_asked(two_cases: Path) -> None:
    mask_path = two_cases / "dicom" / "case001" / "mask.nrrd"
    mask = sitk.ReadImage(str(mask_path))
    mask.SetOrigin(tuple(v + 5.0 for v in mask.GetOrigin()))
    sitk.WriteImage(mask, str(mask_path))
    with pytest.raises(InputError, match=r"case001/mask.nrrd does not fit its DICOM series \(origin .*resample_mask"):
        _import(two_cases)
    rows = _import(two_cases, resample_mask=True)
    resampled = sitk.ReadImage(json.loads(rows["masks"][1])[0])
    image = sitk.ReadImage(rows["image"][1])
    assert resampled.GetSize() == image.GetSize() and np.allclose(resampled.GetOrigin(), image.GetOrigin())
    assert 0 < sitk.GetArrayFromImage(resampled).sum() < sitk.GetArrayFromImage(mask).sum()  # shifted partly out


def test_phase_rule_matching_nothing_lists_the_phases(two_cases: Path) -> None:
    with pytest.raises(InputError, match=r"'post4' matches no phase .*phases found: pre, post1, post2"):
        _import(two_cases, phase="post4")


def test_resampling_to_isotropic_voxels_and_table_keys_by_patient_id(two_cases: Path) -> None:
    import pydicom

    ids = [str(pydicom.dcmread(next((two_cases / "dicom" / f"case{k:03d}").rglob("IM*")), stop_before_pixels=True)
               .PatientID) for k in range(2)]
    pd.DataFrame({"mrn": ids, "age": [41, 67]}).to_csv(two_cases / "by_id.csv", index=False)
    rows = _import(two_cases, resample_mm=1.0, table=two_cases / "by_id.csv", table_key="patient_id",
                   table_key_column="mrn", clinical_columns=["age"])
    assert rows["age"].tolist() == [41, 67]
    assert np.allclose(sitk.ReadImage(rows["image"][0]).GetSpacing(), (1.0, 1.0, 1.0))
    assert "mrn" not in rows.columns


def test_two_patients_in_one_folder_stop_the_import(two_cases: Path) -> None:
    stranger = next((two_cases / "dicom" / "case001").rglob("IM*"))
    shutil.copy2(stranger, next((two_cases / "dicom" / "case000").rglob("IM*")).parent / "IMX")
    with pytest.raises(InputError, match="mixes the DICOM files of 2 patients"):
        _import(two_cases)


def test_cohort_build_shows_a_message_not_a_traceback(two_cases: Path) -> None:
    raw = _study(two_cases / "dicom", two_cases / "run", phase="post9")
    (two_cases / "study.yaml").write_text(yaml.safe_dump(raw))
    out = CliRunner().invoke(app, ["cohort", "build", str(two_cases / "study.yaml"), "--n-jobs", "1"])
    assert out.exit_code != 0 and "Traceback" not in out.output
    assert "'post9' matches no phase" in out.output and "phases found: pre" in out.output
