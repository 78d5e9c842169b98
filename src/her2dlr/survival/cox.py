"""Cox proportional hazards models (lifelines) with hazard ratios, PH checks and forest plots.

lifelines fits the model (Efron ties, as R's ``coxph`` default) and runs the Schoenfeld
residual test (``proportional_hazard_test`` with the Kaplan-Meier time transform, R's
``cox.zph`` default transform). Written here by hand: the null partial log-likelihood
(Efron at beta = 0, needed for the AIC of the empty model in stepwise selection), the
encoding of categorical covariates with a stated reference level, and the up-front check
for levels without events (monotone likelihood), which lifelines reports only as a
convergence failure.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from lifelines.exceptions import ConvergenceError, ConvergenceWarning
from lifelines.statistics import StatisticalResult, proportional_hazard_test
from scipy import stats

from her2dlr.errors import InputError
from her2dlr.survival._data import DesignSpec, check_columns, make_design, rows_text, survival_arrays
from her2dlr.survival.results import SurvivalResult, format_p

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["CoxResult", "fit_cox", "null_log_likelihood", "univariate_cox"]

_T, _E, _S, _W, _C = "__time__", "__event__", "__strata__", "__weight__", "__cluster__"


def null_log_likelihood(durations: np.ndarray, events: np.ndarray, strata: np.ndarray | None = None) -> float:
    """Partial log-likelihood of the Cox model with no covariates (Efron ties, beta = 0).

    Written by hand: with every risk score equal to 1, an event time with ``d`` tied events
    and ``n`` at risk contributes :math:`-\\sum_{l=0}^{d-1} \\log(n - l)` (Efron's correction
    at beta = 0). This is R's ``coxph(Surv(time, status) ~ 1)$loglik``.
    """
    durations = np.asarray(durations, dtype=float)
    events = np.asarray(events, dtype=bool)
    if strata is None:
        strata = np.zeros(len(durations), dtype=int)
    total = 0.0
    for s in pd.unique(strata):
        m = strata == s
        t, e = durations[m], events[m]
        srt = np.sort(t)
        times, d = np.unique(t[e], return_counts=True)
        n = len(srt) - np.searchsorted(srt, times, side="left")
        for n_t, d_t in zip(n, d):
            total -= float(np.log(n_t - np.arange(d_t)).sum())
    return total


@dataclass(repr=False)
class CoxResult(SurvivalResult):
    """A fitted Cox model: hazard ratios with CIs and p-values, fit statistics, PH test.

    Attributes
    ----------
    fitter : lifelines.CoxPHFitter
        The fitted lifelines model (design columns as named in :attr:`summary`).
    design : DesignSpec
        Encoding of the covariates, reused by :meth:`predict_risk`.
    n, n_events : int
    log_likelihood, log_likelihood_null : float
    aic : float
        Partial AIC, ``-2 log L + 2 p`` (R's ``AIC(coxph)``).
    concordance : float
        Harrell's C on the fitting data.
    ph_test : DataFrame or None
        Schoenfeld residual test per design column (``test_statistic``, ``p``).
    notes : list of str
    """

    fitter: CoxPHFitter
    design: DesignSpec
    time_col: str
    event_col: str
    strata: list[str]
    penalizer: float
    alpha: float
    n: int
    n_events: int
    log_likelihood: float
    log_likelihood_null: float
    ph_test: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    title = "Cox proportional hazards model"

    @property
    def covariates(self) -> list[str]:
        """Terms (original column names) in the model."""
        return list(self.design.terms)

    @property
    def n_params(self) -> int:
        return len(self.design.columns)

    @property
    def aic(self) -> float:
        return -2.0 * self.log_likelihood + 2.0 * self.n_params

    @property
    def concordance(self) -> float:
        return float(self.fitter.concordance_index_)

    @property
    def params(self) -> pd.Series:
        """Log hazard ratios by design column."""
        return self.fitter.params_.copy()

    def likelihood_ratio_test(self) -> StatisticalResult:
        """Likelihood-ratio test of this model against the model with no covariates.

        Returns
        -------
        lifelines.statistics.StatisticalResult
            ``test_statistic`` (chi-square), ``p_value`` and ``degrees_freedom``.
        """
        chi2 = 2.0 * (self.log_likelihood - self.log_likelihood_null)
        return StatisticalResult(
            float(stats.chi2.sf(chi2, self.n_params)), chi2, test_name="likelihood ratio test",
            null_distribution="chi squared", degrees_freedom=self.n_params,
        )

    @property
    def summary(self) -> pd.DataFrame:
        """One row per design column: term, level, HR with CI, coef, se, z, p and PH-test p."""
        s = self.fitter.summary
        level = round((1 - self.alpha) * 100)
        term_of = {c: t for t, cols in self.design.terms.items() for c in cols}
        out = pd.DataFrame(
            {
                "covariate": [term_of[c] for c in s.index],
                "level": [c[len(term_of[c]) + 1 : -1] if c != term_of[c] else "" for c in s.index],
                "hr": s["exp(coef)"],
                "hr_lower": s[f"exp(coef) lower {level}%"],
                "hr_upper": s[f"exp(coef) upper {level}%"],
                "coef": s["coef"],
                "se": s["se(coef)"],
                "z": s["z"],
                "p": s["p"],
            },
            index=pd.Index(s.index, name="term"),
        )
        if self.ph_test is not None:
            out["ph_p"] = self.ph_test["p"].reindex(out.index)
        return out

    def _header(self) -> dict[str, Any]:
        lrt = self.likelihood_ratio_test()
        chi2, dof, p = lrt.test_statistic, self.n_params, lrt.p_value
        head: dict[str, Any] = {
            "duration col": self.time_col,
            "event col": self.event_col,
            "cases / events": f"{self.n} / {self.n_events}",
            "partial log-likelihood": round(self.log_likelihood, 3),
            "partial AIC": round(self.aic, 3),
            "concordance (Harrell)": round(self.concordance, 4),
            "likelihood ratio test": f"{chi2:.2f} on {dof} df, {format_p(p)}",
        }
        if self.strata:
            head["strata"] = ", ".join(self.strata)
        if self.penalizer:
            head["penalizer"] = self.penalizer
        if self.ph_test is not None:
            bad = self.ph_test.index[self.ph_test["p"] < 0.05].tolist()
            head["PH test (Schoenfeld)"] = f"p < 0.05 for {', '.join(bad)}" if bad else "no p < 0.05"
        return head

    def predict_risk(self, df: pd.DataFrame) -> pd.Series:
        """Linear predictor ``x' beta`` (not centred) for the cases of ``df``; higher = riskier."""
        X = self.design.transform(df)
        return pd.Series(X.to_numpy() @ self.fitter.params_.reindex(X.columns).to_numpy(), index=df.index, name="cox_lp")

    def plot(self, **kwargs: Any) -> Figure:
        """Forest plot of the hazard ratios (see :func:`her2dlr.survival.plots.plot_forest`)."""
        from her2dlr.survival.plots import plot_forest

        return plot_forest(self, **kwargs)


def _check_events_per_level(
    X: pd.DataFrame, spec: DesignSpec, df: pd.DataFrame, events: np.ndarray, event_col: str
) -> None:
    """Raise when a level of a categorical (or 0/1) covariate has no events (monotone likelihood)."""
    for term, cols in spec.terms.items():
        if term in spec.levels:
            values = df[term]
            levels = spec.levels[term]
        elif set(np.unique(X[cols[0]])) <= {0.0, 1.0}:
            values = X[cols[0]]
            levels = [0.0, 1.0]
        else:
            continue
        for level in levels:
            m = (values == level).to_numpy()
            if m.any() and not events[m].any():
                raise InputError(
                    f"No events (column '{event_col}') among the {int(m.sum())} cases with "
                    f"{term} = {level!r}: the hazard ratio of this level is infinite or zero "
                    "(monotone likelihood). Merge it with another level, drop the covariate, "
                    "or use penalizer > 0."
                )


def fit_cox(
    df: pd.DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    *,
    categorical: Iterable[str] = (),
    reference: Mapping[str, Any] | None = None,
    strata: str | Sequence[str] | None = None,
    penalizer: float = 0.0,
    l1_ratio: float = 0.0,
    weights: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
    check_ph: bool = True,
    initial_point: Mapping[str, float] | None = None,
) -> CoxResult:
    """Fit a Cox proportional hazards model.

    Parameters
    ----------
    df : DataFrame of shape (n_cases, n_columns)
    time, event : str
        Follow-up time and event (1/0) columns.
    covariates : sequence of str
        Covariate columns. Text and ``Categorical`` columns are one-hot encoded with the
        first level (sorted, or the categorical order) as the reference.
    categorical : iterable of str
        Numeric columns to treat as categories.
    reference : mapping, optional
        Column -> reference level.
    strata : str or sequence of str, optional
        Columns whose levels get separate baseline hazards (R's ``strata()``).
    penalizer, l1_ratio : float
        Elastic-net penalty of lifelines (``penalizer=0`` is the ordinary partial likelihood).
        With a penalty, p-values and CIs are not valid inference; a note says so.
    weights : str, optional
        Case-weight column.
    cluster : str, optional
        Cluster column for robust (sandwich) standard errors, e.g. a matched-set id.
    alpha : float
        1 - confidence level.
    check_ph : bool
        Run the Schoenfeld residual test.
    initial_point : mapping, optional
        Design column -> starting log hazard ratio of the Newton iterations (others start
        at 0); a warm start from a nested model (stepwise selection) saves iterations.

    Returns
    -------
    CoxResult

    Raises
    ------
    InputError
        Bad times/events, all censored, missing or constant covariates, a level without
        events (unpenalised), or a model lifelines cannot fit.

    Examples
    --------
    >>> from lifelines.datasets import load_gbsg2
    >>> res = fit_cox(load_gbsg2(), "time", "cens", ["horTh", "pnodes"])
    >>> round(float(res.summary.loc["horTh[yes]", "hr"]), 2)
    0.7
    """
    t, e = survival_arrays(df, time, event, require_events=True, purpose="a Cox model")
    strata = [strata] if isinstance(strata, str) else list(strata or [])
    check_columns(df, strata, role="strata column")
    check_columns(df, [weights, cluster], role="column")
    X, spec = make_design(df, covariates, categorical=categorical, reference=reference)
    if not spec.columns:
        raise InputError("A Cox model needs at least one covariate; got none.")
    if penalizer == 0:
        _check_events_per_level(X, spec, df, e, event)
    data, fit_kwargs = _fit_frame(df, X, t, e, strata=strata, weights=weights, cluster=cluster)
    if initial_point:
        fit_kwargs["initial_point"] = np.array([float(initial_point.get(c, 0.0)) for c in spec.columns])
    cph, notes = _fit_lifelines(data, fit_kwargs, spec, penalizer=penalizer, l1_ratio=l1_ratio, alpha=alpha)
    if penalizer:
        notes.append("penalised fit: p-values and confidence intervals are not valid inference")
    strata_arr = data[fit_kwargs["strata"]].astype(str).agg("|".join, axis=1).to_numpy() if strata else None
    ll_null = null_log_likelihood(t, e, strata_arr)
    ph = _ph_table(cph, data, notes) if check_ph else None
    return CoxResult(
        fitter=cph,
        design=spec,
        time_col=time,
        event_col=event,
        strata=strata,
        penalizer=penalizer,
        alpha=alpha,
        n=len(t),
        n_events=int(e.sum()),
        log_likelihood=float(cph.log_likelihood_),
        log_likelihood_null=ll_null,
        ph_test=ph,
        notes=notes,
    )


def _fit_frame(
    df: pd.DataFrame, X: pd.DataFrame, t: np.ndarray, e: np.ndarray, *, strata: list[str],
    weights: str | None, cluster: str | None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The table lifelines fits (design, time, event, strata, weight and cluster columns under
    reserved names) and the matching keyword arguments of ``CoxPHFitter.fit``."""
    data = X.copy()
    data[_T], data[_E] = t, e.astype(int)
    fit_kwargs: dict[str, Any] = {}
    for i, col in enumerate(strata):
        if df[col].isna().any():
            raise InputError(f"Strata column '{col}' has missing values at {rows_text(df.index[df[col].isna()])}.")
        data[f"{_S}{i}"] = df[col].astype(str).to_numpy()
    if strata:
        fit_kwargs["strata"] = [f"{_S}{i}" for i in range(len(strata))]
    if weights is not None:
        data[_W] = pd.to_numeric(df[weights]).to_numpy()
        fit_kwargs["weights_col"] = _W
    if cluster is not None:
        data[_C] = df[cluster].to_numpy()
        fit_kwargs["cluster_col"] = _C
    return data, fit_kwargs


def _fit_lifelines(
    data: pd.DataFrame, fit_kwargs: dict[str, Any], spec: DesignSpec, *, penalizer: float, l1_ratio: float,
    alpha: float,
) -> tuple[CoxPHFitter, list[str]]:
    """Fit ``CoxPHFitter``; convergence warnings become notes, a failed fit an :class:`InputError`."""
    notes: list[str] = []
    cph = CoxPHFitter(penalizer=penalizer, l1_ratio=l1_ratio, alpha=alpha)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            cph.fit(data, _T, _E, **fit_kwargs)
        except (ConvergenceError, np.linalg.LinAlgError) as exc:
            raise InputError(
                f"The Cox model on {list(spec.terms)} could not be fitted ({type(exc).__name__}); "
                "look for collinear covariates, a level with very few cases or events, or use "
                f"penalizer > 0. lifelines said: {str(exc).splitlines()[0][:300]}"
            ) from exc
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            notes.append(f"lifelines: {str(w.message).splitlines()[0][:200]}")
    return cph, notes


def _ph_table(cph: CoxPHFitter, data: pd.DataFrame, notes: list[str]) -> pd.DataFrame | None:
    """Schoenfeld residual test per design column (``test_statistic``, ``p``; KM time transform).

    The PH test is a report, never a reason to fail the fit: an error becomes a note appended
    to ``notes`` (the table is then None).
    """
    ph = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = proportional_hazard_test(cph, data, time_transform="km")
        ph = res.summary[["test_statistic", "p"]].copy()
        ph.index = [i if isinstance(i, str) else i[0] for i in ph.index]
    except Exception as exc:  # the PH test is a report, never a reason to fail the fit
        notes.append(f"PH test not computed: {type(exc).__name__}: {exc}")
    return ph


@dataclass(repr=False)
class UnivariateCoxResult(SurvivalResult):
    """One Cox model per covariate (the usual "univariable" table)."""

    models: dict[str, CoxResult]
    errors: dict[str, str]

    title = "univariable Cox models"

    @property
    def summary(self) -> pd.DataFrame:
        parts = [m.summary.drop(columns=["ph_p"], errors="ignore") for m in self.models.values()]
        out = pd.concat(parts) if parts else pd.DataFrame()
        for term, msg in self.errors.items():
            out.loc[term, ["covariate", "level"]] = [term, ""]
            out.loc[term, "note"] = msg
        return out


def univariate_cox(
    df: pd.DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    **kwargs: Any,
) -> UnivariateCoxResult:
    """Fit one Cox model per covariate; a covariate that cannot be fitted gets a note, not an error.

    Keyword arguments go to :func:`fit_cox` (``categorical``, ``reference``, ``alpha``...).
    """
    survival_arrays(df, time, event, require_events=True, purpose="a Cox model")
    models: dict[str, CoxResult] = {}
    errors: dict[str, str] = {}
    for cov in covariates:
        cat = [c for c in kwargs.get("categorical", ()) if c == cov]
        kw = {**kwargs, "categorical": cat, "check_ph": kwargs.get("check_ph", False)}
        try:
            models[cov] = fit_cox(df, time, event, [cov], **kw)
        except InputError as exc:
            errors[cov] = str(exc)
    return UnivariateCoxResult(models, errors)
