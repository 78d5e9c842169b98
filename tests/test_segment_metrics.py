"""Segmentation metrics against hand-worked arrays, MONAI's DiceMetric, SciPy and a brute-force HD95."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from scipy.spatial.distance import cdist, directed_hausdorff

from her2dlr.errors import InputError
from her2dlr.segment.metrics import (
    TABLE_COLUMNS,
    box_iou,
    detected,
    dice,
    hd95,
    iou,
    segmentation_table,
    summarise,
)


def _squares() -> tuple[np.ndarray, np.ndarray]:
    """True 4x4 square at rows 2-5, columns 2-5; predicted one column to the right."""
    true = np.zeros((8, 8), bool)
    true[2:6, 2:6] = True
    pred = np.zeros((8, 8), bool)
    pred[2:6, 3:7] = True
    return pred, true


def _blobs(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return tuple(ndi.gaussian_filter(rng.normal(size=shape), 2) > 0.05 for _ in range(2))  # type: ignore[return-value]


def _edges(mask: np.ndarray, spacing: tuple[float, ...] | None = None) -> np.ndarray:
    pts = np.argwhere(mask & ~ndi.binary_erosion(mask, border_value=0)).astype(float)
    return pts * (1.0 if spacing is None else np.asarray(spacing))


def _hd_brute(pred: np.ndarray, true: np.ndarray, q: float = 95, spacing: tuple[float, ...] | None = None) -> float:
    d = cdist(_edges(pred, spacing), _edges(true, spacing))
    return max(np.percentile(d.min(axis=1), q), np.percentile(d.min(axis=0), q))


def test_overlapping_squares_by_hand():
    pred, true = _squares()
    # overlap 4 rows x 3 columns = 12; each square 16 px: Dice 24/32, IoU 12/20
    assert dice(pred, true) == pytest.approx(0.75)
    assert iou(pred, true) == pytest.approx(0.6)
    assert box_iou(pred, true) == pytest.approx(0.6)
    assert detected(pred, true) is True
    # edges: the column shift of 1 is the largest boundary distance both ways
    assert hd95(pred, true, percentile=100) == pytest.approx(1.0)
    assert hd95(pred, true, spacing=(0.5, 2.0), percentile=100) == pytest.approx(2.0)


@pytest.mark.parametrize("shape", [(32, 32), (12, 14, 16)])
def test_dice_matches_monai_dicemetric(shape):
    import torch
    from monai.metrics import DiceMetric

    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    for seed in range(4):
        pred, true = _blobs(seed, shape)
        ref = metric(torch.as_tensor(pred[None, None]).float(), torch.as_tensor(true[None, None]).float())
        assert dice(pred, true) == pytest.approx(float(ref), abs=1e-6)
        inter, union = (pred & true).sum(), (pred | true).sum()
        assert iou(pred, true) == pytest.approx(inter / union)


@pytest.mark.parametrize("shape", [(24, 24), (10, 12, 12)])
def test_hd95_matches_brute_force_and_scipy(shape):
    for seed in range(3):
        pred, true = _blobs(seed + 10, shape)
        assert hd95(pred, true) == pytest.approx(_hd_brute(pred, true), abs=1e-4)
        spacing = (2.0, 0.5) if len(shape) == 2 else (3.0, 0.7, 0.7)
        assert hd95(pred, true, spacing) == pytest.approx(_hd_brute(pred, true, spacing=spacing), abs=1e-4)
        a, b = _edges(pred), _edges(true)
        classical = max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0])
        assert hd95(pred, true, percentile=100) == pytest.approx(classical, abs=1e-4)


def test_empty_mask_conventions():
    empty = np.zeros((8, 8), bool)
    pred, true = _squares()
    assert (dice(empty, empty), iou(empty, empty), box_iou(empty, empty), hd95(empty, empty)) == (1.0, 1.0, 1.0, 0.0)
    assert detected(empty, empty) is None
    for p, t in ((empty, true), (pred, empty)):
        assert dice(p, t) == 0.0 and iou(p, t) == 0.0 and box_iou(p, t) == 0.0
        assert np.isnan(hd95(p, t))
    assert detected(empty, true) is False
    assert detected(pred, empty) is None


def test_detection_by_mask_or_box():
    true = np.zeros((16, 16), bool)
    true[3:13, 3:13] = True
    true[4:12, 4:12] = False  # a one-pixel ring: 36 px in a 10 x 10 box
    pred = np.zeros((16, 16), bool)
    pred[3:13, 3:13] = True
    assert iou(pred, true) == pytest.approx(36 / 100)
    assert detected(pred, true, by="mask") is False
    assert detected(pred, true, by="box") is True
    with pytest.raises(InputError, match="'by' parameter"):
        detected(pred, true, by="boxes")


def test_shape_errors():
    with pytest.raises(InputError, match="must match"):
        dice(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(InputError, match="2D .* or 3D"):
        dice(np.zeros(4), np.zeros(4))
    with pytest.raises(InputError, match="spacing"):
        hd95(*_squares(), spacing=(1.0, 1.0, 1.0))


def test_segmentation_table_columns_and_spacings():
    pred, true = _squares()
    empty = np.zeros_like(true)
    table = segmentation_table([pred, empty, empty], [true, true, empty], ["a", "b", "c"], spacings=(0.5, 0.5))
    assert list(table.columns) == list(TABLE_COLUMNS) and list(table.index) == ["a", "b", "c"]
    assert table.index.name == "case_id"
    assert table.loc["a", "dice"] == pytest.approx(0.75)
    assert table.loc["a", "hd95_mm"] == pytest.approx(0.5 * table.loc["a", "hd95_px"])
    assert table["detected"].tolist()[:2] == [True, False] and pd.isna(table.loc["c", "detected"])
    assert table["pred_empty"].tolist() == [False, True, True]
    assert table["true_area"].tolist() == [16, 16, 0] and table["pred_area"].tolist() == [16, 0, 0]
    assert np.isnan(table.loc["b", "hd95_px"]) and table.loc["c", "hd95_px"] == 0.0
    per_case = segmentation_table([pred, pred], [true, true], ["a", "b"], spacings=[(2.0, 2.0), None])
    assert per_case.loc["a", "hd95_mm"] == pytest.approx(2 * per_case.loc["a", "hd95_px"])
    assert np.isnan(per_case.loc["b", "hd95_mm"])
    with pytest.raises(InputError, match="Case b"):
        segmentation_table([pred, pred], [true, true[:4]], ["a", "b"])


def test_summarise_hand_table_and_bootstrap():
    from scipy.stats import bootstrap

    table = pd.DataFrame({
        "dice": [0.2, 0.5, 0.9, 1.0], "iou": [0.1, 0.3, 0.8, 1.0], "box_iou": [0.2, 0.4, 0.9, 1.0],
        "hd95_px": [9.0, np.nan, 2.0, 0.0], "hd95_mm": np.nan,
        "detected": pd.array([False, False, True, pd.NA], dtype="boolean"),
        "pred_empty": [False, True, False, False], "true_area": [10, 10, 10, 0], "pred_area": [5, 0, 9, 0],
    }, index=pd.Index(list("abcd"), name="case_id"))
    s = summarise(table, n_boot=200, seed=1)
    assert s["n_cases"] == 4 and s["dice_mean"] == pytest.approx(0.65) and s["dice_median"] == pytest.approx(0.7)
    assert s["iou_mean"] == pytest.approx(0.55) and s["hd95_px_median"] == pytest.approx(2.0) and s["n_hd95"] == 3
    assert np.isnan(s["hd95_mm_median"])
    assert s["detection_rate"] == pytest.approx(1 / 3) and s["n_lesions"] == 3 and s["n_pred_empty"] == 1
    assert 0.2 <= s["dice_ci_low"] <= s["dice_mean"] <= s["dice_ci_high"] <= 1.0
    assert pd.Series(summarise(table, n_boot=200, seed=1)).equals(pd.Series(s))
    # the percentile interval agrees with SciPy's on a larger cohort (Monte Carlo error ~0.005)
    d = np.random.default_rng(3).beta(5, 2, size=40)
    big = pd.concat([table.iloc[[0]]] * 40)
    big["dice"] = d
    ours = summarise(big, n_boot=4000, seed=0)
    ref = bootstrap((d,), np.mean, method="percentile", n_resamples=4000, random_state=0).confidence_interval
    assert ours["dice_ci_low"] == pytest.approx(ref.low, abs=0.01)
    assert ours["dice_ci_high"] == pytest.approx(ref.high, abs=0.01)
