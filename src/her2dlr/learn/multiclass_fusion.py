"""Late fusion and stacking of multi-class models (HER2-zero / HER2-low / HER2-positive).

The multi-class forms of :func:`her2dlr.learn.fusion.late_fusion` and
:func:`her2dlr.learn.integration.stacking`, which hand multi-class results (prediction rows with
``prob_0 .. prob_<k-1>``, see :mod:`her2dlr.learn.multiclass_cv`) to these functions. As in
the binary forms, nothing has its own outer loop: every outer fold's second level is fitted on
the base models' ``train_oof`` rows (inner out-of-fold probabilities) and applied to its
``test`` rows.

late fusion (:func:`late_fusion_multiclass`)
    The weighted mean of the models' class probabilities; the class is the most probable one.
stacking (:func:`stacking_multiclass`)
    A multinomial logistic regression on each model's log-probability ratios
    ``log(p_k / p_0)``, k = 1 .. K-1 (the K probabilities of a model sum to 1, so K - 1 numbers
    carry them: the multi-class form of the binary stack's logit).

Neither chooses a threshold: the predicted class is the argmax, ``threshold`` is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from her2dlr.errors import InputError
from her2dlr.learn.cv import PREDICTION_COLUMNS, CVResult
from her2dlr.learn.multiclass_cv import class_probability_rows, probability_columns

__all__ = ["late_fusion_multiclass", "log_ratios", "stack_probabilities", "stacking_multiclass"]

_EPS = 1e-6


def _n_classes(results: Sequence[CVResult]) -> int:
    counts = {sum(1 for c in r.predictions.columns if str(c).startswith("prob_")) for r in results}
    if len(counts) != 1:
        raise InputError(f"Models {[r.model for r in results]} do not predict the same number of classes.")
    return counts.pop()


def _split(result: CVResult, split: str) -> pd.DataFrame:
    p = result.predictions
    return p[p["split"] == split].set_index(["fold", "case_id"]).sort_index()


def _aligned(results: Sequence[CVResult], split: str, what: str) -> list[pd.DataFrame]:
    frames = [_split(r, split) for r in results]
    for r, other in zip(results[1:], frames[1:]):
        if not other.index.equals(frames[0].index):
            raise InputError(f"{what}: '{r.model}' and '{results[0].model}' were not evaluated on the same folds and "
                             f"cases ({split} rows differ).")
    return frames


def _frame_rows(rows: pd.DataFrame, proba: np.ndarray, *, name: str, split: str) -> pd.DataFrame:
    """Prediction rows of ``(fold, case_id)``-indexed ``rows`` with class probabilities ``proba``."""
    return class_probability_rows(proba, case_id=rows.index.get_level_values("case_id"), patient_id=rows["patient_id"].to_numpy(),
                 model=name, fold=rows.index.get_level_values("fold"), split=split, label=rows["label"].to_numpy())


def _result(name: str, scheme: str, frames: list[pd.DataFrame], k: int) -> CVResult:
    columns = PREDICTION_COLUMNS + probability_columns(k)
    return CVResult(name, scheme, pd.concat(frames, ignore_index=True)[columns], [])


def late_fusion_multiclass(results: Sequence[CVResult], *, name: str,
                           weights: Sequence[float] | None = None) -> CVResult:
    """Weighted mean of several multi-class models' class probabilities, fold by fold.

    Parameters
    ----------
    results : list of CVResult
        Same scheme, folds and cases; multi-class predictions.
    name : str
        ``model`` column of the fused predictions.
    weights : list of float, optional
        Weight of each model (default: equal).

    Returns
    -------
    CVResult
        ``test`` rows and, when every model has them, ``train_oof`` rows; ``fits`` is empty.
    """
    from her2dlr.learn.fusion import late_weights

    w = late_weights(results, weights)
    k = _n_classes(results)
    cols = probability_columns(k)
    splits = ["test"] + (["train_oof"] if all((r.predictions["split"] == "train_oof").any() for r in results) else [])
    frames = []
    for split in splits:
        parts = _aligned(results, split, "Late fusion")
        if len(parts[0]):
            proba = sum(wi * p[cols].to_numpy(dtype=float) for wi, p in zip(w, parts))
            frames.append(_frame_rows(parts[0], proba, name=name, split=split))
    return _result(name, results[0].scheme, frames, k)


def log_ratios(probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """``log(p_k / p_0)``, k = 1 .. K-1, of every model side by side: shape (n_cases, n_models * (K - 1)).

    Parameters
    ----------
    probabilities : list of ndarray of shape (n_cases, n_classes)
        Each model's class probabilities (clipped to ``[1e-6, 1]`` before the logarithm).
    """
    logs = [np.log(np.clip(np.asarray(p, dtype=float), _EPS, 1.0)) for p in probabilities]
    return np.column_stack([lp[:, 1:] - lp[:, [0]] for lp in logs])


def stack_probabilities(meta: dict, probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """Class probabilities of a fitted multi-class stack (``meta`` of :func:`stacking_multiclass`).

    Parameters
    ----------
    meta : dict
        ``{"intercept": [K], "coefficients": [[K x n_models * (K - 1)]]}``.
    probabilities : list of ndarray of shape (n_cases, n_classes)
        The components' class probabilities, in the components' order.
    """
    x = log_ratios(probabilities)
    z = x @ np.asarray(meta["coefficients"], dtype=float).T + np.asarray(meta["intercept"], dtype=float)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def stacking_multiclass(results: Sequence[CVResult], *, name: str, C: float = 1.0) -> CVResult:
    """Stack multi-class models with a multinomial logistic regression on their log-probability ratios.

    Parameters
    ----------
    results : list of CVResult
        Same scheme, folds and cases, each with ``train_oof`` rows.
    name : str
        ``model`` column of the stacked predictions.
    C : float, default=1.0
        Inverse L2 penalty of the meta-model.

    Returns
    -------
    CVResult
        ``train`` (the meta-model's fit on the out-of-fold inputs) and ``test`` rows; ``fits`` is
        empty. ``result.meta`` maps every fold to ``{"intercept", "coefficients", "inputs"}`` (the
        models in column order)
        (:func:`stack_probabilities` applies it).
    """
    if len(results) < 2:
        raise InputError("Stacking needs at least two models.")
    for r in results:
        if not (r.predictions["split"] == "train_oof").any():
            raise InputError(f"Stacking: model '{r.model}' has no train_oof predictions (run it with keep_train=True).")
    k = _n_classes(results)
    cols = probability_columns(k)
    train, test = _aligned(results, "train_oof", "Stacking"), _aligned(results, "test", "Stacking")
    frames, meta = [], {}
    for fold in dict.fromkeys(train[0].index.get_level_values("fold")):
        tr = [t.loc[[fold]] for t in train]
        y = tr[0]["label"].to_numpy().astype(int)
        if len(np.unique(y)) < k:
            raise InputError(f"Stacking: training fold '{fold}' lacks a class ({sorted(set(y.tolist()))} of {k}).")
        model = LogisticRegression(C=C, max_iter=2000).fit(log_ratios([t[cols].to_numpy() for t in tr]), y)
        coef = np.zeros((k, model.coef_.shape[1]))
        intercept = np.zeros(k)
        coef[model.classes_] = model.coef_
        intercept[model.classes_] = model.intercept_
        meta[fold] = {"intercept": intercept.tolist(), "coefficients": coef.tolist(),
                      "inputs": [r.model for r in results]}
        frames.append(_frame_rows(tr[0], stack_probabilities(meta[fold], [t[cols].to_numpy() for t in tr]),
                                  name=name, split="train"))
        if fold in set(test[0].index.get_level_values("fold")):
            te = [t.loc[[fold]] for t in test]
            frames.append(_frame_rows(te[0], stack_probabilities(meta[fold], [t[cols].to_numpy() for t in te]),
                                      name=name, split="test"))
    out = _result(name, results[0].scheme, frames, k)
    out.meta = meta  # type: ignore[attr-defined]
    return out
