"""The segmentation montage: which cases it shows, its size, its outlines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from her2dlr.errors import InputError
from her2dlr.imaging.figures import GAP, PANEL, TITLE_HEIGHT
from her2dlr.segment.figures import PRED_COLOUR, TRUE_COLOUR, overlay_montage, pick_cases


def _table(dices: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"dice": list(dices.values())}, index=pd.Index(list(dices), name="case_id"))


def test_pick_cases_best_median_worst():
    table = _table({"a": 0.50, "b": 0.91, "c": 0.10, "d": 0.75, "e": 0.62})
    # ranked b (0.91), d, e (median), a, c (0.10)
    assert pick_cases(table) == ["b", "e", "c"]
    # even count: ranked b, d, e, a; the median is the lower of the middle two (e)
    assert pick_cases(table.drop(index="c")) == ["b", "e", "a"]
    assert pick_cases(table, n=1) == ["e"]
    assert pick_cases(table.iloc[:2], n=3) == ["b", "a"]
    with pytest.raises(InputError, match="'n' parameter"):
        pick_cases(table, n=0)


def _case(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(100, 20, size=shape)
    grid = np.indices(shape)
    centre = np.array(shape) / 2
    true = sum(((g - c) / (s / 4)) ** 2 for g, c, s in zip(grid, centre, shape)) <= 1
    pred = np.roll(true, seed + 1, axis=-1)
    return image, true, pred


@pytest.mark.parametrize("shape", [(40, 40), (9, 40, 40)])
def test_overlay_montage_file_size_and_outlines(tmp_path, shape):
    cases = {cid: _case(k, shape) for k, cid in enumerate(["p", "q", "r", "s", "t"])}
    table = _table({"p": 0.9, "q": 0.2, "r": 0.6, "s": 0.4, "t": 0.8})
    path = overlay_montage([c[0] for c in cases.values()], [c[1] for c in cases.values()],
                           [c[2] for c in cases.values()], table, tmp_path / "seg" / "montage.png")
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    arr = np.asarray(Image.open(path).convert("RGB"))
    assert arr.shape == (TITLE_HEIGHT + PANEL, 3 * PANEL + 2 * GAP, 3)
    assert pick_cases(table) == ["p", "r", "q"]
    body = arr[TITLE_HEIGHT:]
    for k in range(3):
        panel = body[:, k * (PANEL + GAP):k * (PANEL + GAP) + PANEL]
        assert (panel == TRUE_COLOUR).all(axis=-1).any() and (panel == PRED_COLOUR).all(axis=-1).any()
    # dict input by case id gives the same picture
    again = overlay_montage({k: v[0] for k, v in cases.items()}, {k: v[1] for k, v in cases.items()},
                            {k: v[2] for k, v in cases.items()}, table, tmp_path / "again.png")
    assert np.array_equal(np.asarray(Image.open(again).convert("RGB")), arr)


def test_overlay_montage_errors(tmp_path):
    image, true, pred = _case(0, (20, 20))
    table = _table({"a": 0.5, "b": 0.4})
    with pytest.raises(InputError, match="2 cases"):
        overlay_montage([image], [true], [pred], table, tmp_path / "x.png")
    with pytest.raises(InputError, match="Case a"):
        overlay_montage([image, image], [true[:10], true], [pred, pred], table, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_overlay_montage_rgb_image(tmp_path):
    image, true, pred = _case(1, (30, 60))
    rgb = np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    path = overlay_montage([rgb], [true], [pred], _table({"a": 0.5}), tmp_path / "rgb.png", n=1)
    assert Image.open(path).size == (2 * PANEL, TITLE_HEIGHT + PANEL)
