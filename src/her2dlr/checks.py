"""Input checks shared by every stage: binary targets, parameter messages, numbers, choices, missing values."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from her2dlr.errors import InputError, nearest

__all__ = ["binary_target", "check_choice", "check_no_missing", "check_number", "class_target", "feature_label", "param_error"]


def param_error(owner: object | str, name: str, allowed: str, got: Any) -> InputError:
    """The one message template for a bad parameter (scikit-learn style).

    >>> str(param_error("UnivariateFilter", "alpha", "a float in (0, 1]", -1))
    "The 'alpha' parameter of UnivariateFilter must be a float in (0, 1]. Got -1 instead."
    """
    cls = owner if isinstance(owner, str) else type(owner).__name__
    return InputError(f"The '{name}' parameter of {cls} must be {allowed}. Got {got!r} instead.")


def check_choice(owner: object, name: str, value: Any, options: Iterable[str]) -> None:
    """Raise :func:`param_error` listing ``options`` (and the nearest one) when ``value`` is not one."""
    options = list(options)
    if value not in options:
        err = param_error(owner, name, "one of " + ", ".join(repr(o) for o in options), value)
        raise InputError(str(err) + nearest(str(value), options))


def check_number(owner: object, name: str, value: Any, *, low: float | None = None,
                 high: float | None = None, integer: bool = False, low_open: bool = False) -> None:
    """Check ``low <= value <= high`` (``low < value`` when ``low_open``) and, optionally, integrality."""
    kind = "an int" if integer else "a number"
    ok = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    ok = ok and not isinstance(value, bool)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        lo = "" if low is None else (f" > {low}" if low_open else f" >= {low}")
        hi = "" if high is None else f" and <= {high}"
        raise param_error(owner, name, f"{kind}{lo}{hi}", value)


def binary_target(y: Any, *, where: str = "the training data") -> np.ndarray:
    """Labels as an int array of 0/1 (the larger of two sorted values is the positive class).

    Raises
    ------
    InputError
        Missing labels, more than two classes, or a single class (a model cannot learn from it).
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        arr = arr.ravel()
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise InputError(f"{where}: {int(np.isnan(arr).sum())} label(s) are missing.")
    classes = np.unique(arr)
    if len(classes) == 1:
        raise InputError(
            f"{where} holds a single class ({classes[0]!r}, {len(arr)} cases): a classifier needs both "
            "classes. Use fewer folds, or check the label rule."
        )
    if len(classes) != 2:
        raise InputError(f"{where}: expected two classes, got {len(classes)}: {list(classes)[:10]}.")
    return (arr == classes[1]).astype(np.int64)


def class_target(y: Any, *, where: str = "the training data") -> np.ndarray:
    """Labels of a multi-class task as an int array of class numbers 0 .. n_classes - 1.

    The label rules write class numbers (``her2_three_class``: 0 zero, 1 low, 2 positive); they
    are kept as they are, so class ``k`` keeps its name whatever subset of cases is given.

    Raises
    ------
    InputError
        Missing labels, values that are not whole numbers >= 0, or a single class.
    """
    arr = np.asarray(y).ravel()
    try:
        values = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: multi-class labels must be class numbers 0, 1, 2 ...; got "
                         f"{sorted(set(map(str, arr)))[:10]}.") from None
    if np.isnan(values).any():
        raise InputError(f"{where}: {int(np.isnan(values).sum())} label(s) are missing.")
    if (values < 0).any() or not np.array_equal(values, np.round(values)):
        raise InputError(f"{where}: multi-class labels must be class numbers 0, 1, 2 ...; got "
                         f"{sorted(set(values.tolist()))[:10]}.")
    out = values.astype(np.int64)
    if len(np.unique(out)) < 2:
        raise InputError(f"{where} holds a single class ({out[0]!r}, {len(out)} cases): a classifier needs "
                         "several classes. Use fewer folds, or check the label rule.")
    return out


def feature_label(names: Sequence[str] | None, idx: Iterable[int], limit: int = 5) -> str:
    """Names (or ``x<i>``) of the given feature positions for messages, at most ``limit`` of them."""
    idx = list(idx)
    shown = [str(names[i]) if names is not None else f"x{i}" for i in idx[:limit]]
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return ", ".join(repr(s) for s in shown) + more


def check_no_missing(owner: object, X: np.ndarray, names: Sequence[str] | None) -> None:
    """Refuse missing or infinite values with a message naming the features and the fix."""
    bad = ~np.isfinite(X)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0))
        raise InputError(
            f"{type(owner).__name__}: X has missing or infinite values in {len(cols)} feature(s) "
            f"({feature_label(names, cols)}). Put the 'variance' step first: it drops all-missing "
            "features and imputes the rest with the training median."
        )
