"""``video:``: per-frame localisation and radiomics curves of a cohort's clips (seed 001).

With this section, ``her2dlr run`` runs the video stage after the cohort (and the segmentation
stage, when one is configured) and writes the ``video_tf`` feature table that ``learn.features``
names. The same settings drive ``her2dlr extract video``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from her2dlr.schema import StrictModel

__all__ = ["VideoSettings"]


class VideoSettings(StrictModel):
    """How every video row of the manifest becomes one row of the ``video_tf`` table."""

    params: str = Field("video", description="Per-frame PyRadiomics params: a shipped set or a YAML path.")
    network: Path | None = Field(
        None, description="Segmentation checkpoint localising the lesion in clips without per-frame annotations "
        "(box-prompted from the key-frame box when it reads one); default: a tracker from the key-frame box.")
    target_fps: float | None = Field(15.0, gt=0, description="Curves resampled to this frame rate before the "
                                     "time-frequency features (null: the clip's own rate).")
    n_jobs: int = Field(1, ge=-1, description="Worker processes over frames (-1: all cores).")
