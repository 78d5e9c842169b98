"""Operating thresholds chosen on training predictions and applied unchanged to test predictions.

DESIGN rule 3: a threshold is a fitted quantity. :func:`choose_threshold` sees only training
predictions (out-of-fold predictions within the training data by default, see
:mod:`her2dlr.learn.cv`), returns a :class:`Threshold` that is stored with the model, and
:func:`apply_threshold` uses its ``value`` as is on any later predictions.

The cut-off between two adjacent distinct training scores is their midpoint (as pROC's
``coords``), so training classifications are exactly those of the chosen ROC point while test
scores falling between them are not decided by an arbitrary side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from her2dlr.checks import binary_target, check_choice
from her2dlr.errors import InputError

__all__ = ["Threshold", "ThresholdRule", "apply_threshold", "choose_threshold", "youden_threshold"]

METHODS = ("youden", "sensitivity", "specificity", "fixed")


@dataclass(frozen=True)
class ThresholdRule:
    """How to choose the operating threshold.

    Parameters
    ----------
    method : {"youden", "sensitivity", "specificity", "fixed"}
        ``youden``: maximise sensitivity + specificity - 1; ``sensitivity``: the highest
        threshold whose training sensitivity is >= ``target`` (best specificity under that
        constraint); ``specificity``: the lowest threshold whose training specificity is
        >= ``target``; ``fixed``: ``target`` itself (e.g. 0.5).
    target : float, optional
        Required for every method but ``youden``.
    """

    method: str = "youden"
    target: float | None = None

    def __post_init__(self) -> None:
        check_choice(self, "method", self.method, METHODS)
        if self.method != "youden" and (self.target is None or not 0.0 <= float(self.target) <= 1.0):
            raise InputError(
                f"The 'target' parameter of ThresholdRule must be a float in [0, 1] for method "
                f"'{self.method}'. Got {self.target!r} instead."
            )


@dataclass(frozen=True)
class Threshold:
    """A chosen threshold and how it was obtained (stored in the model card).

    Attributes
    ----------
    value : float
        Predict positive when ``prob >= value``.
    method : str
    target : float or None
    sensitivity, specificity : float
        Achieved on the training predictions it was chosen from.
    n : int
        Number of training predictions used.
    source : str
        Which predictions: ``"inner_oof"``, ``"train_fit"`` or ``"given"``.
    """

    value: float
    method: str
    target: float | None
    sensitivity: float
    specificity: float
    n: int
    source: str = "inner_oof"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _cut_points(prob: np.ndarray) -> np.ndarray:
    """Candidate thresholds: above the maximum, then midpoints between adjacent distinct scores,
    then the minimum (everything positive). Descending."""
    u = np.unique(prob)[::-1]
    mids = (u[:-1] + u[1:]) / 2.0
    top = np.nextafter(u[0], np.inf)
    return np.concatenate([[top], mids, [u[-1]]])


def _rates(y: np.ndarray, prob: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity and specificity at each cut (positive when ``prob >= cut``)."""
    pos = np.sort(prob[y == 1])
    neg = np.sort(prob[y == 0])
    tp = len(pos) - np.searchsorted(pos, cuts, side="left")
    tn = np.searchsorted(neg, cuts, side="left")
    return tp / len(pos), tn / len(neg)


def choose_threshold(y_true: Any, prob: Any, rule: ThresholdRule | None = None, *,
                     source: str = "inner_oof") -> Threshold:
    """Choose the threshold of ``rule`` on training predictions.

    Parameters
    ----------
    y_true : array-like of shape (n_cases,)
        Training labels (0/1).
    prob : array-like of shape (n_cases,)
        Training predictions (probability of class 1).
    rule : ThresholdRule, default=Youden
    source : str
        Recorded in the result (which predictions these are).

    Returns
    -------
    Threshold

    Notes
    -----
    Youden ties are broken towards the higher sensitivity (lower threshold): missing a
    HER2-positive patient is the costlier error.

    Examples
    --------
    >>> round(choose_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]).value, 3)
    0.225
    """
    rule = rule or ThresholdRule()
    y = binary_target(y_true, where="choose_threshold")
    p = np.asarray(prob, dtype=np.float64)
    if p.shape != y.shape or not np.isfinite(p).all():
        raise InputError(f"choose_threshold: prob must be {len(y)} finite values; got shape {p.shape}.")
    if rule.method == "fixed":
        cut = float(rule.target)
        sens, spec = _rates(y, p, np.array([cut]))
        return Threshold(cut, "fixed", rule.target, float(sens[0]), float(spec[0]), len(y), "given")
    cuts = _cut_points(p)
    sens, spec = _rates(y, p, cuts)
    if rule.method == "youden":
        j = sens + spec - 1.0
        i = int(np.flatnonzero(j >= j.max() - 1e-12)[-1])
    elif rule.method == "sensitivity":
        i = int(np.flatnonzero(sens >= rule.target - 1e-12)[0])
    else:
        i = int(np.flatnonzero(spec >= rule.target - 1e-12)[-1])
    return Threshold(float(cuts[i]), rule.method, rule.target, float(sens[i]), float(spec[i]), len(y), source)


def youden_threshold(y_true: Any, prob: Any) -> float:
    """Value of the Youden-optimal threshold (see :func:`choose_threshold`)."""
    return choose_threshold(y_true, prob).value


def apply_threshold(prob: Any, threshold: Threshold | float) -> np.ndarray:
    """Classes ``prob >= threshold`` as int, shape (n_cases,); the threshold is used unchanged."""
    value = threshold.value if isinstance(threshold, Threshold) else float(threshold)
    return (np.asarray(prob, dtype=np.float64) >= value).astype(np.int64)
