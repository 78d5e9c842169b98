"""Discrimination: ROC curves with AUC (95% CI), prediction histograms, per-case waterfall,
confusion matrices at the stored thresholds, threshold metrics with CIs, and paired comparisons
with the reference model (DeLong for AUC, paired bootstrap for accuracy and Youden index)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from her2dlr.report.context import MAX_CURVES, MAX_PANELS, ReportContext
from her2dlr.report.document import Section
from her2dlr.report.figures.discrimination import (
    plot_auc_forest,
    plot_confusion_matrices,
    plot_prediction_histograms,
    plot_roc,
    plot_waterfall,
)
from her2dlr.report.sections.cohort import class_names
from her2dlr.report.tables import METRIC_NAMES, fmt_ci, fmt_num, fmt_p
from her2dlr.report.views import View

__all__ = ["delong_vs_reference", "discrimination_section", "threshold_metrics_long", "view_aucs"]

_THRESHOLD_METRICS = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "youden")


def view_aucs(ctx: ReportContext, view: View) -> pd.DataFrame:
    """AUC with 95% CI of every model on ``view``: patient-clustered where patients share cases, else DeLong."""
    from her2dlr.evaluate.clustered import auc_interval

    key = ("auc", view.key)
    if key not in ctx.results:
        out = {}
        for m in view.models:
            y, p = view.y_prob(m)
            if min(y.sum(), len(y) - y.sum()) >= 2:
                f = view.model_frame(m)
                r = auc_interval(y, p, f["patient_id"].to_numpy() if "patient_id" in f.columns else None)
                out[m] = {"auc": r.auc, "ci_low": r.ci_low, "ci_high": r.ci_high, "se": r.se, "ci_method": r.method}
            else:
                out[m] = {"auc": np.nan, "ci_low": np.nan, "ci_high": np.nan, "se": np.nan}
            out[m].update(n=len(y), n_pos=int(y.sum()))
        ctx.results[key] = out
    frame = pd.DataFrame.from_dict(ctx.results[key], orient="index").rename_axis("model").reset_index()
    return frame.sort_values("auc", ascending=False).reset_index(drop=True)


def _scores_for_threshold(view: View, model: str) -> tuple[np.ndarray, np.ndarray, float, str]:
    """Scores and threshold reproducing the stored classes (``prob`` and the threshold, or the classes themselves)."""
    y, p = view.y_prob(model)
    classes = view.classes(model)
    thr = view.threshold(model)
    if view.single_threshold(model) and np.isfinite(thr) and np.array_equal((p >= thr).astype(int), classes):
        return y, p, thr, "stored threshold"
    return y, classes.astype(float), 0.5, "fold thresholds"


def threshold_metrics_long(view: View) -> pd.DataFrame:
    """Threshold metrics with CIs of every model on ``view`` (:func:`her2dlr.evaluate.compare.threshold_metrics_ci`).

    Returns
    -------
    DataFrame
        ``model, threshold, metric, value, k, n, ci_low, ci_high, method``.
    """
    from her2dlr.evaluate.compare import threshold_metrics_ci

    parts = []
    for m in view.models:
        y, s, thr, how = _scores_for_threshold(view, m)
        f = view.model_frame(m)
        t = threshold_metrics_ci(y, s, thr, clusters=f["patient_id"].to_numpy() if "patient_id" in f.columns else None)
        t = t.reset_index()
        t.insert(0, "threshold", view.threshold(m))
        t.insert(0, "model", m)
        t["classified_by"] = how
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def delong_vs_reference(view: View, reference: str) -> pd.DataFrame:
    """Paired DeLong test of every model against ``reference`` on their common cases."""
    from her2dlr.evaluate.delong import delong_test

    rows = []
    for m in view.models:
        if m == reference:
            continue
        wide = view.paired([reference, m])
        if len(wide) < 4 or wide["label"].nunique() < 2:
            continue
        y = wide["label"].to_numpy()
        if min(y.sum(), len(y) - y.sum()) < 2:
            continue
        t = delong_test(y, wide[reference].to_numpy(), wide[m].to_numpy())
        rows.append({"reference": reference, "model": m, "n": len(y), "auc_reference": t.auc_a, "auc_model": t.auc_b,
                     "difference": t.difference, "se": t.se, "z": t.z, "p_value": t.p_value})
    return pd.DataFrame(rows)


def _bootstrap_vs_reference(view: View, reference: str, n_boot: int = 1000) -> pd.DataFrame:
    from her2dlr.evaluate.compare import bootstrap_compare

    rows = []
    for m in view.models:
        if m == reference:
            continue
        wide = view.paired([reference, m])
        if len(wide) < 4 or wide["label"].nunique() < 2:
            continue
        cases = wide.index
        pieces = []
        for model in (reference, m):
            f = view.model_frame(model).set_index("case_id").loc[cases]
            sub = View(view.key, view.title, view.description, f.reset_index())
            y, s, thr, _ = _scores_for_threshold(sub, model)
            pieces.append((y, s, thr))
        (y, sa, ta), (_, sb, tb) = pieces
        res = bootstrap_compare(y, sa, sb, ta, tb, n_boot=n_boot, seed=0, metrics=("accuracy", "youden"))
        res = res.reset_index()
        res.insert(0, "model", m)
        res.insert(0, "reference", reference)
        rows.append(res)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _view_subsection(ctx: ReportContext, sec: Section, view: View, sources: list[str]) -> None:
    sub = sec.sub(f"discrimination_{view.key}", view.title)
    sub.text(view.description)
    aucs = view_aucs(ctx, view)
    ordered = list(aucs["model"])
    curves = {}
    labels = {}
    shown = ctx.shown_models(view, MAX_CURVES)
    for m in [m for m in ordered if m in shown]:
        y, p = view.y_prob(m)
        fpr, tpr, _ = roc_curve(y, p)
        curves[m] = (fpr, tpr)
        r = aucs.set_index("model").loc[m]
        labels[m] = f"{m}: {fmt_ci(r['auc'], r['ci_low'], r['ci_high'])}"
    roc_data = pd.concat([pd.DataFrame({"model": m, "fpr": c[0], "tpr": c[1]}) for m, c in curves.items()],
                         ignore_index=True)
    ci_name = ("patient-clustered (Obuchowski)" if "obuchowski" in set(aucs.get("ci_method", pd.Series(dtype=str)).dropna())
               else "DeLong")
    note = "" if len(shown) == len(view.models) else f" {len(shown)} of {len(view.models)} models drawn (the reference " \
                                                     "and the highest AUCs); all are in the table."
    sub.add(ctx.figure(f"roc_{view.key}", plot_roc(curves, labels, ctx.colors, title=view.title,
                                                   reference=ctx.reference),
                       f"ROC curves on the {view.title.lower()}; legend: AUC ({ci_name} 95% CI).{note}",
                       sources=sources, width="62%", data=roc_data))
    display = pd.DataFrame({"Model": aucs["model"], "n (pos.)": [f"{n} ({k})" for n, k in zip(aucs["n"], aucs["n_pos"])],
                            "AUC (95% CI)": [fmt_ci(a, lo, hi) for a, lo, hi in
                                             zip(aucs["auc"], aucs["ci_low"], aucs["ci_high"])]})
    sub.add(ctx.table(f"auc_{view.key}", f"AUC with {ci_name} 95% CI on the {view.title.lower()}.", aucs,
                      display=display, sources=sources))
    # threshold metrics
    tm = threshold_metrics_long(view)
    wide_rows = []
    for m in ordered:
        part = tm[tm["model"] == m].set_index("metric")
        row = {"Model": m, "Threshold": fmt_num(view.threshold(m))}
        for metric in _THRESHOLD_METRICS:
            if metric in part.index:
                r = part.loc[metric]
                if metric == "youden":
                    row[METRIC_NAMES[metric]] = fmt_ci(r["value"], r["ci_low"], r["ci_high"], 2)
                else:
                    row[f"{METRIC_NAMES[metric]}, %"] = fmt_ci(100 * r["value"], 100 * r["ci_low"],
                                                               100 * r["ci_high"], 1)
        wide_rows.append(row)
    fold_note = (" Cross-validated cases are classified with the threshold of the fold that predicted them "
                 "(the threshold column shows their mean).") if view.key == "cv" else ""
    sub.add(ctx.table(f"threshold_metrics_{view.key}", f"Threshold metrics on the {view.title.lower()} at the "
                      "operating threshold chosen on training data: percentages with Wilson 95% CIs (Youden index: "
                      "Wald CI)."
                      + fold_note, tm, display=pd.DataFrame(wide_rows), sources=sources))
    # small multiples
    panel = ctx.shown_models(view, MAX_PANELS)
    more = "" if len(panel) == len(view.models) else f" ({len(panel)} of {len(view.models)} models shown)"
    hist = {}
    wf = {}
    conf = {}
    for m in panel:
        y, p = view.y_prob(m)
        f = view.model_frame(m)
        thr_case = f["threshold"].to_numpy(dtype=float) if "threshold" in f.columns and f["threshold"].notna().all() \
            else np.full(len(y), 0.5)
        hist[m] = (y, p, view.threshold(m) if view.single_threshold(m) else float("nan"))
        wf[m] = (y, p, thr_case)
        c = view.classes(m)
        conf[m] = (int(((c == 0) & (y == 0)).sum()), int(((c == 1) & (y == 0)).sum()),
                   int(((c == 0) & (y == 1)).sum()), int(((c == 1) & (y == 1)).sum()))
    width3 = {1: "45%", 2: "70%"}.get(len(panel), "100%")
    width2 = "60%" if len(panel) == 1 else "100%"
    sub.add(ctx.figure(f"histograms_{view.key}", plot_prediction_histograms(hist),
                       f"Predicted probabilities by true class on the {view.title.lower()}; dashed line: operating "
                       f"threshold{more}.", sources=sources, width=width3))
    sub.add(ctx.figure(f"waterfall_{view.key}", plot_waterfall(wf),
                       f"Per-case predictions on the {view.title.lower()}: one bar per case, probability minus its "
                       f"threshold, sorted, coloured by the true class (bars above 0 are predicted positive){more}.",
                       sources=sources, width=width2))
    neg, pos = class_names(ctx)
    conf_data = pd.DataFrame([{"model": m, "tn": c[0], "fp": c[1], "fn": c[2], "tp": c[3]} for m, c in conf.items()])
    sub.add(ctx.figure(f"confusion_{view.key}", plot_confusion_matrices(conf, class_names=(neg, pos)),
                       f"Confusion matrices on the {view.title.lower()} at the stored operating thresholds "
                       f"(counts and row percentages){more}.", sources=sources,
                       width={1: "35%", 2: "58%"}.get(len(panel), "85%"), data=conf_data))
    # comparisons with the reference
    if ctx.reference and ctx.reference in view.models and len(view.models) > 1:
        dl = delong_vs_reference(view, ctx.reference)
        if len(dl):
            disp = pd.DataFrame({"Model": dl["model"], "n": dl["n"],
                                 "AUC reference": dl["auc_reference"].map(fmt_num),
                                 "AUC model": dl["auc_model"].map(fmt_num),
                                 "Difference": dl["difference"].map(fmt_num), "z": dl["z"].map(lambda v: fmt_num(v, 2)),
                                 "p (DeLong)": dl["p_value"].map(fmt_p)})
            sub.add(ctx.table(f"delong_{view.key}", f"Paired DeLong tests of each model against the reference model "
                              f"{ctx.reference} on the {view.title.lower()} (two-sided, common cases).", dl,
                              display=disp, sources=sources))
            ctx.results[("delong", view.key)] = dl
        if view.key in ("test", "cv"):
            bc = _bootstrap_vs_reference(view, ctx.reference)
            if len(bc):
                disp = pd.DataFrame({"Model": bc["model"], "Metric": bc["metric"].map(METRIC_NAMES),
                                     "Reference": bc["a"].map(fmt_num), "Model value": bc["b"].map(fmt_num),
                                     "Difference (95% CI)": [fmt_ci(d, lo, hi) for d, lo, hi in
                                                             zip(bc["diff"], bc["ci_low"], bc["ci_high"])],
                                     "p (bootstrap)": bc["p_value"].map(fmt_p)})
                sub.add(ctx.table(f"bootstrap_{view.key}", "Paired bootstrap comparison (1,000 stratified resamples) "
                                  f"of accuracy and Youden index at the operating thresholds, reference {ctx.reference} "
                                  "minus model.", bc, display=disp, sources=sources))


def _multiclass_facts(ctx: ReportContext, sec: Section) -> None:
    """The checklist facts of a run whose models are all multi-class: counts per class, no positive class,
    no threshold (the binary facts below speak of positives, sensitivity and operating thresholds)."""
    from her2dlr.report.sections.multiclass import multiclass_class_names, multiclass_views

    counts = []
    for v in multiclass_views(ctx):
        labels = v.frame.drop_duplicates("case_id")["label"].dropna().astype(int)
        n_classes = sum(1 for c in v.frame.columns if str(c).startswith("prob_") and v.frame[c].notna().any())
        names = multiclass_class_names(ctx, n_classes)
        per_class = ", ".join(f"{names[k]} {int((labels == k).sum())}" for k in range(len(names)))
        counts.append(f"{v.title}: {len(labels)} cases ({per_class})")
    f = ctx.facts
    f.set("analysis_counts", "; ".join(counts) + ". Per-fold training counts are in the models table.", sec.title)
    f.set("performance_measures", "Discrimination of each class against the others (one-vs-rest ROC curves and AUCs) "
                                  "and the macro AUC (their mean); accuracy and balanced accuracy of the most "
                                  "probable class and confusion matrices. Calibration and decision curves are binary "
                                  "analyses and are not applied to these multi-class models.", sec.title)
    f.set("uncertainty", "95% CIs: DeLong (patient-clustered where patients have several cases) for the one-vs-rest "
                         "AUCs, a bootstrap stratified by class for the macro AUC.", sec.title)


def discrimination_section(ctx: ReportContext) -> Section:
    """One subsection per evaluation set, after a forest plot of every AUC."""
    from her2dlr.report.sections.multiclass import add_multiclass_discrimination

    sec = Section("discrimination", "Discrimination")
    multiclass = add_multiclass_discrimination(ctx, sec)  # 3-class models: one-vs-rest and macro AUCs
    if not ctx.views:
        if multiclass:
            _multiclass_facts(ctx, sec)
            return sec
        return sec.note("The run has no predictions with both classes (learn/<set>/predictions.parquet): "
                        "discrimination cannot be shown.", "missing")
    sources = ctx.sources_of("predictions")
    from her2dlr.report.sections.clinical import label_proxy_warning

    proxy = label_proxy_warning(ctx)
    if proxy:
        sec.note(proxy + " (Section 'Clinical characteristics and odds ratios' lists the check.)", "warning")
    rows = []
    for v in ctx.views:
        a = view_aucs(ctx, v).assign(view=v.title)
        rows.append(a)
    allauc = pd.concat(rows, ignore_index=True)
    sec.text("AUCs are given with DeLong 95% confidence intervals; threshold metrics use the operating threshold "
             "chosen on the training data of each model and applied unchanged. "
             + (f"Models are compared with the reference model {ctx.reference} ({ctx.reference_reason})."
                if ctx.reference else ""))
    order = list(ctx.models)
    forest = allauc.dropna(subset=["auc"]).copy()
    forest["model"] = pd.Categorical(forest["model"], categories=order, ordered=True)
    forest = forest.sort_values("model")
    forest["model"] = forest["model"].astype(str)
    if len(forest):
        sec.add(ctx.figure("auc_forest", plot_auc_forest(forest, ctx.colors, view_order=[v.title for v in ctx.views]),
                           "AUC (DeLong 95% CI) of every model on every evaluation set.", sources=sources, width="80%",
                           data=forest))
    for v in ctx.views:
        _view_subsection(ctx, sec, v, sources)
    # facts
    f = ctx.facts
    primary = ctx.primary_view
    if primary is not None:
        a = view_aucs(ctx, primary).set_index("model")
        ref = ctx.reference if ctx.reference in a.index else a.index[0]
        r = a.loc[ref]
        f.set("performance", f"{ref}: AUC {fmt_ci(r['auc'], r['ci_low'], r['ci_high'])} on the "
                             f"{primary.title.lower()}; AUC, accuracy, sensitivity, specificity, PPV, NPV with 95% CIs for "
                             f"all {len(a)} models.", sec.title)
        ctx.results["headline"] = (ref, primary.title, r)
    counts = []
    for v in ctx.views:
        a = view_aucs(ctx, v)
        if len(a):
            counts.append(f"{v.title}: {int(a['n'].max())} cases, {int(a['n_pos'].max())} positive")
    f.set("analysis_counts", "; ".join(counts) + ". Per-fold training counts are in the models table.", sec.title)
    f.set("performance_measures", "Discrimination (AUC, ROC), threshold metrics at a training-chosen threshold, "
                                  "calibration (slope, intercept, Brier, Hosmer-Lemeshow, curves) and clinical utility "
                                  "(decision curves).", sec.title)
    f.set("uncertainty", "95% CIs: DeLong for AUC, Wilson for proportions, Wald for the Youden index, bootstrap for "
                         "paired differences.", sec.title)
    if any(("delong", v.key) in ctx.results for v in ctx.views):
        f.set("comparison", f"Paired DeLong tests of every model against the reference model ({ctx.reference}); "
                            "paired bootstrap for accuracy and Youden index.", sec.title)
    return sec
