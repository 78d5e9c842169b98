"""``her2dlr report RUN``: the study report of a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from her2dlr.cli.common import console, friendly

__all__ = ["report_command"]


@friendly
def report_command(
    run: Annotated[Path, typer.Argument(help="Run folder of the study (with cohort/, features/, learn/<set>/ ...).")],
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default: RUN/report).")] = None,
    pdf: Annotated[bool, typer.Option("--pdf/--no-pdf", help="Also write report.pdf (WeasyPrint).")] = True,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first section that fails instead of noting it.")] = False,
    title: Annotated[str | None, typer.Option("--title", help="Report title (default: 'Study report: <study>').")] = None,
) -> None:
    """Write the study report: one self-contained HTML file, its PDF, PNG figures and CSV tables."""
    from her2dlr.report.build import build_report

    res = build_report(run, out=out, progress=True, pdf=pdf, strict=strict, title=title)
    for warning in res.warnings:
        console.print(f"[yellow]Section not built:[/] {warning}", highlight=False)
    console.print(f"Report: {res.html}" + (f" and {res.pdf}" if res.pdf else "")
                  + f" ({len(res.figures)} figures, {len(res.tables)} tables in {res.out_dir}; {res.seconds:.1f} s)",
                  highlight=False)
