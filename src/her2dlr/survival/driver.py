"""The survival stage: run every analysis the settings ask for and write tables and figures.

``run_survival(df, settings, out_dir)`` writes (atomically, via :mod:`her2dlr.io.atomic`)::

    out_dir/
      survival_settings.json     the resolved settings (rule 5: a run records its config)
      summary.txt                plain-language findings and notes
      risk_stratifier.json       fitted cut-off and k-means centres (when risk groups are made)
      tables/*.csv               every table below
      figures/*.png              every figure below

and returns a :class:`SurvivalReport` holding the result objects, the paths and the notes.
Sections run when their inputs are set: Kaplan-Meier (always, plus one per group column),
Cox models (``covariates``), risk groups (``score_column`` or ``score_covariates``),
treatment benefit (``treatment_column``) and HER2-low prognosis (``her2low``).
"""

from __future__ import annotations

import json
import os
import re
import time as _time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.io.atomic import write_csv_atomic, write_text_atomic
from her2dlr.survival._data import check_columns, group_levels, survival_arrays
from her2dlr.survival.cindex import concordance, cross_validated_concordance, out_of_fold_cox_risk
from her2dlr.survival.cox import fit_cox, univariate_cox
from her2dlr.survival.her2low import her2low_prognosis
from her2dlr.survival.km import kaplan_meier
from her2dlr.survival.matching import propensity_match
from her2dlr.survival.plots import save_figure
from her2dlr.survival.results import SurvivalResult, format_hr, format_p
from her2dlr.survival.risk import RiskStratifier
from her2dlr.survival.settings import Her2LowSettings, SurvivalSettings
from her2dlr.survival.stepwise import stepwise_cox
from her2dlr.survival.treatment import treatment_benefit

__all__ = ["RISK_GROUP_COL", "RISK_SCORE_COL", "SurvivalReport", "run_survival"]

#: Column names the driver adds to its working copy of the table.
RISK_SCORE_COL, RISK_GROUP_COL = "risk_score", "risk_group"

_YAML_BOOL = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


@dataclass(repr=False)
class SurvivalReport(SurvivalResult):
    """What :func:`run_survival` computed and wrote.

    Attributes
    ----------
    out_dir : Path
    results : dict
        Name -> result object (``"km_overall"``, ``"cox_multivariable"``, ``"risk_km"``...).
    tables, figures : dict
        Name -> written path.
    sentences : list of str
        Plain-language findings (treatment benefit, risk groups).
    notes : list of str
        Documented handling and skipped parts.
    seconds : float
        Wall time of the run.
    """

    out_dir: Path
    results: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    sentences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    title = "survival stage"

    @property
    def summary(self) -> pd.DataFrame:
        rows = [{"kind": "table", "name": k, "path": str(v)} for k, v in self.tables.items()]
        rows += [{"kind": "figure", "name": k, "path": str(v)} for k, v in self.figures.items()]
        return pd.DataFrame(rows, columns=["kind", "name", "path"])

    def _header(self) -> dict[str, Any]:
        return {"output folder": str(self.out_dir), "tables": len(self.tables), "figures": len(self.figures),
                "seconds": round(self.seconds, 2)}


def _slug(name: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "x"


def _match_level(value: Any, levels: list[Any], column: str) -> Any:
    """Find ``value`` among ``levels`` tolerating YAML's yes/no -> bool and number/text mix-ups."""
    if value is None or value in levels:
        return value
    text = str(value).lower()
    for level in levels:
        if str(level).lower() == text or _YAML_BOOL.get(str(level).lower(), object()) is value:
            return level
    raise InputError(f"Reference arm {value!r} does not occur in column '{column}'; arms: {levels!r}.")


class _Writer:
    def __init__(self, out_dir: Path, fmt: str, report: SurvivalReport) -> None:
        self.out_dir, self.fmt, self.report = out_dir, fmt, report

    def table(self, name: str, df: pd.DataFrame, *, index: bool = True) -> None:
        path = self.out_dir / "tables" / f"{name}.csv"
        write_csv_atomic(df, path, index=index)
        self.report.tables[name] = path

    def figure(self, name: str, fig: Any) -> None:
        path = self.out_dir / "figures" / f"{name}.{self.fmt}"
        save_figure(fig, path)
        self.report.figures[name] = path


def _check_settings_columns(df: pd.DataFrame, s: SurvivalSettings) -> None:
    check_columns(df, [s.time_column], role="time column (time_column)")
    check_columns(df, [s.event_column], role="event column (event_column)")
    check_columns(df, s.group_columns, role="group column (group_columns)")
    check_columns(df, s.covariates, role="covariate (covariates)")
    check_columns(df, s.risk_covariates, role="covariate (risk_covariates)")
    check_columns(df, [s.score_column], role="score column (score_column)")
    check_columns(df, s.score_covariates or [], role="covariate (score_covariates)")
    check_columns(df, [s.treatment_column], role="treatment column (treatment_column)")
    check_columns(df, [s.split_column, s.id_column], role="column")
    check_columns(df, s.psm.covariates or [], role="covariate (psm.covariates)")
    if s.her2low is not None:
        check_columns(df, [s.her2low.true_column, s.her2low.pred_column], role="status column (her2low)")
        check_columns(df, s.her2low.covariates or [], role="covariate (her2low.covariates)")


def _used_columns(s: SurvivalSettings) -> list[str]:
    """Every column an analysis of the settings reads (no missing values allowed in them)."""
    cols = [s.time_column, s.event_column, *s.group_columns, *s.covariates, *s.risk_covariates,
            *(s.score_covariates or []), s.score_column, s.treatment_column, *(s.psm.covariates or [])]
    if s.her2low is not None:
        cols += [s.her2low.true_column, s.her2low.pred_column, *(s.her2low.covariates or [])]
    return [c for c in dict.fromkeys(cols) if c]


def _handle_missing(df: pd.DataFrame, s: SurvivalSettings, rep: SurvivalReport) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every used column's missing values at once: refused (``missing: error``) or dropped and counted.

    Returns the table to analyse and ``column, n_missing, rows`` (written as ``tables/missing.csv``).
    """
    from her2dlr.survival._data import rows_text

    cols = _used_columns(s)
    na = df[cols].isna()
    counts = pd.DataFrame({"column": cols, "n_missing": [int(na[c].sum()) for c in cols],
                           "rows": [rows_text(df.index[na[c]]) if na[c].any() else "" for c in cols]})
    counts = counts[counts["n_missing"] > 0].reset_index(drop=True)
    if not len(counts):
        return df, counts
    if s.missing == "error":
        lines = "\n".join(f"  {r.column}: {r.n_missing} missing at {r.rows}" for r in counts.itertuples())
        raise InputError(f"{int(na.any(axis=1).sum())} case(s) have missing values in the columns the survival "
                         f"analyses use:\n{lines}\nComplete them, or set survival.missing: drop to leave these "
                         "cases out (the count per column is then reported).")
    keep = ~na.any(axis=1)
    rep.notes.append(f"{int((~keep).sum())} of {len(df)} case(s) left out for missing values (survival.missing: drop): "
                     + ", ".join(f"{r.column} {r.n_missing}" for r in counts.itertuples()))
    return df[keep], counts


def _findings(rep: SurvivalReport, s: SurvivalSettings) -> None:
    """Plain-language sentences of the significant log-rank tests and Cox terms (at ``alpha``)."""
    for name, res in rep.results.items():
        test = getattr(res, "logrank", None) if name.startswith("km_") and name != "km_overall" else None
        if test is not None and test.p_value < s.alpha:
            rep.sentences.append(f"Survival differed by {res.group_col} (log-rank {format_p(test.p_value)}).")
    for name in ("cox_multivariable", "cox_stepwise"):
        res = rep.results.get(name)
        model = getattr(res, "model", res)
        if model is None or not hasattr(model, "summary"):
            continue
        table = model.summary
        for _term, row in table[table["p"] < s.alpha].iterrows():
            what = f"{row['covariate']} = {row['level']}" if row["level"] else str(row["covariate"])
            direction = "higher" if row["hr"] > 1 else "lower"
            rep.sentences.append(
                f"{'Multivariable' if name == 'cox_multivariable' else 'Stepwise'} Cox: {what} went with a {direction} "
                f"hazard of the event, HR {format_hr(row['hr'], row['hr_lower'], row['hr_upper'], level=1 - s.alpha)}, "
                f"{format_p(row['p'])}.")
    if not rep.sentences:
        rep.sentences.append(f"No log-rank test or Cox term reached significance at alpha = {s.alpha:g}.")


def _horizons(s: SurvivalSettings) -> tuple[list[float], list[str]]:
    return [h * s.per_year for h in s.horizons], [f"{h:g}y" for h in s.horizons]


def _km_section(df: pd.DataFrame, s: SurvivalSettings, w: _Writer, rep: SurvivalReport) -> None:
    hz, labels = _horizons(s)
    time_label, scale = "Years", s.per_year
    km = kaplan_meier(df, s.time_column, s.event_column, horizons=hz, horizon_labels=labels, alpha=s.alpha)
    rep.results["km_overall"] = km
    w.table("km_overall", km.summary)
    # number at risk at every whole year of follow-up (the figures show the same at their ticks)
    years = np.arange(0, int(np.floor(df[s.time_column].astype(float).max() / scale)) + 1)

    def at_risk(res: Any) -> pd.DataFrame:
        table = res.at_risk_table(years * scale)
        table.columns = [f"{y}y" for y in years]
        return table

    w.table("km_overall_at_risk", at_risk(km))
    w.figure("km_overall", km.plot(time_scale=scale, time_label=time_label, title="All cases"))
    tests = []
    for col in s.group_columns:
        km = kaplan_meier(df, s.time_column, s.event_column, col, horizons=hz, horizon_labels=labels, alpha=s.alpha)
        rep.results[f"km_{col}"] = km
        w.table(f"km_{_slug(col)}", km.summary)
        w.table(f"km_{_slug(col)}_survival", km.survival_at(), index=False)
        w.table(f"km_{_slug(col)}_at_risk", at_risk(km))
        w.figure(f"km_{_slug(col)}", km.plot(time_scale=scale, time_label=time_label, title=f"By {col}"))
        rep.notes.extend(f"KM by {col}: {n}" for n in km.notes)
        for test in (km.logrank, km.trend):
            if test is not None:
                tests.append(test.summary)
    if tests:
        w.table("logrank", pd.concat(tests, ignore_index=True), index=False)


def _cox_section(df: pd.DataFrame, s: SurvivalSettings, w: _Writer, rep: SurvivalReport) -> None:
    t, e = survival_arrays(df, s.time_column, s.event_column, require_events=True, purpose="a Cox model")
    kw = {"categorical": s.categorical, "alpha": s.alpha}
    uni = univariate_cox(df, s.time_column, s.event_column, s.covariates, **kw)
    rep.results["cox_univariable"] = uni
    w.table("cox_univariable", uni.summary)
    full = fit_cox(df, s.time_column, s.event_column, s.covariates, penalizer=s.penalizer, **kw)
    rep.results["cox_multivariable"] = full
    rep.notes.extend(f"multivariable Cox: {n}" for n in full.notes)
    w.table("cox_multivariable", full.summary)
    if full.ph_test is not None:
        w.table("cox_ph_test", full.ph_test)
    w.figure("forest_multivariable", full.plot(title=f"Multivariable Cox: {full.n} cases, {full.n_events} events, "
                                                     f"AIC {full.aic:.1f}, C-index {full.concordance:.3f}"))
    models = {"multivariable": full}
    if s.stepwise != "none" and s.penalizer == 0:
        sw = stepwise_cox(df, s.time_column, s.event_column, s.covariates, direction=s.stepwise, **kw)
        rep.results["cox_stepwise"] = sw
        w.table("cox_stepwise_steps", sw.steps, index=False)
        if sw.model is not None:
            models["stepwise"] = sw.model
            w.table("cox_stepwise", sw.model.summary)
            w.figure("forest_stepwise", sw.model.plot(
                title=f"Stepwise Cox ({s.stepwise}, AIC): {sw.model.n} cases, {sw.model.n_events} events, "
                      f"AIC {sw.model.aic:.1f}, C-index {sw.model.concordance:.3f}"))
        else:
            rep.notes.append("stepwise selection kept no covariate (the empty model has the lowest AIC)")
    rows = []
    for name, model in models.items():
        risk = model.predict_risk(df).to_numpy()
        for method in ("harrell", "uno"):
            try:
                c = concordance(t, e, risk, method=method, n_bootstrap=s.n_bootstrap, seed=s.seed, alpha=s.alpha,
                                label=f"{name} Cox (apparent)")
                rows.append(c.summary)
            except InputError as exc:
                rep.notes.append(f"{method} C-index of the {name} model not computed: {exc}")
    cv = cross_validated_concordance(df, s.time_column, s.event_column, s.covariates, n_splits=s.cv_folds,
                                     seed=s.seed, categorical=s.categorical, penalizer=s.penalizer,
                                     n_bootstrap=s.n_bootstrap, alpha=s.alpha)
    rep.results["cox_cv_concordance"] = cv
    rows.append(pd.DataFrame([{"model": f"multivariable Cox ({s.cv_folds}-fold CV, mean held-out)",
                               "method": "harrell", "c_index": cv.estimate, "ci_low": cv.ci_low,
                               "ci_high": cv.ci_high, "n": len(df), "events": int(e.sum()),
                               "n_bootstrap": s.n_bootstrap}]))
    w.table("concordance", pd.concat(rows, ignore_index=True), index=False)
    w.table("concordance_cv_folds", cv.folds, index=False)


def _risk_section(df: pd.DataFrame, s: SurvivalSettings, w: _Writer, rep: SurvivalReport) -> pd.DataFrame:
    """Risk score, cut-off and groups fitted on the training cases; KM and HRs of the groups.

    Returns a copy of ``df`` with the :data:`RISK_SCORE_COL` and :data:`RISK_GROUP_COL` columns.
    """
    t, e = survival_arrays(df, s.time_column, s.event_column)
    is_train = _training_cases(df, s, rep)
    data = df.copy()
    score = _risk_score(df, s, is_train, rep)
    strat = RiskStratifier(horizon=s.risk_horizon * s.per_year, n_clusters=s.risk_clusters, censoring=s.risk_censoring,
                           higher_is_riskier=s.higher_score_is_riskier, random_state=s.seed)
    strat.fit(score[is_train], t[is_train], e[is_train])
    strat.save(w.out_dir / "risk_stratifier.json")
    rep.tables["risk_stratifier"] = w.out_dir / "risk_stratifier.json"
    data[RISK_SCORE_COL] = score.to_numpy()
    data[RISK_GROUP_COL] = strat.transform(score)
    rep.results["risk_stratifier"] = strat
    per_case = pd.DataFrame({RISK_SCORE_COL: data[RISK_SCORE_COL], RISK_GROUP_COL: data[RISK_GROUP_COL].astype(str)})
    if s.id_column:
        per_case.insert(0, s.id_column, df[s.id_column].to_numpy())
    if s.split_column:
        per_case[s.split_column] = df[s.split_column].to_numpy()
    w.table("risk_groups", per_case, index=s.id_column is None)
    subsets = [("all", np.ones(len(df), dtype=bool))]
    if s.split_column is not None and (~is_train).any():
        subsets = [("train", is_train), ("test", ~is_train)]
    for name, m in subsets:
        _risk_groups_in(data[m], name, strat, s, w, rep)
    return data


def _training_cases(df: pd.DataFrame, s: SurvivalSettings, rep: SurvivalReport) -> np.ndarray:
    """Mask of the cases the score, cut-off and centres are fitted on (all cases without a split column)."""
    if s.split_column is not None:
        is_train = (df[s.split_column] == s.train_value).to_numpy()
        if not is_train.any():
            raise InputError(f"No training cases: column '{s.split_column}' never equals {s.train_value!r}.")
        return is_train
    rep.notes.append("risk groups: no split column, so the cut-off and centres were fitted on all cases")
    return np.ones(len(df), dtype=bool)


def _risk_score(df: pd.DataFrame, s: SurvivalSettings, is_train: np.ndarray, rep: SurvivalReport) -> pd.Series:
    """The score column, or an out-of-fold Cox linear predictor of ``score_covariates``.

    Training cases get out-of-fold scores; other cases are scored by a model fitted on all
    training cases, centred on the training cases' mean.
    """
    if s.score_column is not None:
        score = pd.to_numeric(df[s.score_column], errors="coerce")
        return score.rename(s.score_column)
    covs = list(s.score_covariates or [])
    train = df[is_train]
    oof = out_of_fold_cox_risk(train, s.time_column, s.event_column, covs, n_splits=s.cv_folds, seed=s.seed,
                               categorical=[c for c in s.categorical if c in covs], penalizer=s.penalizer)
    score = pd.Series(np.nan, index=df.index)
    score[is_train] = oof["risk"].to_numpy()
    if (~is_train).any():
        fit = fit_cox(train, s.time_column, s.event_column, covs, categorical=[c for c in s.categorical if c in covs],
                      penalizer=s.penalizer, check_ph=False)
        centre = float(fit.predict_risk(train).mean())
        score[~is_train] = fit.predict_risk(df[~is_train]).to_numpy() - centre
    rep.notes.append(f"risk score: {s.cv_folds}-fold out-of-fold Cox linear predictor of {', '.join(covs)} "
                     "(each training case scored by a model fitted without it)")
    return score.rename(f"out-of-fold Cox score ({', '.join(covs)})")


def _risk_groups_in(
    sub: pd.DataFrame, name: str, strat: RiskStratifier, s: SurvivalSettings, w: _Writer, rep: SurvivalReport
) -> None:
    """KM by risk group, the log-rank sentence and the groups' hazard ratios for one subset of cases."""
    hz, labels = _horizons(s)
    km = kaplan_meier(sub, s.time_column, s.event_column, RISK_GROUP_COL, horizons=hz, horizon_labels=labels,
                      alpha=s.alpha, order=[g for g in strat.labels_ if (sub[RISK_GROUP_COL] == g).any()])
    rep.results[f"risk_km_{name}"] = km
    w.table(f"risk_km_{name}", km.summary)
    w.figure(f"km_risk_groups_{name}", km.plot(time_scale=s.per_year, time_label="Years",
                                               title=f"Risk groups ({name} cases)", legend_title="risk group"))
    if km.logrank is not None:
        rep.sentences.append(
            f"risk groups ({name} cases): log-rank chi2 = {km.logrank.test_statistic:.2f}, {format_p(km.logrank.p_value)}"
        )
    try:
        cox = fit_cox(sub, s.time_column, s.event_column, [RISK_GROUP_COL, *s.risk_covariates],
                      categorical=[RISK_GROUP_COL, *[c for c in s.categorical if c in s.risk_covariates]],
                      reference={RISK_GROUP_COL: strat.labels_[0]}, alpha=s.alpha)
        rep.results[f"risk_cox_{name}"] = cox
        w.table(f"risk_hr_{name}", cox.summary)
        for _, r in cox.summary[cox.summary["covariate"] == RISK_GROUP_COL].iterrows():
            adj = f", adjusted for {', '.join(s.risk_covariates)}" if s.risk_covariates else ""
            rep.sentences.append(f"{r['level']} vs {strat.labels_[0]} risk ({name} cases{adj}): "
                                 f"{format_hr(r['hr'], r['hr_lower'], r['hr_upper'], level=1 - s.alpha)}, {format_p(r['p'])}")
    except InputError as exc:
        rep.notes.append(f"risk-group hazard ratios ({name} cases) not estimable: {exc}")


def _treatment_section(data: pd.DataFrame, s: SurvivalSettings, trt: str, w: _Writer, rep: SurvivalReport) -> None:
    arms = group_levels(data[trt])
    reference = _match_level(s.reference_arm, arms, trt)
    covs = [c for c in s.covariates if c != trt]
    match_covs = [c for c in (s.psm.covariates or covs) if c != trt]
    cat = [c for c in s.categorical if c != trt]
    if s.psm.enabled and match_covs and len(arms) == 2:
        mr = propensity_match(data, trt, match_covs, control_value=reference if reference is not None else arms[0],
                              caliper=s.psm.caliper, ratio=s.psm.ratio, replace=s.psm.replace, order=s.psm.order,
                              categorical=[c for c in cat if c in match_covs], seed=s.seed, min_arm_size=s.min_arm_size)
        rep.results["psm"] = mr
        w.table("psm_balance", mr.balance)
        w.figure("psm_balance", mr.plot())
        rep.notes.extend(f"matching: {n}" for n in mr.notes)
        rep.sentences.append(f"propensity matching on {trt}: {mr.n_treated_matched} of {mr.n_treated} treated matched; "
                             f"max |SMD| {mr.max_smd_before:.3f} before, {mr.max_smd_after:.3f} after")
    elif s.psm.enabled and len(arms) != 2:
        rep.notes.append(f"overall matching skipped: '{trt}' has {len(arms)} arms (matching is done per arm within groups)")
    group = RISK_GROUP_COL if RISK_GROUP_COL in data.columns else None
    match = None
    if s.psm.enabled and s.psm.within_groups and match_covs:
        match = {"caliper": s.psm.caliper, "ratio": s.psm.ratio, "replace": s.psm.replace, "order": s.psm.order,
                 "seed": s.seed}
    hz, labels = _horizons(s)
    tb = treatment_benefit(
        data, s.time_column, s.event_column, trt, group=group, treatment_name=s.treatment_name, reference=reference,
        covariates=[], categorical=cat, match=match, match_covariates=match_covs, min_arm_size=s.min_arm_size,
        horizons=hz, horizon_labels=labels, group_phrase="the {group}-risk group", alpha=s.alpha,
    )
    rep.results["treatment_benefit"] = tb
    w.table("treatment_benefit", tb.summary, index=False)
    for level, g in tb.groups.items():
        if g.km is not None:
            w.table(f"treatment_km_{_slug(level)}", g.km.summary)
        if g.match is not None:
            w.table(f"treatment_psm_balance_{_slug(level)}", g.match.balance)
        rep.notes.extend(f"treatment, {level}: {n}" for n in g.notes)
    rep.notes.extend(tb.notes)
    if tb.interaction is not None:
        i = tb.interaction
        rep.sentences.append(f"treatment x risk group interaction: chi2 = {i['chi2']:.2f} on {int(i['df'])} df, {format_p(i['p'])}")
    rep.sentences.extend(tb.sentences)
    w.figure("treatment_by_group", tb.plot(time_scale=s.per_year, time_label="Years",
                                           group_title="{group} risk" if group else "{group} cases"))


def _her2low_section(df: pd.DataFrame, s: SurvivalSettings, h: Her2LowSettings, w: _Writer, rep: SurvivalReport) -> None:
    hz, labels = _horizons(s)
    covs = h.covariates if h.covariates is not None else s.covariates
    res = her2low_prognosis(
        df, s.time_column, s.event_column, true_col=h.true_column, pred_col=h.pred_column,
        covariates=covs, positive=h.positive, categorical=[c for c in s.categorical if c in covs],
        stepwise=h.stepwise, horizons=hz, horizon_labels=labels, n_bootstrap=s.n_bootstrap, seed=s.seed, alpha=s.alpha,
    )
    rep.results["her2low"] = res
    w.table("her2low_models", res.summary)
    w.table("her2low_km_true", res.km_true.summary)
    w.table("her2low_km_pred", res.km_pred.summary)
    w.table("her2low_cox_true", res.cox_true.summary)
    w.table("her2low_cox_pred", res.cox_pred.summary)
    w.figure("her2low_km", res.plot(time_scale=s.per_year, time_label="Years"))
    for kind, row in res.summary.iterrows():
        rep.sentences.append(
            f"HER2-low vs HER2-zero by {kind}: log-rank {format_p(row['logrank_p'])}; multivariable "
            f"{format_hr(row['hr_status'], row['hr_lower'], row['hr_upper'], level=1 - s.alpha)}, {format_p(row['p_status'])}; "
            f"AIC {row['aic']:.2f}; C-index {row['c_index']:.3f} ({row['c_ci_low']:.3f}-{row['c_ci_high']:.3f})"
        )


def run_survival(df: pd.DataFrame, settings: SurvivalSettings, out_dir: str | os.PathLike[str], *,
                 notes: list[str] | None = None) -> SurvivalReport:
    """Run the survival stage on a cohort table and write its tables and figures.

    Parameters
    ----------
    df : DataFrame of shape (n_cases, n_columns)
        One row per patient with the columns named in ``settings``.
    settings : SurvivalSettings
    out_dir : path-like
        Output folder (created; files in it are replaced one by one, atomically).
    notes : list of str, optional
        How the caller prepared the table (e.g. one row per patient), put first in the notes.

    Returns
    -------
    SurvivalReport

    Raises
    ------
    InputError
        A named column is missing, or times/events/covariates are unusable (the message names
        the column and rows).
    """
    start = _time.perf_counter()
    if not isinstance(settings, SurvivalSettings):
        raise InputError(f"settings must be a SurvivalSettings, got {type(settings).__name__}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings_columns(df, settings)
    df = df.reset_index(drop=True) if not df.index.is_unique else df
    rep = SurvivalReport(out_dir=out, notes=list(notes or []))
    df, missing = _handle_missing(df, settings, rep)
    survival_arrays(df, settings.time_column, settings.event_column)
    w = _Writer(out, settings.figure_format, rep)
    if len(missing):
        w.table("missing", missing, index=False)
    write_text_atomic(out / "survival_settings.json", json.dumps(settings.model_dump(mode="json"), indent=2) + "\n")
    _km_section(df, settings, w, rep)
    if settings.covariates:
        _cox_section(df, settings, w, rep)
    data = df
    if settings.score_column is not None or settings.score_covariates:
        data = _risk_section(df, settings, w, rep)
    if settings.treatment_column is not None:
        _treatment_section(data, settings, settings.treatment_column, w, rep)
    if settings.her2low is not None:
        _her2low_section(df, settings, settings.her2low, w, rep)
    _findings(rep, settings)
    rep.seconds = _time.perf_counter() - start
    text = ["Findings:"] + [f"- {x}" for x in rep.sentences]
    if rep.notes:
        text += ["", "Notes:"] + [f"- {x}" for x in rep.notes]
    write_text_atomic(out / "summary.txt", "\n".join(text) + "\n")
    return rep
