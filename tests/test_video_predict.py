"""A video_tf model applied to new clips: from a file, from a live source frame by frame, on the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import video_clip
from her2dlr.cli import app
from her2dlr.io.video import open_video
from her2dlr.segment.data import mask_box
from her2dlr.video.simulate import write_sweep


@pytest.fixture(scope="module")
def model(video_model: tuple[Path, Path], tmp_path_factory) -> tuple[Path, Path]:
    """The session's video_tf model and a folder for this module's clips."""
    return video_model[0], tmp_path_factory.mktemp("videopredict")


def test_predict_video_orders_new_clips_and_writes_the_overlay(model) -> None:
    from her2dlr.predict.video import predict_video

    artefact, tmp = model
    probs = {}
    for label, seed in ((0, 100), (1, 101)):
        sweep = video_clip(seed, label)
        clip = write_sweep(sweep, tmp / f"new{label}.mp4")
        out = predict_video(artefact, clip, case_id=f"new{label}", key_frame=sweep.key_frame,
                            key_box=mask_box(sweep.masks[sweep.key_frame]), overlay=tmp / f"overlay{label}.mp4",
                            progress=False)
        probs[label] = out.result.probability
        assert out.result.provenance["inputs"] == "video"
        assert out.result.provenance["video"]["frames"]["qc_blank"] == 1
        frames = list(open_video(out.overlay))
        assert len(frames) == 10
        # the outline is drawn in colour on a grey clip
        assert any((np.ptp(f.astype(int), axis=2) > 100).any() for f in frames)
    assert probs[1] > probs[0]


def test_live_stream_gives_the_file_answer(model, tmp_path: Path) -> None:
    from her2dlr.predict.video import VideoStream, predict_video

    artefact, _ = model
    sweep = video_clip(200, 1)
    folder = write_sweep(sweep, tmp_path / "frames")
    box = mask_box(sweep.masks[0])
    stream = VideoStream(artefact, fps=30.0, key_box=box)
    rows = [stream.push(f) for f in sweep.frames]
    assert rows[0]["source"] == "predicted" and len(rows) == 10
    live = stream.finish()
    offline = predict_video(artefact, folder, key_box=box, fps=30.0, progress=False)
    assert live.result.probability == pytest.approx(offline.result.probability, abs=1e-9)


def test_cli_predict_video(model) -> None:
    artefact, tmp = model
    sweep = video_clip(300, 0)
    clip = write_sweep(sweep, tmp / "cli.mp4")
    box = ",".join(str(v) for v in mask_box(sweep.masks[0]))
    runner = CliRunner()
    res = runner.invoke(app, ["predict", str(artefact), "--video", str(clip), "--box", box, "--overlay",
                              str(tmp / "cli_overlay.mp4"), "--out", str(tmp / "cli.csv")])
    assert res.exit_code == 0, res.output
    assert 0 <= pd.read_csv(tmp / "cli.csv")["prob"].iloc[0] <= 1 and (tmp / "cli_overlay.mp4").exists()
    res = runner.invoke(app, ["predict", str(artefact), "--video", str(clip)])
    assert res.exit_code == 2 and "--video needs --box" in res.output
