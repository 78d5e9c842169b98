"""Random search over workflows inside the inner CV of one training set, then the top-k ensemble.

Every workflow of :meth:`WorkflowSpace.sample` is scored on the *same* inner splits
(:func:`her2dlr.learn.tuning.inner_splitter`: StratifiedGroupKFold on the training rows'
patient / near-duplicate groups) by its median inner AUC (ties: mean AUC, then the order tried,
as :func:`her2dlr.learn.tuning.median_auc_refit`). Workflows sharing a feature set and a
chain fit that selection once per inner split. Workflows are evaluated in batches, the jobs
of a batch (one per feature set x chain x inner split) run through joblib, and the
``seconds`` budget is checked between batches. The ``top_k`` best workflows are refitted on
all training rows and averaged (:class:`WorkflowEnsemble`); the ensemble's inner
out-of-fold predictions are the mean of its members' (the threshold's source).

Nothing but the rows given is ever seen: an outer test fold never reaches the search.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline

from her2dlr.checks import binary_target
from her2dlr.errors import InputError
from her2dlr.learn.tuning import SearchSettings, TunedModel, _auc, inner_splitter
from her2dlr.learn.workflows.ensemble import WorkflowEnsemble
from her2dlr.learn.workflows.space import Workflow, WorkflowSpace

__all__ = ["search_workflows", "workflow_table"]


_Selected = tuple[Any, Any] | str  # (training, validation) rows after the selection, or why it failed


def _evaluate_group(space: WorkflowSpace, workflows: list[Workflow], X: pd.DataFrame, y: np.ndarray,
                    train: np.ndarray, val: np.ndarray, random_state: int,
                    selected: _Selected | None = None) -> tuple[np.ndarray, np.ndarray, list[str], _Selected]:
    """Inner AUC (n,) and validation probabilities (n, n_val) of workflows sharing feature set and chain.

    ``selected``: this split's selection output from an earlier batch (fitted once per feature set,
    chain and split); returned so that later batches reuse it.
    """
    scores = np.full(len(workflows), np.nan)
    probs = np.full((len(workflows), len(val)), np.nan)
    errors: list[str] = []
    n_prefix = len(space.prefix(workflows[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if selected is None:
            try:
                prefix = Pipeline(space.prefix(workflows[0]))
                selected = (prefix.fit_transform(X.iloc[train], y[train]), prefix.transform(X.iloc[val]))
            except Exception as exc:
                selected = (f"{workflows[0].feature_set}/{workflows[0].chain}: selection failed: "
                            f"{type(exc).__name__}: {exc}")
        if isinstance(selected, str):
            return scores, probs, [selected], selected
        Ztr, Zva = selected
        for i, w in enumerate(workflows):
            tail = Pipeline(space.pipeline(w, random_state).steps[n_prefix:])
            try:
                tail.fit(Ztr, y[train])
                probs[i] = tail.predict_proba(Zva)[:, 1]
            except Exception as exc:
                errors.append(f"workflow {w.id} ({w.describe()}) failed: {type(exc).__name__}: {exc}")
                continue
            scores[i] = _auc(y[val], probs[i])
    return scores, probs, errors, selected


def workflow_table(tried: list[Workflow], scores: np.ndarray, members: list[int]) -> pd.DataFrame:
    """One row per tried workflow: ids, parts, params, inner median / mean / per-split AUC, rank, membership."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med, mean = np.nanmedian(scores, axis=1), np.nanmean(scores, axis=1)
    table = pd.DataFrame({
        "workflow": [w.id for w in tried], "feature_set": [w.feature_set for w in tried],
        "chain": [w.chain for w in tried], "classifier": [w.model for w in tried],
        "params": [dict(w.params) for w in tried], "median_auc": med, "mean_auc": mean,
    })
    for j in range(scores.shape[1]):
        table[f"split{j}_auc"] = scores[:, j]
    rank = np.empty(len(tried), dtype=int)
    rank[_ranking(scores)] = np.arange(1, len(tried) + 1)
    table["rank"] = rank
    table["in_ensemble"] = np.isin(np.arange(len(tried)), members)
    table["chosen"] = rank == 1
    return table


def _ranking(scores: np.ndarray) -> np.ndarray:
    """Workflow indices, best first: median inner AUC, then mean, then the order tried; all-failed last."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med, mean = np.nanmedian(scores, axis=1), np.nanmean(scores, axis=1)
    med = np.where(np.isfinite(med), med, -np.inf)
    mean = np.where(np.isfinite(mean), mean, -np.inf)
    return np.lexsort((np.arange(len(med)), -mean, -med))


def _track(items: list[Any], progress: bool, description: str) -> Any:
    if not progress:
        return items
    from rich.progress import track

    return track(items, description=description)


def search_workflows(X: pd.DataFrame, y: Any, groups: Any, *, space: WorkflowSpace,
                     settings: SearchSettings | None = None, where: str = "the training fold",
                     progress: bool = False) -> TunedModel:
    """Score workflows by inner-CV AUC on the rows given, refit the top ``space.top_k`` and average them.

    Parameters
    ----------
    X : DataFrame of shape (n_cases, n_features)
        Training rows only (indexed by case id); feature sets select its columns by name.
    y : array-like of shape (n_cases,)
    groups : array-like of shape (n_cases,)
        Patient / near-duplicate group of each row.
    space : WorkflowSpace
    settings : SearchSettings, optional
        ``inner_splits``, ``n_jobs`` (joblib processes for the jobs of a batch) and
        ``random_state`` (the inner splits, the order of workflows, the models' seeds).
    where : str
        Names the fold in messages.
    progress : bool, default=False
        A progress bar over the batches (rich).

    Returns
    -------
    TunedModel
        ``pipeline``: ``Pipeline([("model", WorkflowEnsemble)])`` refitted on all rows;
        ``params``: ``top_k`` and the members (``"<id> <feature set>/<chain>/<classifier> k=v"``);
        ``inner_median_auc`` / ``inner_mean_auc``: of the ensemble's mean probabilities on the
        inner splits (mildly optimistic: its members were chosen on them); ``results``: every tried
        workflow (:func:`workflow_table`); ``oof``: mean of the members' inner out-of-fold predictions.

    Raises
    ------
    InputError
        One class in ``y``, too few groups, a DataFrame missing, every workflow failing.
    """
    settings = settings or SearchSettings()
    if not isinstance(X, pd.DataFrame):
        raise InputError(f"{where}: the workflow search needs a DataFrame (feature sets select columns by name).")
    y = binary_target(y, where=where)
    groups = np.asarray(groups)
    if len(groups) != len(y) or len(X) != len(y):
        raise InputError(f"{where}: {len(X)} rows, {len(y)} labels and {len(groups)} groups; they must match.")
    cv, notes = inner_splitter(y, groups, settings.inner_splits, settings.random_state, where)
    splits = list(cv.split(np.zeros(len(y)), y, groups))
    plan = space.sample(settings.random_state)
    batches = [plan[i:i + space.batch] for i in range(0, len(plan), space.batch)]
    tried: list[Workflow] = []
    score_rows: list[np.ndarray] = []
    prob_rows: list[list[np.ndarray]] = []
    selections: dict[tuple[str, str, int], _Selected] = {}
    start = time.perf_counter()
    with Parallel(n_jobs=settings.n_jobs) as parallel:
        for batch in _track(batches, progress, f"{where}: workflows"):
            if space.seconds is not None and tried and time.perf_counter() - start > space.seconds:
                notes.append(f"{where}: the {space.seconds:g} s budget stopped the search after {len(tried)} "
                             f"of {len(plan)} workflows")
                break
            parts: dict[tuple[str, str], list[Workflow]] = {}
            for w in batch:
                parts.setdefault((w.feature_set, w.chain), []).append(w)
            jobs = [(ws, j) for ws in parts.values() for j in range(len(splits))]
            outs = parallel(delayed(_evaluate_group)(space, ws, X, y, splits[j][0], splits[j][1], settings.random_state,
                                                     selections.get((ws[0].feature_set, ws[0].chain, j)))
                            for ws, j in jobs)
            got: dict[str, tuple[np.ndarray, list[np.ndarray]]] = {
                w.id: (np.full(len(splits), np.nan), [np.empty(0)] * len(splits)) for w in batch}
            for (ws, j), (sc, pr, errors, sel) in zip(jobs, outs):
                notes.extend(f"{where}: {e}" for e in errors[:2] if f"{where}: {e}" not in notes)
                selections[(ws[0].feature_set, ws[0].chain, j)] = sel
                for i, w in enumerate(ws):
                    got[w.id][0][j] = sc[i]
                    got[w.id][1][j] = pr[i]
            for w in batch:
                tried.append(w)
                score_rows.append(got[w.id][0])
                prob_rows.append(got[w.id][1])
    scores = np.vstack(score_rows)
    order = _ranking(scores)
    finite = np.isfinite(scores).any(axis=1)
    if not finite.any():
        raise InputError(f"{where}: every workflow failed on every inner split ({notes[-1] if notes else ''}).")
    members = [int(i) for i in order if finite[i]][: space.top_k]
    if len(members) < space.top_k:
        notes.append(f"{where}: only {len(members)} workflow(s) scored; the ensemble has {len(members)} member(s)")
    oof_members = np.full((len(members), len(y)), np.nan)
    ensemble_split = np.full(len(splits), np.nan)
    for j, (_, va) in enumerate(splits):
        for m, i in enumerate(members):
            oof_members[m, va] = prob_rows[i][j]
        mean_va = oof_members[:, va].mean(axis=0)
        ensemble_split[j] = _auc(y[va], mean_va) if np.isfinite(mean_va).all() else np.nan
    oof = oof_members.mean(axis=0)
    chosen = [tried[i] for i in members]
    ensemble = WorkflowEnsemble([space.pipeline(w, settings.random_state) for w in chosen],
                                names=[w.id for w in chosen])
    pipeline = Pipeline([("model", ensemble)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med, mean = float(np.nanmedian(ensemble_split)), float(np.nanmean(ensemble_split))
    params = {"top_k": len(chosen), "workflows": "; ".join(f"{w.id} {w.describe()}" for w in chosen)}
    return TunedModel(pipeline, params, med, mean, workflow_table(tried, scores, members), oof, cv, notes)
