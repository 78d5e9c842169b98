"""Study report: one self-contained HTML file and its PDF, with PNG figures and CSV tables.

``her2dlr report RUN`` (or :func:`build_report`) reads a study's run folder (cohort, features,
learning, models, deep and survival outputs) and writes ``RUN/report/`` - a results section
with the cohort flow, splits, feature selection, every model's discrimination, calibration
and clinical utility, baseline and odds-ratio tables, the nomogram, Grad-CAM maps, survival,
reproducibility records and the TRIPOD+AI, CLEAR and METRICS checklists.

Modules: :mod:`~her2dlr.report.run` (reading the run folder), :mod:`~her2dlr.report.views`
(evaluation sets), :mod:`~her2dlr.report.sections` (one builder per section),
:mod:`~her2dlr.report.figures` (matplotlib, Agg), :mod:`~her2dlr.report.nomogram`,
:mod:`~her2dlr.report.checklists`, :mod:`~her2dlr.report.tables` (formatting),
:mod:`~her2dlr.report.html` (Jinja2), :mod:`~her2dlr.report.pdf` (WeasyPrint),
:mod:`~her2dlr.report.build`. Statistics come from :mod:`her2dlr.evaluate`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReportResult", "build_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from her2dlr.report import build

        return getattr(build, name)
    raise AttributeError(f"module 'her2dlr.report' has no attribute {name!r}")
