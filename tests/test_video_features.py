"""Per-frame radiomics of a clip (checked against file-based PyRadiomics), caching and the video_tf table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from her2dlr.cohort.video import video_rows
from her2dlr.errors import InputError
from her2dlr.radiomics.extract import extract_case
from her2dlr.segment.data import mask_box
from her2dlr.video.features import frame_radiomics
from her2dlr.video.localise import localise_video
from her2dlr.video.simulate import SweepSettings, simulate_sweep, write_sweep
from her2dlr.video.stage import extract_video_table
from her2dlr.video.timefreq import FREQUENCY_FEATURES, TIME_FEATURES


def _sweep(seed: int, n: int = 12):
    rng = np.random.default_rng(seed)
    img = rng.uniform(80, 150, (200, 240)).astype(np.float32)
    yy, xx = np.mgrid[:200, :240]
    mask = (yy - 100) ** 2 / 26**2 + (xx - 120) ** 2 / 38**2 < 1
    img[mask] *= 0.4
    return simulate_sweep(img, mask, SweepSettings(n_frames=n, n_dropouts=1, n_freezes=0, seed=seed,
                                                   frame_size=(96, 112)))


@pytest.fixture(scope="module")
def sweep():
    return _sweep(1)


def test_frame_features_equal_pyradiomics_on_files(sweep, tmp_path_factory) -> None:
    k = sweep.key_frame
    loc = localise_video(sweep.frames, "tracker", key_frame=k, key_box=mask_box(sweep.masks[k]))
    curves, failures = frame_radiomics(sweep.frames, loc, params="video")
    assert curves.shape == (12, 87) and curves.index.name == "frame"
    dropped = sweep.events.index("dropout")
    assert curves.loc[dropped].isna().all()  # QC excluded it
    assert curves.drop(index=dropped).notna().all().all() and failures.empty
    folder = tmp_path_factory.mktemp("frame")
    Image.fromarray(sweep.frames[k]).save(folder / "f.png")
    Image.fromarray(loc.mask(k).astype(np.uint8) * 255).save(folder / "m.png")
    want = extract_case(folder / "f.png", folder / "m.png", params="video")
    got = curves.loc[k]
    for name in ("original_firstorder_Mean", "original_glcm_Contrast", "original_shape2D_MeshSurface",
                 "original_glszm_ZonePercentage"):
        assert got[name] == pytest.approx(want[name], rel=1e-6)


def test_cache_returns_the_stored_curves(sweep, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k = sweep.key_frame
    loc = localise_video(sweep.frames, "tracker", key_frame=k, key_box=mask_box(sweep.masks[k]))
    first, _ = frame_radiomics(sweep.frames, loc, cache_dir=tmp_path, cache_key="clip-1")
    assert len(list(tmp_path.glob("*.parquet"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr("her2dlr.video.features.extract_arrays", boom)
    again, _ = frame_radiomics(sweep.frames, loc, cache_dir=tmp_path, cache_key="clip-1")
    pd.testing.assert_frame_equal(first, again)


def test_cohort_video_table(tmp_path: Path) -> None:
    a, b = _sweep(2), _sweep(3)
    write_sweep(a, tmp_path / "a.mp4")
    write_sweep(b, tmp_path / "b_frames")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 500)
    boxes = b.boxes()
    boxes[boxes["frame"] % 3 == 0].to_csv(tmp_path / "b_boxes.csv", index=False)
    manifest = pd.DataFrame({
        "case_id": ["a", "b", "c", "img"], "modality": ["US-video", "video", "US-video", "US"],
        "image": ["a.mp4", "b_frames", "broken.mp4", "x.png"],
        "annotations": [None, "b_boxes.csv", None, None],
        "key_frame": [a.key_frame, None, 0, None],
        "bbox": [str(list(mask_box(a.masks[a.key_frame]))), None, "[10, 10, 20, 20]", None],
        "fps": [None, 30.0, None, None]})
    rows = video_rows(manifest, base=tmp_path)
    assert list(rows["case_id"]) == ["a", "b", "c"] and set(rows["modality"]) == {"US-video"}
    table, failures = extract_video_table(rows, tmp_path / "features", progress=False)
    assert list(table.index) == ["a", "b"] and table.index.name == "case_id"
    assert table.shape[1] == 87 * (len(TIME_FEATURES) + len(FREQUENCY_FEATURES))
    assert np.isfinite(table.to_numpy()).all()
    assert list(failures["case_id"]) == ["c"] and "broken.mp4" in failures["reason"].iloc[0]
    stored = pd.read_parquet(tmp_path / "features" / "video_tf.parquet")
    pd.testing.assert_frame_equal(stored, table)
    frames = pd.read_csv(tmp_path / "features" / "video_tf_frames" / "b.csv")
    assert set(frames["source"]) >= {"annotated", "interpolated"} and "qc" in frames.columns
    with pytest.raises(InputError, match="key_frame must be a frame number"):
        video_rows(manifest.assign(key_frame=["x", None, None, None]))
