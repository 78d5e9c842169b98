"""Features and selection: extraction records, selection funnel, selection frequency, importance, correlation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from her2dlr.report.context import ReportContext
from her2dlr.report.document import Section
from her2dlr.report.figures.features import (
    plot_correlation,
    plot_frequency,
    plot_funnel,
    plot_importance,
)
from her2dlr.report.run import LearnSet
from her2dlr.report.tables import fmt_ci, funnel_summary

__all__ = ["MAX_KEPT", "features_section", "training_cases"]

#: Kept features shown in the importance and correlation figures.
MAX_KEPT = 25
_PREFIXES = ("radiomics__", "deep__", "dl__")


def training_cases(ctx: ReportContext) -> pd.DataFrame:
    """Included labelled manifest rows of the training partition (all of them when there is no hold-out)."""
    m = ctx.run.manifest
    if m is None:
        return pd.DataFrame()
    t = m.included
    t = t[t["label"].notna()] if "label" in t.columns else t
    if "split" in t.columns and (t["split"] == "train").any():
        t = t[t["split"] == "train"]
    return t


def _extraction(ctx: ReportContext, sec: Section) -> None:
    run = ctx.run
    rows = []
    for name in run.feature_tables:
        rec = run.feature_record(name) or {}
        rows.append({"table": name, "cases": rec.get("n_cases"), "features": rec.get("n_features"),
                     "failed": rec.get("n_failed"), "params": rec.get("params"), "roi": rec.get("roi"),
                     "params_hash": rec.get("params_hash"), "software": (f"PyRadiomics {rec['pyradiomics']}"
                                                                        if rec.get("pyradiomics") else ""),
                     "pixel_size": (rec.get("pixel_size") or {}).get("note", "")})
    if not rows:
        sec.note("The run has no features/*.parquet tables.", "missing")
        return
    table = pd.DataFrame(rows)
    sec.add(ctx.table("feature_tables", "Feature tables of the run and how they were extracted.", table,
                      sources=[f"features/{r['table']}.json" for r in rows]))
    f = ctx.facts
    first = rows[0]
    f.set("n_features", "; ".join(f"{r['table']}: {r['features']} features of {r['cases']} cases" for r in rows),
          sec.title)
    soft = sorted({r["software"] for r in rows if r["software"]})
    if soft:
        f.set("extraction_software", ", ".join(soft) + " (IBSI-aligned open-source software), run by her2dlr.",
              sec.title)
    params = _load_params(str(first["params"])) if first.get("params") else None
    if params:
        image_types = ", ".join(f"{k}{' ' + _compact(v) if v else ''}" for k, v in (params.get("imageType") or {}).items())
        classes = ", ".join(params.get("featureClass") or {})
        setting = params.get("setting") or {}
        f.set("image_types", f"Image types: {image_types}.", sec.title)
        f.set("feature_classes", f"Feature classes: {classes}.", sec.title)
        disc = (f"Fixed bin width {setting['binWidth']}" if "binWidth" in setting else
                f"Fixed bin count {setting['binCount']}" if "binCount" in setting else None)
        f.set("discretisation", disc, sec.title)
        res = setting.get("resampledPixelSpacing")
        record = run.feature_record(str(first["table"])) or {}
        pixel_note = record.get("pixel_size", {}).get("note")
        voxel = record.get("voxel_size") or {}
        resampled = (voxel["note"] if voxel.get("target_mm") else f"Resampled to {res} mm") if res else None
        f.set("resampling", f"{resampled.rstrip('.')} ({setting.get('interpolator', 'default interpolator')})."
              if resampled else pixel_note or "No resampling (images used at their own pixel spacing).", sec.title)
        norm = "normalised (PyRadiomics normalize)" if setting.get("normalize") else "not intensity-normalised"
        f.set("image_preprocessing", f"Grey-level images {norm}; colour converted to grey; ROI '{first.get('roi')}'; "
                                     f"parameter set '{first['params']}' (hash {first.get('params_hash')}).", sec.title)
        f.set("extraction_params", f"Full PyRadiomics parameter set '{first['params']}' recorded (hash "
                                   f"{first.get('params_hash')}); parameters not listed take PyRadiomics defaults.",
              sec.title)


def _compact(v: Any) -> str:
    if isinstance(v, dict):
        return "(" + ", ".join(f"{k}={_compact(x)}" for k, x in v.items()) + ")"
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]"
    return str(v)


def _load_params(name: str) -> dict[str, Any] | None:
    try:
        from her2dlr.radiomics.parameters import load_params

        return dict(load_params(name))
    except Exception:
        return None


def _funnel(ctx: ReportContext, sec: Section) -> None:
    funnel = ctx.run.concat("funnel")
    if funnel.empty:
        sec.note("No learn/<set>/funnel.csv: the feature-selection funnel is not shown.", "missing")
        return
    summ = funnel_summary(funnel)
    rows = []
    for model, part in summ.groupby("model", sort=False):
        part = part.sort_values("order")
        path = " \u2192 ".join(
            f"{st} {m:g}" + (f" ({lo:g}\u2013{hi:g})" if lo != hi else "")
            for st, m, lo, hi in zip(part["step"], part["median"], part["min"], part["max"]))
        rows.append({"Model": model, "Folds": int(part["n_folds"].max()), "Features after each step": path})
    display = pd.DataFrame(rows)
    sec.add(ctx.table("selection_funnel", "Features left after each selection step: median over outer folds "
                      "(min\u2013max); every step was fitted on the training fold only.", summ, display=display,
                      sources=ctx.sources_of("funnel")))
    models = [m for m in ctx.models if m in set(summ["model"])] or list(summ["model"].unique())
    show = summ[summ["model"].isin(models[:10])]
    n_panels = show["model"].nunique()
    sec.add(ctx.figure("selection_funnel", plot_funnel(show, ctx.colors), "Selection funnel: features kept after "
                       "each step, per model (bars: median over outer folds; lines: min\u2013max; log scale).",
                       sources=ctx.sources_of("funnel"), width={1: "40%", 2: "66%"}.get(n_panels, "100%")))
    steps = [s for s in summ["step"].unique() if s != "input"]
    f = ctx.facts
    f.set("feature_selection", "Selection inside every training fold: " + " \u2192 ".join(steps) + "; funnel per fold "
          "in funnel.csv.", sec.title)
    if any(s in ("zscore", "scale", "standardize") for s in steps):
        f.set("scaling", "Z-score standardisation fitted on each training fold (mean and SD of training cases only).",
              sec.title)
    if any(s in ("pearson", "greedy", "spearman", "mrmr") for s in steps):
        f.set("redundancy", "Redundant features removed by correlation filters (" + ", ".join(
            s for s in steps if s in ("pearson", "greedy", "spearman", "mrmr")) + ") inside each training fold.",
              sec.title)
    if "icc" in steps:
        f.set("robustness", "Features with low ICC across repeated segmentations removed (icc step).", sec.title)
    final = summ.sort_values("order").groupby("model").tail(1)
    if len(final):
        kmed = float(final["median"].median())
        tr = training_cases(ctx)
        n_ev = int(min((tr["label"].astype(int) == 1).sum(), (tr["label"].astype(int) == 0).sum())) if len(tr) else 0
        epv = f"; about {n_ev / kmed:.1f} events of the smaller class per kept feature" if kmed > 0 and n_ev else ""
        f.set("dimensionality", f"Input {int(summ[summ['order'] == 0]['median'].max())} features reduced to a median of "
                                f"{kmed:.0f} per model{epv}.", sec.title)
        f.set("feature_stats", "Selection funnel, selection frequency and univariable AUC of kept features reported.",
              sec.title)


def _frequency_for(ls: LearnSet, ref: str | None) -> tuple[str | None, pd.DataFrame]:
    freq = ls.feature_frequency
    if freq is None or freq.empty:
        return None, pd.DataFrame()
    if ref is not None and ref in set(freq["model"]):
        model = ref
    else:
        model = str(freq.groupby("model").size().sort_values(ascending=False).index[0])
    part = freq[freq["model"] == model].groupby("feature", as_index=False)["frequency"].mean()
    return model, part.sort_values("frequency", ascending=False, kind="stable")


def _strip(name: str) -> str:
    """A feature name without the branch prefix the fusion models add (``radiomics__``, ``clinical__``)."""
    for p in (*_PREFIXES, "clinical__"):
        name = name.removeprefix(p)
    return name


def _feature_values(ctx: ReportContext, ls: LearnSet, names: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Columns ``names`` (prefixes stripped) from the set's feature tables, on the training cases."""
    settings = ls.settings or {}
    tables = list(settings.get("features") or [settings.get("feature_set")])
    tables = [t for t in tables if t and t in ctx.run.feature_tables]
    if not tables and ls.name in ctx.run.feature_tables:
        tables = [ls.name]
    if not tables:
        return pd.DataFrame(), []
    plain = {n: _strip(n) for n in names}
    frames = []
    used_sources = []
    for t in tables:
        path = ctx.run.feature_tables[t]
        import pyarrow.parquet as pq

        cols = set(pq.read_schema(path).names)
        want = [c for c in dict.fromkeys(plain.values()) if c in cols or f"{t}:{c}" in cols]
        if not want:
            continue
        df = pd.read_parquet(path, columns=want + (["case_id"] if "case_id" in cols else []))
        if "case_id" in df.columns:
            df = df.set_index("case_id")
        frames.append(df)
        used_sources.append(ctx.run.rel(path))
    if not frames:
        return pd.DataFrame(), []
    values = pd.concat(frames, axis=1)
    values = values.loc[:, ~values.columns.duplicated()]
    values.index = values.index.astype(str)
    return values, used_sources


def _importance(ctx: ReportContext, sec: Section) -> None:
    from her2dlr.evaluate.delong import delong_auc_ci

    sets = ctx.run.learn_sets
    ref_set = None
    if ctx.reference:
        for ls in sets:
            if ls.predictions is not None and ctx.reference in set(ls.predictions["model"]):
                ref_set = ls
    candidates = ([ref_set] if ref_set else []) + [s for s in sets if s is not ref_set]
    for ls in candidates:
        model, freq = _frequency_for(ls, ctx.reference)
        if model is None or freq.empty:
            continue
        src = [ctx.run.rel(ls.file("feature_frequency.csv"))]
        sec.add(ctx.figure(f"feature_frequency_{ls.name}",
                           plot_frequency(freq.assign(feature=freq["feature"].map(_strip)), title=model),
                           f"Selection frequency over the outer folds of the features of {model} (top 25).",
                           sources=src, width="80%"))
        freq_all = ls.feature_frequency.assign(feature=ls.feature_frequency["feature"].map(_strip))
        wide = freq_all.pivot_table(index="feature", columns="model", values="frequency", aggfunc="mean").fillna(0.0)
        wide = wide.assign(_m=wide.mean(axis=1)).sort_values("_m", ascending=False).drop(columns="_m").reset_index()
        sec.add(ctx.table(f"feature_frequency_{ls.name}", f"Selection frequency of each feature over the outer folds, "
                          f"per model of the set {ls.name}.", wide, sources=src, max_rows=30))
        kept = freq[freq["frequency"] >= 0.5]["feature"].tolist()
        rule = "selected in at least half of the outer folds"
        if len(kept) < 5:
            kept = freq[freq["frequency"] > 0]["feature"].tolist()[:15]
            rule = "the 15 most often selected over the outer folds"
        kept = kept[:MAX_KEPT]
        values, vsrc = _feature_values(ctx, ls, kept)
        tr = training_cases(ctx)
        if values.empty or tr.empty:
            sec.note("The feature values of the kept features are not in features/*.parquet: importance and "
                     "correlation are not shown.", "missing")
            return
        labels = tr.set_index(tr["case_id"].astype(str))["label"].astype(int)
        common = values.index.intersection(labels.index)
        values, y = values.loc[common], labels.loc[common]
        original = {_strip(k): k for k in kept}
        freq_of = freq.set_index("feature")["frequency"]
        rows = []
        for col in values.columns:
            x = pd.to_numeric(values[col], errors="coerce")
            ok = x.notna().to_numpy()
            if ok.sum() < 4 or y[ok].nunique() < 2 or min(y[ok].sum(), (1 - y[ok]).sum()) < 2 or x[ok].nunique() < 2:
                continue
            res = delong_auc_ci(y[ok].to_numpy(), x[ok].to_numpy())
            rows.append({"feature": col, "frequency": float(freq_of.get(original.get(col, col), np.nan)),
                         "auc": res.auc, "ci_low": res.ci_low, "ci_high": res.ci_high, "n": int(ok.sum())})
        if not rows:
            return
        imp = pd.DataFrame(rows)
        where = "training set" if ctx.run.manifest is not None and "split" in ctx.run.manifest.table.columns and \
            (ctx.run.manifest.table["split"] == "train").any() else "included cases"
        display = pd.DataFrame({"Feature": imp["feature"], "Selection frequency": imp["frequency"].map("{:.2f}".format),
                                "Univariable AUC (95% CI)": [fmt_ci(a, lo, hi) for a, lo, hi in
                                                              zip(imp["auc"], imp["ci_low"], imp["ci_high"])],
                                "n": imp["n"]})
        sec.add(ctx.figure(f"feature_importance_{ls.name}", plot_importance(imp, title=model),
                           f"Importance of the features kept by {model} ({rule}): "
                           f"univariable AUC on the {where} with DeLong 95% CI (above 0.5: higher values in positive "
                           "cases). Clinical variables are in the odds-ratio tables.", sources=src + vsrc, width="80%"))
        sec.add(ctx.table(f"feature_importance_{ls.name}", f"Kept features of {model}: selection frequency and "
                          f"univariable AUC on the {where}.", imp, display=display, sources=src + vsrc))
        num = values.apply(pd.to_numeric, errors="coerce")
        num = num.loc[:, num.std() > 0]
        if num.shape[1] >= 2:
            corr = num.corr(method="pearson")
            sec.add(ctx.figure(f"feature_correlation_{ls.name}", plot_correlation(corr),
                               f"Pearson correlation between the kept features of {model} on the {where}.",
                               sources=vsrc, width="75%", data=corr.reset_index(names="feature")))
        return
    sec.note("No learn/<set>/feature_frequency.csv: the selected features are not shown.", "missing")


def features_section(ctx: ReportContext) -> Section:
    """Feature tables, the selection funnel, selection frequency, importance and correlation of kept features."""
    sec = Section("features", "Features and selection")
    _extraction(ctx, sec)
    _funnel(ctx, sec)
    _importance(ctx, sec)
    return sec
