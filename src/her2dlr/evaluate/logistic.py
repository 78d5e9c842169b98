"""Univariable and stepwise multivariable logistic analysis of clinical variables (seed 002).

:class:`UnivariableMultivariableSelector` is the scikit-learn transformer that runs the two
steps on encoded clinical variables (:class:`her2dlr.learn.clinical.ClinicalEncoder` output)
and keeps the result tables; :func:`fit_logit` is the one logistic regression fit it uses.

:func:`fit_logit` fits ``logit P(y = 1) = b0 + X b`` and never fails on the two classic
problems of small clinical tables:

* **Singular design.** Constant columns and columns that are an exact linear combination of
  the intercept and the columns before them (a full one-hot block, a duplicated column) are
  removed *before* fitting, in column order, and recorded with the names of the columns they
  are collinear with. Callers control which column goes by the order they pass.
* **Separation** (perfect or quasi-complete): the maximum-likelihood estimate does not exist.
  statsmodels then warns (``PerfectSeparationWarning``, ``ConvergenceWarning``,
  ``HessianInversionWarning``), raises (``PerfectSeparationError``, ``LinAlgError``) or
  returns absurd coefficients. Any of these, or a coefficient that moves the odds by more than
  ``exp(10)`` per standard deviation of its column, or a standard error over 50 per standard
  deviation, marks the fit as separated, and ``on_separation`` decides what happens:

  ``"firth"``
      Firth's penalized likelihood (Jeffreys prior; Firth 1993, Heinze & Schemper 2002,
      R's ``logistf``): finite estimates that are close to the MLE when it exists. Standard
      errors come from the inverse Fisher information at the estimate (Wald), not from
      ``logistf``'s profile penalized likelihood. For one binary covariate the estimate is the
      log odds ratio of the 2x2 table with 0.5 added to every cell.
  ``"l2"``
      A small ridge penalty ``l2_penalty / 2 * sum(theta_j ** 2)`` on the coefficients of the
      standardized columns (not the intercept); standard errors from the inverse penalized
      information, mapped back to the original scale. p-values are then approximate.
  ``"drop"``
      The column with the largest standardized coefficient is removed and the model refitted,
      until the fit is regular.

Everything that happened is kept in :attr:`LogitFit.dropped` and :attr:`LogitFit.notes`.
Maximum-likelihood fits are statsmodels' ``Logit(...).fit(method="newton")``, so ORs, Wald
confidence intervals and p-values equal statsmodels' own.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import special, stats
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted
from statsmodels.tools.sm_exceptions import (
    ConvergenceWarning,
    HessianInversionWarning,
    PerfectSeparationError,
    PerfectSeparationWarning,
)

from her2dlr.checks import check_choice, param_error
from her2dlr.errors import InputError

__all__ = ["INTERCEPT", "SEPARATION_FALLBACKS", "LogitFit", "UnivariableMultivariableSelector", "feature_source",
           "fit_logit"]

#: Allowed values of ``on_separation``.
SEPARATION_FALLBACKS = ("firth", "l2", "drop")
#: Name of the intercept in :attr:`LogitFit.params`.
INTERCEPT = "(intercept)"

_MAX_STD_COEF = 10.0  # |coef| * sd(x) above this: odds move by > e^10 per SD, i.e. separation
_MAX_STD_SE = 50.0  # se * sd(x) above this: the likelihood is flat along the column
_COLLINEAR_TOL = 1e-7  # relative norm of a column's residual below which it is collinear
_FLAGGING_WARNINGS = (PerfectSeparationWarning, ConvergenceWarning, HessianInversionWarning)
_STEP_COLUMNS = ["step", "action", "group", "p_value", "aic", "groups", "note"]


@dataclass(repr=False)
class LogitFit:
    """One fitted logistic regression with the design columns it could and could not estimate.

    Attributes
    ----------
    names : list of str
        The columns asked for, in order.
    params : Series
        Coefficients on the log-odds scale, indexed by ``"(intercept)"`` then the estimated
        columns.
    cov : DataFrame
        Covariance of ``params`` (inverse observed information; penalized for ``"l2"``).
    llf, llnull : float
        Log-likelihood (unpenalized, at ``params``) and that of the intercept-only model.
    n_obs : int
    method : {"mle", "firth", "l2"}
        How ``params`` were obtained.
    dropped : dict
        ``column -> reason`` for every asked-for column that is not in ``params``.
    notes : list of str
        Warnings raised by the fit and fallbacks taken, in words.
    """

    names: list[str]
    params: pd.Series
    cov: pd.DataFrame
    llf: float
    llnull: float
    n_obs: int
    method: Literal["mle", "firth", "l2"]
    dropped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def estimated(self) -> list[str]:
        """Columns with a coefficient (``names`` less ``dropped``)."""
        return [c for c in self.params.index if c != INTERCEPT]

    @property
    def bse(self) -> pd.Series:
        """Standard errors of :attr:`params`."""
        return pd.Series(np.sqrt(np.clip(np.diag(self.cov.to_numpy()), 0, None)), index=self.params.index)

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided Wald p-values (normal reference, as statsmodels' ``Logit``)."""
        z = self.params / self.bse
        return pd.Series(2 * stats.norm.sf(np.abs(z.to_numpy())), index=self.params.index)

    @property
    def aic(self) -> float:
        """``-2 llf + 2 (n_estimated + 1)``; for penalized fits the unpenalized llf at the estimate."""
        return -2.0 * self.llf + 2.0 * len(self.params)

    def wald_p(self, columns: Sequence[str]) -> float:
        """Joint Wald test that the coefficients of ``columns`` are all zero.

        Columns that were dropped are ignored; with one column this is the column's own
        p-value. Returns NaN when none of ``columns`` was estimated.
        """
        cols = [c for c in columns if c in self.params.index and c != INTERCEPT]
        if not cols:
            return float("nan")
        b = self.params[cols].to_numpy()
        v = self.cov.loc[cols, cols].to_numpy()
        try:
            chi2 = float(b @ np.linalg.solve(v, b))
        except np.linalg.LinAlgError:
            chi2 = float(b @ np.linalg.pinv(v) @ b)
        return float(stats.chi2.sf(chi2, df=len(cols)))

    def table(self, conf_level: float = 0.95) -> pd.DataFrame:
        """One row per asked-for column: coefficient, SE, odds ratio, Wald CI, p-value, note.

        Parameters
        ----------
        conf_level : float
            Confidence level of the interval ``exp(coef +/- z * se)``.

        Returns
        -------
        DataFrame of shape (len(names), 9)
            Columns ``feature, coef, se, odds_ratio, ci_low, ci_high, p_value, method, note``;
            dropped columns have NaN numbers and the reason as note.
        """
        z = stats.norm.ppf(0.5 + conf_level / 2)
        bse, pv = self.bse, self.pvalues
        rows = []
        for name in self.names:
            if name in self.dropped:
                rows.append({"feature": name, "coef": np.nan, "se": np.nan, "odds_ratio": np.nan, "ci_low": np.nan,
                             "ci_high": np.nan, "p_value": np.nan, "method": self.method, "note": self.dropped[name]})
                continue
            b, s = float(self.params[name]), float(bse[name])
            rows.append({"feature": name, "coef": b, "se": s, "odds_ratio": float(np.exp(b)),
                         "ci_low": float(np.exp(b - z * s)), "ci_high": float(np.exp(b + z * s)),
                         "p_value": float(pv[name]), "method": self.method,
                         "note": "" if self.method == "mle" else f"{self.method} fallback (separation)"})
        return pd.DataFrame(rows, columns=["feature", "coef", "se", "odds_ratio", "ci_low", "ci_high", "p_value",
                                           "method", "note"])


# ---------------------------------------------------------------------------- design checks
def _usable_columns(x: np.ndarray, names: Sequence[str]) -> tuple[list[int], dict[str, str]]:
    """Indices of the columns to estimate; constant and collinear ones are dropped with a reason.

    Columns are visited in order; a column is collinear when its residual, after projecting out
    the intercept and the columns kept before it, is below ``_COLLINEAR_TOL`` of its centred norm.
    """
    keep: list[int] = []
    dropped: dict[str, str] = {}
    basis = np.empty((x.shape[0], 0))
    for j, name in enumerate(names):
        v = x[:, j] - x[:, j].mean()
        norm0 = float(np.linalg.norm(v))
        if norm0 <= 1e-12 * max(1.0, float(np.abs(x[:, j]).max(initial=0.0))):
            dropped[name] = "constant in these cases"
            continue
        r = v - basis @ (basis.T @ v)
        r = r - basis @ (basis.T @ r)  # second pass: classical Gram-Schmidt loses orthogonality
        if np.linalg.norm(r) <= _COLLINEAR_TOL * norm0:
            coef, *_ = np.linalg.lstsq(x[:, keep] - x[:, keep].mean(axis=0), v, rcond=None)
            partners = [names[keep[i]] for i in np.flatnonzero(np.abs(coef) > 1e-6)]
            dropped[name] = "collinear with the intercept" + (f" and {', '.join(partners)}" if partners else "")
            continue
        basis = np.column_stack([basis, r / np.linalg.norm(r)])
        keep.append(j)
    return keep, dropped


def _log_likelihood(design: np.ndarray, y: np.ndarray, beta: np.ndarray) -> float:
    eta = design @ beta
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)))


def _looks_separated(params: np.ndarray, bse: np.ndarray, sd: np.ndarray) -> bool:
    if not (np.all(np.isfinite(params)) and np.all(np.isfinite(bse))):
        return True
    return bool(np.any(np.abs(params[1:]) * sd > _MAX_STD_COEF) or np.any(bse[1:] * sd > _MAX_STD_SE))


# ---------------------------------------------------------------------------- estimators
def _mle(
    design: np.ndarray, y: np.ndarray, max_iter: int
) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
    """statsmodels Newton fit; returns (params, cov, flags) with params None when it raised."""
    flags: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = sm.Logit(y, design).fit(method="newton", maxiter=max_iter, disp=0)
        except (PerfectSeparationError, np.linalg.LinAlgError, ValueError) as exc:
            return None, None, [f"{type(exc).__name__}: {exc}"]
        params = np.asarray(res.params, dtype=float)
        try:
            cov = np.asarray(res.cov_params(), dtype=float)
        except (np.linalg.LinAlgError, ValueError) as exc:
            return params, None, [f"{type(exc).__name__}: {exc}"]
    for w in caught:
        if issubclass(w.category, _FLAGGING_WARNINGS):
            flags.append(f"{w.category.__name__}: {str(w.message).splitlines()[0]}")
    if not res.mle_retvals.get("converged", True):
        flags.append("Newton iterations did not converge")
    return params, cov, list(dict.fromkeys(flags))


def _newton(
    design: np.ndarray, y: np.ndarray, objective, step_of, max_iter: int, max_step: float = 5.0, tol: float = 1e-9
) -> tuple[np.ndarray, bool]:
    """Damped Newton ascent of ``objective``; ``step_of(beta)`` gives the Newton step."""
    beta = np.zeros(design.shape[1])
    current = objective(beta)
    for _ in range(max_iter):
        step = step_of(beta)
        biggest = float(np.abs(step).max())
        if biggest > max_step:
            step = step * (max_step / biggest)
        for _halving in range(40):
            trial = objective(beta + step)
            if trial >= current - 1e-12:
                break
            step = step / 2
        beta, current = beta + step, trial
        if float(np.abs(step).max()) < tol:
            return beta, True
    return beta, False


def _firth(design: np.ndarray, y: np.ndarray, max_iter: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Firth-penalized logistic regression: maximize ``l(beta) + 0.5 log det I(beta)``."""

    def information(beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = special.expit(design @ beta)
        w = p * (1 - p)
        return design.T @ (design * w[:, None]), p

    def objective(beta: np.ndarray) -> float:
        info, _ = information(beta)
        sign, logdet = np.linalg.slogdet(info)
        return _log_likelihood(design, y, beta) + 0.5 * logdet if sign > 0 else -np.inf

    def step_of(beta: np.ndarray) -> np.ndarray:
        info, p = information(beta)
        inv = np.linalg.pinv(info)
        hat = np.einsum("ij,jk,ik->i", design, inv, design) * p * (1 - p)
        return inv @ (design.T @ (y - p + hat * (0.5 - p)))

    beta, converged = _newton(design, y, objective, step_of, max_iter)
    return beta, np.linalg.pinv(information(beta)[0]), converged


def _ridge(design: np.ndarray, y: np.ndarray, penalty: float, max_iter: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """L2-penalized fit on standardized columns, mapped back to the original scale."""
    mean = design[:, 1:].mean(axis=0)
    sd = design[:, 1:].std(axis=0)
    sd[sd == 0] = 1.0
    z = np.column_stack([np.ones(len(y)), (design[:, 1:] - mean) / sd])
    pen = np.full(z.shape[1], penalty)
    pen[0] = 0.0

    def objective(theta: np.ndarray) -> float:
        return _log_likelihood(z, y, theta) - 0.5 * float(np.sum(pen * theta**2))

    def hessian(theta: np.ndarray) -> np.ndarray:
        p = special.expit(z @ theta)
        return z.T @ (z * (p * (1 - p))[:, None]) + np.diag(pen)

    def step_of(theta: np.ndarray) -> np.ndarray:
        p = special.expit(z @ theta)
        return np.linalg.solve(hessian(theta), z.T @ (y - p) - pen * theta)

    theta, converged = _newton(z, y, objective, step_of, max_iter)
    back = np.eye(z.shape[1])  # beta = back @ theta
    back[0, 1:] = -mean / sd
    back[1:, 1:] = np.diag(1 / sd)
    return back @ theta, back @ np.linalg.inv(hessian(theta)) @ back.T, converged


# ---------------------------------------------------------------------------- public
def fit_logit(
    X: pd.DataFrame,
    y: np.ndarray | pd.Series,
    *,
    on_separation: Literal["firth", "l2", "drop"] = "firth",
    l2_penalty: float = 1.0,
    max_iter: int = 100,
) -> LogitFit:
    """Fit a logistic regression with an intercept, robust to separation and collinearity.

    Parameters
    ----------
    X : DataFrame of shape (n_cases, n_columns)
        Numeric design columns without the intercept, no missing values. The order matters:
        of a set of collinear columns the later ones are dropped.
    y : array-like of shape (n_cases,)
        Outcome coded 0/1.
    on_separation : {"firth", "l2", "drop"}
        What to do when the maximum-likelihood estimate does not exist (module docstring).
    l2_penalty : float
        Ridge penalty on the standardized coefficients for ``on_separation="l2"``.
    max_iter : int
        Newton iterations.

    Returns
    -------
    LogitFit

    Raises
    ------
    InputError
        Bad ``on_separation``, missing values in ``X``, or ``y`` not 0/1.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> x = pd.DataFrame({"palpable": [0] * 10 + [1] * 10})
    >>> y = np.array([0] * 8 + [1] * 2 + [0] * 3 + [1] * 7)
    >>> fit = fit_logit(x, y)
    >>> round(float(np.exp(fit.params["palpable"])), 4)  # (7 * 8) / (2 * 3)
    9.3333
    """
    check_choice("fit_logit", "on_separation", on_separation, SEPARATION_FALLBACKS)
    names = [str(c) for c in X.columns]
    x = X.to_numpy(dtype=float)
    yy = np.asarray(y, dtype=float).ravel()
    if np.isnan(x).any():
        bad = [names[j] for j in np.flatnonzero(np.isnan(x).any(axis=0))]
        raise InputError(f"fit_logit: column(s) {bad} have missing values; impute them first (ClinicalEncoder).")
    if not np.isin(yy, (0.0, 1.0)).all():
        raise InputError(f"fit_logit: the outcome must be coded 0/1; got values {sorted(set(yy.tolist()))[:5]}.")
    keep, dropped = _usable_columns(x, names)
    notes: list[str] = []
    p1 = float(np.clip(yy.mean(), 1e-12, 1 - 1e-12))
    llnull = float(len(yy) * (p1 * np.log(p1) + (1 - p1) * np.log(1 - p1)))
    while True:
        kept = [names[j] for j in keep]
        design = np.column_stack([np.ones(len(yy)), x[:, keep]])
        sd = x[:, keep].std(axis=0)
        params, cov, flags = _mle(design, yy, max_iter)
        separated = bool(flags) or params is None or cov is None
        if not separated:
            separated = _looks_separated(params, np.sqrt(np.abs(np.diag(cov))), sd)
            if separated:
                flags = ["implausibly large coefficient or standard error"]
        if not separated:
            method = "mle"
            break
        notes.append(f"maximum-likelihood fit of {kept or 'the intercept'} failed ({'; '.join(flags)})")
        if on_separation == "drop" and keep:
            if params is None or not np.all(np.isfinite(params)):
                params, _, _ = _ridge(design, yy, 1.0, max_iter)
            worst = int(np.argmax(np.abs(params[1:]) * sd))
            dropped[kept[worst]] = "dropped: separation"
            notes.append(f"dropped '{kept[worst]}' (separation) and refitted")
            del keep[worst]
            continue
        if on_separation == "l2":
            params, cov, converged = _ridge(design, yy, l2_penalty, max_iter)
            method = "l2"
        else:
            params, cov, converged = _firth(design, yy, max_iter)
            method = "firth"
        notes.append(f"used the {method} fallback" + ("" if converged else " (did not fully converge)"))
        break
    index = [INTERCEPT, *kept]
    return LogitFit(
        names=names,
        params=pd.Series(params, index=index),
        cov=pd.DataFrame(cov, index=index, columns=index),
        llf=_log_likelihood(design, yy, params),
        llnull=llnull,
        n_obs=len(yy),
        method=method,  # type: ignore[arg-type]
        dropped=dropped,
        notes=notes,
    )


# ---------------------------------------------------------------------------- selection
def feature_source(name: str) -> tuple[str, Literal["value", "level", "token"]]:
    """Original column of an encoded name and what the name is.

    ``"Age"`` -> ``("Age", "value")``; ``"Age=<missing>"`` and ``"Shape=oval"`` ->
    (column, ``"level"``); ``"Signs:palpable"`` -> ``("Signs", "token")``. The first ``=`` or
    ``:`` decides, so a clinical column whose own name holds ``=`` or ``:`` can be misread:
    pass ``groups`` to :class:`UnivariableMultivariableSelector` explicitly in that case.
    """
    eq, colon = name.find("="), name.find(":")
    if eq < 0 and colon < 0:
        return name, "value"
    if colon < 0 or 0 <= eq < colon:
        return name[:eq], "level"
    return name[:colon], "token"


class UnivariableMultivariableSelector(SelectorMixin, BaseEstimator):
    """Seed 002's clinical selection: univariable, then stepwise multivariable logistic regression.

    1. **Univariable.** Each encoded variable alone: ``Logit(y ~ 1 + x)`` (statsmodels), odds
       ratio, Wald 95% CI and p-value. A *group* (below) passes when its p-value is below
       ``alpha_uni``; a group of several columns is tested jointly (Wald test of all its
       columns in one model), a one-column group by its own p-value. If no group passes,
       ``fallback`` decides: ``"smallest_p"`` (default) carries on with the group of smallest
       p, so a classifier downstream always has an input; ``"all"`` carries on with every
       group; ``"none"`` selects nothing.
    2. **Multivariable.** All passing groups in one logistic regression, then stepwise:

       - ``criterion="p"``: ``"backward"`` (default) repeatedly removes the group with the
         largest (joint Wald) p-value while it is >= ``alpha_remove`` (default
         ``alpha_multi``); ``"forward"`` starts empty and adds the group with the smallest
         p-value in the enlarged model while it is < ``alpha_multi``; ``"both"`` is forward
         with a backward removal pass after every addition (a state met twice stops it).
       - ``criterion="aic"``: the same moves, each time the one that lowers AIC most, until
         none lowers it (as R's ``step``); the alphas are then not used for the path.

       A group none of whose columns can be estimated next to the others (collinear) leaves
       first. If the path ends empty, ``fallback="smallest_p"``/``"all"`` keeps the candidate
       group of smallest univariable p.

    **Groups.** With ``grouping="categorical"`` (default) the one-hot levels of a categorical
    column form one group, and a numeric or ordinal column forms one with its missing
    indicator: they enter and leave together, since a level's OR only means something against
    the other levels. Values of a multi-valued column (``Signs:palpable``,
    ``Signs:skin retraction``) are separate findings and stay separate variables.
    ``grouping="column"`` also groups those; ``grouping="none"`` treats every encoded column
    on its own. Groups come from the names (:func:`feature_source`) unless ``groups`` maps
    names to groups explicitly.

    **Collinearity and separation.** Models are fitted by
    :func:`her2dlr.evaluate.logistic.fit_logit`: constant and collinear columns are set
    aside before fitting (within a full one-hot group the most frequent level goes, i.e.
    becomes the reference), and perfect or quasi-complete separation triggers
    ``on_separation`` (``"firth"`` by default: Firth's penalized likelihood; ``"l2"``: a small
    ridge penalty; ``"drop"``: remove the separating column). Firth is the default because a
    separating variable is usually the strongest one: dropping it discards the signal, and a
    fixed ridge penalty makes its OR depend on the penalty. Every such event is in the
    ``note`` column of the tables and in ``notes_``.

    Parameters
    ----------
    alpha_uni : float
        Univariable p-value threshold (default 0.05).
    alpha_multi : float
        Multivariable p-value threshold to enter / stay (default 0.05).
    direction : {"backward", "forward", "both"}
    criterion : {"p", "aic"}
    grouping : {"categorical", "column", "none"}
    groups : dict, optional
        ``encoded name -> group``; names left out are their own group. Overrides ``grouping``.
    on_separation : {"firth", "l2", "drop"}
    l2_penalty : float
        Ridge penalty for ``on_separation="l2"`` (on standardized coefficients).
    fallback : {"smallest_p", "all", "none"}
    alpha_remove : float, optional
        Removal threshold of ``criterion="p"`` (default ``alpha_multi``).
    conf_level : float
        Level of the odds-ratio confidence intervals (default 0.95).
    max_steps : int
        Bound on the number of stepwise moves.

    Attributes
    ----------
    univariable_ : DataFrame
        One row per encoded variable: ``feature, group, mean_neg, mean_pos, coef, se,
        odds_ratio, ci_low, ci_high, p_value, group_p, passed, method, note`` (``mean_*``:
        mean of the variable in each class, a proportion for 0/1 columns).
    multivariable_ : DataFrame
        The final model, one row per column of the selected groups (same columns, without
        the class means; ``group_p`` is the group's joint Wald p-value in that model).
    multivariable_fit_ : LogitFit or None
        The final model itself (intercept included), e.g. for a nomogram.
    steps_ : DataFrame
        The stepwise path: ``step, action ("start", "+", "-", "fallback"), group, p_value
        (of the group in the model it entered or left), aic (after the move), groups, note``.
    groups_ : dict
        ``encoded name -> group``.
    candidate_groups_, selected_groups_ : list of str
        Groups that passed the univariable step / are in the final model.
    selected_features_ : list of str
        Encoded columns kept (all columns of the selected groups, in input order).
    classes_ : ndarray of shape (2,)
        The two outcome values; the second is the event whose odds are modelled.
    notes_ : list of str
        Fallbacks taken, in words.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 200)
    >>> X = pd.DataFrame({"marker": y * 1.5 + rng.normal(size=200), "noise": rng.normal(size=200)})
    >>> sel = UnivariableMultivariableSelector().fit(X, y)
    >>> sel.selected_features_
    ['marker']
    """

    _options: ClassVar[dict[str, tuple[str, ...]]] = {
        "direction": ("backward", "forward", "both"),
        "criterion": ("p", "aic"),
        "grouping": ("categorical", "column", "none"),
        "on_separation": SEPARATION_FALLBACKS,
        "fallback": ("smallest_p", "all", "none"),
    }

    def __init__(
        self,
        *,
        alpha_uni: float = 0.05,
        alpha_multi: float = 0.05,
        direction: Literal["backward", "forward", "both"] = "backward",
        criterion: Literal["p", "aic"] = "p",
        grouping: Literal["categorical", "column", "none"] = "categorical",
        groups: Mapping[str, str] | None = None,
        on_separation: Literal["firth", "l2", "drop"] = "firth",
        l2_penalty: float = 1.0,
        fallback: Literal["smallest_p", "all", "none"] = "smallest_p",
        alpha_remove: float | None = None,
        conf_level: float = 0.95,
        max_steps: int = 200,
    ) -> None:
        self.alpha_uni = alpha_uni
        self.alpha_multi = alpha_multi
        self.direction = direction
        self.criterion = criterion
        self.grouping = grouping
        self.groups = groups
        self.on_separation = on_separation
        self.l2_penalty = l2_penalty
        self.fallback = fallback
        self.alpha_remove = alpha_remove
        self.conf_level = conf_level
        self.max_steps = max_steps

    # ------------------------------------------------------------------ helpers
    def _group_of(self, name: str) -> str:
        if self.groups is not None:
            return str(self.groups.get(name, name))
        if self.grouping == "none":
            return name
        column, what = feature_source(name)
        if what == "token" and self.grouping == "categorical":
            return name
        return column

    def _fit(self, X: pd.DataFrame, y: np.ndarray, columns: Sequence[str]) -> LogitFit:
        return fit_logit(X[list(columns)], y, on_separation=self.on_separation, l2_penalty=self.l2_penalty)

    def _design_columns(self, groups: Sequence[str]) -> list[str]:
        """Columns of ``groups`` in group order; inside a group the most frequent 0/1 column last,
        so that it is the one set aside when the group is a full one-hot block."""
        return [c for g in groups for c in self._members[g]]

    def _check_y(self, y: Any, n: int) -> np.ndarray:
        yy = np.asarray(y).ravel()
        if len(yy) != n:
            raise InputError(f"UnivariableMultivariableSelector.fit: X has {n} rows but y has {len(yy)} values.")
        if pd.isna(yy).any():
            raise InputError("UnivariableMultivariableSelector.fit: y has missing values.")
        classes = np.unique(yy)
        if len(classes) != 2:
            values = classes.tolist()
            what = f"only class {values[0]!r}" if len(values) == 1 else f"{len(values)} classes {values[:5]}"
            raise InputError(
                f"UnivariableMultivariableSelector needs a binary outcome in the training cases; got {what} "
                f"({len(yy)} cases). A one-class training fold cannot be analysed."
            )
        self.classes_ = classes
        return (yy == classes[1]).astype(float)

    # ------------------------------------------------------------------ steps
    def _univariable(self, X: pd.DataFrame, y: np.ndarray) -> pd.DataFrame:
        rows = []
        for name in X.columns:
            fit = self._fit(X, y, [name])
            rows.append(fit.table(self.conf_level).iloc[0].to_dict())
        table = pd.DataFrame(rows)
        table.insert(1, "group", [self.groups_[c] for c in X.columns])
        pos = y == 1
        table.insert(2, "mean_neg", X.loc[~pos].mean().to_numpy())
        table.insert(3, "mean_pos", X.loc[pos].mean().to_numpy())
        group_p: dict[str, float] = {}
        for g, members in self._members.items():
            if len(members) == 1:
                group_p[g] = float(table.loc[table["feature"] == members[0], "p_value"].iloc[0])
            else:
                group_p[g] = self._fit(X, y, members).wald_p(members)
        table.insert(table.columns.get_loc("p_value") + 1, "group_p", table["group"].map(group_p).astype(float))
        table.insert(table.columns.get_loc("group_p") + 1, "passed", table["group_p"] < self.alpha_uni)
        self._group_p_uni = group_p
        return table

    def _stepwise(self, X: pd.DataFrame, y: np.ndarray, candidates: list[str]) -> list[str]:
        cache: dict[frozenset[str], LogitFit] = {}
        order = {g: i for i, g in enumerate(candidates)}
        p1 = float(y.mean())
        null_aic = -2.0 * len(y) * (p1 * math.log(p1) + (1 - p1) * math.log(1 - p1)) + 2.0

        def ordered(groups: frozenset[str]) -> list[str]:
            return sorted(groups, key=order.__getitem__)

        def fit(groups: frozenset[str]) -> LogitFit:
            if groups not in cache:
                cache[groups] = self._fit(X, y, self._design_columns(ordered(groups)))
            return cache[groups]

        def aic(groups: frozenset[str]) -> float:
            return fit(groups).aic if groups else null_aic

        def p_in(groups: frozenset[str], g: str) -> float:
            p = fit(groups).wald_p(self._members[g])
            return 1.0 if math.isnan(p) else p  # a group with nothing estimable is the first to go

        steps: list[dict[str, Any]] = []

        def record(action: str, group: str, groups: frozenset[str], p: float = float("nan"),
                   tested_in: frozenset[str] | None = None) -> None:
            note = ""
            if tested_in is not None and math.isnan(fit(tested_in).wald_p(self._members[group])):
                p = float("nan")
                reasons = {fit(tested_in).dropped.get(c, "") for c in self._members[group]}
                note = "nothing estimable: " + "; ".join(sorted(r for r in reasons if r))
            steps.append({"step": len(steps), "action": action, "group": group, "p_value": p, "aic": aic(groups),
                          "groups": " + ".join(ordered(groups)), "note": note})

        alpha_out = self.alpha_multi if self.alpha_remove is None else self.alpha_remove
        current = frozenset(candidates) if self.direction == "backward" else frozenset()
        record("start", "", current)
        seen = {current}
        for _ in range(self.max_steps):
            if self.criterion == "aic":
                move = _aic_move(self.direction, current, candidates, seen, aic, p_in, order)
            else:
                move = _p_move(self.direction, current, candidates, seen, p_in, order, alpha_out, self.alpha_multi)
            if move is None:
                break
            _, action, g, state, p = move
            record(action, g, state, p, tested_in=current if action == "-" else state)
            current = state
            seen.add(current)
        else:
            self.notes_.append(f"stepwise selection stopped after max_steps={self.max_steps} moves")
        for g in ordered(current):  # AIC never removes a group it cannot estimate (collinear): do it here
            if math.isnan(fit(current).wald_p(self._members[g])):
                record("-", g, current - {g}, tested_in=current)
                current = current - {g}
        selected = ordered(current)
        if not selected and candidates and self.fallback != "none":
            best = min(candidates, key=lambda g: (self._group_p_uni[g], order[g]))
            self.notes_.append(
                f"no group stayed in the multivariable model; kept '{best}', the candidate with the smallest "
                "univariable p (fallback)"
            )
            selected = [best]
            record("fallback", best, frozenset(selected))
        self.steps_ = pd.DataFrame(steps, columns=_STEP_COLUMNS)
        self.multivariable_fit_ = cache.get(frozenset(selected)) or (
            self._fit(X, y, self._design_columns(selected)) if selected else None
        )
        return selected

    # ------------------------------------------------------------------ sklearn API
    def fit(self, X: pd.DataFrame | np.ndarray, y: Any) -> UnivariableMultivariableSelector:
        """Run the univariable and the multivariable step on the training cases.

        Parameters
        ----------
        X : DataFrame or array of shape (n_cases, n_features)
            Encoded clinical variables (e.g. :class:`ClinicalEncoder` output), no missing values.
        y : array-like of shape (n_cases,)
            Binary outcome (any two values; the larger one is the event).

        Returns
        -------
        self
        """
        for name, options in self._options.items():
            check_choice(self, name, getattr(self, name), options)
        for name in ("alpha_uni", "alpha_multi", "alpha_remove", "conf_level"):
            value = getattr(self, name)
            if value is None and name == "alpha_remove":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value < 1:
                raise param_error(self, name, "a float in (0, 1)", value)
        if isinstance(X, pd.DataFrame):
            names = [str(c) for c in X.columns]
            self.feature_names_in_ = np.asarray(names, dtype=object)
            try:
                frame = X.set_axis(names, axis=1).astype(float)
            except (TypeError, ValueError) as exc:
                raise InputError(
                    f"UnivariableMultivariableSelector needs numeric columns (encode them with ClinicalEncoder): {exc}"
                ) from None
        else:
            arr = np.asarray(X, dtype=float)
            if arr.ndim != 2:
                raise InputError(f"UnivariableMultivariableSelector needs a 2-D X; got shape {arr.shape}.")
            names = [f"x{i}" for i in range(arr.shape[1])]
            frame = pd.DataFrame(arr, columns=names)
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        frame = frame.reset_index(drop=True)
        self.n_features_in_ = len(names)
        if not names:
            raise InputError("UnivariableMultivariableSelector got no variables (X has no columns).")
        nan_cols = [c for c in names if frame[c].isna().any()]
        if nan_cols:
            raise InputError(
                f"UnivariableMultivariableSelector: column(s) {nan_cols[:5]} have missing values; impute them first "
                "(ClinicalEncoder does)."
            )
        yy = self._check_y(y, len(frame))
        self.notes_: list[str] = []
        self.groups_ = {c: self._group_of(c) for c in names}
        members: dict[str, list[str]] = {}
        for c in names:
            members.setdefault(self.groups_[c], []).append(c)
        means = frame.mean()
        for g, cols in members.items():  # most frequent 0/1 column last: the implicit reference
            binary = [c for c in cols if frame[c].isin((0.0, 1.0)).all()]
            members[g] = [c for c in cols if c not in binary] + sorted(binary, key=lambda c: (means[c], -cols.index(c)))
        self._members = members

        self.univariable_ = self._univariable(frame, yy)
        group_order = list(members)
        candidates = [g for g in group_order if self._group_p_uni[g] < self.alpha_uni]
        if not candidates:
            estimable = [g for g in group_order if not math.isnan(self._group_p_uni[g])]
            if self.fallback == "all":
                candidates = estimable
            elif self.fallback == "smallest_p" and estimable:
                candidates = [min(estimable, key=lambda g: (self._group_p_uni[g], group_order.index(g)))]
            self.notes_.append(
                f"no variable had univariable p < {self.alpha_uni}; fallback '{self.fallback}' carries on with "
                f"{candidates or 'nothing'}"
            )
        self.candidate_groups_ = candidates
        self.notes_ += [f"univariable '{r.feature}': {r.note}" for r in self.univariable_.itertuples() if r.note]
        selected = self._stepwise(frame, yy, candidates) if candidates else []
        if not candidates:
            self.steps_ = pd.DataFrame(columns=_STEP_COLUMNS)
            self.multivariable_fit_ = None
        self.selected_groups_ = selected
        chosen = {c for g in selected for c in members[g]}
        self.selected_features_ = [c for c in names if c in chosen]
        self.support_ = np.array([c in chosen for c in names])
        self.multivariable_ = self._multivariable_table()
        return self

    def _multivariable_table(self) -> pd.DataFrame:
        cols = ["feature", "group", "coef", "se", "odds_ratio", "ci_low", "ci_high", "p_value", "group_p", "method", "note"]
        fit = self.multivariable_fit_
        if fit is None:
            return pd.DataFrame(columns=cols)
        table = fit.table(self.conf_level)
        table.insert(1, "group", table["feature"].map(self.groups_))
        gp = {g: fit.wald_p(self._members[g]) for g in self.selected_groups_}
        table.insert(table.columns.get_loc("p_value") + 1, "group_p", table["group"].map(gp).astype(float))
        for note in fit.notes:
            self.notes_.append(f"multivariable model: {note}")
        return table[cols]

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_

    def summary(self) -> pd.DataFrame:
        """Univariable and final multivariable results side by side, one row per encoded variable.

        Returns
        -------
        DataFrame
            ``feature, group, uni_or, uni_ci_low, uni_ci_high, uni_p, multi_or, multi_ci_low,
            multi_ci_high, multi_p, selected`` (multivariable columns NaN for variables left out).
        """
        check_is_fitted(self, "support_")
        uni = self.univariable_[["feature", "group", "odds_ratio", "ci_low", "ci_high", "p_value"]].rename(
            columns={"odds_ratio": "uni_or", "ci_low": "uni_ci_low", "ci_high": "uni_ci_high", "p_value": "uni_p"}
        )
        multi = self.multivariable_[["feature", "odds_ratio", "ci_low", "ci_high", "p_value"]].rename(
            columns={"odds_ratio": "multi_or", "ci_low": "multi_ci_low", "ci_high": "multi_ci_high", "p_value": "multi_p"}
        )
        out = uni.merge(multi, on="feature", how="left")
        out["selected"] = out["feature"].isin(self.selected_features_)
        return out


_Move = tuple[float, str, str, frozenset[str], float]  # (score, action, group, new state, p)


def _aic_move(direction: str, current: frozenset[str], candidates: list[str], seen: set[frozenset[str]],
              aic: Any, p_in: Any, order: dict[str, int]) -> _Move | None:
    """The step that lowers the AIC most (removal or addition, as ``direction`` allows), or None."""
    moves: list[_Move] = []
    if direction in ("backward", "both"):
        moves += [(aic(current - {g}), "-", g, current - {g}, p_in(current, g)) for g in current]
    if direction in ("forward", "both"):
        moves += [(aic(current | {g}), "+", g, current | {g}, p_in(current | {g}, g))
                  for g in candidates if g not in current]
    moves = [m for m in moves if m[0] < aic(current) - 1e-7 and m[3] not in seen]
    return min(moves, key=lambda m: (m[0], order[m[2]])) if moves else None


def _p_move(direction: str, current: frozenset[str], candidates: list[str], seen: set[frozenset[str]],
            p_in: Any, order: dict[str, int], alpha_out: float, alpha_in: float) -> _Move | None:
    """Remove the least significant group (p >= ``alpha_out``), else add the most significant one (p < ``alpha_in``)."""
    if direction in ("backward", "both") and current:
        worst = max(current, key=lambda g: (p_in(current, g), order[g]))
        p = p_in(current, worst)
        if p >= alpha_out and (current - {worst}) not in seen:
            return (p, "-", worst, current - {worst}, p)
    if direction in ("forward", "both"):
        trials = [(p_in(current | {g}, g), g) for g in candidates if g not in current]
        trials = [t for t in trials if t[0] < alpha_in and (current | {t[1]}) not in seen]
        if trials:
            p, g = min(trials, key=lambda t: (t[0], order[t[1]]))
            return (p, "+", g, current | {g}, p)
    return None
