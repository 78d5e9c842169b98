"""Models section: the metrics table of every model and how the models were built and tuned."""

from __future__ import annotations

import pandas as pd

from her2dlr.report.context import ReportContext
from her2dlr.report.document import Section
from her2dlr.report.sections.cohort import class_names
from her2dlr.report.tables import metrics_display

__all__ = ["models_section"]

_ZOO = {"lr": "logistic regression", "svm": "support vector machine", "rf": "random forest",
        "extratrees": "extremely randomised trees", "xgboost": "XGBoost", "lightgbm": "LightGBM",
        "knn": "k-nearest neighbours", "nb": "naive Bayes", "mlp": "multilayer perceptron"}


def _multiclass_models(ctx: ReportContext) -> list[str]:
    """The run's multi-class models (empty when it has none)."""
    from her2dlr.report.sections.multiclass import multiclass_views

    return sorted({m for v in multiclass_views(ctx) for m in v.models})


def _multiclass_names(ctx: ReportContext) -> list[str]:
    """Class names of the run's multi-class models (the label rule's, else ``class 0`` ...)."""
    from her2dlr.report.sections.multiclass import multiclass_class_names

    pred = ctx.run.predictions
    n = sum(1 for c in pred.columns if str(c).startswith("prob_") and pred[c].notna().any())
    return multiclass_class_names(ctx, n)


def _settings_facts(ctx: ReportContext, *, binary: bool = True, multiclass: bool = False) -> dict[str, str]:
    """Facts about algorithms, tuning and the model output from the sets' ``settings.json``.

    ``binary`` / ``multiclass``: the run has two-class / multi-class models; a multi-class model
    is tuned by the macro one-vs-rest AUC and outputs a probability per class and the most
    probable class (no operating threshold).
    """
    facts: dict[str, str] = {}
    algos: set[str] = set()
    schemes: set[str] = set()
    for ls in ctx.run.learn_sets:
        st = ls.settings
        if not st:
            continue
        for m in st.get("models", []):
            name = m.get("name") if isinstance(m, dict) else str(m)
            algos.add(_ZOO.get(name, name))
        schemes.update(st.get("schemes", []))
        search = st.get("search") or {}
        thr = st.get("threshold") or {}
        if search:
            score = " / ".join(x for x, on in (("AUC", binary), ("macro one-vs-rest AUC", multiclass)) if on)
            facts["tuning"] = (f"Nested {search.get('search', 'grid')} search of hyper-parameters with "
                               f"{search.get('inner_splits')}-fold patient-grouped inner cross-validation inside "
                               f"every outer training fold, chosen by median inner {score or 'AUC'}; seed "
                               f"{st.get('seed', 'not recorded')}.")
        if thr and binary:
            target = f" (target {thr['target']})" if thr.get("target") is not None else ""
            facts["model_output"] = (f"Predicted probability of the positive class and a class at an operating threshold "
                                     f"chosen by the {thr.get('method')} rule{target} on the "
                                     f"{'inner out-of-fold' if thr.get('source') == 'inner_oof' else 'training'} "
                                     "predictions of each training fold, then applied unchanged to test cases.")
    if multiclass:
        names = _multiclass_names(ctx)
        said = (f"Multi-class models: a predicted probability of each class ({', '.join(names)}); the predicted class "
                "is the most probable one (argmax), with no operating threshold.")
        facts["model_output"] = f"{facts['model_output']} {said}" if "model_output" in facts else said
    if algos:
        facts["algorithms"] = "Classifiers: " + ", ".join(sorted(algos)) + " (scikit-learn / XGBoost / LightGBM)."
    if schemes:
        facts["schemes"] = ", ".join(sorted(schemes))
    return facts


def _multiclass_caption(ctx: ReportContext) -> str:
    """What the metrics table's columns mean for multi-class models (empty when the run has none)."""
    from her2dlr.report.sections.multiclass import multiclass_views

    models = sorted({m for v in multiclass_views(ctx) for m in v.models})
    if not models:
        return ""
    return (f" Multi-class models ({', '.join(models[:5])}{' ...' if len(models) > 5 else ''}): AUC is the macro "
            "one-vs-rest AUC with its bootstrap 95% CI, accuracy that of the most probable class; they have no "
            "threshold metrics (section 'Discrimination' gives the per-class AUCs).")


def _multiclass_rows(data: pd.DataFrame, display: pd.DataFrame, *, only: bool) -> pd.DataFrame:
    """The metrics table's display for multi-class rows: their case count (they have no positives) and, when every
    model is multi-class (``only``), no column of threshold metrics (sensitivity ... threshold: none applies)."""
    from her2dlr.report.tables import METRIC_NAMES, fmt_num

    display = display.copy()
    no_pos = data["n_pos"].isna() & data["n"].notna() if "n_pos" in data.columns else data["n"].notna()
    if only:
        display = display.rename(columns={"n (pos.)": "n"})
        display["n"] = [str(int(n)) if pd.notna(n) else "" for n in data["n"]]
        display = display.drop(columns=[METRIC_NAMES[c] for c in ("sensitivity", "specificity", "ppv", "npv",
                                                                  "threshold") if METRIC_NAMES[c] in display.columns])
        if "balanced_accuracy" in data.columns:
            display["Balanced accuracy"] = [fmt_num(v) for v in data["balanced_accuracy"]]
    else:
        display.loc[no_pos.to_numpy(), "n (pos.)"] = [str(int(n)) for n in data.loc[no_pos, "n"]]
    return display


def models_section(ctx: ReportContext) -> Section:
    """Metrics of every model (``learn/*/metrics.csv``), the reference model and the modelling facts."""
    sec = Section("models", "Models")
    metrics = ctx.run.metrics
    if metrics.empty and not ctx.views:
        return sec.note("The run has no learn/<set>/metrics.csv or predictions: no models to report.", "missing")
    n_models = len(set(metrics["model"])) if len(metrics) else len(ctx.models)
    sets = [ls.name for ls in ctx.run.learn_sets]
    sec.text(f"{n_models} models were evaluated from {len(sets)} feature set(s): {', '.join(sets)}. "
             + (f"The reference model for comparisons is {ctx.reference}, the model with the {ctx.reference_reason}."
                if ctx.reference else ""))
    multiclass = _multiclass_models(ctx)
    binary = bool(ctx.views) or not multiclass
    if len(metrics):
        data, display = metrics_display(metrics)
        if multiclass:
            display = _multiclass_rows(data, display, only=not binary)
        binary_words = ("AUC with DeLong 95% CI; threshold metrics at the operating threshold chosen on training "
                        "data. " if binary else "")
        sec.add(ctx.table("models_metrics", f"Performance of every model (metrics.csv). {binary_words}k-fold rows are "
                          "means over repetitions (test: pooled out-of-fold predictions of each repetition) or "
                          "over folds (train); per-repetition rows are in metrics.csv." + _multiclass_caption(ctx), data,
                          display=display, sources=ctx.sources_of("metrics")))
    else:
        sec.note("No learn/<set>/metrics.csv: the metrics table is not shown.", "missing")
    params = ctx.run.concat("params")
    thresholds = binary  # multi-class models take the most probable class: no threshold to show
    if len(params) and "model" in params.columns:
        cols = [c for c in params.columns if "__" in c]
        rows = []
        for model, part in params.groupby("model", sort=False):
            chosen = []
            for c in cols:
                vc = part[c].dropna().astype(str).value_counts()
                if len(vc):
                    chosen.append(f"{c.split('__', 1)[1]}: " + ", ".join(f"{k} ({v})" for k, v in vc.items()))
            rows.append({"model": model, "folds": len(part),
                         "features (median)": float(part["n_features"].median()) if "n_features" in part else None,
                         "inner AUC (median)": float(part["inner_median_auc"].median())
                         if "inner_median_auc" in part else None,
                         **({"threshold (median)": float(part["threshold"].median()) if "threshold" in part else None}
                            if thresholds else {}),
                         "chosen settings (folds)": "; ".join(chosen)})
        sec.add(ctx.table("model_tuning", "Hyper-parameters chosen by the inner search in each outer fold "
                          "(params.csv), features reaching the model" + (" and thresholds." if thresholds else
                                                                          " (multi-class models have no threshold)."),
                          pd.DataFrame(rows),
                          sources=[ctx.run.rel(ls.file("params.csv")) for ls in ctx.run.learn_sets
                                   if ls.file("params.csv").exists()]))
    facts = _settings_facts(ctx, binary=binary, multiclass=bool(multiclass))
    f = ctx.facts
    for key in ("algorithms", "tuning", "model_output"):
        f.set(key, facts.get(key), sec.title)
    f.set("model_selection", f"All models are reported; the reference model ({ctx.reference}) has the "
                             f"{ctx.reference_reason}." if ctx.reference else None, sec.title)
    selection = f.get("feature_selection")
    f.set("modelling", " ".join(x for x in (facts.get("algorithms"), selection, facts.get("tuning")) if x) or None,
          sec.title)
    f.set("feature_processing", (selection + " " + (f.get("scaling") or "")).strip() if selection else None, sec.title)
    if binary:
        neg, pos = class_names(ctx)
        target = f"{pos} (vs {neg})"
    else:
        names = _multiclass_names(ctx)
        target = f"the class ({', '.join(names[:-1])} or {names[-1]})" if len(names) > 1 else "the class"
    f.set("objectives", f"Development and internal validation of models that predict {target} from "
                        f"{', '.join(sets)}.", sec.title)
    f.set("intended_use", None)
    models_lower = " ".join(ctx.models).lower()
    if "-lr" in models_lower or "logistic" in models_lower:
        f.set("simple_model", "Logistic regression is among the compared models.", sec.title)
    if "clinical" in models_lower:
        f.set("non_radiomic", "A clinical-only model is compared with the imaging and combined models (DeLong test).",
              sec.title)
    if ctx.run.model_cards:
        names = ", ".join(ctx.run.rel(p.parent) for p, _ in ctx.run.model_cards)
        f.set("model_spec", f"Model artefacts with model cards: {names}.", sec.title)
        f.set("model_files", f"Fitted models saved in the run folder ({names}).", sec.title)
    return sec
