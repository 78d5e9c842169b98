"""Clinical utility: decision curves of every model with treat-all and treat-none, per evaluation set."""

from __future__ import annotations

import numpy as np

from her2dlr.report.context import MAX_CURVES, ReportContext
from her2dlr.report.document import Section
from her2dlr.report.figures.utility import plot_decision_curves

__all__ = ["THRESHOLDS", "utility_section"]

#: Threshold probabilities of the decision curves.
THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


def utility_section(ctx: ReportContext) -> Section:
    """Decision curves (net benefit against threshold probability) on each evaluation set."""
    from her2dlr.evaluate.decision import decision_curve
    from her2dlr.report.sections.multiclass import omitted_note

    sec = Section("utility", "Clinical utility")
    omitted = omitted_note(ctx, "Decision curves")
    if omitted:
        sec.note(omitted, "info")
    if not ctx.views:
        return sec if omitted else sec.note("The run has no predictions: decision curves cannot be shown.", "missing")
    sec.text("Decision curve analysis: the net benefit of acting on each model's prediction at each threshold "
             "probability, against treating every patient as positive (treat all) or none (treat none). A model "
             "is useful at thresholds where its curve lies above both.")
    sources = ctx.sources_of("predictions")
    for view in ctx.views:
        sub = sec.sub(f"utility_{view.key}", view.title)
        shown = ctx.shown_models(view, MAX_CURVES)
        wide = view.paired(shown)
        if len(wide) < 2 or wide["label"].nunique() < 2:
            sub.note("Too few cases with predictions of every model for a decision curve.", "warning")
            continue
        curves = decision_curve(wide["label"].to_numpy(), {m: wide[m].to_numpy() for m in shown},
                                thresholds=THRESHOLDS)
        prevalence = float(wide["label"].mean())
        top = float(min(0.99, max(0.5, np.ceil((prevalence + 0.3) * 10) / 10)))
        sub.add(ctx.figure(f"decision_curve_{view.key}",
                           plot_decision_curves(curves, ctx.colors, title=view.title, reference=ctx.reference,
                                                max_threshold=top),
                           f"Decision curves on the {view.title.lower()} ({len(wide)} cases, prevalence "
                           f"{prevalence:.1%}); the CSV beside the figure holds every threshold from 0.01 to 0.99.",
                           sources=sources, width="66%", data=curves))
        ctx.results[("decision", view.key)] = curves
    ctx.facts.set("clinical_utility", "Decision curves with treat-all and treat-none references.", sec.title)
    return sec
