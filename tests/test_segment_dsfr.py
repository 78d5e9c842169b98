"""DSFR features (seed 003) from tiny MONAI U-Nets: lesion channel means, the channel clustering, heat maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from monai.networks.nets import UNet
from PIL import Image
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from her2dlr.errors import InputError
from her2dlr.imaging.figures import GAP, PANEL, TITLE_HEIGHT
from her2dlr.segment.dsfr import (
    DSFRSelector,
    activation_layers,
    dsfr_features,
    dsfr_heatmaps,
    lesion_channel_means,
    resolve_layer,
)


def _unet(spatial_dims: int = 2, **kwargs) -> UNet:
    torch.manual_seed(0)
    channels, strides = ((4, 8, 16), (2, 2)) if spatial_dims == 2 else ((4, 8), (2,))
    return UNet(spatial_dims=spatial_dims, in_channels=1, out_channels=2, channels=channels, strides=strides, **kwargs)


def _disks(n: int, size: int = 32, ndim: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Speckle with a bright disk (ball) of varying radius: inputs (n, 1, *spatial), masks (n, *spatial)."""
    rng = np.random.default_rng(seed)
    grid = np.indices((size,) * ndim) - size / 2 + 0.5
    masks = np.stack([(grid ** 2).sum(axis=0) <= (size / 6 + k % 4) ** 2 for k in range(n)])
    x = rng.normal(0.0, 0.3, size=(n, 1) + (size,) * ndim) + 2.0 * masks[:, None]
    return x.astype(np.float32), masks


def test_activation_layers_forward_order_and_resolve():
    net = _unet()
    names = activation_layers(net, torch.zeros(1, 1, 32, 32))
    assert names == ["model.0.adn.A", "model.1.submodule.0.adn.A", "model.1.submodule.1.submodule.adn.A",
                     "model.1.submodule.2.adn.A"]
    assert resolve_layer(net, 1) == names[1] and resolve_layer(net, -1) == names[-1]
    with pytest.raises(InputError, match="has 4"):
        resolve_layer(net, 9)
    with pytest.raises(InputError, match="Did you mean"):
        resolve_layer(net, "model.0.adn.B")

    class Listed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.ReLU(), torch.nn.ReLU()

        def activation_layers(self):
            return ["b", "a"]

        def forward(self, x):
            return self.b(self.a(x))

    assert activation_layers(Listed()) == ["b", "a"]


def test_lesion_channel_means_shape_columns_and_lesion_contrast():
    net = _unet()
    x, masks = _disks(6)
    was = net.state_dict()["model.0.conv.weight"].clone()
    means = lesion_channel_means(net, x, masks, layer=1, case_ids=[f"c{i}" for i in range(6)], batch_size=4)
    assert means.shape == (6, 8) and means.index.name == "case_id" and list(means.index) == [f"c{i}" for i in range(6)]
    assert list(means.columns) == [f"dsfr_model.1.submodule.0.adn.A_{c}" for c in range(8)]
    assert np.isfinite(means.to_numpy()).all()
    assert net.training and torch.equal(net.state_dict()["model.0.conv.weight"], was)
    by_name = lesion_channel_means(net, x, masks, layer="model.1.submodule.0.adn.A", batch_size=6)
    assert np.allclose(by_name.to_numpy(), means.to_numpy(), atol=1e-6)
    # the bright lesion and the background give different channel averages
    background = lesion_channel_means(net, x, ~masks, layer=1)
    assert np.abs(means.to_numpy() - background.to_numpy()).max() > 0.1


def test_lesion_average_by_hand():
    net = _unet(norm=None)
    conv = net.model[0].conv  # stride 2, kernel 3, padding 1: out[i, j] = sum_k w[k] x[2i + k - 1, 2j + l - 1]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0, 1, 1] = 1.0  # channel 0 = x[2i, 2j]
        conv.bias[1] = 2.0  # channel 1 = 2 everywhere
    x = (np.arange(32 * 32, dtype=np.float32).reshape(1, 1, 32, 32)) / 100  # x[r, c] = (32 r + c) / 100 >= 0
    aligned = np.zeros((1, 32, 32), bool)
    aligned[0, 4:12, 6:16] = True  # feature cells i = 2..5, j = 3..7
    # mean of x[2i, 2j]: rows 4, 6, 8, 10 (mean 7), columns 6 .. 14 (mean 10): (32 * 7 + 10) / 100
    for mode in ("nearest", "area"):
        got = lesion_channel_means(net, x, aligned, layer=0, mask_resize=mode)
        assert got.iloc[0, 0] == pytest.approx(2.34, abs=1e-5)
        assert got.iloc[0, 1] == pytest.approx(2.0, abs=1e-6)
    shifted = np.zeros((1, 32, 32), bool)
    shifted[0, 3:11, 5:14] = True  # partial cells: weights are the covered fraction of each 2 x 2 cell
    w = shifted[0].reshape(16, 2, 16, 2).mean(axis=(1, 3))
    expected = (w * x[0, 0, ::2, ::2]).sum() / w.sum()
    assert lesion_channel_means(net, x, shifted, layer=0).iloc[0, 0] == pytest.approx(expected, abs=1e-5)


def _profiles(n_cases: int, sizes: tuple[int, int], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, n_cases, 1))
    cols = np.hstack([a + 0.05 * rng.normal(size=(n_cases, sizes[0])), 5 + b + 0.05 * rng.normal(size=(n_cases, sizes[1]))])
    order = np.random.default_rng(seed + 1).permutation(sum(sizes))  # the groups interleaved among the columns
    return pd.DataFrame(cols[:, order], columns=[f"dsfr_L_{c}" for c in range(sum(sizes))]), order


def test_selector_keeps_larger_cluster_deterministically_and_transforms_without_refit():
    X, order = _profiles(30, (7, 3), seed=0)
    big = sorted(f"dsfr_L_{j}" for j in np.flatnonzero(order < 7))
    sel = DSFRSelector(random_state=0).fit(X)
    assert sorted(sel.selected_features_) == big and sel.cluster_sizes_.tolist() in ([7, 3], [3, 7])
    assert sel.selected_features_ == [c for c in X.columns if c in big]  # input order
    for seed in (0, 1, 2):
        assert DSFRSelector(random_state=seed).fit(X).selected_features_ == sel.selected_features_
    # new cases whose own clustering would keep other channels: the fitted columns are used
    new, _ = _profiles(12, (2, 8), seed=5)
    assert DSFRSelector().fit(new).selected_features_ != sel.selected_features_
    out = sel.transform(new)
    assert list(out.columns) == sel.selected_features_ and sel.selected_features_ == [c for c in X.columns if c in big]
    assert np.array_equal(sel.transform(new.to_numpy()), new[sel.selected_features_].to_numpy())


def test_selector_ties_nan_rows_other_columns_and_pipeline():
    X, order = _profiles(20, (2, 2), seed=3)
    first = order[0] < 2  # the group holding column 0 wins a tie
    sel = DSFRSelector().fit(X)
    assert "dsfr_L_0" in sel.selected_features_ and len(sel.selected_features_) == 2
    assert sorted(sel.selected_features_) == sorted(f"dsfr_L_{j}" for j in np.flatnonzero((order < 2) == first))
    X = X.assign(age=np.arange(20.0))
    X.iloc[3, 0] = np.nan
    sel = DSFRSelector().fit(X)
    assert list(sel.transform(X).columns) == [c for c in X.columns if c in sel.selected_features_ or c == "age"]
    assert list(sel.get_feature_names_out()) == list(sel.transform(X).columns)
    with pytest.raises(InputError, match="missing"):
        sel.transform(X.drop(columns="dsfr_L_1"))
    with pytest.raises(InputError, match="'n_clusters' parameter of DSFRSelector"):
        DSFRSelector(n_clusters=0).fit(X)
    pipe = make_pipeline(clone(DSFRSelector()), StandardScaler()).fit(X.dropna())
    assert pipe.transform(X.dropna()).shape == (19, 3)


def test_dsfr_3d_volumes():
    net = _unet(3)
    x, masks = _disks(4, size=16, ndim=3)
    means = lesion_channel_means(net, x, masks, layer=0)
    assert means.shape == (4, 4) and np.isfinite(means.to_numpy()).all()
    res = dsfr_features(net, x, masks, layer=0, case_ids=list("abcd"), fit_cases=["a", "b", "c"])
    assert res.layer == "model.0.adn.A" and res.fit_cases == ["a", "b", "c"]
    assert list(res.features.columns) == res.kept and len(res.features) == 4
    assert res.summary()["n_channels"] == 4 and 2 <= res.summary()["n_kept"] <= 4


def test_empty_masks_give_nan_with_warning():
    net = _unet()
    x, masks = _disks(5)
    masks[2] = False
    with pytest.warns(UserWarning, match=r"empty lesion mask.*\['c2'\]"):
        res = dsfr_features(net, x, masks, layer=1, case_ids=[f"c{i}" for i in range(5)])
    assert res.means.loc["c2"].isna().all() and res.means.drop(index="c2").notna().all().all()
    assert res.empty_cases == ["c2"] and res.features.loc["c2"].isna().all()
    tiny = np.zeros_like(masks)
    tiny[:, 16, 17] = True  # one pixel at an odd column: nearest resizing to 8 x 8 misses it
    with pytest.warns(UserWarning, match="vanishes"):
        lost = lesion_channel_means(net, x, tiny, layer=1, mask_resize="nearest")
    assert lost.isna().all().all()
    assert lesion_channel_means(net, x, tiny, layer=1).notna().all().all()


def test_dsfr_heatmaps_figure(tmp_path):
    net = _unet()
    x, masks = _disks(3)
    res = dsfr_features(net, x, masks, layer=1)
    path = dsfr_heatmaps(net, x[0], masks[0], 1, res.kept, tmp_path / "dsfr" / "heat.png", max_channels=3)
    k = min(3, len(res.kept))
    assert Image.open(path).size == ((k + 1) * PANEL + k * GAP, TITLE_HEIGHT + PANEL)
    vol, vmask = _disks(1, size=16, ndim=3)
    path3 = dsfr_heatmaps(_unet(3), vol[0], vmask[0], 0, [0, 3], tmp_path / "heat3d.png")
    assert Image.open(path3).size == (3 * PANEL + 2 * GAP, TITLE_HEIGHT + PANEL)
    with pytest.raises(InputError, match="has 8 channels"):
        dsfr_heatmaps(net, x[0], masks[0], 1, [8], tmp_path / "bad.png")
