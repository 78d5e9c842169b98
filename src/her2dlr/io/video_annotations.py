"""Per-frame lesion annotations of a clip: a boxes table or a folder of numbered mask files.

Read here, in the input layer, so that both the cohort import (which checks them against the clip
before anything runs) and the video stage (which localises from them) use one reader.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from her2dlr.errors import InputError

__all__ = ["Annotation", "annotation_problems", "read_annotations"]

PathLike = str | os.PathLike[str]
Annotation = tuple[float, float, float, float] | np.ndarray
"""A box ``(x, y, w, h)`` in pixels or a boolean mask of the whole frame."""
_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def read_annotations(path: PathLike, n_frames: int | None = None) -> dict[int, Annotation]:
    """Per-frame lesion annotations: frame number -> box ``(x, y, w, h)`` or boolean mask.

    Parameters
    ----------
    path : path-like
        A CSV/XLSX table with columns ``frame, x, y, w, h``, or a folder of mask images whose names end
        in the frame number (``mask_0012.png`` -> frame 12). Frames count from 0.
    n_frames : int, optional
        The clip's frame count: annotations of frames that do not exist are refused.

    Raises
    ------
    InputError
        Missing columns, non-numeric or non-positive boxes, repeated frames, frames outside the clip
        (the rows are named).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"Annotations not found: {path}")
    out: dict[int, Annotation] = {}
    if path.is_dir():
        from her2dlr.io.images import read_mask_array

        for file in sorted(path.iterdir()):
            match = _NUMBER.search(file.stem)
            if not file.is_file() or match is None:
                continue
            out[int(match.group(1))] = read_mask_array(file) > 0
        if not out:
            raise InputError(f"Annotation folder {path} holds no numbered mask files.")
    else:
        from her2dlr.io.tables import read_table

        table = read_table(path)
        table.columns = [str(c).strip().lower() for c in table.columns]
        missing = [c for c in ("frame", "x", "y", "w", "h") if c not in table.columns]
        if missing:
            raise InputError(f"Annotations {path} lack column(s) {missing}: expected frame, x, y, w, h.")
        values = table[["frame", "x", "y", "w", "h"]].apply(pd.to_numeric, errors="coerce")
        bad = values.index[values.isna().any(axis=1) | (values["w"] <= 0) | (values["h"] <= 0)].tolist()
        if bad:
            raise InputError(f"Annotations {path}: row(s) {[i + 2 for i in bad[:5]]} need numeric frame, x, y "
                             "and positive w, h.")
        dup = values["frame"][values["frame"].duplicated()].tolist()
        if dup:
            raise InputError(f"Annotations {path}: frame(s) {sorted({int(d) for d in dup})[:5]} appear twice.")
        for row in values.itertuples(index=False):
            out[int(row.frame)] = (float(row.x), float(row.y), float(row.w), float(row.h))
    if n_frames is not None:
        outside = sorted(f for f in out if f < 0 or f >= n_frames)
        if outside:
            raise InputError(f"Annotations {path} name frame(s) {outside[:5]} but the video has {n_frames} frames "
                             f"(0 to {n_frames - 1}).")
    return out


def annotation_problems(annotations: dict[int, Annotation], size: tuple[int, int]) -> list[str]:
    """What is wrong with ``annotations`` for frames of ``size`` (height, width); empty when nothing is.

    A box must lie inside the frame (``x, y >= 0``, ``x + w <= width``, ``y + h <= height``); a mask
    must have the frame's size.
    """
    height, width = size
    problems = []
    for frame in sorted(annotations):
        ann = annotations[frame]
        if isinstance(ann, np.ndarray):
            if ann.shape[:2] != (height, width):
                problems.append(f"the mask of frame {frame} is {ann.shape[1]}x{ann.shape[0]} but the frames are "
                                f"{width}x{height}")
        elif ann[0] < 0 or ann[1] < 0 or ann[0] + ann[2] > width or ann[1] + ann[3] > height:
            problems.append(f"the box {[round(v, 2) for v in ann]} of frame {frame} lies outside the "
                            f"{width}x{height} frame")
    return problems
