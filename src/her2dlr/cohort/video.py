"""Video rows of the cohort manifest (``modality: US-video``, also written ``video``).

A video row's ``image`` is a video file (MP4/AVI/MOV/...), a DICOM cine file or a folder of numbered
frames. Optional columns: ``annotations`` (per-frame boxes CSV ``frame, x, y, w, h`` or a folder of
mask files), ``key_frame`` (frame number of the row's ``bbox``, the one annotated key-frame box),
``fps`` (frame rate when the file has none) and the usual ``spacing``.

A table source names these columns in the study file (``annotations_column``, ``key_frame_column``,
``fps_column`` and the box columns); :func:`video_cells` reads them from a row and
:func:`video_row_problems` checks them against the clip's header, so a bad row is refused at the
cohort build with its row and column named, before any frame is analysed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from her2dlr.errors import InputError

__all__ = ["VIDEO_COLUMNS", "VIDEO_MODALITIES", "video_cells", "video_row_problems", "video_rows"]

VIDEO_MODALITIES = ("US-video", "video")
VIDEO_COLUMNS = ("annotations", "key_frame", "bbox", "fps", "spacing")


def video_rows(table: pd.DataFrame, *, base: Path | None = None) -> pd.DataFrame:
    """The video rows of a manifest table, with the optional video columns present (missing when not given).

    Parameters
    ----------
    table : DataFrame
        Manifest rows (``case_id, modality, image`` and any of :data:`VIDEO_COLUMNS`).
    base : Path, optional
        Folder that relative ``image`` and ``annotations`` paths are taken from.

    Raises
    ------
    InputError
        No ``modality`` / ``image`` column, a video row without an image, a ``key_frame`` that is not a
        whole number >= 0 (the row's case id is named).
    """
    for col in ("case_id", "modality", "image"):
        if col not in table.columns:
            raise InputError(f"The manifest has no '{col}' column.")
    rows = table[table["modality"].astype(str).isin(VIDEO_MODALITIES)].copy()
    for col in VIDEO_COLUMNS:
        if col not in rows.columns:
            rows[col] = pd.NA
    rows["modality"] = "US-video"
    for i, rec in rows.iterrows():
        if pd.isna(rec["image"]) or not str(rec["image"]).strip():
            raise InputError(f"Video row '{rec['case_id']}' has no image (a video file or a frame folder).")
        kf = rec["key_frame"]
        if not pd.isna(kf):
            try:
                ok = float(kf) == int(float(kf)) and int(float(kf)) >= 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise InputError(f"Video row '{rec['case_id']}': key_frame must be a frame number >= 0; got {kf!r}.")
        if base is not None:
            for col in ("image", "annotations"):
                value = rows.at[i, col]
                if not pd.isna(value) and not Path(str(value)).is_absolute():
                    rows.at[i, col] = str((base / str(value)).resolve())
    return rows


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def video_cells(rec: Mapping[str, Any], *, where: str, root: Path, annotations_column: str | None = None,
                key_frame_column: str | None = None, fps_column: str | None = None) -> dict[str, Any]:
    """The video columns (``annotations``, ``key_frame``, ``fps``) of one table row.

    Parameters
    ----------
    rec : mapping
        The row's cells.
    where : str
        How the row is named in messages (e.g. ``"table videos.csv row 4"``).
    root : Path
        Folder that a relative annotations path is taken from.
    annotations_column, key_frame_column, fps_column : str, optional
        The table's columns; an empty cell gives a missing value.

    Raises
    ------
    InputError
        A key frame that is not a whole number >= 0, a frame rate that is not a positive number
        (the row and the column are named).
    """
    out: dict[str, Any] = {}
    if annotations_column:
        value = rec[annotations_column]
        out["annotations"] = pd.NA if pd.isna(value) or not str(value).strip() else str(root / str(value).strip())
    if key_frame_column:
        value = rec[key_frame_column]
        number = None if pd.isna(value) else _number(value)
        if not pd.isna(value) and (number is None or number != int(number) or number < 0):
            raise InputError(f"{where}, column '{key_frame_column}': the key frame must be a frame number "
                             f"(0, 1, ...); got {value!r}.")
        out["key_frame"] = pd.NA if number is None else int(number)
    if fps_column:
        value = rec[fps_column]
        number = None if pd.isna(value) else _number(value)
        if not pd.isna(value) and (number is None or not number > 0):
            raise InputError(f"{where}, column '{fps_column}': the frame rate must be a positive number; "
                             f"got {value!r}.")
        out["fps"] = pd.NA if number is None else number
    return out


def video_row_problems(image: Path, cells: Mapping[str, Any], *, where: str, columns: Mapping[str, str]) -> list[str]:
    """What is wrong with a video row's key frame, key-frame box and annotations, given its clip.

    Only the clip's header is read (frame count and size). A clip that cannot be opened gives no
    problem here: the cohort's QC excludes it with the reason.

    Parameters
    ----------
    image : Path
        The row's clip.
    cells : mapping
        ``key_frame``, ``bbox`` (JSON ``[x, y, w, h]``) and ``annotations`` (path), any missing.
    where : str
        How the row is named.
    columns : mapping
        The table's column behind each of ``key_frame``, ``bbox``, ``annotations`` (named in messages).

    Returns
    -------
    list of str
        One message per problem, naming the row and the column.
    """
    from her2dlr.io.video import open_video
    from her2dlr.io.video_annotations import annotation_problems, read_annotations

    def present(key: str) -> bool:
        value = cells.get(key)
        return value is not None and not pd.isna(value)

    if not any(present(k) for k in ("key_frame", "bbox", "annotations")):
        return []
    try:
        info = open_video(image).info
    except InputError:
        return []
    n_frames, size = info.n_frames, info.size
    problems = []
    if present("key_frame") and n_frames is not None and int(cells["key_frame"]) >= n_frames:
        problems.append(f"{where}, column '{columns['key_frame']}': key frame {int(cells['key_frame'])} is beyond "
                        f"the clip's {n_frames} frames (0 to {n_frames - 1}).")
    if present("bbox") and size is not None:
        x, y, w, h = json.loads(str(cells["bbox"]))
        if x + w > size[1] or y + h > size[0]:
            problems.append(f"{where}, column(s) {columns['bbox']}: the key-frame box {[x, y, w, h]} lies outside "
                            f"the clip's {size[1]}x{size[0]} frame.")
    if present("annotations"):
        column = columns["annotations"]
        try:
            annotations = read_annotations(cells["annotations"], n_frames=n_frames)
        except InputError as exc:
            problems.append(f"{where}, column '{column}': {exc}")
        else:
            if size is not None:
                problems += [f"{where}, column '{column}': {p}." for p in annotation_problems(annotations, size)]
    return problems
