"""Cohort, quality control and splits sections (from ``cohort/``)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from her2dlr.cohort.build import split_class_names
from her2dlr.report.context import ReportContext
from her2dlr.report.document import Section
from her2dlr.report.figures.cohort import FlowCounts, plot_flow

__all__ = ["class_names", "cohort_section", "included_table", "splits_section"]

_QC_ROWS = [
    ("unreadable_images", "Unreadable images"),
    ("rgb_converted", "Colour images converted to grey"),
    ("multi_lesion_rows", "Images with several lesions"),
    ("rows_without_roi", "Included images with neither mask nor box"),
    ("derived_masks", "Masks derived by the lesion policy"),
    ("exact_duplicate_groups", "Groups of exact duplicates"),
    ("near_duplicate_groups", "Groups of near-duplicates"),
    ("rows_in_duplicate_groups", "Images in near-duplicate groups"),
    ("duplicate_pairs", "Duplicate pairs found"),
    ("cross_label_pairs", "Duplicate pairs with different labels"),
    ("n_groups", "Groups kept together by every split"),
]


def class_names(ctx: ReportContext) -> tuple[str, str]:
    """Names of the negative and positive class (from the label rule), default ``negative``/``positive``."""
    m = ctx.run.manifest
    classes = (m.meta.get("label", {}) or {}).get("classes") if m is not None else None
    if isinstance(classes, list) and len(classes) == 2:
        return str(classes[0]), str(classes[1])
    return "negative", "positive"


def included_table(ctx: ReportContext) -> pd.DataFrame:
    """Included, labelled manifest rows."""
    m = ctx.run.manifest
    if m is None:
        return pd.DataFrame()
    t = m.included
    return t[t["label"].notna()] if "label" in t.columns else t


def _label_rule_text(meta: dict[str, Any]) -> str:
    rule = meta.get("label") or {}
    if not rule:
        return ""
    kind = rule.get("rule", "column")
    if kind == "column":
        pos = ", ".join(map(str, rule.get("positive") or [])) or "(not given)"
        neg = ", ".join(map(str, rule.get("negative") or [])) or "(all other values)"
        return f"column '{rule.get('column')}': positive = {pos}; negative = {neg}"
    names = {"her2_status": "HER2-positive vs HER2-negative from IHC and ISH (ASCO/CAP 2018)",
             "her2_low": "HER2-low vs HER2-zero among HER2-negative cases",
             "her2_three_class": "HER2-zero / HER2-low / HER2-positive"}
    return f"{names.get(kind, kind)} (IHC column '{rule.get('ihc_column')}', ISH column '{rule.get('ish_column')}')"


def _flow(ctx: ReportContext, qc: dict[str, Any] | None) -> tuple[FlowCounts | None, pd.DataFrame]:
    run = ctx.run
    m = run.manifest
    if m is None:
        return None, pd.DataFrame()
    table = m.table
    neg, pos = class_names(ctx)
    inc = included_table(ctx)
    labels = run.cohort_csv("labels.csv")
    excluded: dict[str, int] = {}
    if qc:
        for reason, k in (qc.get("excluded_by_reason") or {}).items():
            if reason == "excluded_before_qc":
                continue
            excluded[str(reason)] = int(k)
    if labels is not None and "label" in labels.columns and "reason" in labels.columns:
        no_label = labels[labels["label"].isna()]
        for reason, k in no_label["reason"].fillna("no label").value_counts().items():
            excluded[f"label rule: {reason}"] = int(k)
    imported = int(qc["n_rows"]) if qc and "n_rows" in qc else len(table)
    imported_pat = int(qc["n_patients"]) if qc and "n_patients" in qc else int(table["patient_id"].nunique())
    n_excluded = int(qc["n_input_rows_excluded"]) if qc and "n_input_rows_excluded" in qc else len(table) - len(inc)
    y = inc["label"].astype(int) if len(inc) else pd.Series(dtype=int)
    classes = ((m.meta.get("label") or {}).get("classes") or [neg, pos]) if y.nunique() > 2 else [neg, pos]
    by_label = {f"{classes[k] if 0 <= k < len(classes) else k} ({k})": int((y == k).sum())
                for k in sorted(y.unique(), reverse=True)} if len(y) else {}
    multi = split_class_names(m)
    partitions = []
    splits = run.cohort_csv("splits.csv")
    if splits is not None and len(splits) and "partition" in splits.columns:
        hold = splits[splits["partition"] == "holdout"]
        hold = hold.assign(_o=hold["part"].map({"train": 0, "test": 1}).fillna(2)).sort_values("_o")
        for _, r in hold.iterrows():
            part: dict[str, Any] = {"name": str(r["part"]), "n": int(r["n"]),
                                    "patients": int(r["patients"]) if "patients" in r else ""}
            if multi is None:
                part.update(n_pos=int(r["n_pos"]), n_neg=int(r["n_neg"]))
            else:  # splits.csv of a multi-class label: one n_<class> column per class
                part["classes"] = {name: int(r.get(f"n_{name}", 0)) for name in multi}
            partitions.append(part)
    cv = None
    kfold = (m.meta.get("split") or {}).get("kfold")
    if kfold and m.fold_columns:
        cv = (f"Repeated patient-grouped {kfold.get('n_splits')}-fold cross-validation, {kfold.get('n_repeats')} "
              f"repetition(s), on {'the training set' if partitions else 'all included images'}")
        if partitions:
            cv = f"Also: repeated patient-grouped {kfold.get('n_splits')}-fold CV x{kfold.get('n_repeats')} (see Data splits)"
    flow = FlowCounts(imported=imported, imported_patients=imported_pat, excluded=excluded, n_excluded=n_excluded,
                      included=len(inc), included_patients=int(inc["patient_id"].nunique()) if len(inc) else 0,
                      by_label=by_label, partitions=partitions, cv=cv)
    # a binary label is counted as positive / negative, a multi-class one per class name
    count_cols = ["positive", "negative"] if multi is None else list(multi)
    none = dict.fromkeys(count_cols)
    rows = [{"step": "imported", "images": imported, "patients": imported_pat, **none},
            {"step": "excluded", "images": n_excluded, "patients": None, **none}]
    for reason, k in excluded.items():
        rows.append({"step": f"  excluded: {reason}", "images": k, "patients": None, **none})
    included = ({"positive": int((y == 1).sum()), "negative": int((y == 0).sum())} if multi is None
                else {name: int((y == k).sum()) for k, name in enumerate(multi)})
    rows.append({"step": "included", "images": len(inc), "patients": flow.included_patients, **included})
    for p in partitions:
        counts = p["classes"] if multi is not None else {"positive": p["n_pos"], "negative": p["n_neg"]}
        rows.append({"step": f"split: {p['name']}", "images": p["n"], "patients": p["patients"] or None, **counts})
    return flow, pd.DataFrame(rows)


def cohort_section(ctx: ReportContext) -> Section:
    """Cohort flow (figure and table), QC counts and label counts; records the cohort facts."""
    run = ctx.run
    sec = Section("cohort", "Cohort and quality control")
    if run.manifest is None:
        return sec.note("The run has no cohort/manifest.parquet (written by `her2dlr cohort build`): the cohort flow, "
                        "QC and baseline tables cannot be shown.", "missing")
    qc = run.cohort_json("qc_summary.json")
    label_counts = run.cohort_json("label_counts.json")
    m = run.manifest
    src = ["cohort/manifest.parquet"] + [f"cohort/{n}" for n in ("qc_summary.json", "labels.csv", "splits.csv")
                                         if (run.cohort_dir / n).exists()]
    flow, flow_table = _flow(ctx, qc)
    inc = included_table(ctx)
    neg, pos = class_names(ctx)
    n_pos = int((inc["label"].astype(int) == 1).sum()) if len(inc) else 0
    centres = inc["centre"].fillna("unknown").value_counts() if "centre" in inc.columns else pd.Series(dtype=int)
    modality = inc["modality"].value_counts() if "modality" in inc.columns else pd.Series(dtype=int)
    rule = _label_rule_text(m.meta)
    lead = (f"Of {flow.imported} imported images ({flow.imported_patients} patients), {flow.n_excluded} were excluded "
            f"and {flow.included} images of {flow.included_patients} patients were analysed: ")
    binary = len(flow.by_label) <= 2
    if binary:
        lead += (f"{n_pos} {pos} (positive) and {flow.included - n_pos} {neg} (negative), a prevalence of "
                 f"{n_pos / max(flow.included, 1):.1%}.")
    else:
        lead += ", ".join(f"{v} {k}" for k, v in flow.by_label.items()) + "."
    counts = (f"{n_pos} positive, {flow.included - n_pos} negative" if binary
              else ", ".join(f"{v} {k}" for k, v in flow.by_label.items()))
    sec.text(lead + (f" The label rule was {rule}." if rule else ""))
    sec.add(ctx.figure("cohort_flow", plot_flow(flow), "Flow of images and patients through import, quality control "
                       "and the label rule, and the hold-out split.", sources=src, width="78%"))
    sec.add(ctx.table("cohort_flow", "Cohort flow (images; a row may be excluded for several reasons).", flow_table,
                      sources=src))
    if qc:
        qc_rows = [{"check": name, "count": qc.get(key)} for key, name in _QC_ROWS if key in qc]
        settings = qc.get("settings") or {}
        note = (f"Lesion policy '{settings.get('lesion_policy')}', near-duplicate distance "
                f"{settings.get('near_duplicate_distance')} bits of a 64-bit perceptual hash; duplicates and images of "
                f"one patient form groups that no split divides.") if settings else ""
        sec.add(ctx.table("qc_summary", "Quality control of the imported images.", pd.DataFrame(qc_rows), note=note,
                          sources=["cohort/qc_summary.json"]))
    else:
        sec.note("cohort/qc_summary.json is absent: QC counts are not shown.", "missing")
    if label_counts:
        lc = pd.DataFrame({"class": list(label_counts), "images": list(label_counts.values())})
        sec.add(ctx.table("label_counts", "Images per class assigned by the label rule (before QC exclusions).", lc,
                          sources=["cohort/label_counts.json"]))
    # facts for the checklists
    f = ctx.facts
    title = sec.title
    f.set("sample_size", f"{flow.included} images of {flow.included_patients} patients analysed "
                         f"({counts}); {flow.imported} imported. "
                         "No formal sample-size calculation is recorded by the run.", title)
    f.set("flow", f"Flow diagram and table: {flow.imported} imported, {flow.n_excluded} excluded "
                  f"({', '.join(f'{k} {v}' for k, v in flow.excluded.items()) or 'no reasons recorded'}), "
                  f"{flow.included} included.", title)
    f.set("eligibility", f"Included: images with a label under the rule ({rule or 'see the study file'}) that passed "
                         f"QC (readable image, usable lesion outline); {flow.n_excluded} excluded.", title)
    outcome = f"{n_pos} positive / {flow.included - n_pos} negative" if binary else counts
    f.set("outcome", f"Label rule: {rule}; {outcome}." if rule else None, title)
    sources = inc["source"].fillna("?").value_counts() if "source" in inc.columns else pd.Series(dtype=int)
    f.set("data_source", "Sources: " + ", ".join(f"{k} ({v} images)" for k, v in sources.items())
          + (f"; centres: {', '.join(f'{k} ({v})' for k, v in centres.items())}." if len(centres) else "."),
          title)
    if len(centres) == 1:
        f.set("clusters", "Single centre: heterogeneity between centres cannot be assessed.", title)
    if len(centres):
        f.set("centres", f"{len(centres)} centre(s): " + ", ".join(f"{k} ({v} images)" for k, v in centres.items()),
              title)
    if len(modality):
        f.set("modality", "Single imaging modality: " + ", ".join(f"{k} ({v} images)" for k, v in modality.items())
              if len(modality) == 1 else "Modalities: " + ", ".join(f"{k} ({v})" for k, v in modality.items()), title)
    if qc:
        f.set("preprocessing", f"QC: {qc.get('unreadable_images', 0)} unreadable, {qc.get('rgb_converted', 0)} colour "
                               f"images converted to grey, {qc.get('near_duplicate_groups', 0)} near-duplicate groups "
                               f"kept on one side of every split; lesion policy "
                               f"'{(qc.get('settings') or {}).get('lesion_policy')}'.", title)
        f.set("input_quality", "The QC of the cohort stage flags unreadable images, missing or empty masks and "
                               "duplicates (cohort/qc.csv); the same checks apply to new cases.", title)
        has_mask = int(inc["mask"].notna().sum()) if "mask" in inc.columns else 0
        has_box = int(inc["bbox"].notna().sum()) if "bbox" in inc.columns else 0
        f.set("segmentation", f"Lesion outlines given with the data: {has_mask} masks, {has_box} boxes; "
                              f"{qc.get('derived_masks', 0)} masks derived by the lesion policy. Who drew them is "
                              "not recorded.", title)
        derived = int(qc.get("derived_masks", 0))
        f.set("auto_segmentation", "No automatic segmentation was used (outlines came with the data)."
              if derived == 0 and not run.deep_dir.is_dir() else None, title)
    balance = (f"Prevalence {n_pos / max(flow.included, 1):.1%} ({n_pos}/{flow.included})" if binary
               else f"Classes {counts} of {flow.included}")
    f.set("class_imbalance", f"{balance}; splits are stratified by label; no resampling is recorded by the run.", title)
    if "treatment" in m.table.columns:
        f.set("treatment", "Treatment recorded per patient (column 'treatment'): "
              + ", ".join(f"{k} {v}" for k, v in inc["treatment"].value_counts().items()), title)
    clin = [c for c in m.clinical_columns if c in inc.columns]
    if clin:
        miss = {c: int(inc[c].isna().sum()) for c in clin}
        miss_txt = ", ".join(f"{c} {k}" for c, k in miss.items() if k) or "none"
        f.set("missing_data", f"Missing clinical values among {len(inc)} included images: {miss_txt}. Missing "
                              "values are encoded inside each training fold by the clinical encoder.", title)
        types = m.clinical_types
        f.set("clinical_predictors", "Clinical variables: " + ", ".join(f"{c} ({types.get(c, 'categorical')})"
                                                                        for c in clin), title)
    return sec


def splits_section(ctx: ReportContext) -> Section:
    """The patient-level splits (``splits.csv``) and their settings."""
    run = ctx.run
    sec = Section("splits", "Data splits")
    m = run.manifest
    splits = run.cohort_csv("splits.csv")
    if m is None or splits is None or splits.empty:
        return sec.note("The run has no cohort/splits.csv: the splits are not described.", "missing")
    meta = m.meta.get("split") or {}
    parts = []
    if meta.get("by_centre"):
        parts.append(f"an external test set of centre(s) {', '.join(meta['by_centre'].get('test_centres', []))}")
    elif meta.get("holdout"):
        parts.append(f"a patient-level hold-out test set ({meta['holdout'].get('test_size', 0):.0%} of patients, "
                     "stratified by label)")
    if meta.get("kfold"):
        parts.append(f"a repeated patient-grouped {meta['kfold'].get('n_splits')}-fold cross-validation with "
                     f"{meta['kfold'].get('n_repeats')} repetition(s)")
    straddle = int(splits["groups_straddling"].max()) if "groups_straddling" in splits.columns else 0
    seed = meta.get("seed")
    text = (f"The cases were split by patient into {' and '.join(parts) or 'the partitions below'}"
            + (f", fixed by seed {seed}" if seed is not None else "") + ". Splits were never chosen by their results. "
            + ("No patient or duplicate group straddles a partition." if straddle == 0 else
               f"WARNING: {straddle} patient/duplicate group(s) straddle a partition."))
    sec.text(text)
    show = splits.copy()
    if "n_pos" in show.columns:  # a multi-class label has one n_<class> column per class instead
        show["prevalence"] = show["n_pos"] / show["n"].where(show["n"] > 0)
    sec.add(ctx.table("splits", "Images, classes and patients per partition (splits.csv); groups_straddling must "
                                "be 0.", show, sources=["cohort/splits.csv"]))
    f = ctx.facts
    f.set("data_split", text, sec.title)
    has_test = any(v.key == "test" for v in ctx.views)
    has_cv = any(v.key == "cv" for v in ctx.views)
    testing = []
    if has_test:
        testing.append("hold-out test set (patients never used in training or tuning)")
    if has_cv:
        testing.append("repeated patient-grouped k-fold cross-validation with nested tuning")
    f.set("testing", "Internal testing: " + "; ".join(testing) + "." if testing else None, sec.title)
    if meta.get("by_centre"):
        f.set("external_testing", f"External test on centre(s) {', '.join(meta['by_centre'].get('test_centres', []))}.",
              sec.title)
        f.set("train_vs_test", "Development and test data come from different centres; compare the baseline table "
                               "by split.", sec.title)
    else:
        f.set("external_testing", None)
        f.set("train_vs_test", "Development and test sets are random patient-level partitions of one cohort "
                               "(same setting, eligibility, outcome and predictors).", sec.title)
    return sec
