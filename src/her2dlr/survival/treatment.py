"""Treatment benefit within risk groups (seed 004): KM and log-rank by arm, Cox HRs, matching.

Each group (e.g. low / moderate / high risk) gets Kaplan-Meier curves and a log-rank test by
treatment arm, a Cox hazard ratio of each arm against the reference arm (optionally adjusted
for covariates, or estimated on a propensity-matched subset with robust standard errors
clustered on the matched sets), and one plain-language sentence. Across groups: the hazard
ratio stratified by group (separate baseline hazards, R's ``strata()``, the Cox analogue of a
Mantel-Haenszel pooled estimate) and a likelihood-ratio test of the treatment x group
interaction. Written here by hand: the orchestration and the sentences; every statistic
comes from the modules that wrap lifelines and statsmodels.

Documented handling of awkward groups: a group where an arm has fewer than ``min_arm_size``
cases is reported as "not assessed" with the reason (no error); a group where an arm has no
events gets its log-rank test but no hazard ratio (infinite or zero, monotone likelihood);
matching that fails inside a group falls back to the unmatched estimate with a note.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from her2dlr.errors import InputError
from her2dlr.survival._data import check_columns, group_levels, rows_text, survival_arrays
from her2dlr.survival.cox import CoxResult, fit_cox
from her2dlr.survival.km import KaplanMeierResult, LogRankResult, kaplan_meier
from her2dlr.survival.matching import SET_COL, MatchResult, propensity_match
from her2dlr.survival.results import SurvivalResult, format_hr, format_p

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["GroupBenefit", "TreatmentBenefitResult", "benefit_sentence", "stratified_hr", "treatment_benefit"]


def benefit_sentence(
    what: str, where: str, hr: float, low: float, high: float, p: float, *, alpha: float = 0.05
) -> str:
    """Plain-language verdict, e.g. ``"no significant benefit from trastuzumab in the
    high-risk group (HR 0.91, 95% CI 0.60-1.38, p = 0.66)"``."""
    numbers = f"({format_hr(hr, low, high, level=1 - alpha)}, {format_p(p)})"
    if not np.isfinite(p) or not np.isfinite(hr):
        return f"effect of {what} in {where} not estimable"
    if p < alpha and hr < 1:
        return f"significant benefit from {what} in {where} {numbers}"
    if p < alpha and hr > 1:
        return f"significantly worse outcome with {what} in {where} {numbers}"
    return f"no significant benefit from {what} in {where} {numbers}"


@dataclass(repr=False)
class GroupBenefit:
    """Treatment comparison inside one group.

    Attributes
    ----------
    group : object
        Group level (``"all"`` without a group column).
    n : int
    arm_counts : dict
        Arm -> (cases, events).
    status : str
        ``"ok"`` or ``"not assessed"``.
    reason : str
        Why the group was not assessed (empty when ok).
    km : KaplanMeierResult or None
    cox : CoxResult or None
        Cox model of the arm (plus covariates) in this group.
    match : MatchResult or None
    matched_cox : CoxResult or None
        Cox model on the matched subset (robust SE clustered on matched sets).
    rows : list of dict
        One per non-reference arm: estimates and the sentence.
    """

    group: Any
    n: int
    arm_counts: dict[Any, tuple[int, int]]
    status: str = "ok"
    reason: str = ""
    km: KaplanMeierResult | None = None
    cox: CoxResult | None = None
    match: MatchResult | None = None
    matched_cox: CoxResult | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def logrank(self) -> LogRankResult | None:
        return self.km.logrank if self.km is not None else None


@dataclass(repr=False)
class TreatmentBenefitResult(SurvivalResult):
    """Treatment benefit in each group, the stratified HR and the interaction test.

    Attributes
    ----------
    treatment : str
    treatment_name : str or None
    arms : list
        Arms in order; the first is the reference.
    group_col : str or None
    groups : dict
        Group level -> :class:`GroupBenefit`.
    stratified : CoxResult or None
        Treatment HR with baseline hazards stratified by group.
    interaction : dict or None
        ``{"chi2", "df", "p"}`` of the likelihood-ratio test of treatment x group.
    """

    treatment: str
    treatment_name: str | None
    arms: list[Any]
    group_col: str | None
    groups: dict[Any, GroupBenefit]
    time_col: str
    event_col: str
    alpha: float = 0.05
    stratified: CoxResult | None = None
    interaction: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:  # type: ignore[override]
        by = f" by '{self.group_col}'" if self.group_col else ""
        return f"benefit of '{self.treatment}'{by}"

    @property
    def reference_arm(self) -> Any:
        return self.arms[0]

    @property
    def summary(self) -> pd.DataFrame:
        """One row per group and non-reference arm (plus the stratified estimate)."""
        rows = []
        for g in self.groups.values():
            base = {
                "group": g.group,
                "n": g.n,
                "status": g.status,
                "logrank_chi2": g.logrank.test_statistic if g.logrank else np.nan,
                "logrank_p": g.logrank.p_value if g.logrank else np.nan,
            }
            if not g.rows:
                rows.append({**base, "arm": "", "conclusion": g.reason})
            for r in g.rows:
                rows.append({**base, **r})
        if self.stratified is not None:
            s = self.stratified.summary
            for _, r in s[s["covariate"] == self.treatment].iterrows():
                rows.append({
                    "group": f"all (stratified by {self.group_col})", "n": self.stratified.n, "status": "ok",
                    "arm": r["level"], "hr": r["hr"], "hr_lower": r["hr_lower"], "hr_upper": r["hr_upper"],
                    "p": r["p"], "estimate": "stratified Cox",
                    "conclusion": benefit_sentence(self._what(r["level"]), f"the whole cohort, stratified by {self.group_col}",
                                                   r["hr"], r["hr_lower"], r["hr_upper"], r["p"], alpha=self.alpha),
                })
        cols = ["group", "n", "status", "arm", "n_arm", "events_arm", "n_reference", "events_reference",
                "logrank_chi2", "logrank_p", "hr", "hr_lower", "hr_upper", "p", "estimate",
                "hr_unmatched", "hr_unmatched_lower", "hr_unmatched_upper", "p_unmatched", "conclusion"]
        out = pd.DataFrame(rows)
        return out.reindex(columns=[c for c in cols if c in out.columns])

    def _what(self, arm: Any) -> str:
        if len(self.arms) == 2 and self.treatment_name:
            return self.treatment_name
        name = self.treatment_name or self.treatment
        return f"{name} = {arm} (vs {self.reference_arm})"

    @property
    def sentences(self) -> list[str]:
        """The plain-language verdicts, one per group and arm."""
        out = []
        for g in self.groups.values():
            if not g.rows:
                out.append(f"{g.group}: not assessed ({g.reason})")
            out.extend(r["conclusion"] for r in g.rows)
        return out

    def _header(self) -> dict[str, Any]:
        head: dict[str, Any] = {"arms (reference first)": ", ".join(map(str, self.arms))}
        if self.interaction is not None:
            i = self.interaction
            head["treatment x group (LR)"] = f"chi2 = {i['chi2']:.2f} on {int(i['df'])} df, {format_p(i['p'])}"
        return head

    def plot(self, **kwargs: Any) -> Figure:
        """KM curves by arm, one panel per group (see :func:`her2dlr.survival.plots.plot_treatment_benefit`)."""
        from her2dlr.survival.plots import plot_treatment_benefit

        return plot_treatment_benefit(self, **kwargs)


def stratified_hr(
    df: pd.DataFrame,
    time: str,
    event: str,
    treatment: str,
    strata: str | Sequence[str],
    *,
    covariates: Sequence[str] = (),
    reference: Any = None,
    categorical: Iterable[str] = (),
    alpha: float = 0.05,
) -> CoxResult:
    """Hazard ratio of treatment pooled across strata (separate baseline hazard per stratum).

    The Cox analogue of a Mantel-Haenszel estimate: ``coxph(Surv(time, event) ~ treatment +
    covariates + strata(group))`` in R.
    """
    ref = {treatment: reference} if reference is not None else None
    return fit_cox(df, time, event, [treatment, *covariates], categorical=[treatment, *categorical],
                   reference=ref, strata=strata, alpha=alpha)


def _interaction_test(
    df: pd.DataFrame, time: str, event: str, treatment: str, group: str, arms: list[Any],
    groups: list[Any], covariates: Sequence[str], categorical: Iterable[str],
) -> dict[str, float]:
    data = df.copy()
    extra = []
    for a in arms[1:]:
        for g in groups[1:]:
            col = f"{treatment}[{a}]:{group}[{g}]"
            data[col] = ((df[treatment] == a) & (df[group].astype(object) == g)).astype(float)
            extra.append(col)
    main = [treatment, group, *covariates]
    cat = [treatment, group, *categorical]
    ref = {treatment: arms[0], group: groups[0]}
    m0 = fit_cox(data, time, event, main, categorical=cat, reference=ref, check_ph=False)
    m1 = fit_cox(data, time, event, main + extra, categorical=cat, reference=ref, check_ph=False)
    chi2 = 2.0 * (m1.log_likelihood - m0.log_likelihood)
    dof = m1.n_params - m0.n_params
    return {"chi2": chi2, "df": float(dof), "p": float(stats.chi2.sf(chi2, dof))}


def treatment_benefit(
    df: pd.DataFrame,
    time: str,
    event: str,
    treatment: str,
    *,
    group: str | None = None,
    treatment_name: str | None = None,
    reference: Any = None,
    covariates: Sequence[str] = (),
    categorical: Iterable[str] = (),
    match: Mapping[str, Any] | None = None,
    match_covariates: Sequence[str] | None = None,
    min_arm_size: int = 2,
    horizons: Sequence[float] = (),
    horizon_labels: Sequence[str] | None = None,
    group_phrase: str = "the {column} = {group} group",
    alpha: float = 0.05,
) -> TreatmentBenefitResult:
    """Compare treatment arms inside each group and across groups.

    Parameters
    ----------
    df : DataFrame of shape (n_cases, n_columns)
    time, event : str
        Follow-up time and event (1/0) columns.
    treatment : str
        Arm column (two or more arms).
    group : str, optional
        Group column (e.g. risk group); ``None`` = the whole cohort as one group.
    treatment_name : str, optional
        Name used in the sentences ("hormonal therapy"); default: the column and arm.
    reference : optional
        Reference arm (default: the first level, e.g. ``"no"``/``0``/``False``).
    covariates : sequence of str
        Covariates adjusted for in each group's Cox model (none = unadjusted HR).
    categorical : iterable of str
        Numeric covariates to treat as categories.
    match : mapping, optional
        Keyword arguments of :func:`her2dlr.survival.matching.propensity_match` (``caliper``,
        ``ratio``, ``replace``...). When given, each arm is matched to the reference arm
        inside each group, and the headline HR is the matched one.
    match_covariates : sequence of str, optional
        Propensity covariates (default: ``covariates``).
    min_arm_size : int
        Groups where an arm has fewer cases are "not assessed" (default 2).
    horizons, horizon_labels
        Survival reported at these times in each group's KM summary.
    group_phrase : str
        How a group is named in sentences; ``{group}`` is replaced by its level and
        ``{column}`` by the group column (the driver uses ``"the {group}-risk group"``).
    alpha : float

    Returns
    -------
    TreatmentBenefitResult
    """
    _t, e = survival_arrays(df, time, event, require_events=True, purpose="a treatment comparison")
    _check_treatment_columns(df, treatment, group)
    arms = _ordered_arms(df, treatment, reference)
    match_covs = list(match_covariates if match_covariates is not None else covariates)
    if match is not None and not match_covs:
        raise InputError("Propensity matching needs covariates: give match_covariates (or covariates).")
    plan = _Comparison(time, event, treatment, arms, covariates, categorical, match, match_covs, min_arm_size,
                       horizons, horizon_labels, alpha)
    levels = group_levels(df[group]) if group else ["all"]
    res = TreatmentBenefitResult(treatment, treatment_name, arms, group, {}, time, event, alpha)
    for level in levels:
        m = (df[group] == level).to_numpy() if group else np.ones(len(df), dtype=bool)
        where = group_phrase.format(group=level, column=group) if group else "the whole cohort"
        res.groups[level] = _group_benefit(df, e, m, level, where, plan, res._what)
    if group and len(levels) > 1:
        _across_groups(res, df, group, levels, plan)
    return res


def _check_treatment_columns(df: pd.DataFrame, treatment: str, group: str | None) -> None:
    """The treatment (and group) column exist and have no missing values."""
    check_columns(df, [treatment], role="treatment column")
    check_columns(df, [group], role="group column")
    for col in [treatment] + ([group] if group else []):
        if df[col].isna().any():
            raise InputError(f"Column '{col}' has {int(df[col].isna().sum())} missing values at {rows_text(df.index[df[col].isna()])}.")


def _ordered_arms(df: pd.DataFrame, treatment: str, reference: Any) -> list[Any]:
    """Arms of ``treatment``, the reference first (default: the first level); at least two."""
    arms = group_levels(df[treatment])
    if reference is not None:
        if reference not in arms:
            raise InputError(f"Reference arm {reference!r} does not occur in '{treatment}'; arms: {arms!r}.")
        arms = [reference] + [a for a in arms if a != reference]
    if len(arms) < 2:
        raise InputError(f"Treatment column '{treatment}' has a single arm {arms!r}; nothing to compare.")
    return arms


@dataclass(frozen=True)
class _Comparison:
    """The arguments of :func:`treatment_benefit` every group's comparison shares (arms resolved)."""

    time: str
    event: str
    treatment: str
    arms: list[Any]
    covariates: Sequence[str]
    categorical: Iterable[str]
    match: Mapping[str, Any] | None
    match_covs: list[str]
    min_arm_size: int
    horizons: Sequence[float]
    horizon_labels: Sequence[str] | None
    alpha: float

    @property
    def reference(self) -> dict[str, Any]:
        """Reference level of the treatment column for :func:`fit_cox`."""
        return {self.treatment: self.arms[0]}


def _group_benefit(
    df: pd.DataFrame, events: np.ndarray, m: np.ndarray, level: Any, where: str, plan: _Comparison,
    what: Callable[[Any], str],
) -> GroupBenefit:
    """Counts, KM by arm, the group's Cox model and one row per non-reference arm, for the cases ``m``.

    ``where`` names the group in sentences; ``what(arm)`` names the treatment.
    """
    sub = df[m]
    trt = plan.treatment
    counts = {a: (int((sub[trt] == a).sum()), int(events[m][(sub[trt] == a).to_numpy()].sum())) for a in plan.arms}
    gb = GroupBenefit(level, int(m.sum()), counts)
    reason = _not_assessed_reason(counts, events[m], where, plan.min_arm_size)
    if reason:
        gb.status, gb.reason = "not assessed", reason
        return gb
    present = [a for a in plan.arms if counts[a][0] > 0]
    gb.km = kaplan_meier(sub, plan.time, plan.event, trt, order=present, horizons=plan.horizons,
                         horizon_labels=plan.horizon_labels, alpha=plan.alpha, trend=False)
    try:
        gb.cox = fit_cox(sub, plan.time, plan.event, [trt, *plan.covariates], categorical=[trt, *plan.categorical],
                         reference=plan.reference, alpha=plan.alpha)
    except InputError as exc:
        gb.notes.append(f"Cox model not estimable: {exc}")
    for arm in plan.arms[1:]:
        gb.rows.append(_arm_row(sub, gb, arm, where, plan, what))
    return gb


def _not_assessed_reason(
    counts: dict[Any, tuple[int, int]], events: np.ndarray, where: str, min_arm_size: int
) -> str:
    """Why a group is not assessed (an arm below ``min_arm_size``, or no events); empty when it is."""
    small = [a for a, (n, _) in counts.items() if n < min_arm_size]
    if small:
        return ", ".join(f"arm {a!r} has {counts[a][0]} case(s)" for a in small) + f" in {where}; need at least {min_arm_size}"
    if not events.any():
        return f"no events in {where}"
    return ""


def _arm_row(
    sub: pd.DataFrame, gb: GroupBenefit, arm: Any, where: str, plan: _Comparison, what: Callable[[Any], str]
) -> dict[str, Any]:
    """One arm against the reference in one group: counts, the headline HR and the sentence."""
    ref_arm = plan.arms[0]
    row: dict[str, Any] = {
        "arm": arm, "n_arm": gb.arm_counts[arm][0], "events_arm": gb.arm_counts[arm][1],
        "n_reference": gb.arm_counts[ref_arm][0], "events_reference": gb.arm_counts[ref_arm][1],
    }
    term = f"{plan.treatment}[{arm}]"
    est = gb.cox.summary.loc[term] if gb.cox is not None else None
    label = "adjusted Cox" if plan.covariates else "Cox"
    if plan.match is not None:
        est, label = _matched_estimate(sub, gb, arm, term, est, label, row, plan)
    if est is None:
        lr = gb.logrank
        row["conclusion"] = (
            f"HR of {what(arm)} in {where} not estimable ("
            + (gb.notes[-1].split(": ", 1)[-1][:120] if gb.notes else "model failed")
            + (f"); log-rank {format_p(lr.p_value)}" if lr else ")")
        )
        return row
    row.update(hr=est["hr"], hr_lower=est["hr_lower"], hr_upper=est["hr_upper"], p=est["p"], estimate=label)
    row["conclusion"] = benefit_sentence(what(arm), where, est["hr"], est["hr_lower"], est["hr_upper"],
                                         est["p"], alpha=plan.alpha)
    return row


def _matched_estimate(
    sub: pd.DataFrame, gb: GroupBenefit, arm: Any, term: str, est: pd.Series | None, label: str,
    row: dict[str, Any], plan: _Comparison,
) -> tuple[pd.Series | None, str]:
    """Match ``arm`` to the reference arm inside the group and return the matched HR and its label.

    The unmatched estimate moves to the ``*_unmatched`` columns of ``row``. With two arms the
    match and its Cox model are kept on ``gb``. When matching fails, a note says so and the
    unmatched ``(est, label)`` is returned unchanged.
    """
    ref_arm = plan.arms[0]
    pair = sub[sub[plan.treatment].isin([ref_arm, arm])]
    try:
        mr = propensity_match(pair, plan.treatment, plan.match_covs, treated_value=arm, control_value=ref_arm,
                              categorical=[c for c in plan.categorical if c in plan.match_covs],
                              min_arm_size=plan.min_arm_size, **dict(plan.match))
        if len(plan.arms) == 2:
            gb.match = mr
        mc = fit_cox(mr.matched, plan.time, plan.event, [plan.treatment], categorical=[plan.treatment],
                     reference=plan.reference, cluster=SET_COL, alpha=plan.alpha)
        if len(plan.arms) == 2:
            gb.matched_cox = mc
        if est is not None:
            row.update(hr_unmatched=est["hr"], hr_unmatched_lower=est["hr_lower"],
                       hr_unmatched_upper=est["hr_upper"], p_unmatched=est["p"])
        return mc.summary.loc[term], "matched Cox (robust SE)"
    except InputError as exc:
        gb.notes.append(f"matching {arm!r} vs {ref_arm!r} failed, unmatched estimate kept: {exc}")
        return est, label


def _across_groups(
    res: TreatmentBenefitResult, df: pd.DataFrame, group: str, levels: list[Any], plan: _Comparison
) -> None:
    """The HR stratified by group and the treatment x group interaction test (a note when not estimable)."""
    try:
        res.stratified = stratified_hr(df, plan.time, plan.event, plan.treatment, group, covariates=plan.covariates,
                                       reference=plan.arms[0], categorical=plan.categorical, alpha=plan.alpha)
    except InputError as exc:
        res.notes.append(f"stratified HR not estimable: {exc}")
    try:
        res.interaction = _interaction_test(df, plan.time, plan.event, plan.treatment, group, plan.arms, levels,
                                            plan.covariates, plan.categorical)
    except InputError as exc:
        res.notes.append(f"interaction test not estimable: {exc}")
