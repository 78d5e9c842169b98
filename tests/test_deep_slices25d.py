"""2.5D inputs: k slices of an MR volume around the lesion's centre slice as the channels of a 2D network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from her2dlr.deep.data import load_rois, manifest_rois
from her2dlr.deep.deeptepp import jigsaw_roi, roi_views
from her2dlr.errors import InputError
from her2dlr.imaging.roi import RoiSpec, centre_slice, crop_roi, prepare_roi, resize_image, zscore

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _lesion_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An 8 x 24 x 24 noise volume (no zero inside) and a lesion on slices 2..5, largest on slice 4."""
    vol = np.random.default_rng(seed).uniform(1, 100, (8, 24, 24)).astype(np.float32)
    mask = np.zeros(vol.shape, np.uint8)
    mask[2, 10:12, 10:12] = 1
    mask[3, 9:14, 9:14] = 1
    mask[4, 8:16, 7:15] = 1  # 64 px: the largest cross-section
    mask[5, 9:15, 8:16] = 1
    return vol, mask


# --------------------------------------------------------------------------- the input, by hand
def test_the_25d_input_is_the_hand_built_stack_of_slices_around_the_largest_cross_section():
    vol, mask = _lesion_volume()
    assert centre_slice(vol.shape, mask=mask) == 4
    spec = RoiSpec(size=16, margin=2, min_size=1, slices=3)
    # the lesion over all its slices: y 8..15, x 7..15 (inclusive); margin 2: rows 6..17, columns 5..17
    stack = vol[3:6, 6:18, 5:18]
    np.testing.assert_array_equal(crop_roi(vol, mask=mask, spec=spec), stack)
    want = zscore(resize_image(stack, 16))  # one z-score over the three slices together
    got = prepare_roi(vol, mask=mask, spec=spec)
    assert got.shape == spec.shape == (3, 16, 16) and spec.in_channels == 3
    np.testing.assert_allclose(got, want, atol=1e-6)
    resized = resize_image(stack, 16)
    mean, sd = float(resized.mean()), float(resized.std())
    for k, z in enumerate((3, 4, 5)):  # every channel is its own slice, resized in plane only
        np.testing.assert_allclose(got[k], (resize_image(vol[z, 6:18, 5:18], 16) - mean) / sd, atol=1e-4)
    # the mask's box gives the same in-plane crop; its middle slice (2 + (4 - 1) // 2 = 3) is the centre
    box = (7, 8, 2, 9, 8, 4)  # x, y, z, w, h, d
    assert centre_slice(vol.shape, bbox=box) == 3
    np.testing.assert_array_equal(crop_roi(vol, bbox=box, spec=spec), vol[2:5, 6:18, 5:18])
    one = prepare_roi(vol, mask=mask, spec=RoiSpec(size=16, margin=2, min_size=1, slices=1))
    np.testing.assert_allclose(one, zscore(resize_image(vol[4:5, 6:18, 5:18], 16)), atol=1e-6)


def test_slices_beyond_the_volume_ends_are_padded():
    vol, _ = _lesion_volume(1)
    mask = np.zeros(vol.shape, np.uint8)
    mask[0, 4:12, 6:14] = 1  # largest on the first slice
    mask[1, 5:9, 6:10] = 1
    spec = RoiSpec(size=8, margin=0, min_size=1, slices=5, normalise=False)
    out = prepare_roi(vol, mask=mask, spec=spec)
    assert out.shape == (5, 8, 8)
    assert (out[:2] == 0).all()  # slices -2 and -1: the constant fill
    np.testing.assert_allclose(out[2:], resize_image(vol[0:3, 4:12, 6:14], 8), atol=1e-6)
    edge = prepare_roi(vol, mask=mask, spec=RoiSpec(size=8, margin=0, min_size=1, slices=5, normalise=False,
                                                    pad_mode="edge"))
    np.testing.assert_allclose(edge[0], edge[2])  # the first slice repeated
    np.testing.assert_allclose(edge[1], edge[2])
    top = np.zeros(vol.shape, np.uint8)
    top[7, 4:12, 6:14] = 1
    np.testing.assert_array_equal(prepare_roi(vol, mask=top, spec=spec)[3:], 0)  # past the last slice


def test_jigsaw_and_views_move_every_slice_alike():
    vol, mask = _lesion_volume(2)
    x = prepare_roi(vol, mask=mask, spec=RoiSpec(size=16, margin=2, slices=5))
    shifted = x[:1] + np.arange(5, dtype=np.float32)[:, None, None] * 100  # channel k = channel 0 + 100 k
    out = jigsaw_roi(shifted, 4, np.random.default_rng(0), 2)
    assert not np.array_equal(out, shifted)
    np.testing.assert_allclose(out - out[:1], shifted - shifted[:1], atol=1e-4)  # blocks moved together
    blocks = {shifted[0, r:r + 4, c:c + 4].tobytes() for r in range(0, 16, 4) for c in range(0, 16, 4)}
    assert {out[0, r:r + 4, c:c + 4].tobytes() for r in range(0, 16, 4) for c in range(0, 16, 4)} == blocks
    for view in roi_views(shifted, 2):  # turns and mirror images of the square, all slices alike
        np.testing.assert_allclose(view - view[:1], shifted - shifted[:1], atol=1e-4)


def _between_slice_case(label: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A disc lesion on slices 2..6, largest on slice 4, dark there in both classes; in class 1 its
    neighbouring slices are brighter: the class shows only between slices."""
    vol = rng.normal(50, 10, (8, 24, 24)).astype(np.float32)
    yy, xx = np.mgrid[:24, :24]
    cy, cx = 12 + rng.integers(-2, 3, 2)
    mask = np.zeros(vol.shape, np.uint8)
    for z, radius in ((2, 3), (3, 5), (4, 6), (5, 5), (6, 3)):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius
        mask[z][disc] = 1
        vol[z][disc] = rng.normal(45 if label and z != 4 else 20, 5, disc.sum())
    return vol, mask


def test_a_2d_network_on_3_slices_learns_what_the_centre_slice_alone_does_not_show():
    from sklearn.metrics import roc_auc_score

    from her2dlr.deep.train import TrainSettings, predict_proba, train_network

    def cohort(n: int, seed: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        y = np.arange(n) % 2
        spec = RoiSpec(size=16, margin=2, slices=k)
        cases = [_between_slice_case(int(label), rng) for label in y]
        return np.stack([prepare_roi(vol, mask=mask, spec=spec) for vol, mask in cases]), y

    auc = {}
    for k in (3, 1):
        x, y = cohort(40, 1, k)
        x_test, y_test = cohort(40, 2, k)
        settings = TrainSettings(image_size=16, in_channels=k, arch_options={"growth_rate": 4, "block_layers": (1, 1, 2)},
                                 epochs=6, batch_size=16, lr=1e-2, patience=0, min_class_cases=5, progress=False,
                                 num_threads=1)
        torch.manual_seed(0)
        res = train_network(x, y, settings=settings)
        auc[k] = roc_auc_score(y_test, predict_proba(res.model, x_test)[:, 1])
    assert auc[3] > 0.9 and abs(auc[1] - 0.5) < 0.25, auc


# --------------------------------------------------------------------------- refusals
def test_bad_slice_settings_name_the_key(tmp_path: Path):
    from her2dlr.config import study_from_dict
    from her2dlr.errors import StudyFileError

    base = {"name": "s", "cohort": {}, "label": {}}
    for deep, words in (({"slices": 4}, r"deep\.slices.*odd"),
                        ({"slices": 3, "spatial_dims": 3}, r"deep\.slices.*spatial_dims: 2"),
                        ({"slices": 3, "channels": 3}, r"deep\.slices.*channels: 1"),
                        ({"slices": 0}, r"deep\.slices")):
        with pytest.raises(StudyFileError, match=words):
            study_from_dict({**base, "deep": deep})
    for spec, words in (({"slices": 2}, "'slices' parameter of RoiSpec must be an odd"),
                        ({"slices": 3, "spatial_dims": 3}, "needs spatial_dims=2"),
                        ({"slices": 3, "channels": 3}, "needs channels=1")):
        with pytest.raises(InputError, match=words):
            RoiSpec(**spec)
    image = tmp_path / "us.png"
    from PIL import Image

    Image.fromarray(np.full((24, 24), 90, np.uint8)).save(image)
    spec = RoiSpec(size=8, slices=3)
    table = pd.DataFrame({"case_id": ["c1"], "image": [str(image)], "bbox": ["[2, 2, 8, 8]"], "modality": ["US"]})
    with pytest.raises(InputError, match=r"c1.*deep\.slices stacks 3 slices of an MR volume"):
        manifest_rois(table, spec)
    with pytest.raises(InputError, match=r"us\.png is a 2D image; slices=3 \(deep\.slices\)"):
        load_rois([image], [(2, 2, 8, 8)], spec=spec)
    with pytest.raises(InputError, match="cut from a volume"):
        prepare_roi(np.zeros((24, 24)), bbox=(2, 2, 8, 8), spec=spec)


# --------------------------------------------------------------------------- the deep stage, then predict
def _write_volume(path: Path, arr: np.ndarray) -> Path:
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    return path


def _mr_cohort(root: Path, n: int = 12) -> Path:
    """Volumes 8 x 24 x 24 with a lesion (smooth or speckled by class) and its mask, listed in a CSV."""
    rng = np.random.default_rng(5)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        vol, mask = _lesion_volume(100 + i)
        inside = mask > 0
        vol[inside] = rng.normal(40, 2 if i % 2 == 0 else 25, inside.sum())
        _write_volume(root / f"v{i:02d}.nrrd", vol)
        _write_volume(root / f"v{i:02d}_mask.nrrd", mask)
        rows.append({"ID": f"v{i:02d}", "image": f"v{i:02d}.nrrd", "mask": f"v{i:02d}_mask.nrrd",
                     "grade": "high" if i % 2 else "low"})
    pd.DataFrame(rows).to_csv(root / "cases.csv", index=False)
    return root / "cases.csv"


def test_train_deep_with_slices_and_predict_a_new_volume(tmp_path: Path):
    from her2dlr.cli import app
    from her2dlr.deep.train import load_checkpoint, model_from_checkpoint, predict_proba

    table = _mr_cohort(tmp_path / "cohort")
    raw = {
        "name": "mr25d",
        "cohort": {"sources": [{"kind": "table", "path": str(table), "modality": "MR", "image_column": "image",
                                "mask_column": "mask", "case_id_column": "ID", "label_columns": ["grade"]}]},
        "label": {"rule": "column", "column": "grade", "positive": ["high"], "negative": ["low"]},
        "split": {"seed": 1, "holdout": {"test_size": 0.25}, "kfold": {"n_splits": 2, "n_repeats": 1}},
        "deep": {"spatial_dims": 2, "slices": 3, "image_size": 16, "margin": 2, "epochs": 2, "batch_size": 4,
                 "patience": 0, "schemes": ["holdout"], "jigsaw": 2, "multi_view": True},
    }
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    for args in (["cohort", "build", str(study), "--n-jobs", "1"],
                 ["train", "deep", str(study), "--threads", "1", "--n-jobs", "1"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
    for option, words in ((["--slices", "4"], "--slices: deep.slices must be odd"),
                          (["--spatial-dims", "3"], "deep.slices stacks 3 slices")):
        res = runner.invoke(app, ["train", "deep", str(study), *option])
        assert res.exit_code != 0 and words in " ".join(res.output.split()), res.output
    run = tmp_path / "runs" / "mr25d"
    final = run / "deep" / "densenet3block" / "holdout" / "best.pt"  # the deployed network
    ckpt = load_checkpoint(final)
    assert ckpt["in_channels"] == 3 and ckpt["spatial_dims"] == 2
    assert ckpt["extra"]["roi"]["slices"] == 3
    preds = pd.read_parquet(run / "deep" / "densenet3block" / "predictions.parquet")
    test, train = (set(preds.loc[preds["split"] == s, "case_id"]) for s in ("test", "train"))
    assert test and not test & train and len(test | train) == 12 and preds["prob"].between(0, 1).all()

    vol, mask = _lesion_volume(999)
    new, new_mask = _write_volume(tmp_path / "new.nrrd", vol), _write_volume(tmp_path / "new_mask.nrrd", mask)
    model = run / "models" / "deep_densenet3block-signature"
    res = runner.invoke(app, ["predict", str(model), "--image", str(new), "--mask", str(new_mask),
                              "--out", str(tmp_path / "new.csv")])
    assert res.exit_code == 0, res.output
    got = float(pd.read_csv(tmp_path / "new.csv")["prob"].iloc[0])
    x = prepare_roi(vol, mask=mask, spec=RoiSpec(size=16, margin=2, slices=3))  # the study's settings, by hand
    with torch.no_grad():
        want = float(predict_proba(model_from_checkpoint(final), x[None])[0, 1])
    assert got == pytest.approx(want, abs=1e-5)


def test_study_heat_maps_of_a_25d_network_lie_on_the_lesions_centre_slice(tmp_path: Path):
    import json

    from her2dlr.deep.checkpoints import find_fold_checkpoints
    from her2dlr.deep.explain_study import explain_cases
    from her2dlr.deep.networks import build_network
    from her2dlr.deep.train import TrainSettings, make_checkpoint, save_checkpoint

    rows = []
    for i in range(4):
        vol, mask = _lesion_volume(i)
        image = _write_volume(tmp_path / f"v{i}.nrrd", vol)
        lesion = _write_volume(tmp_path / f"v{i}_mask.nrrd", mask)
        rows.append({"case_id": f"v{i}", "patient_id": f"p{i}", "image": str(image), "mask": str(lesion),
                     "bbox": None, "label": i % 2, "modality": "MR", "fold_r0": i // 2})
    manifest = pd.DataFrame(rows)
    spec = RoiSpec(size=16, margin=2, min_size=1, slices=3)
    tiny = {"growth_rate": 4, "block_layers": (1, 1, 2)}
    settings = TrainSettings(image_size=16, in_channels=3, arch_options=tiny)
    for k in (0, 1):
        torch.manual_seed(k)
        net = build_network("densenet3block", image_size=16, in_channels=3, **tiny)
        extra = {"roi": spec.to_dict(), "fold": f"r0f{k}", "threshold": {"value": 0.5}}
        save_checkpoint(make_checkpoint(net, settings, epoch=1, kind="best", extra=extra),
                        tmp_path / "deep" / f"r0f{k}" / "best.pt")
    found = find_fold_checkpoints(tmp_path / "deep", manifest=manifest)
    explain_cases(found, manifest, tmp_path / "explain", n_per_group=1, embedding=None, overlays="all")
    scores = pd.read_csv(tmp_path / "explain" / "heat_scores.csv")
    assert [json.loads(b) for b in scores["box"]] == [[5, 6, 18, 18]] * 4  # the in-plane crop of the 2.5D input
    assert np.load(tmp_path / "explain" / "heat_maps.npz")["maps"].shape == (4, 16, 16)
    # every lesion (64 px on its centre slice, 4) covers 64 / (13 x 12) of the crop box
    assert scores["lesion_area"].to_numpy() == pytest.approx(64 / 156)
    assert len(list((tmp_path / "explain" / "cases").glob("*.png"))) == 4
