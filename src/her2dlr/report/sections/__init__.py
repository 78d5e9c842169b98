"""Section builders of the study report, one module per family.

Each builder takes the :class:`her2dlr.report.context.ReportContext` and returns a
:class:`her2dlr.report.document.Section`; a part the run lacks gives a section that says so.
:data:`SECTIONS` lists them in reading order (the checklists come last: they read the facts
the other sections record).
"""

from __future__ import annotations

from collections.abc import Callable

from her2dlr.report.context import ReportContext
from her2dlr.report.document import Section

__all__ = ["SECTIONS", "SectionBuilder"]

SectionBuilder = Callable[[ReportContext], Section]


def _sections() -> list[tuple[str, str, SectionBuilder]]:
    from her2dlr.report.sections import (
        calibration,
        checklists,
        clinical,
        cohort,
        discrimination,
        extras,
        features,
        models,
        reproducibility,
        segmentation,
        utility,
    )

    return [
        ("cohort", "Cohort and quality control", cohort.cohort_section),
        ("splits", "Data splits", cohort.splits_section),
        ("segmentation", "Lesion segmentation", segmentation.segmentation_section),
        ("features", "Features and selection", features.features_section),
        ("models", "Models", models.models_section),
        ("discrimination", "Discrimination", discrimination.discrimination_section),
        ("calibration", "Calibration", calibration.calibration_section),
        ("utility", "Clinical utility", utility.utility_section),
        ("tables", "Clinical characteristics and odds ratios", clinical.clinical_tables_section),
        ("nomogram", "Nomogram", clinical.nomogram_section),
        ("explainability", "Explainability", extras.explainability_section),
        ("survival", "Survival", extras.survival_section),
        ("reproducibility", "Reproducibility", reproducibility.reproducibility_section),
        ("checklists", "Reporting checklists", checklists.checklists_section),
    ]


#: ``(id, title, builder)`` of every section, in reading order (imported lazily).
SECTIONS: Callable[[], list[tuple[str, str, SectionBuilder]]] = _sections
