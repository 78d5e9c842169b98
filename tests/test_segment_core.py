"""Lesion segmentation core: networks learn synthetic lesions (2D, box-prompted, 3D), post-processing,
crops and paste-back, bad inputs, checkpoints, reproducibility, and a real MRI volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_png
from her2dlr.errors import InputError
from her2dlr.segment.augment import SegAugmentSettings
from her2dlr.segment.data import SegSpec, load_seg_pairs, paste_back, prepare_seg_input, prepare_seg_target
from her2dlr.segment.infer import segment_images
from her2dlr.segment.networks import ACTIVATION_TYPES, SEG_ARCHS, build_seg_network
from her2dlr.segment.postprocess import PostSettings, dice_score, postprocess
from her2dlr.segment.train import SegTrainSettings, load_segmenter, save_segmenter, train_segmenter

SIZE = 32  # network input side; the images are 56 px
FAST = {"features": (8, 16, 32), "batch_size": 8, "lr": 3e-3, "patience": 0, "val_fraction": 0.2, "device": "cpu",
        "num_threads": 1, "progress": False}


def lesions(n: int, *, seed: int, size: int = 56) -> tuple[list[np.ndarray], list[np.ndarray], list[tuple]]:
    """Speckled images with one bright textured ellipse at a random place; masks; the ellipses' boxes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks, boxes = [], [], []
    for _ in range(n):
        img = rng.gamma(2.0, 20.0, size=(size, size))
        cy, cx = rng.uniform(size * 0.25, size * 0.75, 2)
        ry, rx = rng.uniform(size * 0.1, size * 0.2, 2)
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        img[mask] = rng.normal(140, 30, size=int(mask.sum()))
        images.append(np.clip(img, 0, 255).astype(np.uint8))
        masks.append(mask.astype(np.uint8))
        ys, xs = np.nonzero(mask)
        boxes.append((int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1))
    return images, masks, boxes


def spheres(n: int, *, seed: int, size: int = 20) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Speckled volumes with one bright sphere at a random place, and its mask."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:size, :size, :size]
    volumes, masks = [], []
    for _ in range(n):
        c = rng.uniform(size * 0.3, size * 0.7, 3)
        r = rng.uniform(size * 0.15, size * 0.25)
        mask = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r
        vol = rng.gamma(2.0, 20.0, size=mask.shape)
        vol[mask] = rng.normal(140, 30, size=int(mask.sum()))
        volumes.append(vol.astype(np.float32))
        masks.append(mask.astype(np.uint8))
    return volumes, masks


def mean_dice(preds: list, masks: list[np.ndarray]) -> float:
    return float(np.mean([dice_score(p.mask, m) for p, m in zip(preds, masks)]))


@pytest.fixture(scope="module")
def train_set() -> tuple[list, list, list]:
    return lesions(48, seed=0)


@pytest.fixture(scope="module")
def test_set() -> tuple[list, list, list]:
    return lesions(8, seed=99)


@pytest.fixture(scope="module")
def unprompted(train_set: tuple) -> tuple:
    spec = SegSpec(size=SIZE)
    X, Y, _ = load_seg_pairs(train_set[0], train_set[1], spec=spec, progress=False)
    res = train_segmenter(X, Y, settings=SegTrainSettings(image_size=SIZE, epochs=12, **FAST))
    return res, spec


# --------------------------------------------------------------------------- learning
def test_unet_learns_2d_lesions(unprompted: tuple, test_set: tuple) -> None:
    res, spec = unprompted
    assert res.val_dice > 0.8
    assert list(res.history.columns[:5]) == ["epoch", "train_loss", "val_loss", "val_dice", "seconds"]
    assert res.history["train_loss"].iloc[-1] < res.history["train_loss"].iloc[0]
    preds = segment_images(res.model, test_set[0], spec=spec, device="cpu", progress=False)
    assert all(p.mask.shape == (56, 56) and p.prob.shape == (56, 56) for p in preds)
    assert mean_dice(preds, test_set[1]) > 0.8
    assert all(0.5 <= p.confidence <= 1.0 and not p.empty for p in preds)


def test_box_prompt_learns_and_beats_unprompted(train_set: tuple, test_set: tuple, unprompted: tuple) -> None:
    spec = SegSpec(size=SIZE, box_prompt=True)
    X, Y, _ = load_seg_pairs(train_set[0], train_set[1], train_set[2], spec=spec, progress=False)
    assert X.shape == (48, 2, SIZE, SIZE) and set(np.unique(X[:, 1])) == {0.0, 1.0}
    res = train_segmenter(X, Y, settings=SegTrainSettings(image_size=SIZE, box_prompt=True, epochs=12, **FAST))
    assert res.val_dice > 0.8
    prompted = segment_images(res.model, test_set[0], boxes=test_set[2], spec=spec, device="cpu", progress=False)
    plain = segment_images(unprompted[0].model, test_set[0], spec=unprompted[1], device="cpu", progress=False)
    assert mean_dice(prompted, test_set[1]) > 0.8
    assert mean_dice(prompted, test_set[1]) >= mean_dice(plain, test_set[1])


def test_3d_unet_learns_a_sphere() -> None:
    volumes, masks = spheres(24, seed=0)
    spec = SegSpec(size=16, spatial_dims=3)
    X, Y, _ = load_seg_pairs(volumes, masks, spec=spec, progress=False)
    settings = SegTrainSettings(spatial_dims=3, image_size=16, epochs=12, **{**FAST, "batch_size": 4})
    res = train_segmenter(X, Y, settings=settings)
    assert res.val_dice > 0.6
    new_volumes, new_masks = spheres(4, seed=7)
    preds = segment_images(res.model, new_volumes, spec=spec, device="cpu", progress=False)
    assert preds[0].mask.shape == (20, 20, 20)
    assert mean_dice(preds, new_masks) > 0.6


def test_empty_masks_are_left_out_with_a_note_and_checkpoints_written(train_set: tuple, tmp_path: Path) -> None:
    spec = SegSpec(size=SIZE)
    masks = [m if i % 4 else np.zeros_like(m) for i, m in enumerate(train_set[1][:16])]
    X, Y, _ = load_seg_pairs(train_set[0][:16], masks, spec=spec, progress=False)
    res = train_segmenter(X, Y, settings=SegTrainSettings(image_size=SIZE, epochs=2, **FAST), out_dir=tmp_path)
    assert any("4 training case(s) with an empty mask excluded" in n for n in res.notes)
    assert res.checkpoint == tmp_path / "best.pt" and (tmp_path / "last.pt").is_file()
    assert all(i % 4 for i in res.val_index)  # validation rows index the given arrays
    with pytest.raises(InputError, match="All 2 training masks are empty"):
        train_segmenter(X[:2], np.zeros_like(Y[:2]), settings=SegTrainSettings(image_size=SIZE, **FAST))


def test_inner_validation_keeps_groups_whole(train_set: tuple) -> None:
    X, Y, _ = load_seg_pairs(train_set[0][:24], train_set[1][:24], spec=SegSpec(size=SIZE), progress=False)
    groups = np.repeat(np.arange(8), 3)  # three near-duplicates per patient
    res = train_segmenter(X, Y, groups, settings=SegTrainSettings(image_size=SIZE, epochs=1, **FAST))
    val_groups = set(groups[res.val_index])
    assert len(res.val_index) >= 4 and not val_groups & set(np.delete(groups, res.val_index))


def test_same_seed_gives_identical_weights(train_set: tuple) -> None:
    spec = SegSpec(size=SIZE)
    X, Y, _ = load_seg_pairs(train_set[0][:12], train_set[1][:12], spec=spec, progress=False)
    settings = SegTrainSettings(image_size=SIZE, epochs=2, seed=3, **FAST)
    a, b = (train_segmenter(X, Y, settings=settings).model.state_dict() for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = train_segmenter(X, Y, settings=SegTrainSettings(image_size=SIZE, epochs=2, seed=4, **FAST)).model.state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_an_interrupted_training_resumes_to_the_uninterrupted_result(train_set: tuple, tmp_path: Path) -> None:
    spec = SegSpec(size=SIZE)
    X, Y, _ = load_seg_pairs(train_set[0][:16], train_set[1][:16], spec=spec, progress=False)
    settings = SegTrainSettings(image_size=SIZE, epochs=4, seed=5, **{**FAST, "patience": 3})
    whole = train_segmenter(X, Y, settings=settings, out_dir=tmp_path / "whole")
    epochs_run: list[int] = []
    stopped = train_segmenter(X, Y, settings=settings, out_dir=tmp_path / "cut",
                              callback=lambda row: epochs_run.append(row["epoch"]) or row["epoch"] == 2)
    assert epochs_run == [1, 2] and len(stopped.history) == 2
    resumed = train_segmenter(X, Y, settings=settings, out_dir=tmp_path / "cut", resume=True,
                              callback=lambda row: epochs_run.append(row["epoch"]))
    assert epochs_run == [1, 2, 3, 4]  # only the epochs the interruption left
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    cols = ["epoch", "train_loss", "val_loss", "val_dice"]
    assert whole.history[cols].equals(resumed.history[cols]) and whole.best_epoch == resumed.best_epoch
    again = train_segmenter(X, Y, settings=settings, out_dir=tmp_path / "cut", resume=True,
                            callback=lambda row: epochs_run.append(row["epoch"]))
    assert epochs_run == [1, 2, 3, 4]  # a finished training is not repeated
    assert all(torch.equal(a[k], again.model.state_dict()[k]) for k in a)
    other = SegTrainSettings(image_size=SIZE, epochs=4, seed=6, **{**FAST, "patience": 3})
    with pytest.raises(InputError, match="other training settings"):
        train_segmenter(X, Y, settings=other, out_dir=tmp_path / "cut", resume=True)


# --------------------------------------------------------------------------- networks and checkpoints
@pytest.mark.parametrize("arch", list(SEG_ARCHS))
@pytest.mark.parametrize("dims", [2, 3])
def test_networks_shapes_config_and_activation_order(arch: str, dims: int) -> None:
    features = (8, 16) if arch == "segresnet" else (8, 16, 32)
    net = build_seg_network(arch, spatial_dims=dims, in_channels=2, features=features).eval()
    x = torch.randn((1, 2) + (16,) * dims)
    assert net(x).shape == (1, 2) + (16,) * dims
    names = net.activation_layers()
    assert names and all(isinstance(net.get_submodule(n), ACTIVATION_TYPES) for n in names)
    seen: list[str] = []
    hooks = [net.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: seen.append(n)) for n in names]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    assert list(dict.fromkeys(seen)) == names
    again = build_seg_network(**net.config)
    assert again.config == net.config


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    net = build_seg_network("attention_unet", features=(8, 16, 32), in_channels=2).eval()
    spec = SegSpec(size=32, box_prompt=True)
    path = save_segmenter(net, spec, SegTrainSettings(image_size=32, box_prompt=True), tmp_path / "seg.pt", fold="f0")
    model, spec2, meta = load_segmenter(path)
    x = torch.randn(2, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), model(x))
    assert spec2 == spec and meta["extra"]["fold"] == "f0" and meta["settings"]["box_prompt"] is True
    with pytest.raises(InputError, match="holds a 2D segmentation network"):
        load_segmenter(path, spatial_dims=3)


def test_load_segmenter_refuses_other_checkpoints(tmp_path: Path) -> None:
    torch.save({"format": "her2dlr-deep-checkpoint", "model_state": {}}, tmp_path / "deep.pt")
    with pytest.raises(InputError, match="classification network"):
        load_segmenter(tmp_path / "deep.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a her2dlr segmentation checkpoint"):
        load_segmenter(tmp_path / "other.pt")


# --------------------------------------------------------------------------- inputs, targets, paste-back
def test_box_prompt_crop_and_paste_back_round_trip() -> None:
    image = np.random.default_rng(0).integers(0, 255, size=(64, 80)).astype(np.uint8)
    mask = np.zeros((64, 80), dtype=np.uint8)
    mask[20:36, 28:44] = 1  # a 16 x 16 lesion; user box (28, 20, 16, 16)
    spec = SegSpec(size=24, box_prompt=True, box_margin=0.25)
    x, crop = prepare_seg_input(image, box=(28, 20, 16, 16), spec=spec)
    assert crop == (24, 16, 48, 40)  # 16 px box + 4 px (25 %) on each side
    assert x.shape == (2, 24, 24) and abs(float(x[0].mean())) < 1e-5 and abs(float(x[0].std()) - 1) < 1e-3
    assert x[1].sum() == 16 * 16 and x[1, 4:20, 4:20].all()  # the box's place on the 24 px grid
    target = prepare_seg_target(mask, crop, spec)
    assert target.dtype == np.uint8 and target.sum() == 16 * 16 and target[4:20, 4:20].all()
    back = paste_back(target.astype(np.float32), crop, image.shape)
    assert back.shape == (64, 80) and back[:16].max() == 0 and back[:, 48:].max() == 0
    assert np.array_equal(back >= 0.5, mask > 0)


def test_crop_beyond_the_border_is_padded_and_pasted_back_inside() -> None:
    image = np.full((40, 40), 100, dtype=np.uint8)
    spec = SegSpec(size=16, box_prompt=True, box_margin=0.5)
    x, crop = prepare_seg_input(image, box=(0, 0, 8, 8), spec=spec)
    assert crop == (-4, -4, 12, 12) and x[0, 0, 0] < x[0, 8, 8]  # padding is 0, below the image
    back = paste_back(np.ones((16, 16), np.float32), crop, (40, 40))
    assert back[:12, :12].min() == 1.0 and back.sum() == 12 * 12


def test_unprompted_input_is_the_whole_image_rgb_as_grey() -> None:
    rgb = np.zeros((48, 64, 3), dtype=np.uint8)
    rgb[10:20, 10:30] = (255, 0, 0)
    x, crop = prepare_seg_input(rgb, spec=SegSpec(size=32))
    assert x.shape == (1, 32, 32) and crop == (0, 0, 64, 48)


# --------------------------------------------------------------------------- post-processing
def test_postprocess_keeps_the_largest_component_and_fills_holes() -> None:
    prob = np.zeros((20, 20), dtype=np.float32)
    prob[2:10, 2:10] = 0.9
    prob[5, 5] = 0.1  # a hole
    prob[15:17, 15:17] = 0.8  # a small second component
    mask, conf = postprocess(prob)
    assert mask[2:10, 2:10].all() and mask.sum() == 64 and not mask[15:17, 15:17].any()
    assert conf == pytest.approx((63 * 0.9 + 0.1) / 64, rel=1e-5)
    mask_all, _ = postprocess(prob, PostSettings(keep="all", fill_holes=False))
    assert mask_all.sum() == 63 + 4 and not mask_all[5, 5]


def test_postprocess_min_size_and_empty_results() -> None:
    prob = np.zeros((10, 10), dtype=np.float32)
    prob[0:2, 0:2] = 0.9  # 4 px = 4 % of the image
    assert postprocess(prob, PostSettings(min_size=0.05))[0].sum() == 0
    assert postprocess(prob, PostSettings(min_size=4))[0].sum() == 4
    mask, conf = postprocess(prob, PostSettings(min_size=5))
    assert not mask.any() and conf == 0.0
    mask, conf = postprocess(np.full((6, 6, 6), 0.2, dtype=np.float32))
    assert mask.shape == (6, 6, 6) and not mask.any() and conf == 0.0
    with pytest.raises(InputError, match="'keep' parameter of PostSettings.*Did you mean 'largest'"):
        PostSettings(keep="largest1")


def test_postprocess_3d_largest_component() -> None:
    prob = np.zeros((8, 8, 8), dtype=np.float32)
    prob[1:4, 1:4, 1:4] = 0.7
    prob[6:8, 6:8, 6:8] = 0.9
    mask, conf = postprocess(prob)
    assert mask.sum() == 27 and conf == pytest.approx(0.7)


# --------------------------------------------------------------------------- bad inputs
def test_mask_of_another_size_names_the_file(tmp_path: Path) -> None:
    img = write_png(tmp_path / "case1.png", np.zeros((40, 50), dtype=np.uint8))
    msk = write_png(tmp_path / "case1_mask.png", np.zeros((40, 40), dtype=np.uint8))
    with pytest.raises(InputError, match=r"mask .*case1_mask\.png has size \(40, 40\) but image .*case1\.png"):
        load_seg_pairs([img], [msk], spec=SegSpec(size=16), progress=False)


def test_box_outside_the_image_is_refused() -> None:
    images, masks, _ = lesions(1, seed=1)
    with pytest.raises(InputError, match=r"image #0: Bounding box \[100, 100, 5, 5\].*outside the 56x56 image"):
        load_seg_pairs(images, masks, [(100, 100, 5, 5)], spec=SegSpec(size=16, box_prompt=True), progress=False)


def test_network_and_images_of_other_dimensions_are_refused() -> None:
    net3d = build_seg_network(spatial_dims=3, features=(8, 16))
    images, _, boxes = lesions(1, seed=1)
    with pytest.raises(InputError, match="3D segmentation network was given the 2D image image #0"):
        segment_images(net3d, images, spec=SegSpec(size=16, spatial_dims=3), progress=False)
    with pytest.raises(InputError, match="network is 3D"):
        segment_images(net3d, images, spec=SegSpec(size=16), progress=False)
    net2d = build_seg_network(features=(8, 16))
    with pytest.raises(InputError, match="2D segmentation network was given the 3D volume"):
        segment_images(net2d, [np.zeros((10, 20, 20))], spec=SegSpec(size=16), progress=False)
    prompted = build_seg_network(features=(8, 16), in_channels=2)
    with pytest.raises(InputError, match="box-prompted: give one box"):
        segment_images(prompted, images, spec=SegSpec(size=16, box_prompt=True), progress=False)
    assert segment_images(prompted, images, boxes=boxes, spec=SegSpec(size=16, box_prompt=True),
                          progress=False)[0].mask.shape == (56, 56)


def test_unknown_arch_suggests_the_nearest() -> None:
    with pytest.raises(InputError, match="Unknown segmentation network 'attention_unte'.*Did you mean 'attention_unet'"):
        build_seg_network("attention_unte")
    with pytest.raises(InputError, match="'arch' parameter of SegTrainSettings.*Did you mean 'segresnet'"):
        SegTrainSettings(arch="segresnt")
    with pytest.raises(InputError, match="SegResNet doubles its width"):
        build_seg_network("segresnet", features=(8, 24))


def test_settings_round_trip() -> None:
    s = SegTrainSettings(features=[8, 16], augment={"speckle_prob": 0.0})
    assert s.features == (8, 16) and s.augment == SegAugmentSettings(speckle_prob=0.0)
    assert SegTrainSettings.from_dict(s.to_dict()) == s
    with pytest.raises(InputError, match="Did you mean 'epochs'"):
        SegTrainSettings.from_dict({"epoch": 3})


# --------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_real_mri_volume_forward_and_segment(shared_data: Path) -> None:
    folder = shared_data / "mri-breast1"
    image, label = folder / "breast1_image.nrrd", folder / "breast1_label.nrrd"
    spec = SegSpec(size=32, spatial_dims=3)
    X, Y, crops = load_seg_pairs([image], [label], spec=spec, progress=False)
    assert X.shape == (1, 1, 32, 32, 32) and Y.shape == (1, 32, 32, 32) and Y.sum() > 0
    assert crops == [(0, 0, 0, 45, 120, 21)]
    prompted = SegSpec(size=16, spatial_dims=3, box_prompt=True)
    Xp, Yp, _ = load_seg_pairs([image], [label], spec=prompted, progress=False)  # box from the label
    assert Xp.shape == (1, 2, 16, 16, 16) and Xp[0, 1].max() == 1.0 and Yp.sum() > 0
    torch.manual_seed(0)
    net = build_seg_network(spatial_dims=3, features=(8, 16, 32))
    with torch.no_grad():
        assert net(torch.as_tensor(X)).shape == (1, 2, 32, 32, 32)
    preds = segment_images(net, [image], spec=spec, post=PostSettings(threshold=0.01), device="cpu", progress=False)
    assert preds[0].mask.shape == preds[0].prob.shape == (21, 120, 45)
