"""``build_report``: the run folder -> one self-contained HTML file, its PDF, PNG figures and CSV tables.

Output (``RUN/report/`` unless ``out`` says otherwise), written into a temporary folder and
renamed into place at the end, so a failed build leaves the previous report untouched::

    report/
      report.html        self-contained: CSS inline, every figure a base64 PNG, no external links
      report.pdf         the same content (WeasyPrint)
      report.json        index: sections, figures and tables with the run files they come from
      figures/<name>.png (and <name>.csv with the numbers drawn, where there are any)
      tables/<name>.csv  every table of the report
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from her2dlr.cohort.build import split_class_names
from her2dlr.errors import InputError
from her2dlr.io.atomic import atomic_path, check_writable
from her2dlr.report.context import ReportContext
from her2dlr.report.document import FigureBlock, Section, TableBlock
from her2dlr.report.figures._base import report_style
from her2dlr.report.run import RunFolder
from her2dlr.report.tables import fmt_ci, fmt_num

__all__ = ["REPORT_MARKER", "ReportResult", "build_report"]

#: File that marks a folder as a report folder (so rebuilding may replace it).
REPORT_MARKER = "report.json"


@dataclass
class ReportResult:
    """What :func:`build_report` wrote.

    Attributes
    ----------
    out_dir : Path
    html : Path
    pdf : Path or None
        None when ``pdf=False``.
    figures, tables : dict
        Name -> written path.
    sections : list of Section
    warnings : list of str
        Sections that could not be built (their error is shown in the report).
    seconds : float
    timings : dict
        Seconds per step.
    """

    out_dir: Path
    html: Path
    pdf: Path | None
    figures: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"ReportResult({self.html}, {len(self.sections)} sections, {len(self.figures)} figures, "
                f"{len(self.tables)} tables, {self.seconds:.1f} s)")


def _number(sections: list[Section]) -> None:
    fig_no = tab_no = 0
    for i, sec in enumerate(sections, start=1):
        sec.number = str(i)
        for j, sub in enumerate(sec.subsections, start=1):
            sub.number = f"{i}.{j}"
            sub.id = sub.id if sub.id.startswith(sec.id) else f"{sec.id}-{sub.id}"
        for block in sec.all_blocks():
            if isinstance(block, FigureBlock):
                fig_no += 1
                block.number = fig_no
            elif isinstance(block, TableBlock):
                tab_no += 1
                block.number = tab_no


def _summary(ctx: ReportContext) -> list[str]:
    out = []
    m = ctx.run.manifest
    if m is not None:
        inc = m.included
        inc = inc[inc["label"].notna()] if "label" in inc.columns else inc
        names = split_class_names(m)
        if len(inc) and names is not None:
            counts = inc["label"].astype(int).value_counts()
            per_class = ", ".join(f"{int(counts.get(k, 0))} {name}" for k, name in enumerate(names))
            out.append(f"{len(inc)} images of {inc['patient_id'].nunique()} patients were analysed ({per_class}).")
        elif len(inc):
            npos = int((inc["label"].astype(int) == 1).sum())
            out.append(f"{len(inc)} images of {inc['patient_id'].nunique()} patients were analysed ({npos} positive, "
                       f"prevalence {npos / len(inc):.1%}).")
    if ctx.models:
        out.append(f"{len(ctx.models)} models were evaluated on {len(ctx.views)} evaluation set(s): "
                   + ", ".join(v.title.lower() for v in ctx.views) + ".")
    headline = ctx.results.get("headline")
    if headline:
        model, where, r = headline
        text = f"Reference model {model}: AUC {fmt_ci(r['auc'], r['ci_low'], r['ci_high'])} on the {where.lower()}"
        primary = ctx.primary_view
        cal = ctx.results.get(("calibration", primary.key)) if primary is not None else None
        if cal is not None and model in set(cal["model"]):
            c = cal.set_index("model").loc[model]
            text += f"; calibration slope {fmt_num(c['slope'], 2)}, Brier score {fmt_num(c['brier'])}"
        out.append(text + ".")
    from her2dlr.report.sections.clinical import label_proxy_check

    proxies, _ = label_proxy_check(ctx)
    flagged = proxies[proxies["flagged"]] if len(proxies) else proxies
    if len(flagged):
        out.append(f"Warning: clinical column(s) {', '.join(map(str, flagged['column']))} may stand in for the label "
                   "(near-perfect on their own, or named like a verdict); see Discrimination.")
    return out


def _check_out(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / REPORT_MARKER).exists())):
        raise InputError(f"Report folder {out_dir} exists and is not a her2dlr report folder (no {REPORT_MARKER}); "
                         "give an empty or new folder, or remove it.")


def _write_outputs(tmp: Path, sections: list[Section], result: ReportResult, out_dir: Path) -> list[dict[str, Any]]:
    (tmp / "figures").mkdir(parents=True)
    (tmp / "tables").mkdir()
    index = []
    for sec in sections:
        for block in sec.all_blocks():
            if isinstance(block, FigureBlock):
                (tmp / "figures" / f"{block.name}.png").write_bytes(block.png)
                result.figures[block.name] = out_dir / "figures" / f"{block.name}.png"
                if block.data is not None:
                    block.data.to_csv(tmp / "figures" / f"{block.name}.csv", index=False)
                index.append({"kind": "figure", "number": block.number, "name": block.name, "section": sec.id,
                              "file": f"figures/{block.name}.png", "caption": block.caption,
                              "data": f"figures/{block.name}.csv" if block.data is not None else None,
                              "sources": block.sources})
            elif isinstance(block, TableBlock):
                block.data.to_csv(tmp / "tables" / f"{block.name}.csv", index=False)
                result.tables[block.name] = out_dir / "tables" / f"{block.name}.csv"
                index.append({"kind": "table", "number": block.number, "name": block.name, "section": sec.id,
                              "file": f"tables/{block.name}.csv", "caption": block.caption, "sources": block.sources})
    return index


def build_report(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, progress: bool = True, *,
                 pdf: bool = True, strict: bool = False, title: str | None = None) -> ReportResult:
    """Build the study report of a run folder.

    Parameters
    ----------
    run_dir : path
        The study's run folder (with ``cohort/``, ``features/``, ``learn/<set>/``, optionally
        ``models/``, ``deep/``, ``survival/``).
    out : path, optional
        Report folder (default ``run_dir/report``). It is replaced as a whole; an existing
        non-empty folder that is not a report folder is refused.
    progress : bool, default=True
        Show a progress bar (rich) on stderr.
    pdf : bool, default=True
        Also write ``report.pdf``.
    strict : bool, default=False
        Raise the first error of a section instead of showing it in that section.
    title : str, optional
        Report title (default: "Study report: <study name>").

    Returns
    -------
    ReportResult

    Raises
    ------
    InputError
        ``run_dir`` is not a run folder (the message names what is missing), or ``out`` is an
        unrelated non-empty folder.
    """
    t0 = time.perf_counter()
    run = RunFolder(Path(run_dir))
    out_dir = Path(out).expanduser().resolve() if out is not None else run.paths.report
    _check_out(out_dir)
    check_writable(out_dir.parent)
    from her2dlr import __version__
    from her2dlr.report.html import render_html
    from her2dlr.report.sections import SECTIONS

    warnings: list[str] = []
    builders = SECTIONS()
    steps = _Steps(progress, len(builders) + 2 + int(pdf))
    try:
        with steps.step("load", "Reading the run folder"):
            ctx = ReportContext.from_run(run)
        sections: list[Section] = []
        with report_style(), _quiet_fits():
            for sid, stitle, builder in builders:
                with steps.step(sid, stitle):
                    try:
                        sec = builder(ctx)
                    except Exception as exc:
                        if strict:
                            raise
                        warnings.append(f"{stitle}: {type(exc).__name__}: {exc}")
                        sec = Section(sid, stitle).note(
                            f"This section could not be built: {type(exc).__name__}: {exc}", "error")
                    sections.append(sec)
        _number(sections)
        with steps.step("html", "Rendering HTML"):
            m = run.manifest
            study = (m.meta.get("study") if m is not None else None) or run.root.name
            created = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
            html = render_html(sections, title=title or f"Study report: {study}", run_name=run.root.name,
                               created=created, version=__version__, summary=_summary(ctx))
        result = ReportResult(out_dir=out_dir, html=out_dir / "report.html",
                              pdf=out_dir / "report.pdf" if pdf else None, sections=sections, warnings=warnings)
        with atomic_path(out_dir) as tmp:
            tmp.mkdir(parents=True)
            index = _write_outputs(tmp, sections, result, out_dir)
            (tmp / "report.html").write_text(html, encoding="utf-8")
            if pdf:
                with steps.step("pdf", "Writing the PDF"):
                    from her2dlr.report.pdf import write_pdf

                    write_pdf(html, tmp / "report.pdf")
            (tmp / REPORT_MARKER).write_text(json.dumps({
                "run": str(run.root), "created": created, "her2dlr": __version__, "warnings": warnings,
                "sections": [{"number": s.number, "id": s.id, "title": s.title} for s in sections],
                "items": index}, indent=2), encoding="utf-8")
    finally:
        steps.close()
    result.seconds = time.perf_counter() - t0
    result.timings = dict(steps.timings)
    return result


@contextmanager
def _quiet_fits() -> Iterator[None]:
    """Silence the fitting warnings of statsmodels / NumPy that recalibration of near-perfect apparent
    predictions raises (the numbers they concern are reported as they are)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            from statsmodels.tools import sm_exceptions as sme
        except ImportError:  # pragma: no cover - statsmodels is a dependency
            yield
            return
        for name in ("PerfectSeparationWarning", "ConvergenceWarning", "HessianInversionWarning",
                     "DomainWarning", "IterationLimitWarning"):
            category = getattr(sme, name, None)
            if category is not None:
                warnings.simplefilter("ignore", category)
        yield


class _Steps:
    """Progress bar (rich, on stderr) and timing of the build steps."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.timings: dict[str, float] = {}
        self.bar: Any = None
        self.task: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]Report[/]"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.description}"), TimeElapsedColumn(), console=Console(stderr=True))
            self.bar.start()
            self.task = self.bar.add_task("starting", total=total)

    @contextmanager
    def step(self, key: str, description: str) -> Iterator[None]:
        """Time one step and advance the bar when it ends."""
        if self.bar is not None:
            self.bar.update(self.task, description=description)
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] = time.perf_counter() - t
            if self.bar is not None:
                self.bar.advance(self.task)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
