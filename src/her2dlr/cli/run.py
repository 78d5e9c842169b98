"""``her2dlr run STUDY``: every stage the study file configures, reusing those that have not changed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from her2dlr.cli.cluster import SchedulerOption, with_scheduler
from her2dlr.cli.common import StudyArg, console, friendly

__all__ = ["run_cmd"]


@friendly
def run_cmd(
    study: StudyArg = Path("study.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Re-run the selected stages, changed or not.")] = False,
    only: Annotated[list[str] | None, typer.Option("--only", help="Only this stage (repeatable): cohort, segment, video, radiomics, learn, deep, dlr, dsfr (segment.dsfr.models: DSFR features + DSFR, radiomics and DLR models), survival, report.")] = None,
    from_stage: Annotated[str | None, typer.Option("--from", help="This stage and the ones after it.")] = None,
    n_jobs: Annotated[int | None, typer.Option("--n-jobs", help="Parallel workers (-1: all cores); default: each stage's own.")] = None,
    pdf: Annotated[bool, typer.Option("--pdf/--no-pdf", help="Also write report.pdf.")] = True,
    scheduler: SchedulerOption = None,
) -> None:
    """Run every stage the study file configures, re-running only those whose settings or inputs changed."""
    from her2dlr.config import load_study
    from her2dlr.pipeline import run_study

    target = with_scheduler(load_study(study), scheduler) if scheduler else study
    run_study(target, force=force, only=only or None, from_stage=from_stage, n_jobs=n_jobs, pdf=pdf, console=console)
