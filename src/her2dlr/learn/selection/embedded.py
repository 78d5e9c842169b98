"""Model-based selectors: LASSO (L1 logistic regression, penalty by CV; multinomial for more than two
classes) and RFE."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn import config_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import RFE
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import l1_min_c

from her2dlr.checks import check_choice, check_number
from her2dlr.learn._univariate import column_auc, ovr_auc_spread
from her2dlr.learn.selection._base import BaseSelector

__all__ = ["LassoSelector", "RFESelector"]


def _standardise(X: np.ndarray) -> np.ndarray:
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _l1_logistic(C: float, max_iter: int, seed: int, multiclass: bool = False) -> LogisticRegression:
    # liblinear is scikit-learn's recommended solver for small L1 problems; it shuffles with
    # random_state, so a seed is needed for reproducible selections. It has no multinomial loss:
    # more than two classes use saga, whose multinomial L1 fit keeps a feature for all classes at once.
    # saga is warm-started along the increasing C path with a looser tolerance: from a cold start at
    # tol=1e-4 it takes ~15x longer for the same kept features.
    if multiclass:
        return LogisticRegression(C=C, l1_ratio=1.0, solver="saga", max_iter=max_iter, tol=1e-3, warm_start=True,
                                  random_state=seed)
    return LogisticRegression(C=C, l1_ratio=1.0, solver="liblinear", max_iter=max_iter, tol=1e-4,
                              random_state=seed)


def _macro_auc(y: np.ndarray, prob: np.ndarray) -> float:
    """Mean one-vs-rest AUC over the classes present with both outcomes (NaN when none)."""
    aucs = [column_auc(prob[:, [c]], (y == c).astype(int))[0] for c in range(prob.shape[1])
            if 0 < (y == c).sum() < len(y)]
    return float(np.mean(aucs)) if aucs else float("nan")


class LassoSelector(BaseSelector):
    """LASSO: keep the features with a non-zero L1 logistic-regression coefficient.

    The penalty ``C`` is chosen by ``cv``-fold stratified cross-validation **within the rows
    given to** ``fit`` (the training fold; seed 002 uses 10 folds). Features are standardised
    with the training mean/SD before fitting (L1 is scale-dependent); ``transform`` returns the
    values unchanged. The grid is ``n_cs`` values from the smallest ``C`` giving a non-empty
    model (:func:`sklearn.svm.l1_min_c`) up to 10^4 times it, log-spaced; the best ``C`` has the
    best mean CV score (``scoring``: ``"deviance"`` as glmnet's default for binomial models, or
    ``"auc"``), ties going to the smaller ``C`` (sparser model). With ``rule="1se"`` the
    smallest ``C`` whose score is within one standard error of the best is taken instead.

    **More than two classes** (labels 0 .. k-1): a multinomial L1 logistic regression (saga
    solver, warm-started along the increasing ``C`` grid within each fold, ``tol=1e-3``); a feature is kept when any class has a non-zero coefficient for it; ``"deviance"``
    is the multinomial log loss and ``"auc"`` the mean one-vs-rest AUC; the fallback ranks by
    the mean one-vs-rest ``|AUC - 0.5|``; ``coef_`` has one row per class.

    **When LASSO keeps no feature** (or fewer than ``min_features``) at the chosen ``C``, ``C``
    is raised along the grid until at least ``min_features`` coefficients are non-zero; if even
    the largest ``C`` keeps none, the ``min_features`` features with the largest univariate
    ``|AUC - 0.5|`` are kept. ``fallback_`` says which happened (``None`` when neither).

    **Stopping the path early** (``patience``): the grid is walked from the strongest penalty
    up, every fold at each ``C``; once the mean CV score has not improved on its best for
    ``patience`` consecutive values, the larger ``C`` are not fitted (they are the weakly
    penalised, slow, overfitting end of the path). Candidates are then the ``C`` fitted, as
    ``cv.glmnet`` keeps only the penalties every fold's path reached. With a mean CV curve that
    falls after its peak (the usual case: validation deviance rises as the penalty weakens) the
    choice is the full grid's; ``None`` (the default) fits the whole grid.

    The CV folds are stratified, not group-aware: a transformer inside a Pipeline receives only
    ``X, y``. With near-duplicate groups this can favour a slightly weaker penalty; it never
    lets outer test rows in.

    Parameters
    ----------
    cv : int, default=10
        Folds (lowered to the size of the smaller class when needed, at least 2).
    n_cs : int, default=20
    scoring : {"deviance", "auc"}, default="deviance"
    rule : {"min", "1se"}, default="min"
    min_features : int, default=1
    max_features : int or None, default=None
        Keep at most this many (largest ``|coef|``).
    random_state : int, default=0
        Seeds the CV shuffling and liblinear.
    max_iter : int, default=1000
    patience : int or None, default=None
        Stop the path after this many ``C`` values without a better mean CV score.

    Attributes
    ----------
    Cs_ : ndarray of shape (n_cs,)
    cv_scores_ : ndarray of shape (n_folds, n_cs)
        Score of each C in each fold (negative deviance or AUC; larger is better); NaN for the
        ``C`` not fitted after an early stop.
    n_cs_fitted_ : int
        Grid values fitted in the CV (``n_cs`` unless ``patience`` stopped the path).
    C_ : float
        Chosen C (after any fallback).
    coef_ : ndarray of shape (n_features_in_,)
        Coefficients on standardised features at ``C_``.
    fallback_ : str or None
    """

    _multiclass = True

    def __init__(self, *, cv: int = 10, n_cs: int = 20, scoring: str = "deviance", rule: str = "min",
                 min_features: int = 1, max_features: int | None = None, random_state: int = 0,
                 max_iter: int = 1000, patience: int | None = None) -> None:
        self.cv = cv
        self.n_cs = n_cs
        self.scoring = scoring
        self.rule = rule
        self.min_features = min_features
        self.max_features = max_features
        self.random_state = random_state
        self.max_iter = max_iter
        self.patience = patience

    def _check_params(self) -> None:
        check_number(self, "cv", self.cv, low=2, integer=True)
        check_number(self, "n_cs", self.n_cs, low=2, integer=True)
        check_choice(self, "scoring", self.scoring, ("deviance", "auc"))
        check_choice(self, "rule", self.rule, ("min", "1se"))
        check_number(self, "min_features", self.min_features, low=1, integer=True)
        if self.max_features is not None:
            check_number(self, "max_features", self.max_features, low=self.min_features, integer=True)
        check_number(self, "max_iter", self.max_iter, low=1, integer=True)
        if self.patience is not None:
            check_number(self, "patience", self.patience, low=1, integer=True)

    def _score(self, model: LogisticRegression, X: np.ndarray, y: np.ndarray) -> float:
        if self.n_classes_ > 2:
            full = np.full((len(y), self.n_classes_), 1e-15)
            full[:, model.classes_] = model.predict_proba(X)
            if self.scoring == "auc":
                return _macro_auc(y, full)
            return float(np.mean(np.log(np.clip(full[np.arange(len(y)), y], 1e-15, 1.0))))
        prob = model.predict_proba(X)[:, 1]
        if self.scoring == "auc":
            return float(column_auc(prob[:, None], y)[0]) if 0 < y.sum() < len(y) else np.nan
        p = np.clip(prob, 1e-15, 1 - 1e-15)  # mean binomial deviance / 2 = log loss
        return float(np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    def _cv_path(self, Z: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                 scores: np.ndarray, multi: bool) -> int:
        """Fill ``scores`` (folds x C) along the increasing ``C`` grid; return how many ``C`` were fitted."""
        # saga is warm-started along the path, one model per fold; liblinear cannot warm-start
        paths = [_l1_logistic(self.Cs_[0], self.max_iter, self.random_state, multi) for _ in folds] if multi else []
        best_mean, best_at = -np.inf, 0
        for i, C in enumerate(self.Cs_):
            for f, (tr, va) in enumerate(folds):
                model = (paths[f].set_params(C=C) if multi
                         else _l1_logistic(C, self.max_iter, self.random_state)).fit(Z[tr], y[tr])
                scores[f, i] = self._score(model, Z[va], y[va])
            column = scores[:, i]
            mean = float(np.nanmean(column)) if np.isfinite(column).any() else -np.inf
            if mean > best_mean:
                best_mean, best_at = mean, i
            elif self.patience is not None and i - best_at >= self.patience:
                return i + 1
        return self.n_cs

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        Z = _standardise(X)
        self.n_classes_ = int(y.max()) + 1
        multi = self.n_classes_ > 2
        c0 = l1_min_c(Z, y, loss="log", fit_intercept=True)
        self.Cs_ = c0 * np.logspace(0, 4, self.n_cs)
        n_folds = max(2, min(self.cv, int(np.bincount(y).min())))
        folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=self.random_state).split(Z, y))
        scores = np.full((n_folds, self.n_cs), np.nan)
        # scikit-learn's per-call parameter checks cost more than these tiny fits: skip them here
        with warnings.catch_warnings(), config_context(skip_parameter_validation=True, assume_finite=True):
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.n_cs_fitted_ = self._cv_path(Z, y, folds, scores, multi)
            self.cv_scores_ = scores
            mean = np.nanmean(scores[:, : self.n_cs_fitted_], axis=0)
            best = int(np.nanargmax(mean))  # first = smallest C among ties
            if self.rule == "1se":
                se = np.nanstd(scores[:, best], ddof=1) / np.sqrt(n_folds)
                best = int(np.flatnonzero(mean >= mean[best] - se)[0])
            self.fallback_: str | None = None
            coef = np.zeros(X.shape[1])
            for i in range(best, self.n_cs):
                coef = _l1_logistic(self.Cs_[i], self.max_iter, self.random_state, multi).fit(Z, y).coef_
                coef = coef if multi else coef.ravel()
                if np.count_nonzero(np.abs(coef).max(axis=0) if multi else coef) >= self.min_features:
                    if i > best:
                        self.fallback_ = (
                            f"C raised from {self.Cs_[best]:.4g} (CV choice) to {self.Cs_[i]:.4g} so that "
                            f"at least {self.min_features} feature(s) are kept"
                        )
                    break
        self.coef_ = coef
        self.C_ = float(self.Cs_[i])
        weight = np.abs(coef).max(axis=0) if multi else np.abs(coef)
        support = weight != 0
        if support.sum() < self.min_features:
            dist = ovr_auc_spread(X, y) if multi else np.abs(column_auc(X, y) - 0.5)
            support = np.zeros(X.shape[1], dtype=bool)
            support[np.argsort(-dist, kind="stable")[: self.min_features]] = True
            self.fallback_ = (
                f"LASSO kept no feature at any C; kept the {self.min_features} feature(s) with the "
                "largest univariate |AUC - 0.5|"
            )
        if self.max_features is not None and support.sum() > self.max_features:
            keep = np.argsort(-weight, kind="stable")[: self.max_features]
            support = np.zeros(X.shape[1], dtype=bool)
            support[keep] = True
        return support


class RFESelector(BaseSelector):
    """Recursive feature elimination (:class:`sklearn.feature_selection.RFE`) with a linear model.

    The estimator is an L2 logistic regression with balanced class weights on features
    standardised with the training mean/SD; ``transform`` returns the values unchanged.

    Parameters
    ----------
    n_features : int, default=10
    step : int or float, default=0.1
        Features removed per round (a fraction when < 1).
    C : float, default=1.0
        Inverse penalty of the logistic regression.

    Attributes
    ----------
    ranking_ : ndarray of shape (n_features_in_,)
        1 for kept features, larger for those eliminated earlier.
    """

    _multiclass = True  # the logistic regression is multinomial for more than two classes

    def __init__(self, *, n_features: int = 10, step: float = 0.1, C: float = 1.0) -> None:
        self.n_features = n_features
        self.step = step
        self.C = C

    def _check_params(self) -> None:
        check_number(self, "n_features", self.n_features, low=1, integer=True)
        check_number(self, "step", self.step, low=0.0, low_open=True)
        check_number(self, "C", self.C, low=0.0, low_open=True)

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        model = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000)
        rfe = RFE(model, n_features_to_select=min(self.n_features, X.shape[1]), step=self.step)
        rfe.fit(_standardise(X), y)
        self.ranking_ = rfe.ranking_
        return rfe.support_
