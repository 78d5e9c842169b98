"""Volumes: 3D networks, 3D ROI crops, a 3D network that learns, 3D features and heat maps, the real MRI case."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from her2dlr.deep.data import load_rois
from her2dlr.deep.explain import CamExplainer, box_region, heat_in_mask, paste_heat
from her2dlr.deep.features import embed_arrays
from her2dlr.deep.networks import ARCHS, build_network
from her2dlr.deep.train import (
    TrainSettings,
    make_checkpoint,
    model_from_checkpoint,
    predict_proba,
    save_checkpoint,
    train_network,
)
from her2dlr.deep.transforms import Augment, AugmentSettings
from her2dlr.errors import InputError
from her2dlr.imaging.roi import (
    RoiSpec,
    crop_roi,
    load_roi,
    prepare_roi,
    roi_box,
    zscore,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"growth_rate": 4, "block_layers": (1, 1, 2)}
SMALL_3D = {  # arch -> (cube side, options); densenet121 pools five times and needs 32
    "densenet3block": (16, {}),
    "densenet121": (32, {}),
    "resnet50": (16, {}),
    "resnet101": (16, {}),
    "vgg19": (16, {}),
    "vit": (16, {"patch_size": 8, "hidden_size": 32, "mlp_dim": 64, "num_layers": 1, "num_heads": 4}),
    "mm_resnet": (16, {"widths": (4, 8, 8, 16)}),
}


def texture_volume(label: int, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """A sphere in a noisy cube: smooth (label 0) or speckled (label 1), same mean brightness."""
    zz, yy, xx = np.mgrid[:size, :size, :size]
    vol = rng.normal(0.5, 0.15, (size,) * 3)
    centre = size / 2 + rng.uniform(-1.5, 1.5, 3)
    r = rng.uniform(size * 0.25, size * 0.33)
    inside = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= r * r
    lesion = rng.normal(0.25, 0.03 if label == 0 else 0.25, vol.shape)
    vol[inside] = lesion[inside]
    return vol


def texture_volumes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Z-scored volumes ``(n, 1, 16, 16, 16)`` and balanced labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    vols = np.stack([zscore(texture_volume(int(lab), rng))[None] for lab in labels]).astype(np.float32)
    return vols, labels


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_builds_in_3d_with_logits_embed_and_target_layer(arch):
    if arch == "vit":
        pytest.importorskip("einops")
    size, options = SMALL_3D[arch]
    torch.manual_seed(0)
    net = build_network(arch, image_size=size, spatial_dims=3, **options).eval()
    x = torch.randn(1, 1, size, size, size)
    maps = {}
    handle = net.get_submodule(net.target_layer).register_forward_hook(lambda m, i, o: maps.setdefault("map", o))
    with torch.no_grad():
        logits = net(x)
        emb = net.embed(x)
    handle.remove()
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()
    assert emb.shape == (1, net.embed_dim)
    channels = options["widths"][-1] if arch == "mm_resnet" else net.embed_dim  # mm_resnet: its last stage
    assert maps["map"].ndim == 5 and maps["map"].shape[:2] == (1, channels)  # (N, C, d, h, w) for Grad-CAM
    if arch not in ("vgg19", "mm_resnet"):  # vgg19 max-pools once more; mm_resnet fuses every stage
        torch.testing.assert_close(maps["map"].mean(dim=(2, 3, 4)), emb, rtol=1e-4, atol=1e-5)
    assert net.config["spatial_dims"] == 3


def test_3d_checkpoint_round_trip_and_dimension_mismatch(tmp_path):
    torch.manual_seed(0)
    net = build_network("densenet3block", image_size=16, spatial_dims=3, **TINY)
    settings = TrainSettings(image_size=16, spatial_dims=3, arch_options=TINY)
    path = save_checkpoint(make_checkpoint(net, settings, epoch=1, kind="best"), tmp_path / "best.pt")
    again = model_from_checkpoint(path, spatial_dims=3)
    x = torch.randn(2, 1, 16, 16, 16)
    torch.testing.assert_close(again(x), net.eval()(x))
    with pytest.raises(InputError, match="spatial_dims=3, not 2"):
        model_from_checkpoint(path, spatial_dims=2)
    with pytest.raises(InputError, match="spatial dimensions 3"):
        build_network("densenet3block", image_size=16, weights=path, **TINY)  # a 2D network


def test_3d_roi_crop_matches_a_hand_worked_case():
    vol = np.arange(6 * 8 * 10, dtype=np.float32).reshape(6, 8, 10) + 1  # (z, y, x), no zero inside
    mask = np.zeros(vol.shape, np.uint8)
    mask[2:4, 3:6, 4:9] = 1  # z 2..3, y 3..5, x 4..8
    # bounding box x 4..8, y 3..5, z 2..3, widened by 1 voxel: x 3..9, y 2..6, z 1..4 (half-open upper corner)
    assert roi_box(vol.shape, mask=mask, margin=1, min_size=1, spatial_dims=3) == (3, 2, 1, 10, 7, 5)
    assert roi_box(vol.shape, bbox=(4, 3, 2, 5, 3, 2), margin=1, min_size=1, spatial_dims=3) == (3, 2, 1, 10, 7, 5)
    crop = crop_roi(vol, mask=mask, spec=RoiSpec(margin=1, min_size=1, spatial_dims=3))
    np.testing.assert_array_equal(crop, vol[1:5, 2:7, 3:10])
    padded = crop_roi(vol, mask=mask, spec=RoiSpec(margin=3, min_size=1, spatial_dims=3))
    assert padded.shape == (8, 9, 11)  # z -1..6, y 0..8, x 1..11: padded below z 0 and beyond x 9
    assert (padded[0] == 0).all() and (padded[:, :, -1] == 0).all()
    np.testing.assert_array_equal(padded[1:7, :8, :9], vol[:, :, 1:])  # the lesion keeps its place
    cube = crop_roi(vol, mask=mask, spec=RoiSpec(margin=0, min_size=1, keep_aspect=True, spatial_dims=3))
    assert cube.shape == (5, 5, 5)  # the longest side (x: 5) with context on z and y
    out = prepare_roi(vol, mask=mask, spec=RoiSpec(size=8, margin=1, min_size=1, spatial_dims=3))
    assert out.shape == (1, 8, 8, 8) and out.dtype == np.float32
    assert out.mean() == pytest.approx(0, abs=1e-4) and out.std() == pytest.approx(1, abs=1e-3)
    assert prepare_roi(vol, mask=mask, spec=RoiSpec(size=8, channels=3, spatial_dims=3)).shape == (3, 8, 8, 8)
    spec = RoiSpec(size=8, margin=1, min_size=1, spatial_dims=3)
    by_box = load_rois([vol, vol], [(4, 3, 2, 5, 3, 2), mask], spec=spec)  # a 6-number box or the mask
    assert by_box.shape == (2, 1, 8, 8, 8)
    np.testing.assert_array_equal(by_box[0], by_box[1])
    with pytest.raises(InputError, match=r"6 numbers \(x, y, z, w, h, d\)"):
        roi_box(vol.shape, bbox=(4, 3, 5, 3), spatial_dims=3)


def test_tiny_3d_network_learns_two_lesion_textures():
    x, y = texture_volumes(64, seed=10)
    x_test, y_test = texture_volumes(40, seed=100)
    settings = TrainSettings(spatial_dims=3, image_size=16, arch_options=TINY, epochs=8, batch_size=16, lr=1e-2,
                             patience=0, min_class_cases=5, progress=False, num_threads=1)
    res = train_network(x, y, settings=settings)
    assert res.model.config["spatial_dims"] == 3 and len(res.val_index) > 0
    auc = roc_auc_score(y_test, predict_proba(res.model, x_test)[:, 1])
    assert auc > 0.85, res.history


def test_3d_augmentation_keeps_the_cube_and_flips_x_and_y():
    roi = np.random.default_rng(0).normal(size=(1, 16, 16, 16)).astype(np.float32)
    aug = Augment(16, AugmentSettings(crop_prob=1.0, affine_prob=1.0, vflip_prob=0.5), seed=1, spatial_dims=3)
    first = [aug(roi) for _ in range(3)]
    assert all(a.shape == (1, 16, 16, 16) and a.dtype == torch.float32 for a in first)
    aug.set_random_state(1)
    assert all(torch.equal(a, b) for a, b in zip(first, [aug(roi) for _ in range(3)]))
    flips = Augment(16, AugmentSettings(crop_prob=0, affine_prob=0, intensity_prob=0, hflip_prob=1.0, vflip_prob=1.0),
                    spatial_dims=3)
    torch.testing.assert_close(flips(roi), torch.as_tensor(roi[:, :, ::-1, ::-1].copy()))


def test_spatial_dims_is_checked_everywhere():
    from her2dlr.config import study_from_dict
    from her2dlr.deep.settings import DeepSettings
    from her2dlr.deep.stage import training_settings
    from her2dlr.errors import StudyFileError

    with pytest.raises(InputError, match="'spatial_dims' parameter of TrainSettings must be 2"):
        TrainSettings(spatial_dims=4)
    with pytest.raises(InputError, match="'spatial_dims' parameter of build_network"):
        build_network("vgg19", spatial_dims=1)
    with pytest.raises(InputError, match="'spatial_dims' parameter of RoiSpec"):
        RoiSpec(spatial_dims=3.5)
    with pytest.raises(StudyFileError, match=r"deep\.spatial_dims = 4: must be one of 2 or 3"):
        study_from_dict({"name": "s", "cohort": {}, "label": {}, "deep": {"spatial_dims": 4}})
    train, roi = training_settings(DeepSettings(spatial_dims=3))
    assert (train.spatial_dims, roi.spatial_dims, train.image_size, roi.size) == (3, 3, 32, 32)
    with pytest.raises(InputError, match=r"shape \(n, 1, 16, 16, 16\)"):
        train_network(np.zeros((4, 1, 16, 16), np.float32), np.arange(4) % 2,
                      settings=TrainSettings(spatial_dims=3, image_size=16, arch_options=TINY, progress=False))


def test_3d_features_and_grad_cam():
    torch.manual_seed(0)
    net = build_network("densenet3block", image_size=16, spatial_dims=3, **TINY).eval()
    x, _ = texture_volumes(3, seed=0)
    feats, prob = embed_arrays(net, x)
    assert feats.shape == (3, net.embed_dim) and prob.shape == (3,)
    heat = CamExplainer(net, method="gradcam")(x)
    assert heat.maps.shape == (3, 16, 16, 16) and (heat.maps >= 0).all()
    assert heat.normalised().max() <= 1.0
    box = (2, 3, 1, 10, 11, 9)  # an 8-voxel cube in a (12, 20, 20) volume, (x0, y0, z0, x1, y1, z1)
    full = paste_heat(np.ones((16, 16, 16)), box, (12, 20, 20))
    assert full.shape == (12, 20, 20) and full.sum() == pytest.approx(8**3)
    np.testing.assert_array_equal(full > 0, box_region(box, (12, 20, 20)))
    lesion = np.zeros((12, 20, 20), bool)
    lesion[1:5, 3:11, 2:10] = True  # half of the box
    assert heat_in_mask(full, lesion).in_lesion == pytest.approx(0.5)


@pytest.mark.realdata
def test_real_mri_volume_roi_and_3d_forward_pass(shared_data):
    folder = shared_data / "mri-breast1"
    image, label = folder / "breast1_image.nrrd", folder / "breast1_label.nrrd"
    if not image.is_file() or not label.is_file():
        pytest.skip(f"{folder} holds no breast1_image.nrrd / breast1_label.nrrd")
    import SimpleITK as sitk

    vol = sitk.GetArrayFromImage(sitk.ReadImage(str(image)))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(label)))
    assert vol.shape == mask.shape and vol.ndim == 3  # (z, y, x)
    zs, ys, xs = np.nonzero(mask)
    box = roi_box(vol.shape, mask=mask, margin=4, min_size=1, spatial_dims=3)
    assert box == (xs.min() - 4, ys.min() - 4, zs.min() - 4, xs.max() + 5, ys.max() + 5, zs.max() + 5)
    spec = RoiSpec(size=32, margin=4, spatial_dims=3)
    roi = load_roi(image, mask=label, spec=spec)
    assert roi.shape == (1, 32, 32, 32) and np.isfinite(roi).all()
    np.testing.assert_allclose(load_rois([image], [label], spec=spec)[0], roi)
    with pytest.raises(InputError, match="3D volume"):
        load_roi(image, mask=label, spec=RoiSpec(size=32))  # a 2D spec refuses a volume
    torch.manual_seed(0)
    net = build_network("densenet3block", image_size=32, spatial_dims=3, **TINY).eval()
    with torch.no_grad():
        logits = net(torch.as_tensor(roi[None]))
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()
    feats, _ = embed_arrays(net, roi[None])
    assert feats.shape == (1, net.embed_dim)


def test_study_heat_maps_of_volumes_are_3d_with_middle_slice_pictures(tmp_path):
    import json

    import pandas as pd
    import SimpleITK as sitk

    from her2dlr.deep.checkpoints import find_fold_checkpoints
    from her2dlr.deep.explain_study import explain_cases

    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        vol = np.zeros((12, 24, 24), np.float32)
        vol[3:9, 6:18, 8:20] = texture_volume(i % 2, rng, size=16)[5:11, 2:14, 2:14]
        mask = np.zeros(vol.shape, np.uint8)
        mask[4:8, 8:16, 10:18] = 1
        image, lesion = tmp_path / f"v{i}.nii.gz", tmp_path / f"v{i}_mask.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(vol), str(image))
        sitk.WriteImage(sitk.GetImageFromArray(mask), str(lesion))
        rows.append({"case_id": f"v{i}", "patient_id": f"p{i}", "image": str(image), "mask": str(lesion),
                     "bbox": None, "label": i % 2, "modality": "MR", "fold_r0": i // 3})
    manifest = pd.DataFrame(rows)
    spec = RoiSpec(size=16, margin=2, spatial_dims=3)
    settings = TrainSettings(image_size=16, spatial_dims=3, arch_options=TINY)
    for k in (0, 1):
        torch.manual_seed(k)
        net = build_network("densenet3block", image_size=16, spatial_dims=3, **TINY)
        extra = {"roi": spec.to_dict(), "fold": f"r0f{k}", "threshold": {"value": 0.5}}
        save_checkpoint(make_checkpoint(net, settings, epoch=1, kind="best", extra=extra),
                        tmp_path / "deep" / f"r0f{k}" / "best.pt")
    found = find_fold_checkpoints(tmp_path / "deep", manifest=manifest)
    res = explain_cases(found, manifest, tmp_path / "explain", n_per_group=1, embedding=None, overlays="all")
    scores = pd.read_csv(tmp_path / "explain" / "heat_scores.csv")
    assert len(scores) == 6 and scores["lesion_area"].between(0, 1).all()
    assert all(len(json.loads(b)) == 6 for b in scores["box"])  # (x0, y0, z0, x1, y1, z1)
    assert np.load(tmp_path / "explain" / "heat_maps.npz")["maps"].shape == (6, 16, 16, 16)
    assert len(list((tmp_path / "explain" / "cases").glob("*.png"))) == 6 and res.montage.is_file()
