"""Prognosis of HER2-low vs HER2-zero by true and by predicted status (seed 003).

Kaplan-Meier curves and log-rank tests by the true (pathology) status and by the status a
model predicts; a multivariate Cox model of each status with clinical covariates (AIC
stepwise selection of the covariates, the status kept in by default so its HR is always
reported); the AIC and C-index (with bootstrap CI) of the two models side by side. Written
here by hand: only the orchestration; the statistics come from the other survival modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.survival._data import check_columns, group_levels, rows_text, survival_arrays
from her2dlr.survival.cindex import ConcordanceResult, concordance
from her2dlr.survival.cox import CoxResult, fit_cox
from her2dlr.survival.km import KaplanMeierResult, kaplan_meier
from her2dlr.survival.results import SurvivalResult
from her2dlr.survival.stepwise import StepwiseResult, stepwise_cox

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Her2LowResult", "her2low_prognosis"]


@dataclass(repr=False)
class Her2LowResult(SurvivalResult):
    """HER2-low prognosis with true vs predicted status.

    Attributes
    ----------
    true_col, pred_col : str
    negative, positive : object
        Status values of HER2-zero (reference) and HER2-low.
    km_true, km_pred : KaplanMeierResult
    stepwise_true, stepwise_pred : StepwiseResult or None
    cox_true, cox_pred : CoxResult
    cindex_true, cindex_pred : ConcordanceResult
    agreement : dict
        Accuracy and Cohen's kappa of predicted vs true status.
    """

    true_col: str
    pred_col: str
    negative: Any
    positive: Any
    km_true: KaplanMeierResult
    km_pred: KaplanMeierResult
    cox_true: CoxResult
    cox_pred: CoxResult
    cindex_true: ConcordanceResult
    cindex_pred: ConcordanceResult
    stepwise_true: StepwiseResult | None = None
    stepwise_pred: StepwiseResult | None = None
    agreement: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    title = "HER2-low vs HER2-zero prognosis: true vs predicted status"

    @property
    def summary(self) -> pd.DataFrame:
        """One row per model: log-rank, status HR, AIC, C-index with CI, selected covariates."""
        rows = []
        for kind, col, km, cox, cidx in (
            ("true status", self.true_col, self.km_true, self.cox_true, self.cindex_true),
            ("predicted status", self.pred_col, self.km_pred, self.cox_pred, self.cindex_pred),
        ):
            s = cox.summary
            st = s[s["covariate"] == col]
            r = st.iloc[0] if len(st) else None
            rows.append({
                "model": kind, "status_column": col,
                "logrank_chi2": km.logrank.test_statistic if km.logrank else np.nan,
                "logrank_p": km.logrank.p_value if km.logrank else np.nan,
                "hr_status": r["hr"] if r is not None else np.nan,
                "hr_lower": r["hr_lower"] if r is not None else np.nan,
                "hr_upper": r["hr_upper"] if r is not None else np.nan,
                "p_status": r["p"] if r is not None else np.nan,
                "aic": cox.aic, "c_index": cidx.estimate, "c_ci_low": cidx.ci_low, "c_ci_high": cidx.ci_high,
                "covariates": ", ".join(cox.covariates),
            })
        return pd.DataFrame(rows).set_index("model")

    def _header(self) -> dict[str, Any]:
        return {
            "status": f"{self.positive!r} vs {self.negative!r} (reference)",
            "agreement (accuracy)": round(self.agreement.get("accuracy", np.nan), 3),
            "agreement (kappa)": round(self.agreement.get("kappa", np.nan), 3),
        }

    def plot(self, **kwargs: Any) -> Figure:
        """KM by true and by predicted status side by side."""
        from her2dlr.survival.plots import plot_km_pair

        return plot_km_pair(self.km_true, self.km_pred, titles=(f"true status ({self.true_col})",
                                                                f"predicted status ({self.pred_col})"), **kwargs)


def _status(df: pd.DataFrame, col: str, positive: Any, levels_ref: list[Any] | None) -> list[Any]:
    s = df[col]
    if s.isna().any():
        raise InputError(f"Status column '{col}' has {int(s.isna().sum())} missing values at {rows_text(df.index[s.isna()])}.")
    levels = group_levels(s)
    if levels_ref is not None:
        extra = [v for v in levels if v not in levels_ref]
        if extra:
            raise InputError(
                f"Predicted status column '{col}' has values {extra!r} that the true status does not use "
                f"({levels_ref!r}); a probability must be thresholded first (threshold fixed on training data)."
            )
        return levels_ref
    if len(levels) != 2:
        raise InputError(
            f"Status column '{col}' must hold two values (HER2-low and HER2-zero); got {len(levels)}: {levels[:6]!r}."
        )
    if positive is not None:
        if positive not in levels:
            raise InputError(f"positive={positive!r} does not occur in '{col}'; values: {levels!r}.")
        return [v for v in levels if v != positive] + [positive]
    return levels


def her2low_prognosis(
    df: pd.DataFrame,
    time: str,
    event: str,
    *,
    true_col: str,
    pred_col: str,
    covariates: Sequence[str] = (),
    positive: Any = None,
    categorical: Iterable[str] = (),
    stepwise: bool = True,
    direction: Literal["both", "forward", "backward"] = "both",
    keep_status: bool = True,
    horizons: Sequence[float] = (),
    horizon_labels: Sequence[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Her2LowResult:
    """KM, Cox and C-index of HER2-low vs HER2-zero by the true and the predicted status.

    Parameters
    ----------
    df : DataFrame of shape (n_cases, n_columns)
    time, event : str
    true_col, pred_col : str
        Binary status columns (same two values; e.g. 0/1 or "HER2-zero"/"HER2-low").
    covariates : sequence of str
        Clinical covariates of the multivariate models.
    positive : optional
        Value meaning HER2-low (default: the second sorted value; the first is the reference).
    categorical : iterable of str
        Numeric covariates to treat as categories.
    stepwise : bool
        Select covariates by AIC (``direction``); with ``keep_status`` the status always stays in.
    horizons, horizon_labels
        KM survival reported at these times.
    n_bootstrap, seed, alpha
        C-index bootstrap settings.

    Returns
    -------
    Her2LowResult
    """
    t, e = survival_arrays(df, time, event, require_events=True, purpose="a HER2-low survival analysis")
    check_columns(df, [true_col, pred_col], role="status column")
    order = _status(df, true_col, positive, None)
    _status(df, pred_col, positive, order)
    negative, pos = order
    data = df.copy()
    for col in (true_col, pred_col):
        data[col] = pd.Categorical(df[col], categories=order)
    covs = [c for c in covariates if c not in (true_col, pred_col)]
    cat = list(categorical)
    km = {}
    cox: dict[str, CoxResult] = {}
    steps: dict[str, StepwiseResult | None] = {}
    cidx: dict[str, ConcordanceResult] = {}
    for col in (true_col, pred_col):
        km[col] = kaplan_meier(data, time, event, col, order=order, horizons=horizons,
                               horizon_labels=horizon_labels, alpha=alpha)
        ref: Mapping[str, Any] = {col: negative}
        if stepwise and covs:
            sw = stepwise_cox(data, time, event, [col, *covs], direction=direction,
                              keep=[col] if keep_status else (), categorical=[col, *cat], reference=ref, alpha=alpha)
            steps[col] = sw
            model = sw.model if sw.model is not None else fit_cox(data, time, event, [col], categorical=[col], reference=ref)
        else:
            steps[col] = None
            model = fit_cox(data, time, event, [col, *covs], categorical=[col, *cat], reference=ref, alpha=alpha)
        cox[col] = model
        cidx[col] = concordance(t, e, model.predict_risk(data), n_bootstrap=n_bootstrap, seed=seed, alpha=alpha,
                                label=f"Cox with {col}")
    truth = (df[true_col] == pos).to_numpy()
    pred = (df[pred_col] == pos).to_numpy()
    acc = float((truth == pred).mean())
    pe = truth.mean() * pred.mean() + (1 - truth.mean()) * (1 - pred.mean())
    kappa = float((acc - pe) / (1 - pe)) if pe < 1 else np.nan
    return Her2LowResult(
        true_col, pred_col, negative, pos, km[true_col], km[pred_col], cox[true_col], cox[pred_col],
        cidx[true_col], cidx[pred_col], steps[true_col], steps[pred_col], {"accuracy": acc, "kappa": kappa},
    )
