"""Risk groups from a score (seed 004): Youden cut-off for "low", then k-means for the rest.

Written here by hand (no library ships this procedure): the time-dependent ROC at a horizon
with censoring handled by inverse probability of censoring weights, the Youden-optimal
cut-off on it, and the fitted-state object. k-means itself is scikit-learn's.

How censoring before the horizon is handled (``censoring=``):

``"ipcw"`` (default)
    Cases with an event by the horizon are "cases" with weight ``1 / G(T_i-)``; cases
    followed beyond the horizon are "controls" with weight ``1 / G(horizon)``; cases censored
    before the horizon have unknown status and weight 0. ``G`` is the Kaplan-Meier estimate
    of the censoring distribution. This is the IPCW estimator of cumulative sensitivity and
    dynamic specificity (Uno et al. 2007; Blanche et al. 2013), unbiased under independent
    censoring. Specificity is unaffected (all controls share one weight); sensitivity is
    re-weighted so later events, which are more often lost, count more.
``"exclude"``
    Cases censored before the horizon are dropped and the rest get weight 1 (simpler; biased
    towards early events when censoring is heavy).

The cut-off is placed halfway between two consecutive distinct training scores, so tied
scores always fall on the same side; among equally good cut-offs the lowest (largest
sensitivity) is taken. Scores at or above the cut-off are "not low"; k-means (k = 2 by
default) on those training scores gives centres, and a new case goes to the nearest centre
(moderate = lower centre, high = upper centre). Everything is learned in :meth:`fit` on
training cases and applied unchanged by :meth:`transform`.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from her2dlr.errors import InputError, nearest
from her2dlr.io.atomic import write_text_atomic
from her2dlr.survival._data import rows_text

__all__ = ["CENSORING_MODES", "RISK_LABELS", "RiskStratifier", "time_dependent_roc"]

#: Allowed values of ``censoring``.
CENSORING_MODES = ("ipcw", "exclude")
#: Default group labels, lowest risk first.
RISK_LABELS = ("low", "moderate", "high")


def _km_censoring_left(time: np.ndarray, event: np.ndarray, at: np.ndarray, *, left: bool) -> np.ndarray:
    """Kaplan-Meier survival G of the censoring times, evaluated at ``at``.

    Censorings tied with events are counted after them (the usual convention). ``left``
    gives ``G(t-)``, the value just before ``t``; otherwise ``G(t)``.
    """
    uniq = np.unique(time)
    srt = np.sort(time)
    n_risk = len(srt) - np.searchsorted(srt, uniq, side="left")
    ev_times = np.sort(time[event])
    cens_times = np.sort(time[~event])
    d = np.searchsorted(ev_times, uniq, side="right") - np.searchsorted(ev_times, uniq, side="left")
    c = np.searchsorted(cens_times, uniq, side="right") - np.searchsorted(cens_times, uniq, side="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        G = np.cumprod(np.where(n_risk - d > 0, 1.0 - c / (n_risk - d), 1.0))
    idx = np.searchsorted(uniq, at, side="left" if left else "right") - 1
    return np.where(idx >= 0, G[np.clip(idx, 0, None)], 1.0)


def time_dependent_roc(
    score: np.ndarray, time: np.ndarray, event: np.ndarray, horizon: float, *, censoring: str = "ipcw"
) -> pd.DataFrame:
    """Cumulative/dynamic ROC of ``score`` for an event by ``horizon``.

    Parameters
    ----------
    score, time, event : ndarray of shape (n_cases,)
        Higher score = higher risk.
    horizon : float
        In the time column's unit.
    censoring : {"ipcw", "exclude"}
        Handling of cases censored before the horizon (see the module notes).

    Returns
    -------
    DataFrame
        One row per candidate cut-off (midpoints between distinct scores): ``cutoff``,
        ``sensitivity`` (weighted share of cases with score >= cutoff), ``specificity``,
        ``youden``.
    """
    score = np.asarray(score, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    is_case = event & (time <= horizon)
    is_control = time > horizon
    if censoring == "ipcw":
        w_case = 1.0 / _km_censoring_left(time, event, time, left=True)
        w_ctrl = 1.0 / _km_censoring_left(time, event, np.array([horizon]), left=False)[0] if is_control.any() else 0.0
    else:
        w_case = np.ones_like(time)
        w_ctrl = 1.0
    wc = np.where(is_case, w_case, 0.0)
    wn = np.where(is_control, w_ctrl, 0.0)
    values = np.unique(score)
    cuts = (values[:-1] + values[1:]) / 2.0
    order = np.argsort(score)
    s_sorted = score[order]
    # weight with score >= cut, via cumulative sums from the top
    pos = np.searchsorted(s_sorted, cuts, side="left")
    cum_c = np.concatenate([[0.0], np.cumsum(wc[order])])
    cum_n = np.concatenate([[0.0], np.cumsum(wn[order])])
    total_c, total_n = cum_c[-1], cum_n[-1]
    sens = (total_c - cum_c[pos]) / total_c
    spec = cum_n[pos] / total_n
    return pd.DataFrame({"cutoff": cuts, "sensitivity": sens, "specificity": spec, "youden": sens + spec - 1.0})


class RiskStratifier:
    """Low / moderate / high risk groups from a continuous score (seed 004).

    Parameters
    ----------
    horizon : float
        Time (in the time column's unit) of the event that defines the Youden cut-off.
    n_clusters : int, default 2
        k-means clusters above the cut-off.
    censoring : {"ipcw", "exclude"}, default "ipcw"
        Handling of cases censored before the horizon (see the module notes).
    labels : sequence of str, optional
        Group names, lowest risk first (default ``("low", "moderate", "high")`` for k = 2,
        else ``low, risk 2, ..., risk k+1``).
    higher_is_riskier : bool, default True
        Set False for scores where low values mean high risk (they are negated internally).
    random_state : int, default 0
        Seed of k-means.

    Attributes
    ----------
    cutoff_ : float
        Youden-optimal cut-off on the score's own scale.
    centers_ : list of float
        Sorted k-means centres of the training scores at or above the cut-off.
    boundaries_ : list of float
        Midpoints between consecutive centres.
    youden_, sensitivity_, specificity_ : float
        At the cut-off on the training cases.
    n_train_, n_cases_, n_controls_, n_unknown_ : int
        Training cases, and how many were events by / followed past / censored before the horizon.
    group_counts_ : dict
        Training cases per group.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> score = rng.normal(size=300)
    >>> time = rng.exponential(np.exp(-score))
    >>> strat = RiskStratifier(horizon=1.0).fit(score, time, np.ones(300))
    >>> strat.transform([-5.0, 5.0]).tolist()
    ['low', 'high']
    """

    _fitted_attrs = (
        "cutoff_", "centers_", "boundaries_", "youden_", "sensitivity_", "specificity_",
        "n_train_", "n_cases_", "n_controls_", "n_unknown_", "group_counts_",
    )

    def __init__(
        self,
        horizon: float,
        *,
        n_clusters: int = 2,
        censoring: Literal["ipcw", "exclude"] = "ipcw",
        labels: Sequence[str] | None = None,
        higher_is_riskier: bool = True,
        random_state: int = 0,
    ) -> None:
        self.horizon = horizon
        self.n_clusters = n_clusters
        self.censoring = censoring
        self.labels = labels
        self.higher_is_riskier = higher_is_riskier
        self.random_state = random_state

    # -- parameters -------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            "horizon": self.horizon,
            "n_clusters": self.n_clusters,
            "censoring": self.censoring,
            "labels": list(self.labels) if self.labels is not None else None,
            "higher_is_riskier": self.higher_is_riskier,
            "random_state": self.random_state,
        }

    @property
    def labels_(self) -> list[str]:
        """Group labels in use, lowest risk first."""
        if self.labels is not None:
            return list(self.labels)
        if self.n_clusters == 2:
            return list(RISK_LABELS)
        return ["low"] + [f"risk {i + 2}" for i in range(self.n_clusters)]

    def _validate_params(self) -> None:
        cls = type(self).__name__
        if not (isinstance(self.horizon, (int, float)) and np.isfinite(self.horizon) and self.horizon > 0):
            raise InputError(f"The 'horizon' parameter of {cls} must be a number > 0. Got {self.horizon!r} instead.")
        if not (isinstance(self.n_clusters, (int, np.integer)) and self.n_clusters >= 1):
            raise InputError(f"The 'n_clusters' parameter of {cls} must be an int >= 1. Got {self.n_clusters!r} instead.")
        if self.censoring not in CENSORING_MODES:
            raise InputError(
                f"The 'censoring' parameter of {cls} must be one of {CENSORING_MODES}. Got {self.censoring!r} "
                f"instead.{nearest(str(self.censoring), CENSORING_MODES)}"
            )
        if self.labels is not None and len(self.labels) != self.n_clusters + 1:
            raise InputError(
                f"The 'labels' parameter of {cls} must name {self.n_clusters + 1} groups (low + {self.n_clusters} "
                f"clusters). Got {list(self.labels)!r} instead."
            )

    # -- fit / transform --------------------------------------------------------------------
    @staticmethod
    def _score(score: Any, name: str = "score") -> tuple[np.ndarray, pd.Index]:
        s = score if isinstance(score, pd.Series) else pd.Series(np.asarray(score, dtype=float).ravel())
        col = s.name if s.name is not None else name
        v = pd.to_numeric(s, errors="coerce")
        if v.isna().any():
            raise InputError(
                f"Score '{col}' has missing or non-numeric values at {rows_text(s.index[v.isna()])}; "
                "every case needs a score to be given a risk group."
            )
        return v.to_numpy(dtype=float), s.index

    def fit(self, score: Any, time: Any, event: Any) -> RiskStratifier:
        """Learn the cut-off and the cluster centres from training cases.

        Parameters
        ----------
        score : array-like or Series of shape (n_cases,)
            Risk score (a Series' name is used in messages).
        time, event : array-like of shape (n_cases,)
            Follow-up time and event indicator (1/0).

        Returns
        -------
        self

        Raises
        ------
        InputError
            Missing scores, a constant score, no event by the horizon, nobody followed past
            it, or fewer distinct scores above the cut-off than clusters.
        """
        self._validate_params()
        name = getattr(score, "name", None) or "score"
        s, _ = self._score(score, name)
        t = np.asarray(time, dtype=float)
        e = np.asarray(event).astype(float) == 1
        if not (len(s) == len(t) == len(e)):
            raise InputError(f"score, time and event must have one length; got {len(s)}, {len(t)}, {len(e)}.")
        if np.isnan(t).any() or (t < 0).any():
            raise InputError("Follow-up times must be >= 0 and not missing (check the time column).")
        x = s if self.higher_is_riskier else -s
        if np.unique(x).size < 2:
            raise InputError(f"Score '{name}' takes a single value ({s[0]:g}) on the training cases; no cut-off can separate risk groups.")
        is_case = e & (t <= self.horizon)
        is_ctrl = t > self.horizon
        if not is_case.any():
            raise InputError(
                f"No training case has an event by the horizon {self.horizon:g}; the Youden cut-off is undefined "
                "(choose a later horizon)."
            )
        if not is_ctrl.any():
            raise InputError(
                f"No training case is followed beyond the horizon {self.horizon:g}; the Youden cut-off is undefined "
                "(choose an earlier horizon)."
            )
        roc = time_dependent_roc(x, t, e, self.horizon, censoring=self.censoring)
        best = int(np.flatnonzero(np.isclose(roc["youden"], roc["youden"].max(), rtol=0, atol=1e-12))[0])
        cut = float(roc["cutoff"].iloc[best])
        upper = x[x >= cut]
        if np.unique(upper).size < self.n_clusters:
            raise InputError(
                f"Only {np.unique(upper).size} distinct value(s) of score '{name}' lie at or above the cut-off "
                f"{(cut if self.higher_is_riskier else -cut):g}; k-means needs at least {self.n_clusters}."
            )
        km = KMeans(n_clusters=self.n_clusters, n_init=10, random_state=self.random_state).fit(upper.reshape(-1, 1))
        centers = np.sort(km.cluster_centers_.ravel())
        self.cutoff_ = cut if self.higher_is_riskier else -cut
        self.centers_ = [float(c if self.higher_is_riskier else -c) for c in centers]
        self.boundaries_ = [float((a + b) / 2 if self.higher_is_riskier else -(a + b) / 2) for a, b in itertools.pairwise(centers)]
        self.youden_ = float(roc["youden"].iloc[best])
        self.sensitivity_ = float(roc["sensitivity"].iloc[best])
        self.specificity_ = float(roc["specificity"].iloc[best])
        self.n_train_ = len(s)
        self.n_cases_ = int(is_case.sum())
        self.n_controls_ = int(is_ctrl.sum())
        self.n_unknown_ = int(len(s) - is_case.sum() - is_ctrl.sum())
        groups = self.transform(s)
        self.group_counts_ = {k: int(v) for k, v in groups.value_counts().reindex(self.labels_, fill_value=0).items()}
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "cutoff_"):
            raise InputError(f"This {type(self).__name__} is not fitted yet: call fit() (or load a fitted state) first.")

    def transform(self, score: Any) -> pd.Series:
        """Assign risk groups with the stored cut-off and centres.

        Parameters
        ----------
        score : array-like or Series of shape (n_cases,)

        Returns
        -------
        Series of shape (n_cases,)
            Ordered categorical (``low < moderate < high``), indexed like ``score``.
        """
        self._check_fitted()
        s, index = self._score(score, getattr(score, "name", None) or "score")
        sign = 1.0 if self.higher_is_riskier else -1.0
        x = sign * s
        codes = np.zeros(len(s), dtype=int)
        above = x >= sign * self.cutoff_
        bounds = np.asarray([sign * b for b in self.boundaries_])
        codes[above] = 1 + np.searchsorted(bounds, x[above], side="right")
        labels = self.labels_
        return pd.Series(pd.Categorical.from_codes(codes, categories=labels, ordered=True), index=index, name="risk_group")

    def fit_transform(self, score: Any, time: Any, event: Any) -> pd.Series:
        """:meth:`fit` then :meth:`transform` on the same cases."""
        return self.fit(score, time, event).transform(score)

    # -- state ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Parameters and learned state as plain JSON types."""
        self._check_fitted()
        return {"class": type(self).__name__, "params": self.get_params(),
                "state": {a: getattr(self, a) for a in self._fitted_attrs}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RiskStratifier:
        """Rebuild a fitted stratifier from :meth:`to_dict` output."""
        try:
            obj = cls(**data["params"])
            for attr in cls._fitted_attrs:
                setattr(obj, attr, data["state"][attr])
        except (KeyError, TypeError) as exc:
            raise InputError(f"Not a saved {cls.__name__} state: missing or unexpected key {exc}.") from exc
        return obj

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted state to a JSON file (atomically)."""
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RiskStratifier:
        """Read a state written by :meth:`save`."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc}).") from exc

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        fitted = f"; cutoff_={self.cutoff_:.4g}, centers_={[round(c, 4) for c in self.centers_]}" if hasattr(self, "cutoff_") else ""
        return f"RiskStratifier({params}){fitted}"
