"""Frame QC, the template tracker, temporal rejection and interpolation, and per-frame localisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2dlr.errors import InputError
from her2dlr.segment.data import mask_box
from her2dlr.video.localise import Localiser, localise_video, read_annotations
from her2dlr.video.qc import FrameQC, qc_counts
from her2dlr.video.simulate import SweepSettings, simulate_sweep
from her2dlr.video.track import (
    TRACK_COLUMNS,
    RejectionSettings,
    interpolate_track,
    ncc_map,
    reject_outliers,
)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def _still(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = ndimage_smooth(rng.uniform(70, 150, (220, 260)))
    yy, xx = np.mgrid[:220, :260]
    mask = (yy - 100) ** 2 / 28**2 + (xx - 130) ** 2 / 42**2 < 1
    img[mask] = 0.35 * img[mask]
    return img.astype(np.float32), mask


def ndimage_smooth(a: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(a, 2.0)


@pytest.fixture(scope="module")
def sweep():
    img, mask = _still()
    return simulate_sweep(img, mask, SweepSettings(n_frames=40, n_dropouts=2, n_freezes=1, seed=2))


def test_ncc_matches_brute_force_pearson() -> None:
    rng = np.random.default_rng(1)
    image, template = rng.normal(size=(12, 14)), rng.normal(size=(4, 5))
    got = ncc_map(image, template)
    want = np.array([[np.corrcoef(image[i:i + 4, j:j + 5].ravel(), template.ravel())[0, 1]
                      for j in range(10)] for i in range(9)])
    np.testing.assert_allclose(got, want, atol=1e-9)
    image[3:7, 6:11] = template * 2 + 5  # an exact (affine) copy scores 1 there
    assert np.unravel_index(np.argmax(ncc_map(image, template)), (9, 10)) == (3, 6)


def test_frame_qc_flags_each_kind() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(30, 200, (60, 80), dtype=np.uint8) for _ in range(8)]
    rgb = [np.repeat(f[..., None], 3, axis=2) for f in frames]
    rgb[2] = rgb[1].copy()  # frozen
    rgb[3] = np.zeros_like(rgb[3])  # blank
    rgb[5] = rgb[0].copy()  # duplicate of a non-adjacent frame
    rgb[6] = rgb[6].copy()
    rgb[6][10:40, 20:60] = (200, 30, 30)  # a colour Doppler box
    rgb[7] = rgb[7].copy()
    rgb[7][30, 10:40] = 255  # white caliper cross
    rgb[7][15:45, 25] = 255
    qc = FrameQC()
    flags = [qc.update(f) for f in rgb]
    assert flags == ["ok", "ok", "frozen", "blank", "ok", "duplicate", "doppler", "ok"]
    # the caliper needs a previous frame with the same pixels: burnt in on two frames in a row
    qc2 = FrameQC()
    base = [np.repeat(rng.integers(30, 200, (60, 80), dtype=np.uint8)[..., None], 3, axis=2) for _ in range(4)]
    for f in base[2:]:
        f[30, 10:40] = 255
        f[15:45, 25] = 255
    assert [qc2.update(f) for f in base] == ["ok", "ok", "ok", "overlay"]
    assert qc_counts(qc.table) == {"ok": 4, "blank": 1, "frozen": 1, "duplicate": 1, "doppler": 1, "overlay": 0}


def _smooth_track(n: int = 30) -> pd.DataFrame:
    t = np.arange(n)
    return pd.DataFrame({"frame": t, "x": 20 + 0.5 * t, "y": 30 + 0.2 * t, "w": 40 + 0.1 * t, "h": 30.0,
                         "confidence": 0.9, "source": "predicted", "reason": None}, columns=TRACK_COLUMNS)


def test_rejection_catches_jumps_size_and_confidence_then_interpolation_recovers() -> None:
    truth = _smooth_track()
    track = truth.copy()
    track.loc[8, ["x", "y"]] = [90.0, 5.0]  # centre jump
    track.loc[15, ["w", "h"]] = [100.0, 80.0]  # size change
    track.loc[22, "confidence"] = 0.1  # low confidence
    out = reject_outliers(track, RejectionSettings())
    assert sorted(out.index[out["source"] == "rejected"]) == [8, 15, 22]
    assert "centre jump" in out.loc[8, "reason"] and "size change" in out.loc[15, "reason"]
    assert "confidence" in out.loc[22, "reason"]
    filled = interpolate_track(out)
    assert (filled["source"] == "rejected").sum() == 3
    np.testing.assert_allclose(filled[["x", "y", "w", "h"]], truth[["x", "y", "w", "h"]], atol=1e-9)


def test_steady_track_rejects_nothing() -> None:
    track = _smooth_track()
    track[["x", "y"]] += np.random.default_rng(0).normal(0, 0.5, (30, 2))
    assert (reject_outliers(track)["source"] == "predicted").all()


def test_never_found_is_refused() -> None:
    track = _smooth_track(5)
    track["source"] = "missing"
    with pytest.raises(InputError, match="never found"):
        interpolate_track(track)


def test_tracker_follows_the_lesion_from_a_middle_key_frame(sweep) -> None:
    k = sweep.key_frame
    loc = localise_video(iter(sweep.frames), "tracker", key_frame=k, key_box=mask_box(sweep.masks[k]))
    assert len(loc.track) == 40
    dice = [_dice(loc.mask(i), sweep.masks[i]) for i in range(40)]
    assert np.mean(dice) > 0.6 and min(dice) > 0.3
    counts = loc.counts()
    assert counts["qc_blank"] == 2 and counts["qc_frozen"] == 1
    assert counts["predicted"] + counts["interpolated"] + counts["rejected"] == 40
    flagged = loc.qc.index[loc.qc["flag"] != "ok"]
    assert (loc.track.loc[flagged, "source"] == "interpolated").all()


def test_annotations_csv_sparse_frames_are_interpolated(sweep, tmp_path: Path) -> None:
    boxes = pd.DataFrame([dict(zip(["frame", "x", "y", "w", "h"], [i, *mask_box(sweep.masks[i])]))
                          for i in range(0, 40, 3) if sweep.events[i] == "ok"])
    csv = tmp_path / "boxes.csv"
    boxes.to_csv(csv, index=False)
    ann = read_annotations(csv, n_frames=40)
    loc = localise_video(sweep.frames, "annotations", annotations=ann)
    assert set(loc.track.loc[boxes["frame"], "source"]) == {"annotated"}
    assert loc.track.loc[1, "source"] == "interpolated" and loc.track.loc[1, "reason"] == "not annotated"
    inner = [i for i in range(3, 36) if sweep.events[i] == "ok"]
    assert np.mean([_dice(loc.mask(i), sweep.masks[i]) for i in inner]) > 0.6
    with pytest.raises(InputError, match=r"frame\(s\) \[40\] but the video has 40 frames"):
        pd.concat([boxes, pd.DataFrame([{"frame": 40, "x": 1, "y": 1, "w": 5, "h": 5}])]).to_csv(csv, index=False)
        read_annotations(csv, n_frames=40)


def test_annotation_masks_folder(sweep, tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "masks"
    folder.mkdir()
    for i in (5, 10, 30):
        Image.fromarray((sweep.masks[i] * 255).astype(np.uint8)).save(folder / f"mask_{i:03d}.png")
    ann = read_annotations(folder, n_frames=40)
    loc = localise_video(sweep.frames, "annotations", annotations=ann)
    assert loc.track.loc[10, "source"] == "annotated"
    np.testing.assert_array_equal(loc.mask(10), sweep.masks[10])


def test_bad_localiser_options() -> None:
    with pytest.raises(InputError, match="Did you mean 'tracker'"):
        Localiser("trackr")
    with pytest.raises(InputError, match="key frame"):
        Localiser("tracker")
    with pytest.raises(InputError, match="beyond the clip"):
        localise_video([np.full((40, 40), 100, np.uint8) + i for i in range(3)], "tracker", key_frame=9,
                       key_box=(5, 5, 10, 10))


def test_box_prompted_network_follows_the_lesion(sweep) -> None:
    from her2dlr.segment.data import SegSpec, load_seg_pairs
    from her2dlr.segment.train import SegTrainSettings, train_segmenter

    img, mask = _still(5)
    train = simulate_sweep(img, mask, SweepSettings(n_frames=24, n_dropouts=0, n_freezes=0, seed=7))
    spec = SegSpec(size=32, box_prompt=True)
    boxes = [mask_box(m) for m in train.masks]
    X, Y, _ = load_seg_pairs(train.frames, [m.astype(np.uint8) for m in train.masks], boxes, spec=spec,
                             progress=False)
    res = train_segmenter(X, Y, settings=SegTrainSettings(
        image_size=32, box_prompt=True, epochs=8, features=(8, 16, 32), batch_size=8, lr=3e-3, patience=0,
        val_fraction=0.2, device="cpu", num_threads=1, progress=False))
    k = sweep.key_frame
    loc = localise_video(sweep.frames, "network", key_frame=k, key_box=mask_box(sweep.masks[k]),
                         model=res.model, spec=spec)
    dice = [_dice(loc.mask(i), sweep.masks[i]) for i in range(40)]
    assert np.mean(dice) > 0.6
    assert loc.masks  # network masks kept (cropped)
