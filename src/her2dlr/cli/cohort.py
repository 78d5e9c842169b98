"""``her2dlr init`` and ``her2dlr cohort``: the study file and the cohort (import, labels, QC, splits)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from her2dlr.cli.common import StudyArg, console, friendly, sub_app

__all__ = ["app", "init"]

app = sub_app("Import, QC and split the cohort.")

NJobs = Annotated[int, typer.Option(help="Parallel workers (-1: all cores).")]


@friendly
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the example study file.")] = Path("study.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    template: Annotated[str | None, typer.Option("--template", help="A paper's protocol: seed000 ... seed004 (see --list-templates).")] = None,
    list_templates: Annotated[bool, typer.Option("--list-templates", help="List the paper templates and exit.")] = False,
) -> None:
    """Write a commented example study file, or a paper's protocol (--template)."""
    from her2dlr.study_template import PAPER_TEMPLATES, write_example, write_template

    if list_templates:
        for name, what in PAPER_TEMPLATES.items():
            console.print(f"{name}  {what}", highlight=False)
        return
    if template is not None:
        write_template(template, path, force=force)
        console.print(f"Wrote {path}: the protocol of {template}, each setting with the paper's section. Edit the "
                      f"cohort paths and columns, then run `her2dlr run {path}`.", highlight=False)
        return
    write_example(path, force=force)
    console.print(f"Wrote {path}. Edit the cohort sources and label, then run `her2dlr cohort qc {path}`.")


def _build(study_path: Path, n_jobs: int) -> Any:
    from her2dlr.cohort.build import build_cohort
    from her2dlr.config import load_study

    return build_cohort(load_study(study_path), n_jobs=n_jobs, progress=True)


@app.command("build")
@friendly
def cohort_build(study: StudyArg = Path("study.yaml"), n_jobs: NJobs = -1) -> None:
    """Import sources, apply the label rule, run QC and write the splits into the manifest."""
    from her2dlr.console import print_cohort

    print_cohort(_build(study, n_jobs))


@app.command("qc")
@friendly
def cohort_qc(study: StudyArg = Path("study.yaml"), n_jobs: NJobs = -1) -> None:
    """Build the cohort and print the QC summary, naming the excluded cases (all written to <run>/cohort/).

    Same work as `cohort build`; this command prints the full QC account instead of the short one.
    """
    from her2dlr.console import print_frame

    build = _build(study, n_jobs)
    typer.echo(build.qc.summary_text(), nl=False)
    if len(build.splits):
        print_frame(build.splits, "Splits (groups_straddling must be 0)")
    console.print(f"Written to {build.out_dir}")
