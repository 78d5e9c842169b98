"""Video benchmarks (seed 001): simulated sweeps from BUSI, and speed of the streaming video path.

``her2dlr bench video-sim --data ../shared/data/busi`` simulates one probe sweep per BUSI image
(:mod:`her2dlr.video.simulate`; benign and malignant images with one lesion mask, 220 videos of 60 frames
at 15 fps, ``--quick``: 40 videos of 30 frames), with 2 dropouts and 2 frozen frames each. The lesion is
tracked from the true box of the key frame (the largest cross-section, as a sonographer would annotate
it) by :class:`~her2dlr.video.track.TemplateTracker`; 8% of the tracked frames are then replaced by
injected misfires (the box moved by 0.6-1.2 of its side, confidence 0.9), as a detector produces them.

* ``dice_frames``: per-frame Dice of the raw localisation (tracker + misfires; frames QC flags or where
  nothing was found count as 0) against the true masks, mean of the videos' means (CI: bootstrap over
  videos);
* ``dice_frames_after_interpolation``: the same after temporal rejection, interpolation and smoothing;
* ``rejected_share``: share of frames rejected; ``misfires_rejected_share``: share of injected misfires
  that the rejection caught;
* ``auc_video_tf``: out-of-fold AUC (benign vs malignant) of the time-frequency model (87 per-frame
  ``video`` radiomics x 24 features) and ``auc_keyframe``: the same classifier on the 87 radiomics of the
  key frame with its true mask, on the same 5 folds grouped by source image (DeLong CI; ``p_delong``
  compares them). Classifier: median imputation, variance filter, z-score, L2 logistic regression (C=0.05).
* like for like: ``auc_keyframe_tracked`` is the key-frame model on the mask the video path gave that
  frame (``dice_key_frame``: its Dice against the true mask), and ``auc_video_tf_true_masks`` the
  time-frequency model on the true mask of every frame. ``auc_keyframe`` vs ``auc_keyframe_tracked`` and
  ``auc_video_tf_true_masks`` vs ``auc_video_tf`` show what localisation costs; ``auc_video_tf_true_masks``
  vs ``auc_keyframe`` (and ``auc_video_tf`` vs ``auc_keyframe_tracked``) what the time-frequency features
  cost or add at equal localisation.

``--localiser network`` replaces the tracker by the box-prompted segmentation network
(:mod:`her2dlr.bench.video_network`): per outer fold (the AUC models' folds), a small U-Net trained on
the source stills of that fold's training videos only localises the fold's test videos, prompted from
the key frame's true box and then from its own previous box; misfires are injected as for the tracker
(a misfired mask moves with its box). Every line then says ``"localiser": "network"``.

What it can and cannot show: each simulated video holds exactly the information of its source still
(plus speckle and motion), so ``auc_video_tf`` vs ``auc_keyframe`` measures what the video path keeps
or loses of a still's signal, not what real sweeps add. BUSI holds near-duplicate images, grouped here
by file only.

``her2dlr bench video-speed`` writes a simulated 2,000-frame clip (240 x 320, ``--quick``: 300) and
measures ``decode_fps`` (PyAV), ``localise_fps`` (box-prompted U-Net at the default 128 px input,
untrained weights: speed only, one frame a call as a live source gives them), ``track_fps`` (template
tracker), ``pipeline_fps`` (decode + QC + tracker + per-frame ``video`` radiomics on 2 workers: the
whole :func:`~her2dlr.video.stage.analyse_video`) and ``peak_mb`` (peak resident memory of the main
process over the pipeline run; ``growth_mb``: its rise between a run on the first 10% of the clip and
the whole clip, which stays near 0 when the path streams).

Development run (2 shared CPU cores under a load of 6-12 from other work, so speeds are pessimistic):
video-sim: dice_frames 0.697 (0.685-0.708), dice_frames_after_interpolation 0.802 (0.788-0.814),
rejected_share 0.072, misfires_rejected_share 0.999, auc_video_tf 0.828 (0.774-0.882) vs auc_keyframe
0.953 (0.928-0.979), DeLong p < 0.001 (220 videos, 1,792 s). The key-frame model reads the true mask of
its frame while the video model reads the tracker's ellipses on every frame, which is most of the gap.
``--quick`` with the like-for-like lines (40 videos, 30 frames, 292 s): auc_video_tf 0.573, auc_keyframe
0.678, auc_keyframe_tracked 0.650 (dice_key_frame 0.874), auc_video_tf_true_masks 0.663 (p 0.82 against
auc_keyframe); intervals are +-0.18 at this size. ``--quick --localiser network`` (8 epochs per fold,
855 s): dice_frames 0.466, after interpolation 0.579 (tracker: 0.620, 0.774), auc_video_tf 0.515,
auc_keyframe_tracked 0.588.
video-speed: decode_fps 430, localise_fps 22.6 (target 30, not met under that load), track_fps 175,
pipeline_fps 11.5 (target 8), peak_mb 722 with growth_mb 27 from 200 to 2,000 frames. On the same 2 cores
with no other work (load about 1.3), the 2,000-frame clip gave decode_fps 475, localise_fps 41.5,
track_fps 361, pipeline_fps 26.6, peak_mb 753 with growth_mb 26.
"""

from __future__ import annotations

import resource
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.bench import BenchOptions, register, result
from her2dlr.bench.video_network import fold_indices, shift_mask, train_fold_network

SIM = "video-sim"
SPEED = "video-speed"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = float(a.sum() + b.sum())
    return 2.0 * float((a & b).sum()) / s if s else 1.0


def _busi_cases(root: Path, n: int, seed: int) -> list[tuple[Path, Path, int]]:
    from her2dlr.errors import InputError

    picked = []
    per_class = n // 2
    for label, cls in ((0, "benign"), (1, "malignant")):
        folder = root / cls
        if not folder.is_dir():
            raise InputError(f"video-sim needs the BUSI folder with benign/ and malignant/; {folder} is missing.")
        images = sorted(p for p in folder.glob("*.png") if "_mask" not in p.name)
        ok = [p for p in images if (p.parent / f"{p.stem}_mask.png").exists()
              and not (p.parent / f"{p.stem}_mask_1.png").exists()]
        rng = np.random.default_rng(seed + label)
        chosen = rng.permutation(len(ok))[:per_class]
        picked += [(ok[i], ok[i].parent / f"{ok[i].stem}_mask.png", label) for i in sorted(chosen)]
    return picked


def _inject(track: pd.DataFrame, key: int, rng: np.random.Generator, share: float = 0.08) -> tuple[pd.DataFrame, list[int]]:
    out = track.copy()
    candidates = [i for i in out.index[out["source"] == "predicted"] if i != key]
    n = max(1, round(share * len(candidates))) if candidates else 0
    hits = sorted(rng.choice(candidates, size=n, replace=False).tolist()) if n else []
    for i in hits:
        side = float(np.sqrt(out.at[i, "w"] * out.at[i, "h"]))
        angle = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0.6, 1.2) * side
        out.at[i, "x"] += dist * np.cos(angle)
        out.at[i, "y"] += dist * np.sin(angle)
        out.at[i, "confidence"] = 0.9
    return out, hits


def _finalise(localiser: Any, key: int, seed: int, method: str,
              shape: tuple[int, int]) -> tuple[Any, pd.DataFrame, dict, list[int]]:
    """Inject misfires into the raw track (a network mask moves with its box), then reject, interpolate, smooth."""
    from her2dlr.video.localise import finalise_track

    raw, masks = localiser.raw()
    moved, hits = _inject(raw, key, np.random.default_rng(seed + 7))
    for i in hits:
        if i in masks:
            shifted = shift_mask(masks.pop(i), round(moved.at[i, "y"] - raw.at[i, "y"]),
                                 round(moved.at[i, "x"] - raw.at[i, "x"]), shape)
            if shifted is not None:
                masks[i] = shifted
    return finalise_track(moved, masks, shape, localiser.qc_table, method), moved, masks, hits


def _one_video(image: Path, mask: Path, seed: int, n_frames: int, network: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """Simulate, localise (tracker, or ``network`` = (model, spec)), inject misfires, reject and interpolate,
    extract: one video's numbers."""
    from her2dlr.errors import InputError
    from her2dlr.io.video import frame_grey
    from her2dlr.radiomics.extract import extract_arrays
    from her2dlr.segment.data import mask_box
    from her2dlr.video.features import frame_radiomics, video_tf_row
    from her2dlr.video.localise import Localiser, localise_video
    from her2dlr.video.simulate import SweepSettings, simulate_sweep
    from her2dlr.video.track import ellipse_mask

    sweep = simulate_sweep(image, mask, SweepSettings(n_frames=n_frames, fps=15.0, frame_size=(96, 128), seed=seed))
    k = sweep.key_frame
    method = "tracker" if network is None else "network"
    if network is not None:
        import torch

        torch.set_num_threads(1)  # one worker process per core
    model, spec = network if network is not None else (None, None)
    localiser = Localiser(method, key_frame=k, key_box=mask_box(sweep.masks[k]), model=model, spec=spec)
    for frame in sweep.frames:
        localiser.update(frame)
    shape = sweep.frames[0].shape[:2]
    try:
        final, raw, masks, hits = _finalise(localiser, k, seed, method, shape)
    except InputError as exc:  # e.g. a network that never finds the lesion: counted, not fatal
        return {"image": str(image), "error": str(exc), **dict.fromkeys(
            ("dice_raw", "dice_final", "rejected_share", "misfires_caught", "dice_key_frame"), np.nan)}
    truth_frames = [i for i, m in enumerate(sweep.masks) if m.any()]
    raw_dice, final_dice = [], []
    for i in truth_frames:
        row = raw.iloc[i]
        found = row["source"] == "predicted"
        if found and i in masks:
            y0, x0, crop = masks[i]
            raw_mask = np.zeros(shape, bool)
            raw_mask[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
        else:
            raw_mask = ellipse_mask(shape, (row.x, row.y, row.w, row.h)) if found else np.zeros(shape, bool)
        raw_dice.append(_dice(raw_mask, sweep.masks[i]))
        final_dice.append(_dice(final.mask(i), sweep.masks[i]))
    rejected = final.track["source"] == "rejected"
    out: dict[str, Any] = {
        "image": str(image), "dice_raw": float(np.mean(raw_dice)), "dice_final": float(np.mean(final_dice)),
        "rejected_share": float(rejected.mean()),
        "misfires_caught": float(rejected.iloc[hits].mean()) if hits else np.nan, "error": None}
    key_mask = final.mask(k)
    out["dice_key_frame"] = _dice(key_mask, sweep.masks[k])
    try:
        curves, _ = frame_radiomics(sweep.frames, final, params="video")
        out["tf"] = video_tf_row(image.stem, curves, 15.0, target_fps=15.0).iloc[0].to_dict()
        out["key"] = extract_arrays(frame_grey(sweep.frames[k]), sweep.masks[k], "video")
        out["key_tracked"] = extract_arrays(frame_grey(sweep.frames[k]), key_mask, "video")
        truth = localise_video(sweep.frames, "annotations",
                               annotations={i: m for i, m in enumerate(sweep.masks) if m.any()})
        curves, _ = frame_radiomics(sweep.frames, truth, params="video")
        out["tf_true"] = video_tf_row(image.stem, curves, 15.0, target_fps=15.0).iloc[0].to_dict()
    except InputError as exc:
        out["error"] = str(exc)
    return out


def _oof(X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    prob = np.full(len(y), np.nan)
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    values = X.replace([np.inf, -np.inf], np.nan).to_numpy(float)
    for train, test in folds.split(values, y, groups):
        model = make_pipeline(SimpleImputer(strategy="median"), VarianceThreshold(), StandardScaler(),
                              LogisticRegression(C=0.05, max_iter=5000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(values[train], y[train])
        prob[test] = model.predict_proba(values[test])[:, 1]
    return prob


def _boot_mean(values: np.ndarray, seed: int, n_boot: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


@register(SIM, "Simulated BUSI sweeps: dice_frames before/after rejection + interpolation, rejected_share, auc_video_tf vs auc_keyframe")
def video_sim_bench(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    from joblib import Parallel, delayed

    from her2dlr.errors import InputError
    from her2dlr.evaluate.delong import delong_auc_ci, delong_test

    if opts.data is None:
        raise InputError("video-sim needs --data pointing at the BUSI folder (../shared/data/busi).")
    localiser = str(opts.extra.get("localiser") or "tracker")
    if localiser not in ("tracker", "network"):
        raise InputError(f"video-sim --localiser must be tracker or network; got '{localiser}'.")
    n_videos, n_frames = (40, 30) if opts.quick else (220, 60)
    start = time.perf_counter()
    cases = _busi_cases(Path(opts.data), n_videos, opts.seed)
    labels = np.array([c[2] for c in cases])
    seeds = [opts.seed * 1000 + i for i in range(len(cases))]
    jobs = Parallel(n_jobs=max(1, opts.n_jobs), backend="loky")
    info: dict[str, Any] = {"localiser": localiser}
    if localiser == "tracker":
        runs = jobs(delayed(_one_video)(img, msk, seeds[i], n_frames) for i, (img, msk, _) in enumerate(cases))
    else:
        runs = [None] * len(cases)
        epochs = 8 if opts.quick else 20
        info.update(network="box-prompted unet 64 px (8-128), trained per fold on its training stills",
                    epochs=epochs)
        for train, test in fold_indices(labels, np.array([str(c[0]) for c in cases]), opts.seed):
            network = train_fold_network([cases[i][:2] for i in train], seed=opts.seed, epochs=epochs,
                                         threads=max(1, opts.n_jobs))
            for i, out in zip(test, jobs(delayed(_one_video)(cases[i][0], cases[i][1], seeds[i], n_frames, network)
                                         for i in test)):
                runs[i] = out
    seconds = time.perf_counter() - start
    common = {"n": len(runs), "frames": n_frames, "seconds": round(seconds, 1), **info}
    for metric, key in (("dice_frames", "dice_raw"), ("dice_frames_after_interpolation", "dice_final"),
                        ("rejected_share", "rejected_share"), ("misfires_rejected_share", "misfires_caught")):
        values = np.array([r[key] for r in runs], float)
        values = values[np.isfinite(values)]
        low, high = _boot_mean(values, opts.seed)
        yield result(SIM, metric, round(float(values.mean()), 4), ci_low=round(low, 4), ci_high=round(high, 4), **common)
    ok = [i for i, r in enumerate(runs) if r["error"] is None]
    y = labels[ok]
    groups = np.array([runs[i]["image"] for i in ok])
    extra = {"n": len(ok), "n_failed": len(runs) - len(ok), "n_positive": int(y.sum()), "seconds": round(seconds, 1),
             "localiser": localiser}
    probs, widths = {}, {}
    for metric, key in (("auc_video_tf", "tf"), ("auc_keyframe", "key"), ("auc_keyframe_tracked", "key_tracked"),
                        ("auc_video_tf_true_masks", "tf_true")):
        table = pd.DataFrame([runs[i][key] for i in ok])
        probs[metric], widths[metric] = _oof(table, y, groups, opts.seed), table.shape[1]
    dice_key = np.array([runs[i]["dice_key_frame"] for i in ok], float)
    notes = {"auc_keyframe": {"mask": "true mask of the key frame"},
             "auc_keyframe_tracked": {"mask": "the video path's mask of the key frame",
                                      "dice_key_frame": round(float(dice_key.mean()), 4)},
             "auc_video_tf": {"mask": "the video path's masks"},
             "auc_video_tf_true_masks": {"mask": "true mask of every frame"}}
    for metric in ("auc_video_tf", "auc_keyframe", "auc_keyframe_tracked", "auc_video_tf_true_masks"):
        res = delong_auc_ci(y, probs[metric])
        yield result(SIM, metric, round(res.auc, 4), ci_low=round(res.ci_low, 4), ci_high=round(res.ci_high, 4),
                     n_features=widths[metric], **notes[metric], **extra)
    for a, b in (("video_tf", "keyframe"), ("video_tf", "keyframe_tracked"),
                 ("video_tf_true_masks", "keyframe")):
        test = delong_test(y, probs[f"auc_{a}"], probs[f"auc_{b}"])
        yield result(SIM, f"p_delong_{a}_vs_{b}", round(float(test.p_value), 4), **extra)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@register(SPEED, "Video path speed: decode_fps, localise_fps (U-Net 128 px), track_fps, pipeline_fps, peak_mb on a 2,000-frame clip")
def video_speed_bench(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    import torch

    from her2dlr.io.video import VideoWriter, frame_grey, open_video
    from her2dlr.segment.data import SegSpec, mask_box
    from her2dlr.segment.infer import segment_images
    from her2dlr.segment.networks import build_seg_network
    from her2dlr.video.simulate import SweepSettings, sweep_frames
    from her2dlr.video.stage import analyse_video
    from her2dlr.video.track import TemplateTracker

    n = 300 if opts.quick else 2000
    rng = np.random.default_rng(opts.seed)
    yy, xx = np.mgrid[:300, :360]
    still = ndimage_speckle(rng, (300, 360))
    lesion = (yy - 150) ** 2 / 40**2 + (xx - 180) ** 2 / 55**2 < 1
    still[lesion] *= 0.35
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        settings = SweepSettings(n_frames=n, fps=30.0, frame_size=(240, 320), n_dropouts=4, n_freezes=4, seed=opts.seed)
        first_mask = None
        with VideoWriter(clip, fps=30.0) as writer:
            for i, (frame, mask, _) in enumerate(sweep_frames(still, lesion, settings)):
                writer.write(frame)
                if i == 0:
                    first_mask = mask
        box = mask_box(first_mask)
        common = {"frames": n, "size": "320x240", "threads": torch.get_num_threads()}

        start = time.perf_counter()
        count = sum(1 for _ in open_video(clip))
        yield result(SPEED, "decode_fps", round(count / (time.perf_counter() - start), 1), **common)

        spec = SegSpec(size=128, box_prompt=True)
        model = build_seg_network("unet", in_channels=spec.in_channels)
        frames = []
        for i, frame in enumerate(open_video(clip)):
            frames.append(frame_grey(frame))
            if i >= 199:
                break
        segment_images(model, frames[:4], boxes=[box] * 4, spec=spec, progress=False)  # warm-up
        start = time.perf_counter()
        for f in frames:
            segment_images(model, [f], boxes=[box], spec=spec, progress=False)
        yield result(SPEED, "localise_fps", round(len(frames) / (time.perf_counter() - start), 1), target=30,
                     network="unet (untrained), 128 px, box prompt", **common)

        tracker = TemplateTracker(frames[0], box)
        start = time.perf_counter()
        for f in frames[1:]:
            tracker.step(f)
        yield result(SPEED, "track_fps", round((len(frames) - 1) / (time.perf_counter() - start), 1), **common)
        del frames

        short = Path(tmp) / "short"
        short.mkdir()
        for i, frame in enumerate(open_video(clip)):
            if i >= n // 10:
                break
            from PIL import Image

            Image.fromarray(frame).save(short / f"frame_{i:05d}.png")
        analyse_video(short, fps=30.0, key_box=box, n_jobs=2)
        before = _maxrss_mb()
        start = time.perf_counter()
        analysis = analyse_video(clip, key_box=box, n_jobs=2)
        seconds = time.perf_counter() - start
        peak = _maxrss_mb()
        yield result(SPEED, "pipeline_fps", round(n / seconds, 2), target=8, localiser="tracker",
                     features=int(analysis.curves.shape[1]), seconds=round(seconds, 1), **common)
        yield result(SPEED, "peak_mb", round(peak, 1), growth_mb=round(peak - before, 1), **common)


def ndimage_speckle(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A smooth tissue-like background (blurred noise) for the speed clip."""
    from scipy import ndimage

    return (ndimage.gaussian_filter(rng.uniform(60, 180, shape), 3.0) * 1.0).astype(np.float32)
