"""AIC-based stepwise selection of Cox model terms (forward, backward or both).

Written by hand: no Python survival library ships it. It follows R's ``stats::step`` on a
``coxph`` fit: the criterion is ``-2 log L + k * edf`` (``k = 2`` is AIC) with ``edf`` the
number of design columns; a categorical covariate enters or leaves as a whole term; at each
step every allowed single addition and removal is tried and the best is taken only if it
lowers the criterion (by more than ``1e-7``, as ``step``); the empty model's criterion is
``-2`` times the null partial log-likelihood.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from her2dlr.errors import InputError, nearest
from her2dlr.survival._data import make_design, survival_arrays
from her2dlr.survival.cox import CoxResult, fit_cox, null_log_likelihood
from her2dlr.survival.results import SurvivalResult

__all__ = ["DIRECTIONS", "StepwiseResult", "stepwise_cox"]

#: Allowed values of ``direction``.
DIRECTIONS = ("both", "forward", "backward")


@dataclass(repr=False)
class StepwiseResult(SurvivalResult):
    """The path of a stepwise selection and the selected Cox model.

    Attributes
    ----------
    direction : str
    criterion : str
        ``"AIC"`` for ``k = 2``, else ``"-2logL + k*edf"`` with the value of ``k``.
    steps : DataFrame
        One row per accepted step: ``step``, ``action`` (``start``, ``+``, ``-``), ``term``,
        ``aic``, ``terms`` (the model after the step).
    selected : list of str
        Terms of the final model.
    model : CoxResult or None
        The final model refitted with the PH check (None when the empty model wins).
    candidates : list of str
    """

    direction: str
    k: float
    steps: pd.DataFrame
    selected: list[str]
    model: CoxResult | None
    candidates: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:  # type: ignore[override]
        return f"stepwise Cox selection ({self.direction}, {self.criterion})"

    @property
    def criterion(self) -> str:
        return "AIC" if self.k == 2 else f"-2logL + {self.k:g}*edf"

    @property
    def aic(self) -> float:
        """Criterion of the selected model."""
        return float(self.steps["aic"].iloc[-1])

    @property
    def summary(self) -> pd.DataFrame:
        """The accepted steps (the final model's table is ``.model.summary``)."""
        return self.steps

    def _header(self) -> dict[str, Any]:
        return {
            "candidates": ", ".join(self.candidates),
            "selected": ", ".join(self.selected) or "(none)",
            f"final {self.criterion}": round(self.aic, 3),
        }


def stepwise_cox(
    df: pd.DataFrame,
    time: str,
    event: str,
    candidates: Sequence[str],
    *,
    direction: Literal["both", "forward", "backward"] = "both",
    start: Sequence[str] | None = None,
    keep: Sequence[str] = (),
    categorical: Iterable[str] = (),
    reference: Mapping[str, Any] | None = None,
    strata: str | Sequence[str] | None = None,
    k: float = 2.0,
    max_steps: int = 1000,
    alpha: float = 0.05,
) -> StepwiseResult:
    """Select Cox model terms by AIC, forward, backward or both ways.

    Parameters
    ----------
    df : DataFrame of shape (n_cases, n_columns)
    time, event : str
        Follow-up time and event (1/0) columns.
    candidates : sequence of str
        Covariate columns that may enter the model (the scope's upper bound).
    direction : {"both", "forward", "backward"}
        ``backward`` starts from all candidates and only removes; ``forward`` starts from
        ``keep`` and only adds; ``both`` starts from ``start`` (default ``keep``, i.e. the
        empty model as in ``step(null, scope=..., direction="both")``) and tries both moves.
    start : sequence of str, optional
        Terms of the starting model (overrides the default above).
    keep : sequence of str
        Terms that are always in the model (the scope's lower bound).
    categorical, reference
        As in :func:`her2dlr.survival.cox.fit_cox`.
    strata : str or sequence of str, optional
        Stratification columns, kept in every model.
    k : float
        Penalty per parameter (2 = AIC, ``log(n_events)`` = a BIC variant).
    max_steps : int
        Safety bound on the number of steps.
    alpha : float
        1 - confidence level of the final model's intervals.

    Returns
    -------
    StepwiseResult

    Examples
    --------
    >>> from lifelines.datasets import load_gbsg2
    >>> res = stepwise_cox(load_gbsg2(), "time", "cens", ["horTh", "age", "pnodes", "estrec"],
    ...                    direction="backward")
    >>> res.selected
    ['horTh', 'pnodes', 'estrec']
    """
    _check_direction(direction)
    candidates, keep = _scope(candidates, keep, start)
    t, e = survival_arrays(df, time, event, require_events=True, purpose="a Cox model")
    # Check every candidate once (missing values, constant columns) before any fit.
    make_design(df, candidates, categorical=categorical, reference=reference)
    strata_list = [strata] if isinstance(strata, str) else list(strata or [])
    score = _ModelScore(df, time, event, t, e, candidates, set(categorical), reference, strata_list, k, alpha)
    current = _start_terms(direction, candidates, keep, start)
    rows, current = _search(score, current, direction, keep, max_steps)
    selected = score.as_list(current)
    model = None
    if selected:
        model = fit_cox(
            df, time, event, selected, categorical=[c for c in selected if c in score.categorical],
            reference=reference, strata=strata_list or None, alpha=alpha,
        )
    notes = [f"model {sorted(m)} skipped: {msg}" for m, msg in score.errors.items()]
    return StepwiseResult(direction, k, pd.DataFrame(rows), selected, model, candidates, notes)


def _check_direction(direction: str) -> None:
    """Refuse a ``direction`` outside :data:`DIRECTIONS`, suggesting the nearest one."""
    if direction not in DIRECTIONS:
        raise InputError(
            f"The 'direction' parameter of stepwise_cox must be one of {DIRECTIONS}; got "
            f"{direction!r}.{nearest(str(direction), DIRECTIONS)}"
        )


def _scope(
    candidates: Sequence[str], keep: Sequence[str], start: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """The scope's upper bound (candidates, then any kept or starting term not among them) and lower bound.

    Duplicates are dropped, first occurrence kept; the candidates' order is the order terms
    are listed and tried in.
    """
    candidates = list(dict.fromkeys(candidates))
    keep = list(dict.fromkeys(keep))
    for term in keep + list(start or []):
        if term not in candidates:
            candidates.append(term)
    if not candidates:
        raise InputError("stepwise_cox needs at least one candidate covariate.")
    return candidates, keep


def _start_terms(
    direction: str, candidates: list[str], keep: list[str], start: Sequence[str] | None
) -> frozenset[str]:
    """Terms of the starting model: ``start`` plus ``keep``; else all candidates (backward) or ``keep``."""
    if start is not None:
        return frozenset(start) | frozenset(keep)
    if direction == "backward":
        return frozenset(candidates)
    return frozenset(keep)


class _ModelScore:
    """The criterion ``-2 log L + k * edf`` of a set of terms, each model fitted once.

    Calling the object with a set of terms returns its criterion (``inf`` when the model
    cannot be fitted, e.g. a level without events; the reason is kept in :attr:`errors`).
    The coefficients of every fitted model are kept in :attr:`params` so that a model one
    term away can start its Newton iterations from them (``warm``).
    """

    def __init__(
        self,
        df: pd.DataFrame,
        time: str,
        event: str,
        durations: np.ndarray,
        events: np.ndarray,
        candidates: list[str],
        categorical: set[str],
        reference: Mapping[str, Any] | None,
        strata: list[str],
        k: float,
        alpha: float,
    ) -> None:
        self.df, self.time, self.event = df, time, event
        self.durations, self.events = durations, events
        self.candidates, self.categorical, self.reference = candidates, categorical, reference
        self.strata, self.k, self.alpha = strata, k, alpha
        self.order = {c: i for i, c in enumerate(candidates)}
        self.cache: dict[frozenset[str], float] = {}
        self.params: dict[frozenset[str], dict[str, float]] = {}
        self.errors: dict[frozenset[str], str] = {}

    def as_list(self, terms: frozenset[str]) -> list[str]:
        """``terms`` in candidate order."""
        return sorted(terms, key=self.order.__getitem__)

    def __call__(self, terms: frozenset[str], warm: frozenset[str] | None = None) -> float:
        if terms in self.cache:
            return self.cache[terms]
        value = self._empty() if not terms else self._fit(terms, warm)
        self.cache[terms] = value
        return value

    def _empty(self) -> float:
        """``-2`` times the null partial log-likelihood (per stratum when stratified)."""
        s_arr = (
            self.df[self.strata].astype(str).agg("|".join, axis=1).to_numpy() if self.strata else None
        )
        return -2.0 * null_log_likelihood(self.durations, self.events, s_arr)

    def _fit(self, terms: frozenset[str], warm: frozenset[str] | None) -> float:
        """Fit the model of ``terms`` (warm-started from the model ``warm``) and return its criterion."""
        ordered = [c for c in self.candidates if c in terms]
        try:
            fit = fit_cox(
                self.df, self.time, self.event, ordered, categorical=[c for c in ordered if c in self.categorical],
                reference=self.reference, strata=self.strata or None, check_ph=False, alpha=self.alpha,
                initial_point=self.params.get(warm) if warm is not None else None,
            )
        except InputError as exc:  # e.g. a level without events: this model is not allowed
            self.errors[terms] = str(exc)
            return np.inf
        self.params[terms] = fit.params.to_dict()
        return -2.0 * fit.log_likelihood + self.k * fit.n_params


def _moves(
    score: _ModelScore, current: frozenset[str], direction: str, keep: list[str]
) -> list[tuple[float, str, str]]:
    """Every allowed single removal (``"-"``) then addition (``"+"``): ``(criterion, action, term)``."""
    moves: list[tuple[float, str, str]] = []
    if direction in ("both", "backward"):
        for term in score.as_list(current):
            if term not in keep:
                moves.append((score(current - {term}, current), "-", term))
    if direction in ("both", "forward"):
        for term in score.candidates:
            if term not in current:
                moves.append((score(current | {term}, current), "+", term))
    return moves


def _search(
    score: _ModelScore, current: frozenset[str], direction: str, keep: list[str], max_steps: int
) -> tuple[list[dict[str, Any]], frozenset[str]]:
    """Take the best move while it lowers the criterion by more than ``1e-7`` (as R's ``step``).

    Returns the accepted steps (the start first) and the final set of terms.
    """
    current_aic = score(current)
    if not np.isfinite(current_aic):
        raise InputError(
            f"The starting model {score.as_list(current)} cannot be fitted: {score.errors[current]}"
        )
    rows = [{"step": 0, "action": "start", "term": "", "aic": current_aic,
             "terms": " + ".join(score.as_list(current))}]
    for step in range(1, max_steps + 1):
        moves = _moves(score, current, direction, keep)
        if not moves:
            break
        best_aic, action, term = min(moves, key=lambda m: m[0])
        if not best_aic < current_aic - 1e-7:
            break
        current = current - {term} if action == "-" else current | {term}
        current_aic = best_aic
        rows.append({"step": step, "action": action, "term": term, "aic": best_aic,
                     "terms": " + ".join(score.as_list(current))})
    return rows, current
