"""The video benchmarks are registered, and their misfire injection moves boxes as documented."""

from __future__ import annotations

import numpy as np
import pandas as pd

from her2dlr.bench import BENCHES
from her2dlr.bench.video_benches import _inject
from her2dlr.video.localise import finalise_track
from her2dlr.video.qc import FrameQC
from her2dlr.video.track import TRACK_COLUMNS


def test_video_benches_are_listed() -> None:
    assert "video-sim" in BENCHES and "video-speed" in BENCHES  # registered when the module is imported


def test_injected_misfires_move_boxes_and_rejection_catches_them() -> None:
    n = 40
    t = np.arange(n)
    track = pd.DataFrame({"frame": t, "x": 30 + 0.3 * t, "y": 20.0, "w": 30.0, "h": 20.0, "confidence": 0.8,
                          "source": "predicted", "reason": None}, columns=TRACK_COLUMNS)
    moved, hits = _inject(track, key=20, rng=np.random.default_rng(0), share=0.1)
    assert len(hits) == 4 and 20 not in hits
    shift = np.hypot(moved.loc[hits, "x"] - track.loc[hits, "x"], moved.loc[hits, "y"] - track.loc[hits, "y"])
    assert (shift >= 0.6 * np.sqrt(30 * 20) - 1e-9).all()
    qc = FrameQC().table.reindex(range(n)).assign(flag="ok")
    final = finalise_track(moved, {}, (80, 120), qc, "tracker")
    assert (final.track.loc[hits, "source"] == "rejected").all()
    assert (final.track["source"] == "rejected").sum() == len(hits)


def test_network_folds_keep_every_source_image_out_of_its_own_training_set() -> None:
    from her2dlr.bench.video_network import fold_indices

    labels = np.array([0, 1] * 10)
    groups = np.array([f"img{i // 2}" for i in range(20)])  # two videos per source image
    folds = fold_indices(labels, groups, seed=3)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(20))
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])


def test_shift_mask_moves_and_clips_a_cropped_mask() -> None:
    from her2dlr.bench.video_network import shift_mask

    crop = np.array([[1, 1, 0], [0, 1, 1]], bool)
    y0, x0, moved = shift_mask((2, 3, crop), dy=1, dx=-2, shape=(10, 8))
    assert (y0, x0) == (3, 1) and np.array_equal(moved, crop)
    y0, x0, clipped = shift_mask((2, 3, crop), dy=0, dx=4, shape=(10, 8))  # columns 7, 8, 9: only 7 is inside
    assert (y0, x0) == (2, 7) and np.array_equal(clipped, np.array([[True]]))
    assert shift_mask((2, 3, crop), dy=20, dx=0, shape=(10, 8)) is None
