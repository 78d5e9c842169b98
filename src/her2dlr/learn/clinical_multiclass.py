"""The clinical model of a label with more than two classes (HER2-zero / HER2-low / HER2-positive).

The binary clinical model (:mod:`her2dlr.learn.clinical`, seed 002) encodes the clinical columns
with :class:`~her2dlr.learn.clinical.ClinicalEncoder`, keeps the variables of a univariable
then stepwise multivariable *binary* logistic regression
(:class:`~her2dlr.evaluate.logistic.UnivariableMultivariableSelector`), and hands them to a
classifier. With three classes the encoder is the same (it never reads the label) and the
selection is its multinomial form, :class:`MultinomialStepwiseSelector`:

1. **Univariable.** Each group of encoded columns (a categorical column's levels together, a
   numeric column with its missing indicator, as in the binary selector) alone in a multinomial
   logistic regression, against the intercept-only model: likelihood-ratio test with
   ``(k - 1) x (rank of the group's centred columns)`` degrees of freedom (a full one-hot block
   counts one level fewer). Groups with p < ``alpha_uni`` go on
   (``fallback`` when none does).
2. **Multivariable.** The passing groups in one multinomial regression, then stepwise by the
   likelihood-ratio test of each group in the current model: ``backward`` removes the group of
   largest p while p >= ``alpha_multi``; ``forward`` adds the one of smallest p while
   p < ``alpha_multi``; ``both`` is forward with a removal pass after every addition.

Every fit is scikit-learn's multinomial :class:`~sklearn.linear_model.LogisticRegression` (Newton) on
standardised columns with a weak ridge penalty (``C``, default 100): a separating variable (common
in small clinical tables) then has a finite, large likelihood gain instead of a fit that never
converges, so the tests are slightly conservative; with a large ``C`` the statistics are those of
an unpenalised multinomial regression (statsmodels' ``MNLogit`` likelihood-ratio test, checked in
the tests). The classifier after the selection is the zoo's (``lr`` is multinomial for three
classes), tuned in-fold by the macro one-vs-rest AUC like any multi-class model
(:mod:`her2dlr.learn.multiclass_cv`).

:func:`multiclass_label_proxies` is the label-proxy check (:mod:`her2dlr.evaluate.proxies`) of a
multi-class label: each column against each class one-vs-rest, the most separating class kept.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import SelectorMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from her2dlr.checks import check_choice, param_error
from her2dlr.errors import InputError
from her2dlr.evaluate.logistic import feature_source

__all__ = ["MultinomialStepwiseSelector", "multiclass_label_proxies"]

_STEP_COLUMNS = ["step", "action", "group", "p_value", "groups"]


class MultinomialStepwiseSelector(SelectorMixin, BaseEstimator):
    """Univariable, then stepwise multivariable multinomial logistic regression (likelihood-ratio tests).

    The multi-class form of seed 002's clinical selection (module docstring).

    Parameters
    ----------
    alpha_uni : float
        Univariable p-value threshold (default 0.05).
    alpha_multi : float
        Multivariable p-value threshold to enter / stay (default 0.05).
    direction : {"backward", "forward", "both"}
    fallback : {"smallest_p", "all", "none"}
        When no group passes the univariable step (or none stays in the multivariable model):
        carry on with the group of smallest univariable p (default), with every group, or select
        nothing.
    C : float
        Inverse ridge penalty of every fit, on standardised columns (default 100).
    max_steps : int
        Bound on the number of stepwise moves.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    groups_ : dict
        ``encoded name -> group`` (a categorical column's levels and a numeric column's missing
        indicator share their column's group; each value of a multi-valued column is its own).
    univariable_ : DataFrame
        One row per group: ``group, n_columns, df, lr_stat, p_value, passed``.
    multivariable_ : DataFrame
        The likelihood-ratio test of every selected group in the final model: ``group, p_value``.
    steps_ : DataFrame
        The stepwise path: ``step, action ("start", "+", "-", "fallback"), group, p_value, groups``.
    candidate_groups_, selected_groups_ : list of str
    selected_features_ : list of str
        Encoded columns kept, in input order.
    notes_ : list of str
        Fallbacks taken, in words.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 240)
    >>> X = pd.DataFrame({"marker": y + rng.normal(size=240), "noise": rng.normal(size=240)})
    >>> MultinomialStepwiseSelector().fit(X, y).selected_features_
    ['marker']
    """

    _multiclass = True
    _options: ClassVar[dict[str, tuple[str, ...]]] = {
        "direction": ("backward", "forward", "both"),
        "fallback": ("smallest_p", "all", "none"),
    }

    def __init__(self, *, alpha_uni: float = 0.05, alpha_multi: float = 0.05,
                 direction: Literal["backward", "forward", "both"] = "backward",
                 fallback: Literal["smallest_p", "all", "none"] = "smallest_p", C: float = 100.0,
                 max_steps: int = 200) -> None:
        self.alpha_uni = alpha_uni
        self.alpha_multi = alpha_multi
        self.direction = direction
        self.fallback = fallback
        self.C = C
        self.max_steps = max_steps

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        for name, options in self._options.items():
            check_choice(self, name, getattr(self, name), options)
        for name in ("alpha_uni", "alpha_multi"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value < 1:
                raise param_error(self, name, "a float in (0, 1)", value)
        if isinstance(self.C, bool) or not isinstance(self.C, (int, float, np.number)) or not self.C > 0:
            raise param_error(self, "C", "a float > 0", self.C)

    def _frame(self, X: Any) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            names = [str(c) for c in X.columns]
            self.feature_names_in_ = np.asarray(names, dtype=object)
            try:
                frame = X.set_axis(names, axis=1).astype(float).reset_index(drop=True)
            except (TypeError, ValueError) as exc:
                raise InputError(f"MultinomialStepwiseSelector needs numeric columns (encode them with "
                                 f"ClinicalEncoder): {exc}") from None
        else:
            arr = np.asarray(X, dtype=float)
            if arr.ndim != 2:
                raise InputError(f"MultinomialStepwiseSelector needs a 2-D X; got shape {arr.shape}.")
            frame = pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
            if hasattr(self, "feature_names_in_"):  # names of an earlier fit on a DataFrame
                del self.feature_names_in_
        if frame.shape[1] == 0:
            raise InputError("MultinomialStepwiseSelector got no variables (X has no columns).")
        nan_cols = [c for c in frame.columns if frame[c].isna().any()]
        if nan_cols:
            raise InputError(f"MultinomialStepwiseSelector: column(s) {nan_cols[:5]} have missing values; impute them "
                             "first (ClinicalEncoder does).")
        self.n_features_in_ = frame.shape[1]
        return frame

    # ------------------------------------------------------------------ fits
    def _log_likelihood(self, design: np.ndarray, y: np.ndarray, groups: frozenset[str]) -> float:
        """Log-likelihood of the multinomial regression on the columns of ``groups`` (cached)."""
        if groups in self._ll:
            return self._ll[groups]
        if not groups:
            counts = np.bincount(y)
            counts = counts[counts > 0]
            ll = float(np.sum(counts * np.log(counts / len(y))))
        else:
            cols = [self._column_index[c] for g in sorted(groups) for c in self._members[g]]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = LogisticRegression(C=self.C, solver="newton-cholesky", max_iter=200).fit(design[:, cols], y)
            proba = np.clip(model.predict_proba(design[:, cols])[np.arange(len(y)), y], 1e-300, 1.0)
            ll = float(np.sum(np.log(proba)))
        self._ll[groups] = ll
        return ll

    def _lr_p(self, design: np.ndarray, y: np.ndarray, larger: frozenset[str], group: str) -> float:
        """Likelihood-ratio p-value of ``group`` in the model of ``larger`` (which holds it)."""
        stat = 2.0 * (self._log_likelihood(design, y, larger) - self._log_likelihood(design, y, larger - {group}))
        return float(stats.chi2.sf(max(stat, 0.0), max((self._n_classes - 1) * self._rank[group], 1)))

    # ------------------------------------------------------------------ steps
    def _univariable(self, design: np.ndarray, y: np.ndarray) -> pd.DataFrame:
        rows = []
        for g, members in self._members.items():
            stat = 2.0 * (self._log_likelihood(design, y, frozenset({g})) - self._log_likelihood(design, y, frozenset()))
            df = max((self._n_classes - 1) * self._rank[g], 1)
            p = float(stats.chi2.sf(max(stat, 0.0), df))
            rows.append({"group": g, "n_columns": len(members), "df": df, "lr_stat": stat, "p_value": p,
                         "passed": p < self.alpha_uni})
        return pd.DataFrame(rows, columns=["group", "n_columns", "df", "lr_stat", "p_value", "passed"])

    def _move(self, design: np.ndarray, y: np.ndarray, current: frozenset[str], candidates: list[str],
              seen: set[frozenset[str]]) -> tuple[str, str, frozenset[str], float] | None:
        """The next stepwise move ``(action, group, new state, p)``, or None."""
        order = {g: i for i, g in enumerate(candidates)}
        if self.direction in ("backward", "both") and current:
            p_of = {g: self._lr_p(design, y, current, g) for g in current}
            worst = max(current, key=lambda g: (p_of[g], order[g]))
            if p_of[worst] >= self.alpha_multi and (current - {worst}) not in seen:
                return "-", worst, current - {worst}, p_of[worst]
        if self.direction in ("forward", "both"):
            trials = [(self._lr_p(design, y, current | {g}, g), order[g], g) for g in candidates if g not in current]
            trials = [t for t in trials if t[0] < self.alpha_multi and (current | {t[2]}) not in seen]
            if trials:
                p, _, g = min(trials)
                return "+", g, current | {g}, p
        return None

    def _stepwise(self, design: np.ndarray, y: np.ndarray, candidates: list[str]) -> list[str]:
        order = {g: i for i, g in enumerate(candidates)}
        current = frozenset(candidates) if self.direction == "backward" else frozenset()
        steps = [{"step": 0, "action": "start", "group": "", "p_value": float("nan"),
                  "groups": " + ".join(sorted(current, key=order.__getitem__))}]
        seen = {current}
        for _ in range(self.max_steps):
            move = self._move(design, y, current, candidates, seen)
            if move is None:
                break
            action, g, current, p = move
            seen.add(current)
            steps.append({"step": len(steps), "action": action, "group": g, "p_value": p,
                          "groups": " + ".join(sorted(current, key=order.__getitem__))})
        else:
            self.notes_.append(f"stepwise selection stopped after max_steps={self.max_steps} moves")
        selected = sorted(current, key=order.__getitem__)
        if not selected and candidates and self.fallback != "none":
            best = min(candidates, key=lambda g: (self._p_uni[g], order[g]))
            self.notes_.append(f"no group stayed in the multivariable model; kept '{best}', the candidate with the "
                               "smallest univariable p (fallback)")
            selected = [best]
            steps.append({"step": len(steps), "action": "fallback", "group": best, "p_value": self._p_uni[best],
                          "groups": best})
        self.steps_ = pd.DataFrame(steps, columns=_STEP_COLUMNS)
        return selected

    # ------------------------------------------------------------------ sklearn API
    def fit(self, X: pd.DataFrame | np.ndarray, y: Any) -> MultinomialStepwiseSelector:
        """Run the univariable and the stepwise multivariable step on the training cases.

        Parameters
        ----------
        X : DataFrame or array of shape (n_cases, n_features)
            Encoded clinical variables (e.g. :class:`~her2dlr.learn.clinical.ClinicalEncoder`
            output), no missing values.
        y : array-like of shape (n_cases,)
            Class of every case (two or more classes).

        Returns
        -------
        self
        """
        self._check_params()
        frame = self._frame(X)
        yy = np.asarray(y).ravel()
        if len(yy) != len(frame):
            raise InputError(f"MultinomialStepwiseSelector.fit: X has {len(frame)} rows but y has {len(yy)} values.")
        if pd.isna(yy).any():
            raise InputError("MultinomialStepwiseSelector.fit: y has missing values.")
        self.classes_, codes = np.unique(yy, return_inverse=True)
        if len(self.classes_) < 2:
            raise InputError(f"MultinomialStepwiseSelector needs at least two classes in the training cases; got only "
                             f"{self.classes_.tolist()} ({len(yy)} cases).")
        self._n_classes = len(self.classes_)
        names = list(frame.columns)
        self.groups_ = {c: _group_of(c) for c in names}
        members: dict[str, list[str]] = {}
        for c in names:
            members.setdefault(self.groups_[c], []).append(c)
        self._members = members
        self._column_index = {c: i for i, c in enumerate(names)}
        sd = frame.std(ddof=0).to_numpy()
        design = (frame.to_numpy() - frame.mean().to_numpy()) / np.where(sd > 0, sd, 1.0)
        # a full one-hot block, centred, has one column fewer of information: degrees of freedom by rank
        self._rank = {g: int(np.linalg.matrix_rank(design[:, [self._column_index[c] for c in cols]]))
                      for g, cols in members.items()}
        self._ll: dict[frozenset[str], float] = {}
        self.notes_: list[str] = []
        self.univariable_ = self._univariable(design, codes)
        self._p_uni = dict(zip(self.univariable_["group"], self.univariable_["p_value"]))
        groups = list(members)
        candidates = [g for g in groups if self._p_uni[g] < self.alpha_uni]
        if not candidates:
            if self.fallback == "all":
                candidates = groups
            elif self.fallback == "smallest_p":
                candidates = [min(groups, key=lambda g: (self._p_uni[g], groups.index(g)))]
            self.notes_.append(f"no variable had univariable p < {self.alpha_uni}; fallback '{self.fallback}' carries "
                               f"on with {candidates or 'nothing'}")
        self.candidate_groups_ = candidates
        if candidates:
            selected = self._stepwise(design, codes, candidates)
        else:
            selected, self.steps_ = [], pd.DataFrame(columns=_STEP_COLUMNS)
        self.selected_groups_ = selected
        chosen = {c for g in selected for c in members[g]}
        self.selected_features_ = [c for c in names if c in chosen]
        self.support_ = np.array([c in chosen for c in names])
        final = frozenset(selected)
        self.multivariable_ = pd.DataFrame({"group": selected, "p_value": [self._lr_p(design, codes, final, g)
                                                                           for g in selected]})
        del self._ll
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_


def _group_of(name: str) -> str:
    """A categorical column's levels and a numeric column's missing indicator go with their column; each
    value of a multi-valued column is its own finding (the binary selector's default grouping)."""
    column, what = feature_source(name)
    return name if what == "token" else column


def multiclass_label_proxies(table: pd.DataFrame, y: Sequence[Any], types: Mapping[str, str] | None = None
                             ) -> pd.DataFrame:
    """:func:`~her2dlr.evaluate.proxies.label_proxies` of a multi-class label, one-vs-rest.

    Every column is checked against each class (that class vs the others); the row of the class
    it separates best is kept, with that class in ``vs_rest``. A column that singles out one
    class almost perfectly stands in for part of the label as surely as a binary proxy.

    Parameters
    ----------
    table : DataFrame of shape (n_cases, n_columns)
        Raw clinical columns.
    y : array-like of shape (n_cases,)
        Class numbers.
    types : dict, optional
        ``column -> type``.

    Returns
    -------
    DataFrame
        The columns of :func:`~her2dlr.evaluate.proxies.label_proxies` plus ``vs_rest``,
        flagged columns first, then by AUC.
    """
    from her2dlr.evaluate.proxies import label_proxies

    labels = np.asarray(y)
    parts = [label_proxies(table, (labels == c).astype(int), types).assign(vs_rest=c)
             for c in np.unique(labels) if 0 < int((labels == c).sum()) < len(labels)]
    if not parts:
        raise InputError("multiclass_label_proxies needs at least two classes.")
    rows = pd.concat(parts, ignore_index=True)
    best = (rows.assign(_auc=rows["auc"].fillna(-1.0)).sort_values(["column", "_auc"], ascending=[True, False])
            .drop_duplicates("column").drop(columns="_auc"))
    return best.sort_values(["flagged", "auc"], ascending=[False, False], na_position="last").reset_index(drop=True)
