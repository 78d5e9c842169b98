"""CAM / Grad-CAM / Grad-CAM++ on a trained tiny CNN, heat scoring and the explain figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deep_helpers import TinyCNN, synthetic_lesions, train_tiny
from her2dlr.deep.explain import (
    CamExplainer,
    box_region,
    check_gap_head,
    find_fc_layer,
    heat_in_mask,
    paste_heat,
)
from her2dlr.errors import InputError


@pytest.fixture(scope="module")
def trained() -> tuple[TinyCNN, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from her2dlr.deep.data import torch_threads

    with torch.random.fork_rng(), torch_threads(1):  # 1 thread: fast on a busy 2-core machine
        X, y, _, _ = synthetic_lesions(96, seed=0)
        model = train_tiny(X, y, epochs=25)
    Xt, yt, lesions, texts = synthetic_lesions(40, seed=1)
    return model, Xt, yt, lesions, texts


def test_network_learns_the_lesion_texture(trained):
    from sklearn.metrics import roc_auc_score

    model, X, y, _, _ = trained
    with torch.no_grad():
        prob = torch.softmax(model(torch.as_tensor(X)), 1)[:, 1].numpy()
    assert roc_auc_score(y, prob) > 0.95


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "cam"])
def test_heat_on_the_lesion_not_on_the_text(trained, method):
    model, X, y, lesions, texts = trained
    heat = CamExplainer(model, method=method)(X)
    assert heat.maps.shape == (len(X), X.shape[2], X.shape[3])
    assert (heat.maps >= 0).all()
    rows = [i for i in range(len(X)) if y[i] == 1 and texts[i].any()]
    assert len(rows) >= 5
    per_pixel_lesion = np.mean([heat.maps[i][lesions[i]].mean() for i in rows])
    per_pixel_text = np.mean([heat.maps[i][texts[i]].mean() for i in rows])
    assert per_pixel_lesion > 3 * per_pixel_text
    scores = [heat_in_mask(heat.maps[i], lesions[i]) for i in rows]
    assert np.mean([s.lift for s in scores]) > 2.0  # far more heat on the lesion than its area share
    assert np.mean([heat_in_mask(heat.maps[i], texts[i]).in_lesion for i in rows]) < 0.15


def test_cam_equals_gradcam_up_to_scale_for_gap_linear(trained):
    model, X, _, _, _ = trained
    cam = CamExplainer(model, method="cam")(X, class_idx=1)
    grad = CamExplainer(model, method="gradcam")(X, class_idx=1)
    assert (cam.explained_class == 1).all()
    corr = [np.corrcoef(cam.maps[i].ravel(), grad.maps[i].ravel())[0, 1]
            for i in range(len(X)) if grad.maps[i].max() > 0 and grad.maps[i].std() > 0]
    assert len(corr) >= 10
    assert min(corr) > 0.99
    # the scale is the number of feature-map positions (the GAP's 1 / (H * W))
    ratio = cam.maps.sum() / grad.maps.sum()
    assert ratio == pytest.approx(X.shape[2] * X.shape[3], rel=1e-3)


def test_predicted_class_by_default_and_probabilities(trained):
    model, X, _, _, _ = trained
    heat = CamExplainer(model, method="gradcam", batch_size=7)(X)
    with torch.no_grad():
        logits = model(torch.as_tensor(X))
    np.testing.assert_array_equal(heat.explained_class, logits.argmax(1).numpy())
    np.testing.assert_allclose(heat.prob, torch.softmax(logits, 1)[:, 1].numpy(), rtol=1e-5)
    norm = heat.normalised()
    assert norm.max() <= 1.0 + 1e-6
    assert all(m.max() in (0.0, pytest.approx(1.0)) for m in norm)


def test_flips_give_the_predicted_probability_and_class_and_keep_the_unflipped_map(trained):
    """A network trained with tta_flips: the explained probability and default class are the flip-averaged
    prediction (predict_proba, an independent path), the maps those of the unflipped images for that class."""
    from her2dlr.deep.train import predict_proba

    model, X, _, _, _ = trained
    X = X[:12]
    heat = CamExplainer(model, method="gradcam", batch_size=5, flips=True)(X)
    flipped = predict_proba(model, X, flips=True)
    assert np.abs(flipped[:, 1] - predict_proba(model, X)[:, 1]).max() > 1e-6  # the check below can fail
    np.testing.assert_allclose(heat.prob, flipped[:, 1], atol=1e-6)
    np.testing.assert_array_equal(heat.explained_class, flipped.argmax(1))
    plain = CamExplainer(model, method="gradcam", batch_size=5)(X, class_idx=heat.explained_class)
    np.testing.assert_allclose(heat.maps, plain.maps, rtol=1e-5, atol=1e-8)


def test_explainer_leaves_the_callers_network_alone(trained):
    model, X, _, _, _ = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    CamExplainer(model, method="gradcam")(X[:4])
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_method_and_layer_are_named():
    with pytest.raises(InputError, match="gradcam"):
        CamExplainer(TinyCNN(), method="gradcm")
    with pytest.raises(InputError, match="features.relu3"):
        CamExplainer(TinyCNN(), target_layer="features.relu33")


class _NotGap(TinyCNN):
    """Max pooling instead of average pooling: CAM does not apply."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).amax(dim=(2, 3))


def test_cam_refuses_a_head_that_is_not_gap_linear():
    x = torch.rand(3, 1, 16, 16)
    assert find_fc_layer(TinyCNN()) == "fc"
    assert check_gap_head(TinyCNN().eval(), x) == "fc"
    with pytest.raises(InputError, match="gradcam"):
        CamExplainer(_NotGap(), method="cam")(x)
    heat = CamExplainer(_NotGap(), method="gradcam")(x)  # Grad-CAM needs no particular head
    assert heat.maps.shape == (3, 16, 16)

    class NoLinear(nn.Module):
        target_layer = "conv"

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).mean(dim=(2, 3))

    with pytest.raises(InputError, match="linear"):
        find_fc_layer(NoLinear(), 2)


def test_paste_heat_back_onto_the_image():
    heat = np.zeros((8, 8), np.float32)
    heat[:, 4:] = 1.0
    full = paste_heat(heat, (10, 20, 26, 36), (50, 40))  # a 16 x 16 box at x=10, y=20
    assert full.shape == (50, 40)
    assert full[:20].sum() == 0 and full[:, :10].sum() == 0 and full[36:].sum() == 0
    assert full[28, 24] == pytest.approx(1.0) and full[28, 12] == pytest.approx(0.0)
    # a box padded past the border keeps its geometry: the part outside is dropped
    edge = paste_heat(np.ones((4, 4)), (-4, -4, 4, 4), (10, 10))
    assert edge[:4, :4].sum() == pytest.approx(16.0) and edge[4:].sum() == 0
    assert box_region((-4, -4, 4, 4), (10, 10)).sum() == 16
    with pytest.raises(InputError, match="no area"):
        paste_heat(heat, (50, 50, 60, 60), (40, 40))


def test_heat_in_mask_fractions():
    heat = np.zeros((10, 10))
    heat[2:4, 2:4] = 2.0
    heat[8, 8] = 8.0  # e.g. a caliper mark outside the lesion
    lesion = np.zeros((10, 10), bool)
    lesion[:5, :5] = True
    s = heat_in_mask(heat, lesion)
    assert s.in_lesion == pytest.approx(0.5)
    assert s.lesion_area == pytest.approx(0.25)
    assert s.lift == pytest.approx(2.0)
    region = np.zeros((10, 10), bool)
    region[:6, :6] = True
    assert heat_in_mask(heat, lesion, region).in_lesion == pytest.approx(1.0)
    empty = heat_in_mask(np.zeros((10, 10)), lesion)
    assert np.isnan(empty.in_lesion) and empty.total == 0
    with pytest.raises(InputError, match="shape"):
        heat_in_mask(heat, lesion[:5])


def test_figures_overlay_montage_embedding(tmp_path, trained):
    import pandas as pd
    from PIL import Image

    from her2dlr.deep.figures import (
        MontageCell,
        draw_box,
        draw_outline,
        overlay_rgb,
        save_embedding,
        save_montage,
        save_png,
    )

    model, X, _, lesions, _ = trained
    heat = CamExplainer(model, method="gradcam")(X[:4]).normalised()
    rgb = overlay_rgb(X[0, 0], heat[0])
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
    rgb = draw_outline(draw_box(rgb, (2, 2, 30, 30)), lesions[0])
    assert (rgb[2, 5] == (255, 255, 0)).all()
    png = save_png(rgb, tmp_path / "cases" / "a.png")
    assert Image.open(png).size == (32, 32)
    cells = [MontageCell(g, rgb, f"{g}\nlabel 1, p=0.90") for g in ("TP", "FP", "FN", "TN") for _ in range(2)]
    montage = save_montage(cells, tmp_path / "montage.png", suptitle="Grad-CAM")
    assert montage.stat().st_size > 1000
    with pytest.raises(InputError, match="groups"):
        save_montage([MontageCell("XX", rgb, "")], tmp_path / "bad.png")
    feats = pd.DataFrame(np.random.default_rng(0).normal(size=(30, 6)) + np.repeat([[0], [3]], 15, axis=0),
                         index=[f"c{i}" for i in range(30)])
    labels = pd.Series(np.repeat([0, 1], 15), index=feats.index)
    for method in ("pca", "tsne"):
        png, csv = save_embedding(feats, labels, tmp_path / f"embedding_{method}.png", method=method)
        coords = pd.read_csv(csv)
        assert png.is_file() and len(coords) == 30 and set(coords.columns) == {"case_id", "x", "y", "label"}
