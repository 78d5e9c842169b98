"""Video rows through the cohort stage: QC opens each clip (an unreadable one is excluded by name) and
`her2dlr extract video` reads the included clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from typer.testing import CliRunner

from conftest import random_lesion
from her2dlr.cli import app
from her2dlr.video.simulate import SweepSettings, simulate_sweep, write_sweep

runner = CliRunner()


def _box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def test_video_rows_pass_qc_and_feed_extract_video(tmp_path: Path):
    rows = []
    for k in range(4):
        still, mask = random_lesion(40 + k, rough=bool(k % 2), size=96, radii=(14, 22))
        sweep = simulate_sweep(still, mask > 0, SweepSettings(n_frames=12, n_dropouts=0, n_freezes=0, seed=k,
                                                              frame_size=(96, 112)))
        clip = write_sweep(sweep, tmp_path / f"clip{k}.mp4")
        x, y, w, h = _box(sweep.masks[0])
        rows.append({"case": f"v{k}", "video": clip.name, "label": ["benign", "malignant"][k % 2],
                     "x": x, "y": y, "w": w, "h": h})
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    rows.append({"case": "broken", "video": "broken.mp4", "label": "benign", "x": 1, "y": 1, "w": 10, "h": 10})
    pd.DataFrame(rows).to_csv(tmp_path / "videos.csv", index=False)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({
        "name": "clips",
        "cohort": {"sources": [{"kind": "table", "path": str(tmp_path / "videos.csv"), "modality": "US-video",
                                "image_column": "video", "case_id_column": "case", "label_columns": ["label"],
                                "bbox_columns": ["x", "y", "w", "h"]}]},
        "label": {"rule": "column", "column": "label", "positive": ["malignant"], "negative": ["benign"]},
        "split": {"seed": 0, "holdout": {"test_size": 0.4}, "kfold": {"n_splits": 2, "n_repeats": 1}},
        "qc": {"near_duplicate_distance": 0},
    }))
    res = runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"])
    assert res.exit_code == 0, res.output
    qc = pd.read_csv(tmp_path / "runs" / "clips" / "cohort" / "qc.csv").set_index("case_id")
    assert qc.loc[[f"v{k}" for k in range(4)], "include"].all()
    assert not qc.loc["broken", "include"] and "broken.mp4" in qc.loc["broken", "exclude_reason"]
    res = runner.invoke(app, ["extract", "video", str(study)])
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(tmp_path / "runs" / "clips" / "features" / "video_tf.parquet")
    assert sorted(table.index.astype(str)) == [f"v{k}" for k in range(4)]
    assert table.notna().all().all()
