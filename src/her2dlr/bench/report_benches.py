"""Report benchmark: ``her2dlr bench report``.

Builds a synthetic run folder in the stages' formats (:func:`her2dlr.bench.synthetic_run.make_synthetic_run`:
800 included images of 600 patients, 6 models with hold-out train / inner-CV / test
predictions, ``metrics.csv`` from :func:`her2dlr.evaluate.metrics.metrics_table`, a feature
table, clinical columns, a model card with a logistic model, Grad-CAM and survival outputs),
then times :func:`her2dlr.report.build.build_report` (HTML + PDF + every figure and table).

Metrics: ``seconds`` (wall time; target: under 30 s on a two-core laptop) with ``n`` (cases),
``cpu_seconds`` (this process's CPU time, which other load on the machine does not inflate) and
``pdf_seconds``, plus ``html_mb`` / ``pdf_mb`` (file sizes) and ``figures`` / ``tables`` (counts).
``--quick``: 200 cases, 3 models.
"""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from her2dlr.bench import BenchOptions, register, result

__all__ = ["report_bench"]

#: Target of the ``seconds`` metric.
TARGET_SECONDS = 30.0


@register("report", "Study report (HTML + PDF) of a synthetic run of 800 cases and 6 models: build time")
def report_bench(options: BenchOptions) -> Iterator[dict[str, Any]]:
    """Time :func:`her2dlr.report.build.build_report` on a synthetic run folder."""
    from her2dlr.bench.synthetic_run import make_synthetic_run
    from her2dlr.report.build import build_report

    n_cases, n_models = (200, 3) if options.quick else (800, 6)
    name = "report"
    base = Path(options.work_dir) if options.work_dir else None
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        run = make_synthetic_run(Path(tmp) / "run", n_cases=n_cases, n_patients=(3 * n_cases) // 4,
                                 n_models=n_models, scheme="holdout", seed=options.seed)
        t0, c0 = time.perf_counter(), time.process_time()
        res = build_report(run, progress=False)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        html_mb = res.html.stat().st_size / 2**20
        pdf_mb = res.pdf.stat().st_size / 2**20 if res.pdf is not None else float("nan")
        info = {"n": n_cases, "n_models": n_models, "target": TARGET_SECONDS}
        yield result(name, "seconds", round(seconds, 3), seconds=round(seconds, 3), cpu_seconds=round(cpu_seconds, 3),
                     peak_mb=round(peak_mb, 1), pdf_seconds=round(res.timings.get("pdf", float("nan")), 3), **info)
        yield result(name, "html_mb", round(html_mb, 3), **info)
        yield result(name, "pdf_mb", round(pdf_mb, 3), **info)
        yield result(name, "figures", len(res.figures), **info)
        yield result(name, "tables", len(res.tables), **info)
        yield result(name, "section_errors", len(res.warnings), **info)
