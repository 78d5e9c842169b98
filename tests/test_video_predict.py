"""A video_tf model applied to new clips: from a file, from a live source frame by frame, on the command line."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from her2dlr.cli import app
from her2dlr.cohort.manifest import Manifest
from her2dlr.cohort.splits import repeated_group_kfold
from her2dlr.io.video import open_video
from her2dlr.learn.settings import LearnSettings
from her2dlr.learn.stage import run_learn_stage
from her2dlr.radiomics.parameters import load_params, params_hash
from her2dlr.segment.data import mask_box
from her2dlr.video.simulate import SweepSettings, simulate_sweep, write_sweep
from her2dlr.video.stage import extract_video_table

PARAMS = {"imageType": {"Original": {}}, "featureClass": {"firstorder": ["Mean", "Median", "10Percentile"]},
          "setting": {"binWidth": 5.0, "label": 1, "minimumROIDimensions": 2, "minimumROISize": 16}}
SWEEP = {"n_frames": 10, "n_dropouts": 1, "n_freezes": 0, "frame_size": (64, 80)}


def _clip(seed: int, label: int):
    rng = np.random.default_rng(seed)
    img = rng.uniform(90, 150, (160, 200)).astype(np.float32)
    yy, xx = np.mgrid[:160, :200]
    mask = (yy - 80) ** 2 / 22**2 + (xx - 100) ** 2 / 30**2 < 1
    img[mask] *= 0.25 if label else 0.6  # class 1: darker lesions
    return simulate_sweep(img, mask, SweepSettings(seed=seed, **SWEEP))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("videomodel")
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    rows = []
    for i in range(12):
        sweep = _clip(i, i % 2)
        path = write_sweep(sweep, tmp / f"v{i}.mp4")
        rows.append({"case_id": f"v{i}", "image": str(path), "modality": "US-video", "key_frame": sweep.key_frame,
                     "bbox": json.dumps(list(mask_box(sweep.masks[sweep.key_frame]))), "label": i % 2})
    table, failures = extract_video_table(pd.DataFrame(rows), tmp / "features", params=str(params), progress=False)
    assert failures.empty and len(table) == 12
    ids = np.array([r["case_id"] for r in rows])
    y = np.array([r["label"] for r in rows])
    manifest = Manifest(pd.DataFrame({"case_id": ids, "patient_id": ids, "image": "x", "label": y,
                                      "fold_r0": repeated_group_kfold(y, ids, 3, 1, 0)[0]}))
    settings = LearnSettings(features=["video_tf"], models=[{"name": "lr", "grid": {}}], schemes=["kfold"],
                             selection=[{"name": "variance"}], search={"inner_splits": 2})
    provenance = [{"name": "video_tf", "params": str(params), "roi": "video",
                   "params_hash": params_hash(load_params(params))}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_learn_stage(table, manifest, settings, tmp / "learn", feature_set="video_tf", models_dir=tmp / "models",
                        feature_tables=provenance, progress=False)
    return tmp / "models" / "video_tf-lr", tmp


def test_predict_video_orders_new_clips_and_writes_the_overlay(model) -> None:
    from her2dlr.predict.video import predict_video

    artefact, tmp = model
    probs = {}
    for label, seed in ((0, 100), (1, 101)):
        sweep = _clip(seed, label)
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
    sweep = _clip(200, 1)
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
    sweep = _clip(300, 0)
    clip = write_sweep(sweep, tmp / "cli.mp4")
    box = ",".join(str(v) for v in mask_box(sweep.masks[0]))
    runner = CliRunner()
    res = runner.invoke(app, ["predict", str(artefact), "--video", str(clip), "--box", box, "--overlay",
                              str(tmp / "cli_overlay.mp4"), "--out", str(tmp / "cli.csv")])
    assert res.exit_code == 0, res.output
    assert 0 <= pd.read_csv(tmp / "cli.csv")["prob"].iloc[0] <= 1 and (tmp / "cli_overlay.mp4").exists()
    res = runner.invoke(app, ["predict", str(artefact), "--video", str(clip)])
    assert res.exit_code == 2 and "--video needs --box" in res.output
