"""Clinical tables (baseline characteristics, odds ratios or, for three classes, relative risk ratios) and the
nomogram of the combined logistic model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.report.context import ReportContext
from her2dlr.report.document import Section
from her2dlr.report.nomogram import nomogram_from_card, plot_nomogram
from her2dlr.report.sections.cohort import class_names, included_table
from her2dlr.report.tables import fmt_ci, fmt_num, fmt_p
from her2dlr.runfolder import LABEL_PROXIES

__all__ = [
    "MAX_LEVELS",
    "MAX_TOKENS",
    "clinical_frame_for_tables",
    "clinical_tables_section",
    "label_proxy_check",
    "label_proxy_warning",
    "nomogram_section",
]

#: Values of a multi-valued clinical column turned into yes/no rows.
MAX_TOKENS = 8
#: Categorical columns with more levels than this (free text, identifiers) are left out of the tables.
MAX_LEVELS = 15
_SEPARATOR = "&"


def clinical_frame_for_tables(ctx: ReportContext) -> tuple[pd.DataFrame, list[str], dict[str, str], list[str]]:
    """One row per patient (first image) with the clinical columns, ``label`` and ``split``.

    Multi-valued columns (``"palpable&skin retraction"``) become one yes/no column per value
    (``"Signs: palpable"``), the :data:`MAX_TOKENS` most frequent.

    Returns
    -------
    frame : DataFrame
    variables : list of str
    types : dict
        ``variable -> "numeric" | "categorical"`` for :func:`her2dlr.evaluate.tables.baseline_table`.
    notes : list of str
    """
    m = ctx.run.manifest
    inc = included_table(ctx)
    notes: list[str] = []
    if m is None or inc.empty:
        return pd.DataFrame(), [], {}, notes
    per_patient = inc.drop_duplicates("patient_id", keep="first")
    if len(per_patient) < len(inc):
        notes.append(f"one row per patient ({len(per_patient)} patients; the first image of each)")
    out = pd.DataFrame(index=per_patient.index)
    types: dict[str, str] = {}
    variables: list[str] = []
    for col in m.clinical_columns:
        if col not in per_patient.columns:
            continue
        kind = m.clinical_types.get(col, "categorical")
        values = per_patient[col]
        if kind == "multi":
            tokens = values.dropna().astype(str).str.split(_SEPARATOR).explode().str.strip()
            top = tokens[tokens != ""].value_counts().head(MAX_TOKENS)
            for tok in top.index:
                name = f"{col}: {tok}"
                has = values.map(lambda v, t=tok: np.nan if v is None or (isinstance(v, float) and np.isnan(v))
                                 else ("yes" if t in [x.strip() for x in str(v).split(_SEPARATOR)] else "no"))
                out[name] = has
                types[name] = "categorical"
                variables.append(name)
            continue
        if kind in ("numeric", "ordinal"):
            num = pd.to_numeric(values, errors="coerce")
            if num.notna().sum() == values.notna().sum() and num.notna().any():
                out[col] = num
                types[col] = "numeric"
                variables.append(col)
                continue
        n_levels = values.dropna().nunique()
        if n_levels > MAX_LEVELS:
            notes.append(f"'{col}' left out ({n_levels} distinct values; more than {MAX_LEVELS} levels)")
            continue
        out[col] = values.astype(object).where(values.notna(), np.nan)
        types[col] = "categorical"
        variables.append(col)
    out["label"] = per_patient["label"].astype(int)
    if "split" in per_patient.columns:
        out["split"] = per_patient["split"]
    return out, variables, types, notes


def _baseline_display(table: pd.DataFrame, tokens: set[str]) -> pd.DataFrame:
    """The baseline table for the page: p-values formatted, variable names once, and for the yes/no
    columns made from multi-valued variables only the "yes" (and "missing") rows."""
    p_of = table.dropna(subset=["p"]).groupby("variable")["p"].first()
    test_of = table[table["test"].astype(str) != ""].groupby("variable")["test"].first()
    disp = table[~(table["variable"].isin(tokens) & (table["level"] == "no"))].copy()
    first = disp["variable"] != disp["variable"].shift()
    disp["p"] = [fmt_p(p_of.get(v)) if f else "" for v, f in zip(disp["variable"], first)]
    disp["test"] = [test_of.get(v, "") if f else "" for v, f in zip(disp["variable"], first)]
    disp["variable"] = disp["variable"].where(first, "")
    return disp.fillna("")


def _or_display(t: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "Variable": t["variable"].where(t["variable"] != t["variable"].shift(), ""),
        "Level": t["level"],
        "OR (95% CI)": [("1 (reference)" if note == "reference" else fmt_ci(o, lo, hi, 2))
                        for o, lo, hi, note in zip(t["OR"], t["ci_low"], t["ci_high"], t["note"].fillna(""))],
        "p": t["p"].map(fmt_p),
        "p (variable)": [fmt_p(p) if first else "" for p, first in
                         zip(t["p_overall"], t["variable"] != t["variable"].shift())],
    })


def label_proxy_check(ctx: ReportContext) -> tuple[pd.DataFrame, list[str]]:
    """The learning stage's check of clinical columns that may stand in for the label, and its files.

    ``learn/<set>/label_proxies.csv`` of every set that fitted a clinical model
    (:mod:`her2dlr.evaluate.proxies`), one row per column (the first set's, they agree).
    """
    parts, sources = [], []
    for s in ctx.run.learn_sets:
        table = getattr(s, "label_proxies", None)
        if table is not None and len(table) and "flagged" in table.columns:
            parts.append(table)
            sources.append(ctx.run.rel(s.file(LABEL_PROXIES)))
    if not parts:
        return pd.DataFrame(), []
    table = pd.concat(parts, ignore_index=True).drop_duplicates("column", keep="first")
    table["flagged"] = table["flagged"].astype(str).str.lower().isin(("true", "1"))
    return table.reset_index(drop=True), sources


def label_proxy_warning(ctx: ReportContext) -> str | None:
    """One sentence naming the flagged columns and why, for beside the results; None when none is flagged."""
    table, _ = label_proxy_check(ctx)
    flagged = table[table["flagged"]] if len(table) else table
    if not len(flagged):
        return None
    named = "; ".join(f"{r.column} ({r.reason})" for r in flagged.itertuples())
    return (f"Clinical column(s) that may stand in for the label: {named}. A column that restates the reader's or "
            "the pathologist's verdict gives the clinical and combined models an AUC that says nothing about the "
            "images; check these columns (or leave them out with learn.clinical.columns) before reading the "
            "results of models with 'clinical' in their name.")


def _proxy_display(table: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    out = pd.DataFrame({
        "Column": table["column"], "Type": table["type"], "n": table["n"],
        "AUC alone (95% CI)": [fmt_ci(a, lo, hi) for a, lo, hi in zip(table["auc"], table["ci_low"], table["ci_high"])],
        "Name matches": table["name_match"].fillna(""),
        "Flagged": table["flagged"].map({True: "yes", False: ""}),
    })
    if "vs_rest" in table.columns and table["vs_rest"].notna().any():  # a multi-class label: the class scored
        code = pd.to_numeric(table["vs_rest"], errors="coerce")
        out.insert(3, "Class vs rest", [f"{names[int(c)]} vs rest" if pd.notna(c) and 0 <= c < len(names)
                                        else "" for c in code])
    return out


def clinical_tables_section(ctx: ReportContext) -> Section:
    """Baseline characteristics by split and by class; univariable and multivariable odds ratios (two classes)
    or relative risk ratios of a multinomial regression (more classes, each against the first)."""
    from her2dlr.evaluate.tables import baseline_table

    sec = Section("tables", "Clinical characteristics and odds ratios")
    frame, variables, types, notes = clinical_frame_for_tables(ctx)
    if frame.empty:
        return sec.note("The run has no cohort manifest: baseline tables cannot be made.", "missing")
    if not variables:
        sec.note("The manifest has no clinical columns (clinical_columns of the cohort source): the baseline table "
                 "shows the label only and no odds ratios are computed.", "missing")
    neg, pos = class_names(ctx)
    names = _label_class_names(ctx, frame)
    if len(names) > 2:
        sec.title = "Clinical characteristics and relative risk ratios"
    proxies, proxy_sources = label_proxy_check(ctx)
    if len(proxies):
        warning = label_proxy_warning(ctx)
        if warning:
            sec.note(warning, "warning")
        from her2dlr.evaluate.proxies import NEAR_PERFECT_AUC, NEAR_PERFECT_CI_LOW

        sec.add(ctx.table("label_proxies", "Clinical columns that may stand in for the label: each column's AUC on "
                          f"its own, flagged when it is at least {NEAR_PERFECT_AUC} or its lower 95% limit at least "
                          f"{NEAR_PERFECT_CI_LOW}, or when the name suggests a verdict (BI-RADS, interpretation, "
                          "diagnosis, pathology, histology, verification, ...).", proxies,
                          display=_proxy_display(proxies, names),
                          note="Categorical columns are scored by the positive rate of their value (values of fewer "
                               "than 5 cases pooled), numeric ones in either direction." + (
                              " With more than two classes each column is scored one class against the rest, and "
                              "the class it separates best is shown." if len(names) > 2 else ""),
                          sources=proxy_sources))
    group = pd.Categorical(frame["label"].map(dict(enumerate(names))), categories=names)
    tokens = {v for v in variables if ": " in v and set(frame[v].dropna().unique()) <= {"yes", "no"}}
    src = ["cohort/manifest.parquet"]
    note = "; ".join(notes)
    has_split = "split" in frame.columns and frame["split"].nunique() >= 2
    if has_split:
        split_names = frame["split"].map({"train": "Training", "test": "Test"}).fillna(frame["split"].astype(str))
        order = [g for g in ("Training", "Test") if g in set(split_names)]
        order += sorted(set(split_names.dropna()) - set(order))
        by_split = frame.assign(**{"class": group, "split": pd.Categorical(split_names, categories=order)})
        try:
            table = baseline_table(by_split, "split", variables=[*variables, "class"],
                                   types={**types, "class": "categorical"})
        except InputError as exc:
            sec.note(f"The baseline table by split could not be made: {exc}", "warning")
        else:
            sec.add(ctx.table("baseline_by_split", "Baseline characteristics by data split. Numeric: mean \u00b1 SD "
                              "or median [IQR]; categorical: n (%).", table, display=_baseline_display(table, tokens),
                              note="; ".join(x for x in [note, *table.attrs.get("notes", [])] if x), sources=src))
    else:
        sec.note("The cohort has no hold-out split column: the baseline table by split is not shown.", "missing")
    if variables:
        by_label = frame[variables].assign(**{"class": group})
        try:
            table = baseline_table(by_label, "class", variables=variables, types=types)
        except InputError as exc:
            sec.note(f"The baseline table by class could not be made: {exc}", "warning")
        else:
            versus = f"{pos} vs {neg}" if len(names) == 2 else ", ".join(names)
            sec.add(ctx.table("baseline_by_label", f"Baseline characteristics by class ({versus}).", table,
                              display=_baseline_display(table, tokens), note=note, sources=src))
        train = frame[frame["split"] == "train"] if "split" in frame.columns and (frame["split"] == "train").any() \
            else frame
        where = "training set" if len(train) < len(frame) else "included patients"
        if len(names) > 2:
            _relative_risk_ratios(ctx, sec, train.assign(label=pd.Series(group, index=frame.index)[train.index]),
                                  variables, types, where, src)
        else:
            _odds_ratios(ctx, sec, train, variables, types, where, src, pos)
    f = ctx.facts
    f.set("baseline", "Baseline characteristics by split and by class, with tests.", sec.title)
    if has_split:
        f.set("baseline_split", "Baseline table by split compares training and test data.", sec.title)
    if variables:
        m = ctx.run.manifest
        how = ("univariable and backward stepwise multivariable multinomial logistic regression" if len(names) > 2
               else "univariable and stepwise multivariable logistic regression")
        f.set("predictors", f"Candidate predictors: imaging features and {len(m.clinical_columns)} clinical "
                            f"variable(s) ({', '.join(m.clinical_columns)}), screened by {how}.", sec.title)
    return sec


def _label_class_names(ctx: ReportContext, frame: pd.DataFrame) -> list[str]:
    """Names of the label's classes in class-number order: the binary pair, or the label rule's names of a
    label of more than two classes (``HER2-zero``, ``HER2-low``, ``HER2-positive``)."""
    n_classes = int(frame["label"].max()) + 1 if "label" in frame.columns and len(frame) else 2
    if n_classes <= 2:
        return list(class_names(ctx))
    from her2dlr.report.sections.multiclass import multiclass_class_names

    return multiclass_class_names(ctx, n_classes)


def _odds_ratios(ctx: ReportContext, sec: Section, train: pd.DataFrame, variables: list[str], types: dict[str, str],
                 where: str, src: list[str], pos: str) -> None:
    """Univariable and multivariable odds ratios of a two-class label."""
    from her2dlr.evaluate.tables import odds_ratio_table

    try:
        ors = odds_ratio_table(train, "label", variables, types=types, stepwise="backward")
    except Exception as exc:
        sec.note(f"Odds ratios could not be estimated: {exc}", "warning")
        return
    sec.add(ctx.table("odds_ratios_univariable", f"Univariable logistic regression of {pos} on each clinical "
                      f"variable ({where}, {ors.n} complete cases, {ors.n_events} events).", ors.univariable,
                      display=_or_display(ors.univariable), note=_short_notes(ors.notes), sources=src))
    if len(ors.multivariable):
        sec.add(ctx.table("odds_ratios_multivariable", f"Multivariable logistic regression (backward "
                          f"stepwise, p < {ors.p_enter}) of the variables with univariable p < {ors.p_enter}.",
                          ors.multivariable, display=_or_display(ors.multivariable), sources=src))
        sel = ", ".join(ors.selected)
        sec.text(f"In univariable analysis {len(ors.candidates)} variable(s) had p < {ors.p_enter}; the "
                 f"multivariable model kept {sel or 'none'}.")
    else:
        sec.note(f"No multivariable model: no variable had univariable p < {ors.p_enter}.", "info")


def _relative_risk_ratios(ctx: ReportContext, sec: Section, train: pd.DataFrame, variables: list[str],
                          types: dict[str, str], where: str, src: list[str]) -> None:
    """Univariable and multivariable relative risk ratios (multinomial logistic regression) of a label of
    more than two classes, every class against the first."""
    from her2dlr.evaluate.multinomial_tables import relative_risk_ratio_table

    try:
        rrr = relative_risk_ratio_table(train, "label", variables, types=types, stepwise="backward")
    except Exception as exc:
        sec.note(f"Relative risk ratios could not be estimated: {exc}", "warning")
        return
    counts = ", ".join(f"{c} {k}" for c, k in rrr.class_counts.items())
    how = (f"each class against {rrr.reference_class}: relative risk ratio (RRR) with 95% CI and Wald p; "
           "p (variable) is the likelihood-ratio test of the variable in all equations")
    sec.add(ctx.table("relative_risk_ratios_univariable", f"Univariable multinomial logistic regression of the class "
                      f"on each clinical variable ({where}, {rrr.n} complete cases: {counts}); {how}.",
                      rrr.univariable, display=_rrr_display(rrr.univariable, rrr.classes),
                      note=_short_notes(rrr.notes, hint="an RRR shown as not estimable belongs to a variable that "
                                                          "separates the classes: its likelihood-ratio p still holds"),
                      sources=src))
    if len(rrr.multivariable):
        sec.add(ctx.table("relative_risk_ratios_multivariable", f"Multivariable multinomial logistic regression "
                          f"(backward elimination by the likelihood-ratio test, p < {rrr.p_enter}) of the variables "
                          f"with univariable p < {rrr.p_enter}; {how}.", rrr.multivariable,
                          display=_rrr_display(rrr.multivariable, rrr.classes), sources=src))
        sec.text(f"In univariable analysis {len(rrr.candidates)} variable(s) had p < {rrr.p_enter}; the "
                 f"multivariable model kept {', '.join(rrr.selected) or 'none'}.")
    else:
        sec.note(f"No multivariable model: no variable had univariable p < {rrr.p_enter}.", "info")


def _unstable(note: str, ci_high: float) -> bool:
    """Whether an RRR's fit reported separation or unstable standard errors (its interval is meaningless)."""
    return note != "reference" and ("separation" in note or not np.isfinite(ci_high) or ci_high > 1e6)


def _rrr_display(t: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """One row per variable level, RRR (95% CI) and p of each class against the reference side by side."""
    key = ["variable", "level"]
    order = t[key].drop_duplicates()
    out = pd.DataFrame({"Variable": order["variable"].where(order["variable"] != order["variable"].shift(), ""),
                        "Level": order["level"]}).reset_index(drop=True)
    for cls in classes[1:]:
        part = order.merge(t[t["class"] == cls], on=key, how="left")
        unstable = [_unstable(note, hi) for note, hi in zip(part["note"].fillna(""), part["ci_high"])]
        out[f"{cls} vs {classes[0]}: RRR (95% CI)"] = [
            "1 (reference)" if note == "reference" else "not estimable (separation)" if bad else fmt_ci(r, lo, hi, 2)
            for r, lo, hi, note, bad in zip(part["RRR"], part["ci_low"], part["ci_high"], part["note"].fillna(""),
                                            unstable)]
        out[f"p ({cls})"] = ["" if bad else fmt_p(x) for x, bad in zip(part["p"], unstable)]
    first = order.merge(t.drop_duplicates(key), on=key, how="left")
    out["p (variable)"] = [fmt_p(p) if f else "" for p, f in zip(first["p_overall"], out["Variable"] != "")]
    return out


def nomogram_section(ctx: ReportContext) -> Section:
    """Nomogram of every model card with a ``"logistic"`` entry (``models/*/model_card.json``)."""
    sec = Section("nomogram", "Nomogram")
    cards = [(p, c) for p, c in ctx.run.model_cards if isinstance(c, dict) and isinstance(c.get("logistic"), dict)]
    if not cards:
        return sec.note("The run has no combined logistic model (models/<name>/model_card.json with a 'logistic' "
                        "entry): no nomogram.", "missing")
    for path, card in cards[:3]:
        name = card.get("name") or path.parent.name
        src = [ctx.run.rel(path)]
        try:
            nomo = nomogram_from_card(card)
        except Exception as exc:
            sec.note(f"{ctx.run.rel(path)}: the nomogram could not be built: {exc}", "warning")
            continue
        lg = card["logistic"]
        sec.add(ctx.figure(f"nomogram_{name}", plot_nomogram(nomo, title=str(name)),
                           f"Nomogram of {name}. For a patient, read the points of each variable on the Points "
                           "axis, add them, and read the probability below the total.", sources=src, width="90%",
                           data=nomo.table()))
        coef = pd.DataFrame({"term": ["(intercept)", *lg["coefficients"].keys()],
                             "coefficient": [lg["intercept"], *[_num(v) for v in lg["coefficients"].values()]]})
        coef["odds_ratio"] = np.exp(pd.to_numeric(coef["coefficient"], errors="coerce"))
        coef.loc[0, "odds_ratio"] = np.nan
        sec.add(ctx.table(f"nomogram_coefficients_{name}", f"Coefficients of {name} (log-odds).", coef,
                          display=pd.DataFrame({"Term": coef["term"], "Coefficient": coef["coefficient"].map(fmt_num),
                                                "OR": coef["odds_ratio"].map(fmt_num)}), sources=src))
        ctx.facts.set("model_spec", f"Full logistic model of {name} (intercept and coefficients) and its nomogram; "
                                    f"model card {ctx.run.rel(path)}.", sec.title)
    return sec


def _short_notes(notes: list[str], keep: int = 2, width: int = 220,
                 hint: str = "e.g. Firth's method used where a variable separates the classes") -> str:
    """The first notes of a fit, each cut to ``width`` characters, and how many more there are (with ``hint``)."""
    shown = [n if len(n) <= width else n[: width - 1] + "\u2026" for n in notes[:keep]]
    more = len(notes) - keep
    return "; ".join(shown) + (f"; and {more} more fitting note(s) ({hint})" if more > 0 else "")


def _num(v: Any) -> Any:
    return v if not isinstance(v, dict) else np.nan
