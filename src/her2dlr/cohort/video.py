"""Video rows of the cohort manifest (``modality: US-video``, also written ``video``).

A video row's ``image`` is a video file (MP4/AVI/MOV/...), a DICOM cine file or a folder of numbered
frames. Optional columns: ``annotations`` (per-frame boxes CSV ``frame, x, y, w, h`` or a folder of
mask files), ``key_frame`` (frame number of the row's ``bbox``, the one annotated key-frame box),
``fps`` (frame rate when the file has none) and the usual ``spacing``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from her2dlr.errors import InputError

__all__ = ["VIDEO_COLUMNS", "VIDEO_MODALITIES", "video_rows"]

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
