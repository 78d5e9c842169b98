"""Discrimination of multi-class models (HER2-zero / HER2-low / HER2-positive).

Per evaluation set (the views of :func:`her2dlr.report.views.prediction_views` with
``multiclass=True``): one-vs-rest ROC curves of every class, the per-class AUCs with DeLong
95% CIs, the macro AUC with its stratified bootstrap CI, accuracy and balanced accuracy, and
the confusion matrices (predicted class = the most probable one), all from
:func:`her2dlr.evaluate.multiclass.multiclass_metrics` on the ``prob_<k>`` columns.

The binary analyses that need one positive-class probability or an operating threshold
(calibration curves, decision curves, threshold metrics) are not drawn for these models;
:func:`omitted_note` says so in their sections.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from her2dlr.report.context import MAX_PANELS, ReportContext
from her2dlr.report.document import Section
from her2dlr.report.figures.multiclass import plot_confusion_tables, plot_ovr_roc
from her2dlr.report.tables import fmt_ci, fmt_num
from her2dlr.report.views import View, prediction_views

__all__ = ["add_multiclass_discrimination", "multiclass_class_names", "multiclass_views", "omitted_note"]

_KEY = "multiclass_views"
#: What the binary views' descriptions say about thresholds, which multi-class models do not have.
_THRESHOLD_CLAUSES = re.compile(r",? (with the threshold chosen on training data|each fold with its own training "
                                r"threshold)| \(the predictions the operating threshold was chosen from\)")


def multiclass_views(ctx: ReportContext) -> list[View]:
    """Evaluation sets of the run's multi-class models (empty when it has none)."""
    if _KEY not in ctx.results:
        pred = ctx.run.predictions
        ctx.results[_KEY] = prediction_views(pred, multiclass=True) if "prob_2" in pred.columns else []
    return ctx.results[_KEY]


def _n_classes(view: View) -> int:
    return sum(1 for c in view.frame.columns if str(c).startswith("prob_") and view.frame[c].notna().any())


def multiclass_class_names(ctx: ReportContext, n_classes: int) -> list[str]:
    """Class names from the label rule (``HER2-zero`` ...), else ``class 0`` ..."""
    m = ctx.run.manifest
    names = (m.meta.get("label", {}) or {}).get("classes") if m is not None else None
    if isinstance(names, list) and len(names) == n_classes:
        return [str(n) for n in names]
    return [f"class {k}" for k in range(n_classes)]


def omitted_note(ctx: ReportContext, analysis: str) -> str | None:
    """Why ``analysis`` (e.g. "Calibration curves") leaves the multi-class models out; None when the run has none."""
    views = multiclass_views(ctx)
    if not views:
        return None
    models = sorted({m for v in views for m in v.models})
    return (f"{analysis} need one probability of a positive class and an operating threshold; the "
            f"{len(models)} multi-class model(s) ({', '.join(models[:5])}{' ...' if len(models) > 5 else ''}) predict "
            "a probability for each class and take the most probable one, so they are left out here. Their "
            "discrimination (one-vs-rest and macro AUCs, confusion matrices) is in the section 'Discrimination'.")


def _view_metrics(view: View, names: list[str]) -> dict[str, object]:
    from her2dlr.evaluate.multiclass import multiclass_metrics

    cols = [f"prob_{k}" for k in range(len(names))]
    out = {}
    for m in view.models:
        f = view.model_frame(m)
        y = f["label"].astype(int).to_numpy()
        if len(np.unique(y)) < len(names):
            continue
        clusters = f["patient_id"].to_numpy() if "patient_id" in f.columns else None
        out[m] = (y, f[cols].to_numpy(dtype=float), multiclass_metrics(y, f[cols].to_numpy(dtype=float),
                                                                        class_names=names, clusters=clusters))
    return out


def _view_subsection(ctx: ReportContext, sec: Section, view: View, sources: list[str]) -> None:
    names = multiclass_class_names(ctx, _n_classes(view))
    sub = sec.sub(f"discrimination_multiclass_{view.key}", f"{view.title}: {len(names)} classes")
    sub.text(_THRESHOLD_CLAUSES.sub("", view.description).rstrip(".") + ". The predicted class is the most "
             "probable one (no threshold).")
    results = _view_metrics(view, names)
    if not results:
        sub.note("No model of this set has cases of every class: one-vs-rest AUCs cannot be computed.", "missing")
        return
    ordered = sorted(results, key=lambda m: -results[m][2].macro_auc)
    rows, display = [], []
    for m in ordered:
        r = results[m][2]
        pc = r.per_class
        rows += [{"model": m, **rec} for rec in r.summary.to_dict("records")]
        display.append({"Model": m, "n": int(pc["n_pos"].sum()),
                        "Macro AUC (95% CI)": fmt_ci(r.macro_auc, r.macro_ci_low, r.macro_ci_high),
                        **{f"{n} vs rest": fmt_ci(a, lo, hi) for n, a, lo, hi in
                           zip(pc["name"], pc["auc"], pc["ci_low"], pc["ci_high"])},
                        "Accuracy": fmt_num(r.accuracy), "Balanced accuracy": fmt_num(r.balanced_accuracy)})
        ctx.results[("multiclass", view.key, m)] = r
    data = pd.DataFrame(rows)
    clustered = any(r[2].ci_method.startswith("obuchowski") for r in results.values())
    per_ci, macro_ci = (("patient-clustered (Obuchowski)", "bootstrap of whole patients within classes") if clustered
                        else ("DeLong", "stratified bootstrap"))
    sub.add(ctx.table(f"multiclass_auc_{view.key}", f"One-vs-rest AUC of each class ({per_ci} 95% CI) and macro AUC "
                      f"(mean of the one-vs-rest AUCs; {macro_ci} 95% CI, {results[ordered[0]][2].n_boot:,} "
                      f"resamples) on the {view.title.lower()}; accuracy of the most probable class.", data,
                      display=pd.DataFrame(display), sources=sources))
    shown = ordered[:MAX_PANELS]
    more = "" if len(shown) == len(ordered) else f" ({len(shown)} of {len(ordered)} models shown, by macro AUC)"
    curves, roc_rows = {}, []
    for m in shown:
        y, proba, r = results[m]
        per = []
        for k, name in enumerate(names):
            fpr, tpr, _ = roc_curve((y == k).astype(int), proba[:, k])
            auc = r.per_class.iloc[k]
            per.append((fpr, tpr, f"{name}: {fmt_ci(auc['auc'], auc['ci_low'], auc['ci_high'])}"))
            roc_rows.append(pd.DataFrame({"model": m, "class": name, "fpr": fpr, "tpr": tpr}))
        curves[m] = per
    width = {1: "45%", 2: "75%"}.get(len(shown), "100%")
    sub.add(ctx.figure(f"roc_multiclass_{view.key}", plot_ovr_roc(curves),
                       f"One-vs-rest ROC curves on the {view.title.lower()}: each class against the others; legend: "
                       f"AUC ({per_ci} 95% CI){more}.", sources=sources, width=width,
                       data=pd.concat(roc_rows, ignore_index=True)))
    conf = {m: results[m][2].confusion for m in shown}
    conf_data = pd.concat([c.stack().rename("n").reset_index().assign(model=m) for m, c in conf.items()],
                          ignore_index=True)[["model", "true", "predicted", "n"]]
    for m in shown:  # the matrix itself as a table, for the reader who wants the counts
        c = conf[m]
        disp = c.copy()
        disp.insert(0, "True \\ predicted", list(c.index))
        sub.add(ctx.table(f"confusion_multiclass_{view.key}_{m}", f"Confusion matrix of {m} on the "
                          f"{view.title.lower()} (rows: true class, columns: predicted class).",
                          conf_data[conf_data["model"] == m], display=disp.reset_index(drop=True), sources=sources))
    sub.add(ctx.figure(f"confusion_multiclass_{view.key}", plot_confusion_tables(conf),
                       f"Confusion matrices on the {view.title.lower()}: counts and row percentages (recall of each "
                       f"class on the diagonal){more}.", sources=sources,
                       width={1: "40%", 2: "65%"}.get(len(shown), "95%"), data=conf_data))


def add_multiclass_discrimination(ctx: ReportContext, sec: Section) -> bool:
    """Add one subsection per evaluation set of the multi-class models to ``sec``; False when there are none."""
    views = multiclass_views(ctx)
    if not views:
        return False
    sources = ctx.sources_of("predictions")
    sec.text("Multi-class models give a probability for each class; the predicted class is the most probable one, so "
             "there is no operating threshold. Each class is judged against the others (one-vs-rest AUC with a "
             "DeLong 95% CI, patient-clustered where patients have several cases) and the macro AUC is the mean of "
             "these, with a bootstrap 95% CI stratified by class (resampling whole patients where they have several "
             "cases). "
             "Calibration curves, decision curves and threshold metrics are binary analyses and are not drawn "
             "for these models.")
    for v in views:
        _view_subsection(ctx, sec, v, sources)
    primary = next((v for k in ("test", "cv", "train", "final") for v in views if v.key == k), None)
    if primary is not None:
        best = [(k[2], r) for k, r in ctx.results.items()
                if isinstance(k, tuple) and len(k) == 3 and k[:2] == ("multiclass", primary.key)]
        if best:
            m, r = max(best, key=lambda t: t[1].macro_auc)
            ctx.facts.set("performance", f"{m}: macro one-vs-rest AUC {fmt_ci(r.macro_auc, r.macro_ci_low, r.macro_ci_high)} "
                                         f"on the {primary.title.lower()}; per-class AUCs with DeLong 95% CIs and "
                                         "confusion matrices for every model.", sec.title)
    return True
