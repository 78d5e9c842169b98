"""DeepTEPP's switches in the deep stage (seed 004): multi-view class balancing, the jigsaw shuffle and
clinical-pathological fusion at the head of ``mm_resnet``, through the trainer, the outer folds and predict."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from her2dlr.deep.cv import run_deep_cv
from her2dlr.deep.data import AugmentCollate, RoiDataset, manifest_clinical
from her2dlr.deep.deeptepp import jigsaw_roi, multi_view, roi_views
from her2dlr.deep.settings import DeepSettings
from her2dlr.deep.stage import training_settings
from her2dlr.deep.train import TrainSettings, load_checkpoint, predict_proba, train_network
from her2dlr.errors import InputError
from her2dlr.imaging.roi import RoiSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"widths": (4, 8, 8, 16), "proj_dim": 8}
NO_AUGMENT = {"crop_prob": 0.0, "hflip_prob": 0.0, "affine_prob": 0.0, "intensity_prob": 0.0}


def _settings(**changes) -> TrainSettings:
    base = {"arch": "mm_resnet", "image_size": 16, "arch_options": TINY, "epochs": 2, "batch_size": 8,
            "progress": False, "num_threads": 1, "min_class_cases": 2, "patience": 0, "augment": NO_AUGMENT}
    return TrainSettings(**{**base, **changes})


# --------------------------------------------------------------------------- multi-view balancing
def test_roi_views_are_the_dihedral_turns_in_2d_and_the_multi_view_in_3d() -> None:
    rng = np.random.default_rng(0)
    square = rng.random((2, 6, 6))
    views = roi_views(square, 2)
    assert len(views) == 7 and len({v.tobytes() for v in [square, *views]}) == 8
    np.testing.assert_array_equal(views[0], np.rot90(square, 1, axes=(1, 2)))
    np.testing.assert_array_equal(views[3], square[:, :, ::-1])  # the mirror image
    cube = rng.random((2, 4, 4, 4))
    cubes = roi_views(cube, 3)
    assert len(cubes) == 11
    for channel in range(2):  # both channels turned alike: the 3D views of each channel, in order
        for got, want in zip(cubes, multi_view(cube[channel])[1:]):
            np.testing.assert_array_equal(got[channel], want)


def test_multi_view_balances_the_inner_training_part_only() -> None:
    rng = np.random.default_rng(1)
    rois = rng.normal(size=(12, 1, 16, 16, 16)).astype(np.float32)
    y = np.array([0] * 8 + [1] * 4)
    settings = _settings(spatial_dims=3, val_fraction=0.25, epochs=1)
    plain = train_network(rois, y, settings=settings)
    balanced = train_network(rois, y, settings=TrainSettings(**{**settings.to_dict(), "multi_view": True}))
    # the same inner split: validation rows are the original cases, never views
    np.testing.assert_array_equal(plain.val_index, balanced.val_index)
    assert len(balanced.val_prob) == len(balanced.val_index) and balanced.val_index.max() < len(y)
    fit = np.setdiff1d(np.arange(len(y)), balanced.val_index)
    n0, n1 = int((y[fit] == 0).sum()), int((y[fit] == 1).sum())  # hand count of the training part
    assert plain.views_added == 0 and balanced.views_added == n0 - n1 > 0
    assert balanced.class_weights == [1.0, 1.0]  # balanced classes: nothing left to reweight
    assert any("added" in note and f"[{n0}, {n1}] -> [{n0}, {n0}]" in note for note in balanced.notes)


def test_fold_table_and_checkpoint_record_the_views(tmp_path) -> None:
    rng = np.random.default_rng(2)
    n = 24
    rois = rng.normal(size=(n, 1, 16, 16)).astype(np.float32)
    y = np.array([1, 0, 0] * 8)
    table = pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], "patient_id": [f"p{i}" for i in range(n)],
                          "image": "none.png", "label": y, "fold_r0": np.arange(n) % 2})
    result = run_deep_cv(table, settings=_settings(multi_view=True, min_class_cases=50), rois=rois,
                         out_dir=tmp_path, progress=False, keep_train=False)
    folds = pd.read_csv(tmp_path / "folds.csv")
    for fold, row in zip(result.folds, folds.itertuples()):
        train_y = y[table["case_id"].isin(fold.train_cases)]
        n0, n1 = int((train_y == 0).sum()), int((train_y == 1).sum())  # no inner split: all rows train
        assert row.views_added == fold.views_added == n0 - n1
        ckpt = load_checkpoint(tmp_path / fold.fold / "best.pt")
        assert ckpt["extra"]["multi_view"] == {"views_added": n0 - n1, "class_counts_before": [n0, n1],
                                               "class_counts_after": [n0, n0]}
    test = result.predictions[result.predictions["split"] == "test"]
    assert sorted(test["case_id"]) == sorted(table["case_id"])  # every case once, no view among the test rows


# --------------------------------------------------------------------------- jigsaw
def test_jigsaw_shuffles_blocks_and_slabs_of_every_channel_alike() -> None:
    rng = np.random.default_rng(3)
    image = np.arange(2 * 4 * 4, dtype=float).reshape(2, 4, 4)
    out = jigsaw_roi(image, 2, np.random.default_rng(5), 2)
    blocks = {image[0, r:r + 2, c:c + 2].tobytes() for r in (0, 2) for c in (0, 2)}
    assert {out[0, r:r + 2, c:c + 2].tobytes() for r in (0, 2) for c in (0, 2)} == blocks
    np.testing.assert_array_equal(out[1] - out[0], np.full((4, 4), 16.0))  # channel 1 moved as channel 0
    cube = rng.random((1, 8, 4, 4))
    slabs = jigsaw_roi(cube, 4, np.random.default_rng(2), 3)
    got = [slabs[0, 2 * k:2 * k + 2].tobytes() for k in range(4)]
    want = [cube[0, 2 * k:2 * k + 2].tobytes() for k in range(4)]
    assert sorted(got) == sorted(want) and got != want  # the same slabs (slices in order inside), another order
    np.testing.assert_array_equal(jigsaw_roi(cube, 4, np.random.default_rng(2), 3), slabs)  # seeded
    with pytest.raises(InputError, match="divide"):
        jigsaw_roi(rng.random((1, 6, 6)), 4, rng, 2)


def test_jigsaw_touches_training_batches_only() -> None:
    rng = np.random.default_rng(4)
    rois = rng.normal(size=(24, 1, 16, 16)).astype(np.float32)
    y = np.arange(24) % 2
    collate = AugmentCollate(None, jigsaw=4, seed=0)
    x, labels = collate([RoiDataset(rois, y)[i] for i in range(8)])
    np.testing.assert_array_equal(labels.numpy(), y[:8])
    assert not np.array_equal(x.numpy(), rois[:8])  # training batches are shuffled ...
    np.testing.assert_allclose(np.sort(x.numpy().reshape(8, -1)), np.sort(rois[:8].reshape(8, -1)))  # ... blocks
    result = train_network(rois, y, settings=_settings(jigsaw=4, min_class_cases=3))
    # the validation scores came from the network as it is, on the unshuffled inputs
    np.testing.assert_allclose(result.val_prob, predict_proba(result.model, rois[result.val_index]), atol=1e-6)


# --------------------------------------------------------------------------- clinical fusion
def _noise_cohort(root, n: int = 24, seed: int = 0) -> pd.DataFrame:
    """PNG images of noise (no class signal) with a square lesion mask; age carries the label, ki67 nothing."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((24, 24), np.uint8)
    mask[4:20, 4:20] = 255
    Image.fromarray(mask).save(root / "mask.png")
    y = np.arange(n) % 2
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (24, 24)).astype(np.uint8)).save(root / f"c{i:02d}.png")
        rows.append({"case_id": f"c{i:02d}", "patient_id": f"p{i:02d}", "image": str(root / f"c{i:02d}.png"),
                     "mask": str(root / "mask.png"), "modality": "US", "label": int(y[i]),
                     "age": 50 + 10 * y[i] + rng.normal(0, 2), "ki67": rng.normal(20, 5) if i % 5 else np.nan,
                     "fold_r0": (i // 2) % 2})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fused_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("deeptepp")
    table = _noise_cohort(root / "images")
    roi = RoiSpec(size=16, margin=0)
    settings = _settings(epochs=6, lr=0.01, min_class_cases=5, clinical_columns=("age", "ki67"))
    with torch.random.fork_rng():
        fused = run_deep_cv(table, settings=settings, roi=roi, out_dir=root / "fused", progress=False, final=True)
        image_only = run_deep_cv(table, settings=_settings(epochs=6, lr=0.01, min_class_cases=5), roi=roi,
                                 progress=False)
    return table, fused, image_only, root


def _oof_auc(result) -> float:
    test = result.predictions[result.predictions["split"] == "test"]
    return float(roc_auc_score(test["label"], test["prob"]))


def test_clinical_fusion_learns_what_the_images_do_not_carry(fused_run) -> None:
    _, fused, image_only, _ = fused_run
    assert _oof_auc(fused) > 0.85
    assert abs(_oof_auc(image_only) - 0.5) < 0.25  # noise images: chance


def test_clinical_standardisation_comes_from_the_inner_training_part(fused_run) -> None:
    table, fused, _, root = fused_run
    values = manifest_clinical(table, ["age", "ki67"])
    for fold in fused.folds:
        extra = load_checkpoint(root / "fused" / fold.fold / "best.pt")["extra"]
        fit = table["case_id"].isin(set(extra["train_cases"]) - set(extra["val_cases"])).to_numpy()
        part = values[fit]
        median = np.nanmedian(part, axis=0)
        filled = np.where(np.isnan(part), median, part)  # sklearn: SimpleImputer(median) then StandardScaler
        assert extra["clinical"]["columns"] == ["age", "ki67"]
        np.testing.assert_allclose(extra["clinical"]["median"], median)
        np.testing.assert_allclose(extra["clinical"]["mean"], filled.mean(axis=0))
        np.testing.assert_allclose(extra["clinical"]["scale"], filled.std(axis=0))
        assert not np.allclose(extra["clinical"]["mean"][0], np.nanmean(values[:, 0]), atol=1e-9)


def test_settings_refuse_clinical_fusion_without_a_clinical_input() -> None:
    with pytest.raises(InputError, match=r"deep\.clinical_columns.*densenet3block"):
        training_settings(DeepSettings(arch="densenet3block", clinical_columns=["age"]))
    with pytest.raises(InputError, match=r"deep\.jigsaw.*image_size=30"):
        training_settings(DeepSettings(arch="mm_resnet", image_size=30, jigsaw=4))
    settings, _ = training_settings(DeepSettings(arch="mm_resnet", multi_view=True, jigsaw=4,
                                                 clinical_columns=["age"]))
    assert settings.multi_view and settings.jigsaw == 4 and settings.clinical_columns == ("age",)
    with pytest.raises(ValueError, match="jigsaw"):
        DeepSettings(jigsaw=1)
    with pytest.raises(ValueError, match="clinical"):
        DeepSettings(clinical=True, clinical_columns=["age"])
    with pytest.raises(InputError, match="clinical_columns.*needs a network with a clinical input"):
        _settings(arch="densenet3block", arch_options={}, clinical_columns=("age",))


def test_deep_features_refuse_a_network_with_clinical_fusion() -> None:
    from her2dlr.deep.deeptepp import MMResNet
    from her2dlr.deep.features import embed_arrays

    with pytest.raises(InputError, match="fuses clinical values"):
        embed_arrays(MMResNet(1, 2, spatial_dims=2, widths=TINY["widths"], n_clinical=1), np.zeros((2, 1, 16, 16)))


def test_predict_needs_the_fused_clinical_columns_and_matches_training(fused_run, tmp_path) -> None:
    from her2dlr.deep.deploy import save_deep_artefact
    from her2dlr.predict import Case, predict

    table, fused, _, root = fused_run
    path = save_deep_artefact(tmp_path / "models", root / "fused", name="deep_mm_resnet-signature")
    row = table.iloc[3]
    case = Case(case_id=row["case_id"], image=row["image"], mask=row["mask"], clinical={"ki67": row["ki67"]})
    with pytest.raises(InputError, match=r"clinical column\(s\) \['age'\]"):
        predict(path, case, progress=False)
    final = fused.predictions[(fused.predictions["fold"] == "final") & (fused.predictions["split"] == "train")]
    for i in (3, 4, 10):  # case 10 has no ki67: the network fills in its training median
        row = table.iloc[i]
        case = Case(case_id=row["case_id"], image=row["image"], mask=row["mask"],
                    clinical={"age": row["age"], "ki67": row["ki67"]})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = predict(path, case, progress=False)[0]
        want = float(final.loc[final["case_id"] == row["case_id"], "prob"].iloc[0])
        assert result.probability == pytest.approx(want, abs=1e-6)
        if np.isnan(row["ki67"]):
            assert any("ki67 is missing" in w and "training median" in w for w in result.warnings)


# --------------------------------------------------------------------------- heat maps of a clinical-fused network
def _hand_grad_cam(net, x: torch.Tensor, clinical: torch.Tensor) -> np.ndarray:
    """Grad-CAM by hand through a hook: relu(sum_k mean_xy(d logit_c / d A_k) A_k) of the predicted class c,
    bilinearly resized to the input, with the given clinical values in the forward pass."""
    store = {}

    def keep(_m, _i, out):
        out.retain_grad()
        store["a"] = out

    maps = []
    for i in range(len(x)):
        handle = net.get_submodule(net.target_layer).register_forward_hook(keep)
        try:
            logits = net(x[i:i + 1], clinical[i:i + 1])
        finally:
            handle.remove()
        logits[0, int(logits.argmax())].backward()
        a, g = store["a"], store["a"].grad
        cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))
        maps.append(torch.nn.functional.interpolate(cam, size=x.shape[2:], mode="bilinear",
                                                    align_corners=False)[0, 0].detach().numpy())
    return np.stack(maps)


def test_grad_cam_of_a_clinical_fused_network_reads_the_cases_clinical_values() -> None:
    from her2dlr.deep.deeptepp import MMResNet
    from her2dlr.deep.explain import heat_maps

    torch.manual_seed(1)  # an untrained network whose maps are not all zero, explaining both classes
    net = MMResNet(1, 2, spatial_dims=2, n_clinical=2, **TINY)
    net.set_clinical_scaling({"median": [55.0, 20.0], "mean": [55.0, 21.0], "scale": [10.0, 5.0]})
    net.eval()
    x = torch.rand(4, 1, 16, 16)
    clinical = torch.tensor([[45.0, 12.0], [70.0, float("nan")], [52.0, 30.0], [61.0, 18.0]])
    heat = heat_maps(net, x, clinical=clinical.numpy())
    assert heat.maps.shape == (4, 16, 16) and np.isfinite(heat.maps).all() and (heat.maps.max(axis=(1, 2)) > 0).all()
    assert set(heat.explained_class) == {0, 1}
    np.testing.assert_allclose(heat.maps, _hand_grad_cam(net, x, clinical), rtol=1e-4, atol=1e-10)
    with torch.no_grad():  # the explained probabilities are the network's with these clinical values
        want = torch.softmax(net(x, clinical), dim=1)[:, 1].numpy()
    np.testing.assert_allclose(heat.prob, want, rtol=1e-5)
    with pytest.raises(InputError, match=r"MMResNet fuses 2 clinical value\(s\).*need each case's clinical values"):
        heat_maps(net, x)
    with pytest.raises(InputError, match=r"shape \(4, 2\)"):
        heat_maps(net, x, clinical=clinical[:, :1])
    with pytest.raises(InputError, match="CAM does not apply.*gradcam"):
        heat_maps(net, x, method="cam", clinical=clinical)


def test_heat_maps_of_a_clinical_fused_model_by_predict_and_by_fold(fused_run, tmp_path) -> None:
    from her2dlr.deep.checkpoints import find_fold_checkpoints
    from her2dlr.deep.deploy import save_deep_artefact
    from her2dlr.deep.explain import heat_maps
    from her2dlr.deep.explain_study import explain_cases
    from her2dlr.predict import Case, predict

    table, _, _, root = fused_run
    path = save_deep_artefact(tmp_path / "models", root / "fused", name="deep_mm_resnet-signature")
    row = table.iloc[3]
    case = Case(case_id=row["case_id"], image=row["image"], mask=row["mask"],
                clinical={"age": row["age"], "ki67": row["ki67"]})
    result = predict(path, case, heat_maps=tmp_path / "heat.png", progress=False)[0]
    assert result.heat_map.path.stat().st_size > 1000
    assert result.heat_map.prob == pytest.approx(result.probability, abs=1e-6)  # the network read the case's values
    with pytest.raises(InputError, match=r"clinical column\(s\) \['age'\]"):
        predict(path, Case(case_id="x", image=row["image"], mask=row["mask"], clinical={"ki67": 20.0}),
                heat_maps=tmp_path / "other.png", progress=False)
    # study heat maps: each fold network gets its test cases' clinical values from the manifest
    checkpoints = find_fold_checkpoints(root / "fused", manifest=table)
    with pytest.warns(UserWarning, match="embedding is left out"):
        res = explain_cases(checkpoints, table, tmp_path / "explain", overlays="none", n_per_group=1)
    stored = np.load(tmp_path / "explain" / "heat_maps.npz", allow_pickle=True)
    assert stored["maps"].shape == (len(table), 16, 16) and np.isfinite(stored["maps"]).all()
    fold0 = table[table["fold_r0"] == 0]
    from her2dlr.deep.data import manifest_rois

    ck = checkpoints["r0f0"]
    want = heat_maps(ck.load(), manifest_rois(fold0, RoiSpec(size=16, margin=0)),
                     clinical=manifest_clinical(fold0, ["age", "ki67"]))
    got = dict(zip(stored["case_id"].astype(str), stored["maps"]))
    np.testing.assert_allclose(np.stack([got[c] for c in fold0["case_id"]]), want.maps, rtol=1e-5, atol=1e-8)
    assert set(res.scores["fold"]) == {"r0f0", "r0f1"}


def test_heat_maps_of_a_clinical_fused_network_with_test_time_flips_give_its_predictions(fused_run,
                                                                                        tmp_path) -> None:
    """tta_flips recorded: predict's probability, the heat map's and each fold's explained probability are all the
    network's flip-averaged prediction with the case's clinical values (the maps stay unflipped Grad-CAM)."""
    import shutil

    from her2dlr.deep.checkpoints import find_fold_checkpoints
    from her2dlr.deep.cv import load_deep_model
    from her2dlr.deep.data import manifest_rois
    from her2dlr.deep.deploy import save_deep_artefact
    from her2dlr.deep.explain import heat_maps
    from her2dlr.deep.explain_study import explain_cases
    from her2dlr.predict import Case, predict

    table, _, _, root = fused_run
    folder = tmp_path / "fused"
    shutil.copytree(root / "fused", folder)
    for ckpt_path in folder.glob("*/best.pt"):
        ckpt = torch.load(ckpt_path, weights_only=False)
        ckpt["settings"]["tta_flips"] = True
        torch.save(ckpt, ckpt_path)
    path = save_deep_artefact(tmp_path / "models", folder, name="deep_mm_resnet-signature")
    row = table.iloc[3]
    result = predict(path, Case(case_id=row["case_id"], image=row["image"], mask=row["mask"],
                                clinical={"age": row["age"], "ki67": row["ki67"]}),
                     heat_maps=tmp_path / "heat.png", progress=False)[0]
    net, spec, _ = load_deep_model(folder / "final" / "best.pt")
    x = manifest_rois(table.iloc[[3]], spec)
    clinical = manifest_clinical(table.iloc[[3]], ["age", "ki67"])
    flipped = predict_proba(net, x, flips=True, clinical=clinical)[0, 1]
    plain = predict_proba(net, x, clinical=clinical)[0, 1]
    assert abs(flipped - plain) > 1e-6  # the flips change the probability: the checks below can fail
    assert result.probability == pytest.approx(flipped, abs=1e-6)
    assert result.heat_map.prob == pytest.approx(result.probability, abs=1e-6)
    # `her2dlr explain`: each fold network's probability (and its TP / FP / FN / TN) as the deep stage predicted it
    checkpoints = find_fold_checkpoints(folder, manifest=table)
    with pytest.warns(UserWarning, match="embedding is left out"):
        res = explain_cases(checkpoints, table, tmp_path / "explain", overlays="none", n_per_group=1)
    fold0 = table[table["fold_r0"] == 0]
    ck = checkpoints["r0f0"]
    x0, c0 = manifest_rois(fold0, RoiSpec(size=16, margin=0)), manifest_clinical(fold0, ["age", "ki67"])
    want = predict_proba(ck.load(), x0, flips=True, clinical=c0)[:, 1]
    scores = res.scores.set_index("case_id").loc[fold0["case_id"]]
    np.testing.assert_allclose(scores["prob"].to_numpy(), want, atol=1e-6)
    unflipped = heat_maps(ck.load(), x0, clinical=c0, class_idx=scores["explained_class"].to_numpy())
    assert np.abs(unflipped.prob - want).max() > 1e-6
    stored = np.load(tmp_path / "explain" / "heat_maps.npz", allow_pickle=True)
    maps = dict(zip(stored["case_id"].astype(str), stored["maps"]))
    np.testing.assert_allclose(np.stack([maps[c] for c in fold0["case_id"]]), unflipped.maps, rtol=1e-5, atol=1e-8)
