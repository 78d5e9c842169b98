"""Per-frame radiomics of a localised clip, and its one-row time-frequency summary (``video_tf``).

:func:`frame_radiomics` makes a second streaming pass over the clip: each frame that frame QC kept
is cropped around its lesion mask (:meth:`~her2dlr.video.localise.Localisation.mask`) and sent, a
block at a time, to PyRadiomics with the shipped ``video`` params (or any other set), in parallel
over frames (joblib). Frames QC excluded, and frames PyRadiomics refuses (reason kept), get NaN
rows, which the time-frequency step fills by interpolation. Results are cached per video under
``cache_dir`` (key: the file's fingerprint, the params hash and the track), so a re-run with the
same clip, settings and localisation costs nothing.

:func:`video_tf_row` turns the curves into one row of ``<feature>__<tf feature>`` columns
(:mod:`her2dlr.video.timefreq`), after resampling to a common frame rate.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.io.video import frame_grey
from her2dlr.radiomics.extract import extract_arrays
from her2dlr.radiomics.parameters import load_params, params_hash
from her2dlr.video.localise import Localisation
from her2dlr.video.timefreq import time_frequency_table

__all__ = ["DEFAULT_TARGET_FPS", "frame_radiomics", "localisation_digest", "video_tf_row"]

PathLike = str | os.PathLike[str]
DEFAULT_TARGET_FPS = 15.0
"""Common frame rate of the curves (seed 001's clips are ~15-30 fps; resampling down never invents detail)."""
_MARGIN = 4


def localisation_digest(loc: Localisation) -> str:
    """A short hash of a localisation (track boxes and masks), for cache keys."""
    h = hashlib.sha256()
    h.update(loc.track[["frame", "x", "y", "w", "h", "source"]].to_csv(index=False).encode())
    h.update(loc.qc["flag"].str.cat().encode())
    for k in sorted(loc.masks):
        y0, x0, crop = loc.masks[k]
        h.update(f"{k},{y0},{x0},{crop.shape}".encode())
        h.update(np.packbits(crop).tobytes())
    return h.hexdigest()[:24]


def _one(job: tuple[int, np.ndarray, np.ndarray], params: Any, spacing: Any) -> tuple[int, dict[str, float] | None, str | None]:
    index, crop, mask = job
    try:
        return index, extract_arrays(crop, mask, params, spacing), None
    except InputError as exc:
        return index, None, str(exc)


def _chunk(jobs: list[tuple[int, np.ndarray, np.ndarray]], params: Any, spacing: Any) -> list[tuple[int, Any, Any]]:
    return [_one(job, params, spacing) for job in jobs]


def _jobs(frames: Iterable[np.ndarray], loc: Localisation) -> Iterator[tuple[int, np.ndarray, np.ndarray] | int]:
    flags = loc.qc["flag"].to_numpy()
    for index, frame in enumerate(frames):
        if index >= len(flags):
            raise InputError(f"The clip has more frames than its localisation ({len(flags)}).")
        if flags[index] != "ok":
            yield index
            continue
        mask = loc.mask(index)
        ys, xs = np.nonzero(mask)
        if not len(ys):
            yield index
            continue
        y0, y1 = max(int(ys.min()) - _MARGIN, 0), int(ys.max()) + _MARGIN + 1
        x0, x1 = max(int(xs.min()) - _MARGIN, 0), int(xs.max()) + _MARGIN + 1
        yield index, frame_grey(frame)[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1].copy()


def frame_radiomics(frames: Iterable[np.ndarray], loc: Localisation, *, params: str | Mapping[str, Any] = "video",
                    spacing: tuple[float, float] | float | None = None, n_jobs: int = 1, block: int = 32,
                    cache_dir: PathLike | None = None, cache_key: str | None = None,
                    progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Radiomics of every frame's lesion: the feature curves of a clip.

    Parameters
    ----------
    frames : iterable of ndarray
        The clip again (a :class:`~her2dlr.io.video.VideoReader` can be iterated twice), frame for frame
        as it was localised.
    loc : Localisation
    params : str or mapping, default "video"
        PyRadiomics params (shipped set name, YAML path or dict).
    spacing : float or (row, column), optional
        Pixel spacing in mm.
    n_jobs : int, default=1
        Worker processes over frames.
    block : int, default=32
        Frames held at a time per worker (memory stays flat however long the clip is).
    cache_dir : path, optional
        Folder of per-video caches; with ``cache_key`` (e.g. the file's fingerprint) a repeated call
        returns the stored curves.
    cache_key : str, optional
    progress : bool, default=False

    Returns
    -------
    curves : DataFrame (n_frames, n_features) indexed by ``frame``
        NaN rows for frames excluded by QC or refused by PyRadiomics.
    failures : DataFrame ``frame, reason``
    """
    resolved = load_params(params)
    cache: Path | None = None
    if cache_dir is not None and cache_key is not None:
        digest = hashlib.sha256(f"{cache_key}|{params_hash(resolved)}|{localisation_digest(loc)}|{spacing}".encode())
        cache = Path(cache_dir) / f"{digest.hexdigest()[:32]}.parquet"
        if cache.exists():
            stored = pd.read_parquet(cache)
            failures = stored.attrs.get("failures") or []
            return stored, pd.DataFrame(failures, columns=["frame", "reason"])
    results: dict[int, dict[str, float] | None] = {}
    reasons: list[tuple[int, str]] = []
    n = len(loc.track)
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="frame radiomics", unit="frame", leave=False)
    pending: list[tuple[int, np.ndarray, np.ndarray]] = []
    size = max(1, block) * max(1, n_jobs)

    def flush() -> None:
        if not pending:
            return
        if n_jobs > 1:
            from joblib import Parallel, delayed

            chunks = [pending[i::n_jobs] for i in range(n_jobs)]
            outs = Parallel(n_jobs=n_jobs, backend="loky")(delayed(_chunk)(c, resolved, spacing) for c in chunks if c)
            done = [r for out in outs for r in out]
        else:
            done = _chunk(pending, resolved, spacing)
        for index, features, reason in done:
            results[index] = features
            if reason:
                reasons.append((index, reason))
        if bar is not None:
            bar.update(len(pending))
        pending.clear()

    try:
        for job in _jobs(frames, loc):
            if isinstance(job, int):
                results[job] = None
                if bar is not None:
                    bar.update(1)
                continue
            pending.append(job)
            if len(pending) >= size:
                flush()
        flush()
    finally:
        if bar is not None:
            bar.close()
    if len(results) != n:
        raise InputError(f"The clip gave {len(results)} frames on the second pass but {n} were localised.")
    names = next((list(r) for r in results.values() if r), None)
    if names is None:
        raise InputError("No frame of the clip gave radiomics features"
                         + (f" (first reason: {reasons[0][1]})" if reasons else " (every frame was excluded)."))
    curves = pd.DataFrame([results[i] if results[i] else dict.fromkeys(names, np.nan) for i in range(n)],
                          columns=names, index=pd.RangeIndex(n, name="frame"))
    failures = pd.DataFrame(reasons, columns=["frame", "reason"])
    if cache is not None:
        from her2dlr.io.atomic import atomic_path

        stored = curves.copy()
        stored.attrs["failures"] = [list(r) for r in reasons]
        with atomic_path(cache) as tmp:
            stored.to_parquet(tmp)
    return curves, failures


def video_tf_row(case_id: str, curves: pd.DataFrame, fps: float, *,
                 target_fps: float | None = DEFAULT_TARGET_FPS) -> pd.DataFrame:
    """The ``video_tf`` row of one clip: 24 time-frequency features per curve.

    Parameters
    ----------
    case_id : str
    curves : DataFrame (n_frames, n_features)
    fps : float
        The clip's frame rate.
    target_fps : float or None, default=15.0
        Common rate the curves are resampled to first (``None``: the clip's own rate).

    Returns
    -------
    DataFrame of one row indexed by ``case_id``
    """
    return time_frequency_table({case_id: curves}, {case_id: fps}, target_fps=target_fps)
