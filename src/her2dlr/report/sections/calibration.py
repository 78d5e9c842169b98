"""Calibration: binned and smoothed curves, slope, intercept, Brier score and Hosmer-Lemeshow test per set."""

from __future__ import annotations

import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.report.context import MAX_CURVES, ReportContext
from her2dlr.report.document import Section
from her2dlr.report.figures.calibration import plot_calibration, plot_calibration_detail
from her2dlr.report.tables import fmt_num, fmt_p
from her2dlr.report.views import View

__all__ = ["calibration_section", "calibration_table"]

_SUMMARY_COLUMNS = ["brier", "slope", "intercept", "hl_statistic", "hl_df", "hl_p", "eavg", "emax", "n"]


def calibration_table(view: View) -> tuple[pd.DataFrame, list[str]]:
    """:func:`her2dlr.evaluate.calibration.calibration_summary` of every model on ``view``, and notes."""
    from her2dlr.evaluate.calibration import calibration_summary

    rows, notes = [], []
    for m in view.models:
        y, p = view.y_prob(m)
        try:
            s = calibration_summary(y, p)
        except InputError as exc:
            notes.append(f"{m}: {exc}")
            s = dict.fromkeys(_SUMMARY_COLUMNS, np.nan) | {"n": len(y)}
        rows.append({"model": m, **{k: s.get(k, np.nan) for k in _SUMMARY_COLUMNS}})
    return pd.DataFrame(rows), notes


def _curves(view: View, model: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    from her2dlr.evaluate.calibration import calibration_curve_binned, calibration_loess

    y, p = view.y_prob(model)
    binned = calibration_curve_binned(y, p, n_bins=10, strategy="quantile")
    try:
        smooth = calibration_loess(y, p)
    except InputError:
        smooth = None
    return binned, smooth


def calibration_section(ctx: ReportContext) -> Section:
    """Per evaluation set: all models' curves, the reference model in detail, and the summary table."""
    from her2dlr.report.sections.multiclass import omitted_note

    sec = Section("calibration", "Calibration")
    omitted = omitted_note(ctx, "Calibration curves, slope and Hosmer-Lemeshow test")
    if omitted:
        sec.note(omitted, "info")
    if not ctx.views:
        return sec if omitted else sec.note("The run has no predictions: calibration cannot be shown.", "missing")
    sources = ctx.sources_of("predictions")
    sec.text("Calibration compares predicted probabilities with observed proportions: binned (deciles of the "
             "predictions, Wilson 95% CI) and smoothed (LOESS) curves; the calibration slope (ideal 1; below 1: "
             "predictions too extreme) and intercept (calibration-in-the-large, ideal 0) from logistic recalibration; "
             "the Brier score; and the Hosmer-Lemeshow test (10 groups; a small p suggests miscalibration).")
    for view in ctx.views:
        sub = sec.sub(f"calibration_{view.key}", view.title)
        table, notes = calibration_table(view)
        shown = ctx.shown_models(view, MAX_CURVES)
        curves = {m: _curves(view, m) for m in shown}
        data = pd.concat([b.assign(model=m, kind="binned") for m, (b, _) in curves.items()]
                         + [s.assign(model=m, kind="smoothed") for m, (_, s) in curves.items() if s is not None],
                         ignore_index=True)
        sub.add(ctx.figure(f"calibration_{view.key}", plot_calibration(curves, ctx.colors, title=view.title,
                                                                       reference=ctx.reference),
                           f"Calibration on the {view.title.lower()}: smoothed curves (lines) and observed proportion "
                           "per decile of predictions (markers).", sources=sources, width="62%", data=data))
        ref = ctx.reference if ctx.reference in view.models else (shown[0] if shown else None)
        if ref is not None:
            y, p = view.y_prob(ref)
            b, s = curves.get(ref) or _curves(view, ref)
            summ = table.set_index("model").loc[ref].to_dict()
            sub.add(ctx.figure(f"calibration_{view.key}_{ref}",
                               plot_calibration_detail(b, s, y, p, summary=summ, title=f"{ref} \u2014 {view.title}",
                                                       color=ctx.colors.get(ref, "k")),
                               f"Calibration of the reference model {ref} on the {view.title.lower()}: deciles with "
                               "Wilson 95% CIs, LOESS curve, and the distribution of predictions by true class.",
                               sources=sources, width="58%"))
        display = pd.DataFrame({
            "Model": table["model"], "Brier": table["brier"].map(fmt_num), "Slope": table["slope"].map(fmt_num),
            "Intercept": table["intercept"].map(fmt_num),
            "HL \u03c7\u00b2 (df)": [f"{fmt_num(s, 2)} ({int(d)})" if np.isfinite(d) else fmt_num(s, 2)
                                     for s, d in zip(table["hl_statistic"], table["hl_df"])],
            "HL p": table["hl_p"].map(fmt_p), "Mean |error|": table["eavg"].map(fmt_num)})
        sub.add(ctx.table(f"calibration_{view.key}", f"Calibration of every model on the {view.title.lower()}.", table,
                          display=display, note="; ".join(notes), sources=sources))
        ctx.results[("calibration", view.key)] = table
    primary = ctx.primary_view
    if primary is not None and ("calibration", primary.key) in ctx.results and ctx.reference:
        t = ctx.results[("calibration", primary.key)].set_index("model")
        if ctx.reference in t.index:
            r = t.loc[ctx.reference]
            ctx.facts.set("calibration", f"{ctx.reference} on the {primary.title.lower()}: slope {fmt_num(r['slope'])}, "
                                         f"intercept {fmt_num(r['intercept'])}, Brier {fmt_num(r['brier'])}, "
                                         f"Hosmer-Lemeshow p {fmt_p(r['hl_p'])}; curves for every model.", sec.title)
    return sec
