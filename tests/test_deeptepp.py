"""DeepTEPP-style pieces (seed 004): patches, multi-view, jigsaw, the multi-scale multi-stage ResNet and its
clinical fusion, each checked by hand-worked cases or by learning where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from her2dlr.deep.deeptepp import (
    MMResNet,
    balance_with_views,
    jigsaw_shuffle,
    multi_view,
    slice_mosaic,
    tumour_patch,
)
from her2dlr.errors import InputError
from her2dlr.io.synthetic_dce import simulate_case

TINY = (4, 8, 8, 16)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tumour_patch_is_centred_on_the_lesion_and_padded_at_the_edge() -> None:
    volume = np.arange(10 * 12 * 14, dtype=float).reshape(10, 12, 14)
    mask = np.zeros_like(volume)
    mask[2:5, 3:8, 10:13] = 1  # centroid (3, 5, 11)
    patch = tumour_patch(volume, mask, 5)
    assert patch.shape == (5, 5, 5) and patch[2, 2, 2] == volume[3, 5, 11]
    edge = tumour_patch(volume, mask, 9)  # reaches past x = 13: padded with the minimum
    assert edge[4, 4, 4] == volume[3, 5, 11] and edge[4, 4, -1] == volume.min()
    with pytest.raises(InputError, match="mask is empty"):
        tumour_patch(volume, np.zeros_like(volume), 5)


def test_multi_view_gives_the_three_planes_and_their_rotations() -> None:
    cube = np.random.default_rng(0).random((6, 6, 6))
    views = multi_view(cube)
    assert len(views) == 12 and len({v.tobytes() for v in views}) == 12
    np.testing.assert_array_equal(views[4], cube.transpose(1, 0, 2))  # coronal: (y, z, x)
    np.testing.assert_array_equal(views[8], cube.transpose(2, 1, 0))  # sagittal: (x, y, z)
    np.testing.assert_array_equal(views[1], np.rot90(cube, 1, axes=(1, 2)))
    with pytest.raises(InputError, match="cubic"):
        multi_view(np.zeros((4, 6, 6)))


def test_balancing_adds_views_of_the_minority_only() -> None:
    rng = np.random.default_rng(1)
    patches = [rng.random((4, 4, 4)) for _ in range(7)]
    labels = [0, 0, 0, 0, 0, 1, 1]
    out, y, source = balance_with_views(patches, labels, seed=2)
    assert y.count(0) == y.count(1) == 5
    for patch, label, k in zip(out[7:], y[7:], source[7:]):
        assert label == 1 and any(np.array_equal(patch, v) for v in multi_view(patches[k]))


def test_slice_mosaic_and_jigsaw_are_permutations_of_blocks() -> None:
    patch = np.arange(4 * 2 * 2).reshape(4, 2, 2)
    np.testing.assert_array_equal(slice_mosaic(patch, 2), [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]])
    image = np.arange(36).reshape(6, 6)
    shuffled = jigsaw_shuffle(image, 3, np.random.default_rng(5))
    blocks = lambda a: sorted(a[i:i + 2, j:j + 2].tobytes() for i in (0, 2, 4) for j in (0, 2, 4))  # noqa: E731
    assert blocks(shuffled) == blocks(image) and not np.array_equal(shuffled, image)
    np.testing.assert_array_equal(jigsaw_shuffle(image, 3, np.random.default_rng(5)), shuffled)  # seeded
    np.testing.assert_array_equal(jigsaw_shuffle(image, 1, np.random.default_rng(5)), image)
    volume = np.arange(64).reshape(4, 4, 4)
    assert sorted(jigsaw_shuffle(volume, 2, np.random.default_rng(0)).ravel()) == list(range(64))
    with pytest.raises(InputError, match="divide by grid"):
        jigsaw_shuffle(image, 4, np.random.default_rng(0))


@pytest.mark.parametrize(("multi_stage", "multi_scale", "n_clinical", "dims", "embed"), [
    (True, True, 0, 3, 4 * 8 + 8),
    (False, False, 0, 3, 8),
    (True, False, 2, 2, 4 * 8 + 8),
    (False, True, 2, 2, 8 + 8 + 8),
])
def test_switches_shape_the_fused_features(multi_stage: bool, multi_scale: bool, n_clinical: int, dims: int,
                                           embed: int) -> None:
    net = MMResNet(2, 3, spatial_dims=dims, widths=TINY, proj_dim=8, multi_stage=multi_stage, multi_scale=multi_scale,
                   n_clinical=n_clinical).eval()
    x = torch.zeros(2, 2, *([16] * dims))
    clinical = torch.zeros(2, n_clinical) if n_clinical else None
    assert net.embed(x, clinical).shape == (2, embed) == (2, net.embed_dim)
    assert net(x, clinical).shape == (2, 3)
    assert net.get_submodule(net.target_layer) is net.stages[-1]
    if n_clinical:
        with pytest.raises(InputError, match="2 clinical inputs"):
            net(x)


def _fit(net: MMResNet, x: torch.Tensor, y: torch.Tensor, clinical: torch.Tensor | None = None, epochs: int = 60) -> None:
    opt = torch.optim.Adam(net.parameters(), lr=0.003)
    net.train()
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x, clinical), y)
        loss.backward()
        opt.step()
    net.eval()


def _accuracy(net: MMResNet, x: torch.Tensor, y: torch.Tensor, clinical: torch.Tensor | None = None) -> float:
    with torch.no_grad():
        return float((net(x, clinical).argmax(1) == y).float().mean())


def test_network_learns_the_enhancement_of_simulated_lesions_from_jigsawed_mosaics() -> None:
    """2.5D as in the seed: 4 slices around the tumour spliced into a mosaic, its tiles shuffled (jigsaw)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images, labels = [], []
    for k in range(36):
        label = 2 * (k % 2)  # HER2-zero (persistent) vs HER2-positive (wash-out, heterogeneous)
        case = simulate_case(label, rng, shape=(12, 24, 24), n_phases=3)
        subtraction = case.phases[1].astype(np.float32) - case.phases[0].astype(np.float32)
        mosaic = slice_mosaic(tumour_patch(subtraction, case.mask, 12), 2)
        images.append(jigsaw_shuffle(mosaic, 2, rng) / 300.0)
        labels.append(label // 2)
    x = torch.tensor(np.stack(images))[:, None]
    y = torch.tensor(labels)
    net = MMResNet(1, 2, spatial_dims=2, widths=TINY, proj_dim=8)
    _fit(net, x[:24], y[:24])
    assert _accuracy(net, x[24:], y[24:]) >= 0.9


def test_clinical_fusion_adds_the_signal_the_image_lacks() -> None:
    """The label depends on the image's brightness and on a clinical factor: fused beats image-only on new cases."""
    torch.manual_seed(2)
    gen = torch.Generator().manual_seed(2)
    image_signal, clinical = torch.randn(200, generator=gen), torch.randn(200, 2, generator=gen)
    x = 0.3 * torch.randn(200, 1, 8, 8, generator=gen) + image_signal[:, None, None, None]
    y = (image_signal + clinical[:, 0] > 0).long()
    options = {"spatial_dims": 2, "widths": TINY, "proj_dim": 8, "multi_stage": False, "multi_scale": False}
    fused = MMResNet(1, 2, n_clinical=2, **options)
    image_only = MMResNet(1, 2, **options)
    _fit(fused, x[:120], y[:120], clinical[:120])
    _fit(image_only, x[:120], y[:120])
    # the image alone can reach about 3/4 (the sign of its share); the clinical factor supplies the rest
    assert _accuracy(fused, x[120:], y[120:], clinical[120:]) >= _accuracy(image_only, x[120:], y[120:]) + 0.08
