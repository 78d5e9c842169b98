"""One clip -> localisation, curves and its ``video_tf`` row; a cohort of clips -> the ``video_tf`` table.

:func:`analyse_video` runs the whole path on one clip (two streaming passes: QC + localisation, then
per-frame radiomics). :func:`extract_video_table` runs it on every video row of a cohort and writes,
under a features folder (``RUN/features``): ``video_tf.parquet`` (one row per video, indexed by
``case_id``, read by ``learn run`` like any other table), ``video_tf.json`` (how it was made),
``video_tf_failures.csv`` (videos left out, with the reason: unreadable, lesion never found, ...) and
``video_tf_frames/<case>.csv`` (per frame: box, confidence, source, reason, QC flag).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.io.atomic import write_csv_atomic, write_parquet_atomic, write_text_atomic
from her2dlr.io.video import VideoInfo, open_video
from her2dlr.video.features import DEFAULT_TARGET_FPS, frame_radiomics, video_tf_row
from her2dlr.video.localise import Localisation, localise_video, read_annotations

__all__ = ["VideoAnalysis", "analyse_video", "extract_video_table", "frame_table", "run_video_stage"]

PathLike = str | os.PathLike[str]


@dataclass
class VideoAnalysis:
    """Everything computed about one clip."""

    case_id: str
    info: VideoInfo
    localisation: Localisation
    curves: pd.DataFrame
    failures: pd.DataFrame
    row: pd.DataFrame

    def counts(self) -> dict[str, int]:
        """Frames per source and QC flag."""
        return self.localisation.counts()


def frame_table(loc: Localisation) -> pd.DataFrame:
    """Per-frame table: ``frame, x, y, w, h, confidence, source, reason, qc``."""
    out = loc.track.copy()
    out["qc"] = loc.qc["flag"].to_numpy()
    return out


def _method(annotations: Any, model: Any, key_box: Any) -> str:
    if annotations is not None:
        return "annotations"
    if model is not None:
        return "network"
    if key_box is not None:
        return "tracker"
    raise InputError("A video needs per-frame annotations, a segmentation network or one key-frame box "
                     "(x, y, w, h) to find its lesion.")


def analyse_video(path: PathLike, *, case_id: str = "case", annotations: PathLike | Mapping[int, Any] | None = None,
                  key_frame: int = 0, key_box: tuple[float, float, float, float] | None = None, model: Any = None,
                  spec: Any = None, params: str | Mapping[str, Any] = "video", fps: float | None = None,
                  spacing: float | None = None, target_fps: float | None = DEFAULT_TARGET_FPS, n_jobs: int = 1,
                  cache_dir: PathLike | None = None, progress: bool = False, device: str = "cpu",
                  localisation: Localisation | None = None) -> VideoAnalysis:
    """Localise the lesion in every frame of a clip, compute its curves and its ``video_tf`` row.

    The localisation source is chosen in the order annotations > network > tracker (whatever is given).

    Parameters
    ----------
    path : path-like
        Video file, DICOM cine or frame folder.
    case_id : str
    annotations : path or mapping, optional
        Per-frame boxes CSV or mask folder (:func:`~her2dlr.video.localise.read_annotations`).
    key_frame : int, default=0
    key_box : (x, y, w, h), optional
        Lesion box on the key frame (tracker, box-prompted network).
    model, spec : optional
        Segmentation network and its spec.
    params : str or mapping, default "video"
    fps : float, optional
        Frame rate when the file has none (required then).
    spacing : float, optional
        Pixel size in mm when the file has none.
    target_fps : float or None, default=15.0
    n_jobs : int, default=1
    cache_dir : path, optional
        Per-video cache of the curves.
    progress : bool, default=False
    device : str, default="cpu"
    localisation : Localisation, optional
        Already computed (a live source localised frame by frame): the first pass is skipped.

    Raises
    ------
    InputError
        Unreadable clip, no frame rate, annotations of frames that do not exist, a lesion never found.
    """
    reader = open_video(path, fps=fps, pixel_spacing=spacing)
    info = reader.info
    if info.fps is None:
        raise InputError(f"Video {path} carries no frame rate: give it (fps).")
    if annotations is not None and not isinstance(annotations, Mapping):
        annotations = read_annotations(annotations, n_frames=info.n_frames)
    if localisation is not None:
        loc = localisation
    else:
        loc = localise_video(reader, _method(annotations, model, key_box), key_frame=key_frame, key_box=key_box,
                             annotations=dict(annotations) if annotations is not None else None, model=model,
                             spec=spec, progress=progress, total=info.n_frames, device=device)
    if annotations:
        beyond = sorted(f for f in annotations if f >= len(loc.track))
        if beyond:
            raise InputError(f"Annotations name frame(s) {beyond[:5]} but video {path} has {len(loc.track)} frames.")
    key = None
    if cache_dir is not None:
        from her2dlr.radiomics.cache import file_fingerprint

        key = file_fingerprint(info.path) if info.path.is_file() else f"{info.path}:{info.n_frames}"
    curves, failures = frame_radiomics(reader, loc, params=params, spacing=info.pixel_spacing, n_jobs=n_jobs,
                                       cache_dir=cache_dir, cache_key=key, progress=progress)
    row = video_tf_row(case_id, curves, float(info.fps), target_fps=target_fps)
    return VideoAnalysis(case_id=case_id, info=info, localisation=loc, curves=curves, failures=failures, row=row)


def _cell(row: Mapping[str, Any], key: str) -> Any:
    value = row.get(key)
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return value


def extract_video_table(rows: pd.DataFrame, features_dir: PathLike, *, name: str = "video_tf", model: Any = None,
                        spec: Any = None, params: str | Mapping[str, Any] = "video",
                        target_fps: float | None = DEFAULT_TARGET_FPS, n_jobs: int = 1,
                        progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``video_tf`` table of a cohort's video rows (see the module docstring for the files written).

    Parameters
    ----------
    rows : DataFrame
        Video rows (:func:`her2dlr.cohort.video.video_rows`): ``case_id, image`` and optional
        ``annotations, key_frame, bbox, fps, spacing``.
    features_dir : path
        ``RUN/features``.
    name : str, default="video_tf"
    model, spec : optional
        Segmentation network for rows without annotations.
    params, target_fps, n_jobs, progress
        As :func:`analyse_video`.

    Returns
    -------
    table : DataFrame indexed by ``case_id``
    failures : DataFrame ``case_id, image, reason``
        One failed video never stops the others.
    """
    from tqdm.auto import tqdm

    from her2dlr.io.cells import parse_bbox
    from her2dlr.radiomics.parameters import load_params, params_hash

    out = Path(features_dir)
    frames_dir = out / f"{name}_frames"
    table_rows, failures, counts = [], [], {}
    for rec in tqdm(rows.to_dict(orient="records"), desc="videos", unit="video", disable=not progress):
        case_id = str(rec["case_id"])
        try:
            key_frame = _cell(rec, "key_frame")
            analysis = analyse_video(
                rec["image"], case_id=case_id, annotations=_cell(rec, "annotations"),
                key_frame=int(key_frame) if key_frame is not None else 0, key_box=parse_bbox(_cell(rec, "bbox"), ndim=2),
                model=model, spec=spec, params=params, fps=_cell(rec, "fps"), spacing=_cell(rec, "spacing"),
                target_fps=target_fps, n_jobs=n_jobs, cache_dir=out / "cache" / name, progress=False)
        except InputError as exc:
            failures.append({"case_id": case_id, "image": rec["image"], "reason": str(exc)})
            continue
        table_rows.append(analysis.row)
        counts[case_id] = analysis.counts()
        write_csv_atomic(frame_table(analysis.localisation), frames_dir / f"{case_id}.csv")
    fail = pd.DataFrame(failures, columns=["case_id", "image", "reason"])
    write_csv_atomic(fail, out / f"{name}_failures.csv")
    if not table_rows:
        raise InputError(f"No video gave features ({len(fail)} failed; first reason: "
                         f"{fail['reason'].iloc[0] if len(fail) else 'no video rows'}).")
    table = pd.concat(table_rows)
    table.index.name = "case_id"
    write_parquet_atomic(table, out / f"{name}.parquet")
    resolved = load_params(params)
    record = {"name": name, "params": params if isinstance(params, str) else "custom",
              "params_hash": params_hash(resolved), "roi": "video", "target_fps": target_fps,
              "n_videos": len(table), "n_failed": len(fail), "frames": counts}
    write_text_atomic(out / f"{name}.json", json.dumps(record, indent=2, default=str))
    return table, fail


def run_video_stage(study: Any, settings: Any = None, *, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``her2dlr extract video`` and the ``video`` stage of ``her2dlr run``: the study's ``video_tf`` table.

    Parameters
    ----------
    study : her2dlr.config.Study
        Its manifest's included video rows are analysed (QC-excluded clips are left out).
    settings : her2dlr.video.settings.VideoSettings, optional
        Default: the study's ``video:`` section, or the defaults when it has none.
    progress : bool, default=True

    Returns
    -------
    table, failures
        As :func:`extract_video_table`.
    """
    from her2dlr.cohort.build import manifest_path
    from her2dlr.cohort.manifest import Manifest
    from her2dlr.cohort.video import video_rows
    from her2dlr.video.settings import VideoSettings

    s = settings if settings is not None else (getattr(study, "video", None) or VideoSettings())
    rows = video_rows(Manifest.load(manifest_path(study)).included)
    if rows.empty:
        raise InputError(f"The study '{study.name}' has no included video rows (modality US-video) for the video "
                         "stage; check the cohort source's modality and qc.csv.")
    model = spec = None
    if s.network is not None:
        from her2dlr.segment.checkpoints import load_segmenter

        network = study.resolve(s.network)
        if not Path(network).is_file():
            raise InputError(f"video.network: {network} does not exist (a segmentation checkpoint, e.g. "
                             "RUN/segment/<arch>/final/best.pt after `her2dlr train seg --final`).")
        model, spec, _ = load_segmenter(network, spatial_dims=2)
    n_jobs = (os.cpu_count() or 1) if s.n_jobs == -1 else s.n_jobs
    params = str(study.resolve(s.params)) if s.params.endswith((".yaml", ".yml")) else s.params
    return extract_video_table(rows, study.paths.features, params=params, model=model, spec=spec,
                               target_fps=s.target_fps, n_jobs=n_jobs, progress=progress)
