"""``her2dlr explain``: heat maps of every case by the fold network that never saw it.

Torch and MONAI are imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from her2dlr.cli.common import ArchOption, StudyArg, console, friendly

__all__ = ["explain_cmd"]


@friendly
def explain_cmd(
    study: StudyArg = Path("study.yaml"),
    arch: ArchOption = "densenet3block",
    method: Annotated[str, typer.Option("--method", help="cam, gradcam or gradcampp.")] = "gradcam",
    repetition: Annotated[int, typer.Option("--repetition", help="Repetition of the outer k-fold whose networks explain.")] = 0,
    n_per_group: Annotated[int, typer.Option("--n-per-group", help="Montage pictures per group (TP, FP, FN, TN).")] = 4,
    overlays: Annotated[str, typer.Option("--overlays", help="Per-case overlays: all, montage or none.")] = "all",
    embedding: Annotated[str, typer.Option("--embedding", help="Deep-feature embedding figure: tsne, pca or none.")] = "tsne",
    n_jobs: Annotated[int, typer.Option("--n-jobs", help="Threads reading images.")] = 1,
) -> None:
    """Heat maps of every case by the network that never saw it: overlays, scores and the montage."""
    from her2dlr.config import load_study
    from her2dlr.deep.explain_study import explain_study
    from her2dlr.errors import InputError

    if embedding not in ("tsne", "pca", "none"):
        raise InputError(f"--embedding must be tsne, pca or none. Got {embedding!r} instead.")
    res = explain_study(load_study(study), arch=arch, method=method, repetition=repetition, n_per_group=n_per_group,
                        overlays=overlays, embedding=None if embedding == "none" else embedding, n_jobs=n_jobs)
    s = res.summary
    console.print(
        f"{s['n']} cases explained ({method}, layer {s['target_layer']}): median {100 * (s['median_heat_in_lesion'] or 0):.0f}% "
        f"of the heat inside the lesion, which covers a median {100 * (s['median_lesion_area'] or 0):.0f}% of the crop. "
        f"Montage: {res.montage}; scores: {res.out_dir / 'heat_scores.csv'}."
    )
