"""3D lesion ROIs: a user's box [x, y, z, w, h, d], mask geometry, out-of-fold 3D segmentation and 3D DSFR."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from typer.testing import CliRunner

from her2dlr.cli import app
from her2dlr.errors import InputError
from her2dlr.io.cells import parse_bbox
from her2dlr.io.images import bbox_mask, mask_to_bbox
from volume_helpers import (
    DIRECTION,
    ORIGIN,
    SIDE,
    SPACING,
    sphere_case,
    volume_image,
    write_image,
    write_sphere_folders,
)

runner = CliRunner()
#: Radiomics kept small: first-order and GLCM of the original image.
PARAMS = {"imageType": {"Original": {}}, "featureClass": {"firstorder": [], "glcm": []},
          "setting": {"binWidth": 25, "label": 1}}
_volume, _write = volume_image, write_image


# ------------------------------------------------------------------ a user's 3D box
def test_box_forms_follow_the_dimension():
    assert parse_bbox("[1, 2, 3, 4, 5, 6]") == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    assert parse_bbox([1, 2, 3, 4]) == (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(InputError, match=r"six numbers \[x, y, z, w, h, d\]"):
        parse_bbox([1, 2, 3, 4], where="bbox of row 7", ndim=3)
    with pytest.raises(InputError, match="bbox of row 7"):
        parse_bbox([1, 2, 3, 4, 5], where="bbox of row 7")
    vol = _volume(np.zeros((10, 12, 14), np.float32))  # z, y, x
    box = bbox_mask(vol, (2, 3, 4, 5, 6, 3))
    arr = sitk.GetArrayFromImage(box)
    expected = np.zeros((10, 12, 14), np.uint8)
    expected[4:7, 3:9, 2:7] = 1  # z from 4 (3 deep), y from 3 (6 high), x from 2 (5 wide): x fastest
    np.testing.assert_array_equal(arr, expected)
    assert box.GetSpacing() == vol.GetSpacing() and box.GetOrigin() == vol.GetOrigin()
    assert box.GetDirection() == vol.GetDirection()
    assert mask_to_bbox(arr) == (2, 3, 4, 5, 6, 3)
    with pytest.raises(InputError, match=r"3D volume takes six numbers"):
        bbox_mask(vol, (2, 3, 5, 6))
    with pytest.raises(InputError, match="no extent inside the 14x12x10 volume"):
        bbox_mask(vol, (2, 3, 40, 5, 6, 3))


def test_radiomics_of_a_3d_box_equal_pyradiomics_on_the_hand_built_box(tmp_path: Path):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from her2dlr.radiomics.extract import extract_radiomics

    img, _ = sphere_case(1, rough=True)
    path = _write(_volume(img), tmp_path / "vol.nrrd")
    box = [4, 5, 3, 7, 6, 8]
    manifest = pd.DataFrame({"case_id": ["a"], "image": [str(path)], "mask": [None], "bbox": [json.dumps(box)]})
    ours = extract_radiomics(manifest, PARAMS, progress=False, backend="sequential").features.loc["a"]
    hand = np.zeros(img.shape, np.uint8)
    hand[3:11, 5:11, 4:11] = 1
    mask = sitk.GetImageFromArray(hand)
    mask.CopyInformation(sitk.ReadImage(str(path)))
    with warnings.catch_warnings():  # pykwalify's deprecated load_module()
        warnings.simplefilter("ignore", DeprecationWarning)
        extractor = RadiomicsFeatureExtractor(PARAMS)
    direct = extractor.execute(sitk.ReadImage(str(path)), mask, label=1)
    direct = {k: float(v) for k, v in direct.items() if not k.startswith("diagnostics_")}
    assert set(ours.index) == set(direct) and len(direct) > 30
    np.testing.assert_allclose(ours[list(direct)].to_numpy(), list(direct.values()), rtol=1e-10)


def test_roi_bbox_on_a_volume_is_the_box_of_its_mask(tmp_path: Path):
    from her2dlr.radiomics.extract import load_case
    from her2dlr.radiomics.stage import rows_for_roi

    img, mask = sphere_case(5, rough=False)
    image = _write(_volume(img), tmp_path / "vol.nrrd")
    mask_path = _write(_volume(mask), tmp_path / "vol_mask.nrrd")
    table = pd.DataFrame({"case_id": ["a"], "image": [str(image)], "mask": [str(mask_path)], "bbox": [None],
                          "spacing": [np.nan]})
    row = rows_for_roi(table, "bbox").iloc[0]
    zz, yy, xx = np.nonzero(mask)
    lo = [xx.min(), yy.min(), zz.min()]
    assert json.loads(row["bbox"]) == [*lo, xx.max() - lo[0] + 1, yy.max() - lo[1] + 1, zz.max() - lo[2] + 1]
    vol, box = load_case(row["image"], None, row["bbox"])
    arr = sitk.GetArrayFromImage(box)
    assert arr[zz.min():zz.max() + 1, yy.min():yy.max() + 1, xx.min():xx.max() + 1].all()
    assert arr.sum() == np.prod([np.ptp(a) + 1 for a in (zz, yy, xx)])
    assert box.GetOrigin() == vol.GetOrigin() and box.GetDirection() == vol.GetDirection()


def test_the_deep_stage_crops_a_volume_around_its_3d_box(tmp_path: Path):
    from her2dlr.deep.data import manifest_rois
    from her2dlr.imaging.roi import RoiSpec

    img, _ = sphere_case(4, rough=True)
    path = _write(_volume(img), tmp_path / "vol.nrrd")
    box = [3, 4, 5, 6, 7, 5]
    mask = bbox_mask(sitk.ReadImage(str(path)), box)
    mask_path = _write(mask, tmp_path / "box_mask.nrrd")
    spec = RoiSpec(size=8, margin=1, min_size=2, spatial_dims=3)
    rows = pd.DataFrame({"case_id": ["box", "mask"], "image": [str(path)] * 2, "modality": ["MR"] * 2,
                         "mask": [None, str(mask_path)], "bbox": [json.dumps(box), None]})
    x = manifest_rois(rows, spec)
    assert x.shape == (2, 1, 8, 8, 8)
    np.testing.assert_array_equal(x[0], x[1])


# ------------------------------------------------------------------ QC: box form and mask geometry
def _table_study(tmp: Path, rows: list[dict], **qc) -> Path:
    pd.DataFrame(rows).to_csv(tmp / "cases.csv", index=False)
    raw = {"name": "qc3d", "output_dir": str(tmp / "run"),
           "cohort": {"sources": [{"kind": "table", "path": str(tmp / "cases.csv"), "image_column": "image",
                                   "mask_column": "mask", "bbox_column": "box", "case_id_column": "case",
                                   "modality": "MR", "label_columns": ["y"]}]},
           "label": {"rule": "column", "column": "y", "positive": [1], "negative": [0]},
           "split": {"seed": 1, "holdout": None, "kfold": None}, "qc": qc}
    study = tmp / "study.yaml"
    study.write_text(yaml.safe_dump(raw))
    return study


def test_qc_checks_the_box_form_and_the_mask_grid(tmp_path: Path):
    img, mask = sphere_case(2, rough=False)
    image = _write(_volume(img), tmp_path / "img.nrrd")
    on_grid = _write(_volume(mask), tmp_path / "on_grid_mask.nrrd")
    # the same lesion drawn on a grid twice as coarse in x and shifted 3 mm: another geometry
    coarse = sitk.Resample(_volume(mask), [8, 16, 16], sitk.Transform(), sitk.sitkNearestNeighbor,
                           ORIGIN, (1.6, 0.7, 1.5), DIRECTION, 0, sitk.sitkUInt8)
    off = _write(coarse, tmp_path / "coarse_mask.nrrd")
    rows = [{"case": "good", "image": "img.nrrd", "mask": "on_grid_mask.nrrd", "box": "", "y": 1},
            {"case": "box3d", "image": "img.nrrd", "mask": "", "box": "[2, 3, 4, 5, 6, 3]", "y": 0},
            {"case": "box2d", "image": "img.nrrd", "mask": "", "box": "[2, 3, 5, 6]", "y": 0},
            {"case": "outside", "image": "img.nrrd", "mask": "", "box": "[2, 3, 30, 5, 6, 3]", "y": 1},
            {"case": "grid", "image": "img.nrrd", "mask": "coarse_mask.nrrd", "box": "", "y": 1}]
    study = _table_study(tmp_path, rows)
    res = runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"])
    assert res.exit_code == 0, res.output
    qc = pd.read_csv(tmp_path / "run" / "cohort" / "qc.csv").set_index("case_id")
    assert qc.loc["good", "include"] and qc.loc["box3d", "include"]
    assert not qc.loc["box2d", "include"]
    assert f"bbox of image {image}" in qc.loc["box2d", "exclude_reason"]
    assert "six numbers [x, y, z, w, h, d]" in qc.loc["box2d", "exclude_reason"]
    assert not qc.loc["outside", "include"] and "no extent inside" in qc.loc["outside", "exclude_reason"]
    reason = qc.loc["grid", "exclude_reason"]
    assert not qc.loc["grid", "include"] and str(off) in reason and "spacing" in reason
    assert "qc.resample_mask" in reason
    # asked to, QC resamples the mask onto the image's grid by physical position
    study = _table_study(tmp_path, rows, resample_mask=True)
    res = runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"])
    assert res.exit_code == 0, res.output
    qc = pd.read_csv(tmp_path / "run" / "cohort" / "qc.csv").set_index("case_id")
    assert qc.loc["grid", "include"]
    manifest = pd.read_parquet(tmp_path / "run" / "cohort" / "manifest.parquet").set_index("case_id")
    moved = sitk.ReadImage(manifest.loc["grid", "mask"])
    assert moved.GetSize() == (SIDE,) * 3 and np.allclose(moved.GetSpacing(), SPACING)
    assert np.allclose(moved.GetDirection(), DIRECTION) and np.allclose(moved.GetOrigin(), ORIGIN)
    dice = 2 * (sitk.GetArrayFromImage(moved) & mask).sum() / (sitk.GetArrayFromImage(moved).sum() + mask.sum())
    assert dice > 0.8, dice
    assert Path(manifest.loc["good", "mask"]) == on_grid  # a mask on the grid is kept as given


def test_radiomics_refuses_a_mask_on_another_grid(tmp_path: Path):
    from her2dlr.radiomics.extract import extract_case

    img, mask = sphere_case(3, rough=False)
    image = _write(_volume(img), tmp_path / "img.nrrd")
    moved = _write(_volume(mask, origin=(0.0, 0.0, 0.0)), tmp_path / "mask.nrrd")
    with pytest.raises(InputError, match=r"does not lie on the grid of its image .*origin"):
        extract_case(image, moved, params=PARAMS)


# ------------------------------------------------------------------ roi: auto and DSFR on volumes
N_PER_CLASS = 6


@pytest.fixture(scope="module")
def volume_study(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("seg3d")
    write_sphere_folders(tmp / "cohort", N_PER_CLASS)
    (tmp / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    raw = {
        "name": "seg3d",
        "cohort": {"sources": [{"kind": "folders", "path": str(tmp / "cohort"), "extensions": [".nrrd"],
                                "modality": "MR"}]},
        "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]},
        "split": {"seed": 5, "holdout": None, "kfold": {"n_splits": 2, "n_repeats": 1}},
        "radiomics": {"params": str(tmp / "params.yaml"), "roi": "auto", "n_jobs": 1, "backend": "sequential"},
        "segment": {"spatial_dims": 3, "image_size": 16, "features": [4, 8, 16], "epochs": 2, "batch_size": 4, "patience": 0,
                    "final": False, "device": "cpu", "dsfr": {"layer": 1, "n_clusters": 2}},
        "learn": {"search": {"inner_splits": 2}, "selection": [{"name": "zscore"}]},
    }
    study = tmp / "study.yaml"
    study.write_text(yaml.safe_dump(raw))
    res = runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "seg", str(study)])
    assert res.exit_code == 0, res.output
    return study


def _run(study: Path) -> Path:
    return study.parent / "runs" / "seg3d"


def test_train_seg_writes_out_of_fold_volume_masks_on_the_image_grid(volume_study: Path):
    run = _run(volume_study)
    manifest = pd.read_parquet(run / "cohort" / "manifest.parquet").set_index("case_id")
    masks = pd.read_csv(run / "segment" / "unet" / "masks.csv", dtype={"case_id": str}).set_index("case_id")
    assert sorted(masks.index) == sorted(manifest.index)
    for case, row in masks.iterrows():
        # segmented by the network of the case's own outer fold, which trained on the other fold only
        assert row["network"] == f"r0f{int(manifest.loc[case, 'fold_r0'])}"
        out, image = sitk.ReadImage(row["mask_auto"]), sitk.ReadImage(manifest.loc[case, "image"])
        assert row["mask_auto"].endswith(".nrrd") and out.GetSize() == image.GetSize()
        assert np.allclose(out.GetSpacing(), SPACING) and np.allclose(out.GetOrigin(), ORIGIN)
        assert np.allclose(out.GetDirection(), DIRECTION)
    book = json.loads((run / "segment" / "unet" / "summary.json").read_text())
    assert book["settings"]["spatial_dims"] == 3
    from her2dlr.deep.dsfr_features import seg_train_cases

    table = pd.read_parquet(run / "cohort" / "manifest.parquet")
    for fold in ("r0f0", "r0f1"):
        seen = seg_train_cases(table, fold)
        assert not seen & set(masks.index[masks["network"] == fold])


def test_roi_auto_radiomics_reads_the_volume_masks_unchanged(volume_study: Path):
    from her2dlr.radiomics.extract import extract_case

    res = runner.invoke(app, ["extract", "radiomics", str(volume_study)])
    assert res.exit_code == 0, res.output
    run = _run(volume_study)
    feats = pd.read_parquet(run / "features" / "radiomics_params_auto.parquet")
    auto = pd.read_csv(run / "segment" / "auto_masks.csv", dtype={"case_id": str}).set_index("case_id")
    assert len(feats) == int((~auto["empty"]).sum()) > 0
    case = feats.index[0]
    manifest = pd.read_parquet(run / "cohort" / "manifest.parquet").set_index("case_id")
    direct = extract_case(manifest.loc[case, "image"], auto.loc[case, "mask_auto"], params=PARAMS)
    np.testing.assert_allclose(feats.loc[case, list(direct)].to_numpy(), list(direct.values()), rtol=1e-10)


def test_a_3d_network_refuses_2d_images(volume_study: Path, tmp_path: Path):
    from her2dlr.segment.checkpoints import load_segmenter
    from her2dlr.segment.infer import segment_images

    model, spec, _ = load_segmenter(_run(volume_study) / "segment" / "unet" / "r0f0" / "best.pt")
    with pytest.raises(InputError, match="3D segmentation network was given the 2D image"):
        segment_images(model, [np.zeros((16, 16), np.float32)], spec=spec, progress=False)
    # and the stage refuses a 2D network on volumes, saying what to set
    from her2dlr.config import load_study
    from her2dlr.segment.settings import SegmentSettings
    from her2dlr.segment.stage import run_seg_stage

    study = load_study(volume_study)
    flat = SegmentSettings(**{**study.segment.model_dump(), "spatial_dims": 2})
    with pytest.raises(InputError, match=r"is 3D; this segmentation spec takes 2D images \(segment.spatial_dims: 3"):
        run_seg_stage(study, flat, progress=False)


def test_dsfr_of_3d_fold_networks_is_the_lesion_voxel_average(volume_study: Path):
    import torch

    from her2dlr.deep.features import check_out_of_fold, fold_test_cases, read_fold_features
    from her2dlr.segment.checkpoints import load_segmenter
    from her2dlr.segment.data import prepare_seg_input
    from her2dlr.segment.dsfr import resolve_layer

    res = runner.invoke(app, ["extract", "dsfr", str(volume_study), "--heatmaps", "1"])
    assert res.exit_code == 0, res.output
    run = _run(volume_study)
    folds = read_fold_features(run / "features" / "dsfr_unet")
    manifest = pd.read_parquet(run / "cohort" / "manifest.parquet")
    book = check_out_of_fold(folds, manifest)
    assert not book[(book["role"] == "test") & book["seen_in_training"]].any(axis=None)
    assert sorted(folds) == ["r0f0", "r0f1"]
    # one case by hand: its own fold's network, a hook on the layer, the map averaged over the lesion's voxels
    case = fold_test_cases(manifest, "r0f1")[0]
    row = manifest.set_index("case_id").loc[case]
    model, spec, _ = load_segmenter(run / "segment" / "unet" / "r0f1" / "best.pt")
    model.eval()
    x, _ = prepare_seg_input(sitk.GetArrayFromImage(sitk.ReadImage(row["image"])), spec=spec)
    # the study uses roi: auto, so the lesion is the case's out-of-fold automatic mask
    assert set(pd.read_csv(run / "features" / "dsfr_unet" / "provenance.csv")["lesion"]) == {"auto"}
    auto = pd.read_csv(run / "segment" / "auto_masks.csv", dtype={"case_id": str}).set_index("case_id")
    lesion = sitk.GetArrayFromImage(sitk.ReadImage(auto.loc[case, "mask_auto"])) > 0
    assert lesion.any()
    name = resolve_layer(model, 1, torch.as_tensor(x[None]))
    seen = {}
    handle = model.get_submodule(name).register_forward_hook(lambda _m, _i, out: seen.update(map=out))
    with torch.no_grad():
        model(torch.as_tensor(x[None]))
    handle.remove()
    maps = seen["map"][0].numpy()
    assert maps.shape[1:] == (8, 8, 8)  # the first unit halves the 16^3 grid
    # each feature cell weighs by the share of its 2x2x2 voxels in the lesion
    weight = lesion.reshape(8, 2, 8, 2, 8, 2).mean(axis=(1, 3, 5))
    by_hand = (maps * weight).sum(axis=(1, 2, 3)) / weight.sum()
    table = folds["r0f1"].features
    assert table.shape == (2 * N_PER_CLASS, maps.shape[0])
    np.testing.assert_allclose(table.loc[case].to_numpy(), by_hand, rtol=1e-4, atol=1e-6)
    assert len(list((run / "features" / "dsfr_unet" / "heatmaps").glob("*.png"))) == 1


def test_dsfr_and_dlr_models_run_on_the_3d_tables(volume_study: Path):
    from her2dlr.cohort.manifest import Manifest
    from her2dlr.config import load_study
    from her2dlr.deep.dsfr import fit_dsfr_models
    from her2dlr.deep.features import read_fold_features

    study = load_study(volume_study)
    folds_dir = study.paths.dsfr_features("unet")
    if not folds_dir.is_dir():
        pytest.skip("needs the DSFR tables of the test before")
    radiomics = pd.read_parquet(study.paths.feature_table("radiomics_params_auto"))
    # seed 003's LASSO (5-fold) needs more cases than these 12: z-scores alone after the channel clusters
    models = fit_dsfr_models(read_fold_features(folds_dir), radiomics, "radiomics", Manifest.load(study.paths.manifest),
                             arch="unet", settings=study.learn, selection=[{"name": "zscore"}])
    pred = pd.concat([r.predictions for r in models.results()])
    test = pred[pred["split"] == "test"].pivot_table(index=["fold", "case_id"], columns="model", values="prob")
    assert set(test.columns) == {"dsfr_unet-lr", "radiomics-lr", "dlr(dsfr_unet,radiomics)-lr"}
    assert len(test) == len(radiomics)  # every case with an automatic lesion, once, by the fold that never saw it
    np.testing.assert_allclose(test["dlr(dsfr_unet,radiomics)-lr"], (test["dsfr_unet-lr"] + test["radiomics-lr"]) / 2,
                               atol=1e-12)


# ------------------------------------------------------------------ a common voxel spacing from the training volumes
def test_voxel_size_training_is_the_training_median_and_reaches_pyradiomics(tmp_path: Path):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from her2dlr.config import load_study
    from her2dlr.learn.study import feature_table_provenance, radiomics_params_of

    spacings = [(0.6 + 0.05 * i, 0.65 + 0.05 * i, 1.0 + 0.5 * i) for i in range(6)]
    rows = []
    for i, spacing in enumerate(spacings):
        img, mask = sphere_case(40 + i, rough=bool(i % 2))
        _write(_volume(img, spacing=spacing), tmp_path / f"v{i}.nrrd")
        _write(_volume(mask, spacing=spacing), tmp_path / f"v{i}_mask.nrrd")
        rows.append({"case": f"v{i}", "image": f"v{i}.nrrd", "mask": f"v{i}_mask.nrrd", "box": "", "y": i % 2})
    study = _table_study(tmp_path, rows)
    raw = yaml.safe_load(study.read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    raw["split"] = {"seed": 2, "holdout": {"test_size": 0.34}, "kfold": None}
    raw["radiomics"] = {"params": str(tmp_path / "params.yaml"), "voxel_size": "training", "n_jobs": 1,
                        "backend": "sequential"}
    study.write_text(yaml.safe_dump(raw))
    assert runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"]).exit_code == 0
    manifest = pd.read_parquet(tmp_path / "run" / "cohort" / "manifest.parquet").set_index("case_id")
    train = [int(c[1:]) for c in manifest.index[manifest["split"] != "test"]]
    test = [int(c[1:]) for c in manifest.index[manifest["split"] == "test"]]
    assert train and test
    expected = np.median([spacings[i] for i in train], axis=0)

    def extract() -> dict:
        res = runner.invoke(app, ["extract", "radiomics", str(study)])
        assert res.exit_code == 0, res.output
        return json.loads((tmp_path / "run" / "features" / "radiomics_params_mask.json").read_text())

    record = extract()
    np.testing.assert_allclose(record["voxel_size"]["target_mm"], expected, rtol=1e-6)
    assert record["voxel_size"]["n_training"] == len(train) and "training volumes" in record["voxel_size"]["note"]
    # the features of a test volume are PyRadiomics' on that grid
    case = test[0]
    feats = pd.read_parquet(tmp_path / "run" / "features" / "radiomics_params_mask.parquet").loc[f"v{case}"]
    params = {**PARAMS, "setting": {**PARAMS["setting"], "resampledPixelSpacing": list(expected)}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        direct = RadiomicsFeatureExtractor(params).execute(str(tmp_path / f"v{case}.nrrd"),
                                                           str(tmp_path / f"v{case}_mask.nrrd"), label=1)
    direct = {k: float(v) for k, v in direct.items() if not k.startswith("diagnostics_")}
    np.testing.assert_allclose(feats[list(direct)].to_numpy(), list(direct.values()), rtol=1e-8)
    # a model trained on this table finds the parameters, spacing included
    loaded = load_study(study)
    found = radiomics_params_of([feature_table_provenance(loaded, "radiomics_params_mask")])
    assert found is not None and found["setting"]["resampledPixelSpacing"] == pytest.approx(list(expected))
    # the test volumes never move the target
    for i in test:
        img, mask = sphere_case(40 + i, rough=bool(i % 2))
        _write(_volume(img, spacing=(2.0, 2.0, 4.0)), tmp_path / f"v{i}.nrrd")
        _write(_volume(mask, spacing=(2.0, 2.0, 4.0)), tmp_path / f"v{i}_mask.nrrd")
    np.testing.assert_allclose(extract()["voxel_size"]["target_mm"], expected, rtol=1e-6)


def test_voxel_size_refuses_2d_images_and_bad_values(tmp_path: Path):
    from her2dlr.config import study_from_dict
    from her2dlr.errors import StudyFileError
    from her2dlr.radiomics.voxel_size import plan_voxel_size

    rows = pd.DataFrame({"case_id": ["a"], "image": ["a.png"]})
    with pytest.raises(InputError, match="a.png is a 2D image"):
        plan_voxel_size(rows, pd.Series([True]), "training", spacings=[(0.1, 0.1)])
    assert plan_voxel_size(rows, pd.Series([True]), "params").target_mm is None
    assert plan_voxel_size(rows, pd.Series([True]), 1.0, spacings=[(1, 1, 2)]).target_mm == (1.0, 1.0, 1.0)
    raw = {"name": "x", "cohort": {"sources": [{"kind": "folders", "path": "c"}]},
           "label": {"rule": "column", "column": "class", "positive": ["m"], "negative": ["b"]},
           "radiomics": {"voxel_size": [1.0, 2.0]}}
    with pytest.raises(StudyFileError, match="voxel_size"):
        study_from_dict(raw)
