"""Video rows through the cohort stage: QC opens each clip (an unreadable one is excluded by name) and
`her2dlr extract video` reads the included clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
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


# ------------------------------------------------------------------ a table naming the video columns
N_FRAMES = 8


def _clip_folder(root: Path, n_clips: int = 3) -> tuple[list[dict], dict[str, dict[int, tuple]]]:
    """Simulated clips under root/clips, per-frame box CSVs (every other frame) under root/boxes; the table's
    rows (columns clip, boxes_csv, kf, kf_box, label) and each case's true boxes."""
    (root / "clips").mkdir(parents=True)
    (root / "boxes").mkdir()
    rows, boxes = [], {}
    for k in range(n_clips):
        still, mask = random_lesion(60 + k, rough=bool(k % 2), size=96, radii=(14, 22))
        sweep = simulate_sweep(still, mask > 0, SweepSettings(n_frames=N_FRAMES, n_dropouts=0, n_freezes=0, seed=k,
                                                              frame_size=(96, 112)))
        write_sweep(sweep, root / "clips" / f"clip{k}.mp4")
        kf = sweep.key_frame
        annotated = {i: tuple(_box(sweep.masks[i])) for i in range(0, N_FRAMES, 2)}
        pd.DataFrame([{"frame": i, "x": b[0], "y": b[1], "w": b[2], "h": b[3]} for i, b in annotated.items()]).to_csv(
            root / "boxes" / f"v{k}.csv", index=False)
        boxes[f"v{k}"] = annotated
        rows.append({"case": f"v{k}", "clip": f"clips/clip{k}.mp4", "boxes_csv": f"boxes/v{k}.csv", "kf": kf,
                     "kf_box": str(_box(sweep.masks[kf])), "label": ["benign", "malignant"][k % 2]})
    return rows, boxes


def _table_study(path: Path, table: Path, **video) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "clips",
        "cohort": {"sources": [{"kind": "table", "path": str(table), "modality": "US-video", "image_column": "clip",
                                "annotations_column": "boxes_csv", "key_frame_column": "kf", "bbox_column": "kf_box",
                                "case_id_column": "case", "label_columns": ["label"]}]},
        "label": {"rule": "column", "column": "label", "positive": ["malignant"], "negative": ["benign"]},
        "split": {"seed": 0, "holdout": None, "kfold": {"n_splits": 2, "n_repeats": 1}},
        "qc": {"near_duplicate_distance": 0},
        "video": {"n_jobs": 1, **video},
    }))
    return path


def test_table_source_names_annotations_and_key_frame_columns(tmp_path: Path):
    from her2dlr.video.stage import analyse_video

    data = tmp_path / "data"  # paths in the table are relative to its folder, not the study file's
    rows, boxes = _clip_folder(data, n_clips=4)
    rows[3]["boxes_csv"] = None  # no annotations: the tracker from the key-frame box
    del boxes["v3"]
    pd.DataFrame(rows).to_csv(data / "videos.csv", index=False)
    study = _table_study(tmp_path / "study.yaml", Path("data") / "videos.csv")
    res = runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "clips"
    manifest = pd.read_parquet(run / "cohort" / "manifest.parquet").set_index("case_id")
    assert manifest.loc["v1", "annotations"] == str((data / "boxes" / "v1.csv").resolve())
    assert pd.isna(manifest.loc["v3", "annotations"])
    assert int(manifest.loc["v2", "key_frame"]) == rows[2]["kf"]
    res = runner.invoke(app, ["run", str(study), "--only", "video", "--no-pdf"])
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(run / "features" / "video_tf.parquet")
    assert sorted(table.index.astype(str)) == ["v0", "v1", "v2", "v3"]
    for case, annotated in boxes.items():
        frames = pd.read_csv(run / "features" / "video_tf_frames" / f"{case}.csv").set_index("frame")
        assert (frames.loc[list(annotated), "source"] == "annotated").all()
        assert (frames.drop(index=list(annotated))["source"] == "interpolated").all()
    # the same clip analysed from the boxes themselves (no table, no CSV) gives the same features
    direct = analyse_video(data / "clips" / "clip1.mp4", case_id="v1", annotations=boxes["v1"]).row
    np.testing.assert_allclose(table.loc[["v1"], direct.columns].to_numpy(float), direct.to_numpy(float),
                               rtol=1e-9, equal_nan=True)
    tracked = pd.read_csv(run / "features" / "video_tf_frames" / "v3.csv")
    assert "annotated" not in set(tracked["source"]) and (tracked["source"] == "predicted").any()


def _refused(tmp_path: Path, rows: list[dict]) -> str:
    pd.DataFrame(rows).to_csv(tmp_path / "data" / "videos.csv", index=False)
    study = _table_study(tmp_path / "study.yaml", tmp_path / "data" / "videos.csv")
    res = runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"])
    assert res.exit_code != 0 and res.exception is not None
    assert "Traceback" not in res.output
    return " ".join(res.output.split())


def test_bad_video_rows_are_refused_with_row_and_column(tmp_path: Path):
    rows, _ = _clip_folder(tmp_path / "data", n_clips=2)
    out = _refused(tmp_path, [rows[0], {**rows[1], "boxes_csv": "boxes/nowhere.csv"}])
    assert "videos.csv row 3, column 'boxes_csv'" in out and "nowhere.csv" in out
    out = _refused(tmp_path, [{**rows[0], "kf": "middle"}, rows[1]])
    assert "videos.csv row 2, column 'kf': the key frame must be a frame number" in out
    out = _refused(tmp_path, [rows[0], {**rows[1], "kf": N_FRAMES}])
    assert f"row 3, column 'kf': key frame {N_FRAMES} is beyond the clip's {N_FRAMES} frames" in out
    out = _refused(tmp_path, [{**rows[0], "kf_box": "[90, 10, 30, 20]"}, rows[1]])
    assert "row 2, column(s) 'kf_box': the key-frame box [90.0, 10.0, 30.0, 20.0] lies outside the clip's 112x96" in out
    pd.DataFrame([{"frame": 1, "x": 10, "y": 80, "w": 20, "h": 20}]).to_csv(tmp_path / "data" / "off.csv", index=False)
    out = _refused(tmp_path, [rows[0], {**rows[1], "boxes_csv": "off.csv"}])
    assert "row 3, column 'boxes_csv': the box [10.0, 80.0, 20.0, 20.0] of frame 1 lies outside the 112x96" in out
    pd.DataFrame([{"frame": 20, "x": 10, "y": 10, "w": 20, "h": 20}]).to_csv(tmp_path / "data" / "late.csv", index=False)
    out = _refused(tmp_path, [{**rows[0], "boxes_csv": "late.csv"}, rows[1]])
    assert "row 2, column 'boxes_csv'" in out and f"frame(s) [20] but the video has {N_FRAMES} frames" in out


def test_video_columns_need_a_video_source():
    from pydantic import ValidationError

    from her2dlr.cohort.settings import TableSource

    with pytest.raises(ValidationError, match="annotations_column, key_frame_column name"):
        TableSource(kind="table", path=Path("t.csv"), image_column="clip", annotations_column="boxes",
                    key_frame_column="kf")
    assert TableSource(kind="table", path=Path("t.csv"), modality="US-video", image_column="clip",
                       annotations_column="boxes").annotations_column == "boxes"
