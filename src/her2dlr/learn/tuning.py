"""Pipeline (selection steps + model) and the inner search that picks by median AUC (seed 002).

The whole pipeline - selection included - is refitted on every inner training split, so the
inner AUCs are honest too. The search is scikit-learn's :class:`~sklearn.model_selection.GridSearchCV`
(or :class:`~sklearn.model_selection.RandomizedSearchCV`) with ``scoring="roc_auc"`` and a
``refit`` callable, :func:`median_auc_refit`, that picks the setting with the best **median**
inner-fold AUC (mean, then grid order, break ties). The inner splitter is
:class:`~sklearn.model_selection.StratifiedGroupKFold` on the training fold's groups, so a patient
(or near-duplicate group) never sits on both sides of an inner split either.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning, FitFailedWarning
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, StratifiedGroupKFold
from sklearn.pipeline import Pipeline

from her2dlr.errors import InputError
from her2dlr.learn._validation import binary_target, check_choice, check_number
from her2dlr.learn.selection import ZScore, build_selection
from her2dlr.learn.zoo import get_model, make_model, model_grid

__all__ = [
    "SearchSettings",
    "TunedModel",
    "build_pipeline",
    "inner_splitter",
    "median_auc_refit",
    "split_scores",
    "tune",
]

Steps = Sequence[Mapping[str, Any]] | Sequence[tuple[str, BaseEstimator]]


@dataclass(frozen=True)
class SearchSettings:
    """Inner hyper-parameter search.

    Parameters
    ----------
    inner_splits : int, default=5
        Inner StratifiedGroupKFold splits (lowered, with a warning, when a class has fewer groups).
    search : {"grid", "random"}, default="grid"
    n_iter : int, default=10
        Settings sampled by the random search (all of them when the grid is smaller).
    n_jobs : int, default=1
        Parallel inner fits (loky processes). Models are single-threaded, so ``n_jobs=2``
        uses exactly the 2 cores of a laptop.
    random_state : int, default=0
        Seeds the inner splits, the random search and the models.
    cache : bool, default=True
        Cache fitted selection steps across settings of one inner split
        (``Pipeline(memory=...)``), so selection runs once per split, not once per setting.
    """

    inner_splits: int = 5
    search: str = "grid"
    n_iter: int = 10
    n_jobs: int = 1
    random_state: int = 0
    cache: bool = True

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
    inner_cv : StratifiedGroupKFold
        The splitter used (with ``groups``: reproduces the inner splits).
    """

    pipeline: Pipeline
    params: dict[str, Any]
    inner_median_auc: float
    inner_mean_auc: float
    results: pd.DataFrame
    inner_cv: StratifiedGroupKFold
    warnings: list[str] = field(default_factory=list)


def _as_steps(selection: Steps) -> list[tuple[str, BaseEstimator]]:
    steps = list(selection)
    if steps and isinstance(steps[0], Mapping):
        return build_selection(steps)  # type: ignore[arg-type]
    return [(name, clone(step)) for name, step in steps]  # type: ignore[misc]


def build_pipeline(selection: Steps, model: str, *, params: Mapping[str, Any] | None = None,
                   random_state: int = 0, memory: Any = None) -> Pipeline:
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
    memory : str or joblib.Memory, optional
        Caches fitted transformers (see :class:`~sklearn.pipeline.Pipeline`).

    Notes
    -----
    Models that need scaled inputs (``needs_scaling``: LR, SVM, k-NN) get a z-score step right
    before them, fitted in-fold like every other step; harmless after an earlier z-score.
    """
    spec = get_model(model)
    steps = _as_steps(selection)
    if spec.needs_scaling:
        steps.append(("scale", ZScore()))
    steps.append(("model", make_model(spec.name, random_state=random_state, params=params)))
    return Pipeline(steps, memory=memory)


def split_scores(cv_results: Mapping[str, Any]) -> np.ndarray:
    """Inner-split test scores, shape (n_settings, n_splits), from ``cv_results_``."""
    keys = sorted((k for k in cv_results if k.startswith("split") and k.endswith("_test_score")),
                  key=lambda k: int(k[5:-11]))
    return np.column_stack([np.asarray(cv_results[k], dtype=np.float64) for k in keys])


def median_auc_refit(cv_results: Mapping[str, Any]) -> int:
    """Index of the setting with the best median inner AUC (``refit`` callable of a search).

    Ties are broken by the mean inner AUC, then by grid order (the first setting). Splits
    whose fit failed (NaN) are ignored; a setting with no finite score is never picked.

    Raises
    ------
    InputError
        Every setting failed on every split.
    """
    scores = split_scores(cv_results)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(scores, axis=1)
        mean = np.nanmean(scores, axis=1)
    if not np.isfinite(med).any():
        raise InputError(
            "Every hyper-parameter setting failed on every inner split (see the FitFailedWarning above)."
        )
    med = np.where(np.isfinite(med), med, -np.inf)
    mean = np.where(np.isfinite(mean), mean, -np.inf)
    order = np.lexsort((np.arange(len(med)), -mean, -med))
    return int(order[0])


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
    grid : dict, optional
        Overrides the zoo's default grid (user keys); ``{}`` evaluates ``params`` only.
    params : dict, optional
        Fixed hyper-parameters.
    settings : SearchSettings, optional
    where : str
        Names the fold in error messages.

    Returns
    -------
    TunedModel
    """
    settings = settings or SearchSettings()
    y = binary_target(y, where=where)
    groups = np.asarray(groups)
    cv, notes = inner_splitter(y, groups, settings.inner_splits, settings.random_state, where)
    param_grid = model_grid(model, grid)
    if not param_grid:
        param_grid = {}
    with tempfile.TemporaryDirectory(prefix="her2dlr-pipe-") as cache_dir:
        memory = cache_dir if settings.cache else None
        pipe = build_pipeline(selection, model, params=params, random_state=settings.random_state, memory=memory)
        common = dict(scoring="roc_auc", refit=median_auc_refit, cv=cv, n_jobs=settings.n_jobs,
                      error_score=np.nan, return_train_score=False)
        if settings.search == "random" and param_grid:
            search = RandomizedSearchCV(pipe, param_grid, n_iter=settings.n_iter,
                                        random_state=settings.random_state, **common)
        else:
            search = GridSearchCV(pipe, param_grid if param_grid else [{}], **common)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", FitFailedWarning)
            search.fit(X, y, groups=groups)
        best = search.best_estimator_
        best.memory = None  # the cache folder is about to go
    scores = split_scores(search.cv_results_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med, mean = np.nanmedian(scores, axis=1), np.nanmean(scores, axis=1)
    results = pd.DataFrame({"params": [dict(p) for p in search.cv_results_["params"]],
                            "median_auc": med, "mean_auc": mean})
    for j in range(scores.shape[1]):
        results[f"split{j}_auc"] = scores[:, j]
    results["chosen"] = False
    results.loc[search.best_index_, "chosen"] = True
    failed = int(np.isnan(scores).sum())
    if failed:
        notes.append(f"{where}: {failed} inner fit(s) failed or had one class and were ignored")
    return TunedModel(best, dict(search.best_params_), float(med[search.best_index_]),
                      float(mean[search.best_index_]), results, cv, notes)
