"""Pipeline (selection steps + model) and the inner search that picks by median AUC (seed 002).

For each inner split of the training rows (:class:`~sklearn.model_selection.StratifiedGroupKFold`
on their patient / near-duplicate groups) the selection steps are fitted **once** on the inner
training part, then every hyper-parameter setting of the model is fitted on the selected
features and scored by AUC on the inner validation part. The setting with the best **median**
inner AUC wins (ties: best mean, then grid order; :func:`median_auc_refit`), and the whole
pipeline is refitted with it on all training rows. The inner validation predictions of the
chosen setting are kept: they are the training rows' out-of-fold predictions, from which the
operating threshold is chosen, at no extra cost.

This is scikit-learn's grid / random search written as a loop (``ParameterGrid`` /
``ParameterSampler``, ``Pipeline``, ``clone``) because ``GridSearchCV`` refits the selection
once per setting and split and keeps no predictions. Settings that change selection steps
(keys not starting with ``model__``) are supported: the selection is then fitted once per
split and distinct selection setting. :func:`median_auc_refit` also works as the ``refit``
callable of a ``GridSearchCV`` built by hand.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import (
    ParameterGrid,
    ParameterSampler,
    StratifiedGroupKFold,
)
from sklearn.pipeline import Pipeline

from her2dlr.checks import binary_target, check_choice, check_number
from her2dlr.errors import InputError
from her2dlr.learn._univariate import column_auc
from her2dlr.learn.selection import ZScore, build_selection
from her2dlr.learn.zoo import get_model, make_model, model_grid

__all__ = [
    "SearchSettings",
    "TunedModel",
    "as_steps",
    "build_pipeline",
    "candidate_settings",
    "inner_splitter",
    "median_auc_refit",
    "split_scores",
    "tune",
    "tuned_model",
]

Steps = Sequence[Mapping[str, Any]] | Sequence[tuple[str, BaseEstimator]]


@dataclass(frozen=True)
class SearchSettings:
    """Inner hyper-parameter search.

    Parameters
    ----------
    inner_splits : int, default=5
        Inner StratifiedGroupKFold splits (lowered, with a note, when a class has fewer groups).
    search : {"grid", "random"}, default="grid"
    n_iter : int, default=10
        Settings sampled by the random search (all of them when the grid is smaller).
    n_jobs : int, default=1
        Inner splits run in parallel (joblib processes). Models are single-threaded, so
        ``n_jobs=2`` uses exactly the 2 cores of a laptop.
    random_state : int, default=0
        Seeds the inner splits, the random search and the models.
    """

    inner_splits: int = 5
    search: str = "grid"
    n_iter: int = 10
    n_jobs: int = 1
    random_state: int = 0

    def __post_init__(self) -> None:
        check_number(self, "inner_splits", self.inner_splits, low=2, integer=True)
        check_choice(self, "search", self.search, ("grid", "random"))
        check_number(self, "n_iter", self.n_iter, low=1, integer=True)
        check_number(self, "n_jobs", self.n_jobs, low=-1, integer=True)


@dataclass
class TunedModel:
    """Result of :func:`tune` on one training set.

    Attributes
    ----------
    pipeline : Pipeline
        Refitted on all rows given, with ``params``.
    params : dict
        Chosen hyper-parameters (Pipeline keys, e.g. ``model__C``).
    inner_median_auc, inner_mean_auc : float
        Of the chosen setting over the inner splits.
    results : DataFrame
        One row per setting: ``params``, ``median_auc``, ``mean_auc``, ``split<i>_auc``, ``chosen``.
    oof : ndarray of shape (n_cases,)
        Inner out-of-fold probabilities of the chosen setting (every row is validated once).
    inner_cv : StratifiedGroupKFold
    notes : list of str
    """

    pipeline: Pipeline
    params: dict[str, Any]
    inner_median_auc: float
    inner_mean_auc: float
    results: pd.DataFrame
    oof: np.ndarray
    inner_cv: StratifiedGroupKFold
    notes: list[str] = field(default_factory=list)


def as_steps(selection: Steps) -> list[tuple[str, BaseEstimator]]:
    """Selection steps as ``(name, estimator)`` pairs: built from their settings, or given as estimators."""
    steps = list(selection)
    if steps and isinstance(steps[0], Mapping):
        return build_selection(steps)  # type: ignore[arg-type]
    return [(name, clone(step)) for name, step in steps]  # type: ignore[misc]


def build_pipeline(selection: Steps, model: str, *, params: Mapping[str, Any] | None = None,
                   random_state: int = 0) -> Pipeline:
    """``Pipeline(selection steps [+ z-score] + model)``.

    Parameters
    ----------
    selection : list of dict (study-file style) or list of (name, transformer)
        Transformers are cloned.
    model : str
        Zoo name (:mod:`her2dlr.learn.zoo`).
    params : dict, optional
        Fixed model hyper-parameters (user keys, e.g. ``{"C": 1}``).
    random_state : int, default=0

    Notes
    -----
    Models that need scaled inputs (``needs_scaling``: LR, SVM, k-NN) get a z-score step right
    before them, fitted in-fold like every other step; harmless after an earlier z-score.
    """
    spec = get_model(model)
    steps = as_steps(selection)
    if spec.needs_scaling:
        steps.append(("scale", ZScore()))
    steps.append(("model", make_model(spec.name, random_state=random_state, params=params)))
    return Pipeline(steps)


def split_scores(cv_results: Mapping[str, Any]) -> np.ndarray:
    """Inner-split scores, shape (n_settings, n_splits), from ``split<i>_test_score`` keys."""
    keys = sorted((k for k in cv_results if k.startswith("split") and k.endswith("_test_score")),
                  key=lambda k: int(k[5:-11]))
    return np.column_stack([np.asarray(cv_results[k], dtype=np.float64) for k in keys])


def median_auc_refit(cv_results: Mapping[str, Any]) -> int:
    """Index of the setting with the best median inner AUC.

    Usable as the ``refit`` callable of ``GridSearchCV``. Ties are broken by the mean inner
    AUC, then by grid order (the first setting). Failed splits (NaN) are ignored; a setting
    with no finite score is never picked.

    Raises
    ------
    InputError
        Every setting failed on every split.

    Examples
    --------
    Setting 0 has the better mean (one lucky split), setting 1 the better median:

    >>> median_auc_refit({"split0_test_score": [0.99, 0.70], "split1_test_score": [0.55, 0.71],
    ...                   "split2_test_score": [0.56, 0.69]})
    1
    """
    scores = split_scores(cv_results)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(scores, axis=1)
        mean = np.nanmean(scores, axis=1)
    if not np.isfinite(med).any():
        raise InputError("Every hyper-parameter setting failed on every inner split.")
    med = np.where(np.isfinite(med), med, -np.inf)
    mean = np.where(np.isfinite(mean), mean, -np.inf)
    return int(np.lexsort((np.arange(len(med)), -mean, -med))[0])


def inner_splitter(y: np.ndarray, groups: np.ndarray, n_splits: int, random_state: int,
                   where: str = "the training fold") -> tuple[StratifiedGroupKFold, list[str]]:
    """StratifiedGroupKFold with ``n_splits`` lowered to the groups available per class."""
    notes: list[str] = []
    n_groups = min(len(np.unique(groups[y == c])) for c in (0, 1))
    k = min(n_splits, n_groups)
    if k < 2:
        raise InputError(
            f"{where}: a class has only {n_groups} patient group(s); the inner search needs at least 2 per class."
        )
    if k < n_splits:
        notes.append(f"{where}: inner CV lowered from {n_splits} to {k} splits (a class has {n_groups} groups)")
    return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=random_state), notes


def candidate_settings(grid: Mapping[str, list[Any]], settings: SearchSettings) -> list[dict[str, Any]]:
    """Settings to evaluate: the full grid, or ``n_iter`` sampled from it (random search)."""
    if not grid:
        return [{}]
    full = ParameterGrid(dict(grid))
    if settings.search == "grid" or len(full) <= settings.n_iter:
        return [dict(p) for p in full]
    return [dict(p) for p in ParameterSampler(dict(grid), settings.n_iter, random_state=settings.random_state)]


def _auc(y: np.ndarray, prob: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(column_auc(prob[:, None], y)[0])


def _split_key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items() if not k.startswith("model__")))


def _evaluate_split(template: Pipeline, candidates: list[dict[str, Any]], X: Any, y: np.ndarray,
                    train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Scores (n_settings,) and validation probabilities (n_settings, n_val) on one inner split."""
    scores = np.full(len(candidates), np.nan)
    probs = np.full((len(candidates), len(val)), np.nan)
    errors: list[str] = []
    Xtr, Xva = (X.iloc[train], X.iloc[val]) if isinstance(X, pd.DataFrame) else (X[train], X[val])
    by_selection: dict[tuple, list[int]] = {}
    for i, p in enumerate(candidates):
        by_selection.setdefault(_split_key(p), []).append(i)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for idx in by_selection.values():
            sel_params = {k: v for k, v in candidates[idx[0]].items() if not k.startswith("model__")}
            pipe = clone(template).set_params(**sel_params)
            try:
                selection = pipe[:-1]
                Ztr = selection.fit_transform(Xtr, y[train]) if len(selection) else Xtr
                Zva = selection.transform(Xva) if len(selection) else Xva
            except Exception as exc:
                errors.append(f"selection failed: {type(exc).__name__}: {exc}")
                continue
            for i in idx:
                model_params = {k[7:]: v for k, v in candidates[i].items() if k.startswith("model__")}
                model = clone(pipe[-1]).set_params(**model_params)
                try:
                    model.fit(Ztr, y[train])
                    probs[i] = model.predict_proba(Zva)[:, 1]
                except Exception as exc:
                    errors.append(f"setting {candidates[i]} failed: {type(exc).__name__}: {exc}")
                    continue
                scores[i] = _auc(y[val], probs[i])
    return scores, probs, errors


def tuned_model(template: Pipeline, candidates: list[dict[str, Any]], X: Any, y: np.ndarray, cv: Any,
                splits: list[tuple[np.ndarray, np.ndarray]], runs: list[tuple[np.ndarray, np.ndarray, list[str]]],
                notes: list[str], where: str, oof_columns: int | None = None) -> TunedModel:
    """Pick the setting by median inner AUC from the inner splits' ``runs`` (scores, validation
    probabilities, errors), collect its inner out-of-fold predictions (``oof_columns`` per case for
    class probabilities) and refit it on all rows."""
    scores = np.column_stack([r[0] for r in runs])
    for r in runs:
        notes.extend(f"{where}: {e}" for e in r[2][:3])
    best = median_auc_refit({f"split{j}_test_score": scores[:, j] for j in range(scores.shape[1])})
    oof = np.full(len(y) if oof_columns is None else (len(y), oof_columns), np.nan)
    for (_, va), r in zip(splits, runs):
        oof[va] = r[1][best]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med, mean = np.nanmedian(scores, axis=1), np.nanmean(scores, axis=1)
    results = pd.DataFrame({"params": candidates, "median_auc": med, "mean_auc": mean})
    for j in range(scores.shape[1]):
        results[f"split{j}_auc"] = scores[:, j]
    results["chosen"] = np.arange(len(candidates)) == best
    pipeline = clone(template).set_params(**candidates[best])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(X, y)
    return TunedModel(pipeline, dict(candidates[best]), float(med[best]), float(mean[best]), results, oof, cv, notes)


def tune(X: pd.DataFrame | np.ndarray, y: Any, groups: Any, *, selection: Steps, model: str,
         grid: Mapping[str, list[Any]] | None = None, params: Mapping[str, Any] | None = None,
         settings: SearchSettings | None = None, where: str = "the training fold") -> TunedModel:
    """Inner-CV search of ``model``'s grid with the selection steps inside, pick by median AUC, refit.

    Parameters
    ----------
    X : DataFrame of shape (n_cases, n_features)
        Training rows only (indexed by case id).
    y : array-like of shape (n_cases,)
    groups : array-like of shape (n_cases,)
        Patient / near-duplicate group of each row.
    selection : list of dict or list of (name, transformer)
    model : str
        Zoo name.
    grid : dict, optional
        Overrides the zoo's default grid (user keys, e.g. ``{"C": [0.1, 1]}``); ``{}`` = no search.
    params : dict, optional
        Fixed hyper-parameters (user keys).
    settings : SearchSettings, optional
    where : str
        Names the fold in messages.

    Returns
    -------
    TunedModel

    Raises
    ------
    InputError
        One class in ``y`` (names ``where``), too few groups, every setting failing.
    """
    settings = settings or SearchSettings()
    y = binary_target(y, where=where)
    groups = np.asarray(groups)
    if len(groups) != len(y):
        raise InputError(f"{where}: {len(groups)} groups for {len(y)} cases.")
    cv, notes = inner_splitter(y, groups, settings.inner_splits, settings.random_state, where)
    candidates = candidate_settings(model_grid(model, grid), settings)
    template = build_pipeline(selection, model, params=params, random_state=settings.random_state)
    splits = list(cv.split(np.zeros(len(y)), y, groups))
    runs = Parallel(n_jobs=settings.n_jobs)(
        delayed(_evaluate_split)(template, candidates, X, y, tr, va) for tr, va in splits
    )
    return tuned_model(template, candidates, X, y, cv, splits, runs, notes, where)
