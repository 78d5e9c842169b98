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
