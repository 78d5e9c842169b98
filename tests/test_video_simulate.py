"""The probe-sweep simulator: truth masks follow the lesion, faults are injected, files are readable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2dlr.errors import InputError
from her2dlr.io.video import frame_grey, open_video
from her2dlr.video.simulate import SweepSettings, simulate_sweep, write_sweep


def _still(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = rng.uniform(90, 140, (200, 240)).astype(np.float32)
    yy, xx = np.mgrid[:200, :240]
    mask = (yy - 90) ** 2 / 25**2 + (xx - 130) ** 2 / 40**2 < 1
    img[mask] = rng.uniform(20, 40, mask.sum())  # a dark (hypoechoic) lesion
    return img, mask


def test_truth_masks_follow_the_dark_lesion_and_the_section_grows_then_shrinks() -> None:
    img, mask = _still()
    sweep = simulate_sweep(img, mask, SweepSettings(n_frames=30, n_dropouts=2, n_freezes=2, seed=1))
    assert len(sweep.frames) == len(sweep.masks) == 30
    assert sweep.events.count("dropout") == 2 and sweep.events.count("frozen") == 2
    areas = np.array([m.sum() for m in sweep.masks])
    assert areas[15] > 2.5 * areas[0] and areas[15] > 2.5 * areas[-1]  # min_scale 0.4 -> area ratio ~6
    assert 10 <= sweep.key_frame <= 20
    for frame, m, event in zip(sweep.frames, sweep.masks, sweep.events):
        grey = frame_grey(frame)
        if event == "dropout":
            assert grey.mean() < 10
        elif m.sum() > 50 and grey.mean() > 10:  # (a frozen copy of a dropout stays black) the truth mask covers the dark lesion
            assert grey[m].mean() < 0.6 * grey[~m].mean()
    for i, event in enumerate(sweep.events):
        if event == "frozen":
            np.testing.assert_array_equal(sweep.frames[i], sweep.frames[i - 1])
    # the probe moves: the lesion centre travels across the frame
    cx = [np.nonzero(m)[1].mean() for m, e in zip(sweep.masks, sweep.events) if m.any()]
    assert abs(cx[-1] - cx[0]) > 10


def test_speckle_is_redrawn_and_seed_reproduces() -> None:
    img, mask = _still()
    a = simulate_sweep(img, mask, SweepSettings(n_frames=8, n_dropouts=0, n_freezes=0, seed=4))
    b = simulate_sweep(img, mask, SweepSettings(n_frames=8, n_dropouts=0, n_freezes=0, seed=4))
    np.testing.assert_array_equal(a.frames[3], b.frames[3])
    assert not np.array_equal(a.frames[3], a.frames[4])


def test_written_mp4_and_folder_read_back(tmp_path: Path) -> None:
    img, mask = _still()
    sweep = simulate_sweep(img, mask, SweepSettings(n_frames=12, n_dropouts=1, n_freezes=1))
    mp4 = write_sweep(sweep, tmp_path / "sweep.mp4", masks=True)
    frames = list(open_video(mp4))
    assert len(frames) == 12 and open_video(mp4).info.fps == pytest.approx(30.0)
    assert np.abs(frame_grey(frames[5]) - sweep.frames[5]).mean() < 6  # near-lossless coding
    boxes = pd.read_csv(tmp_path / "sweep_boxes.csv")
    assert list(boxes.columns) == ["frame", "x", "y", "w", "h"] and len(boxes) == 12
    assert len(list((tmp_path / "sweep_masks").glob("*.png"))) == 12
    folder = write_sweep(sweep, tmp_path / "frames")
    np.testing.assert_array_equal(list(open_video(folder))[7], sweep.frames[7])


def test_bad_settings_and_empty_mask() -> None:
    img, mask = _still()
    with pytest.raises(InputError, match="frame_size"):
        SweepSettings(frame_size=(127, 160))
    with pytest.raises(InputError, match="empty"):
        simulate_sweep(img, np.zeros_like(mask))


@pytest.mark.realdata
def test_sweep_from_a_busi_image(shared_data: Path) -> None:
    busi_dir = shared_data / "busi"
    image = busi_dir / "malignant" / "malignant (5).png"
    sweep = simulate_sweep(image, busi_dir / "malignant" / "malignant (5)_mask.png", SweepSettings(n_frames=10, n_dropouts=1, n_freezes=1))
    assert sweep.source.endswith("malignant (5).png")
    assert sum(m.any() for m in sweep.masks) == 10
