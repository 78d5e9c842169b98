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

__all__ = ["StepwiseResult", "stepwise_cox", "DIRECTIONS"]

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
    if direction not in DIRECTIONS:
        raise InputError(
            f"The 'direction' parameter of stepwise_cox must be one of {DIRECTIONS}; got "
            f"{direction!r}.{nearest(str(direction), DIRECTIONS)}"
        )
    candidates = list(dict.fromkeys(candidates))
    keep = list(dict.fromkeys(keep))
    for term in keep + list(start or []):
        if term not in candidates:
            candidates.append(term)
    if not candidates:
        raise InputError("stepwise_cox needs at least one candidate covariate.")
    t, e = survival_arrays(df, time, event, require_events=True, purpose="a Cox model")
    # Check every candidate once (missing values, constant columns) before any fit.
    make_design(df, candidates, categorical=categorical, reference=reference)
    strata_list = [strata] if isinstance(strata, str) else list(strata or [])
    cat = set(categorical)

    cache: dict[frozenset[str], float] = {}
    params: dict[frozenset[str], dict[str, float]] = {}
    errors: dict[frozenset[str], str] = {}

    def score(terms: frozenset[str], warm: frozenset[str] | None = None) -> float:
        if terms in cache:
            return cache[terms]
        if not terms:
            s_arr = df[strata_list].astype(str).agg("|".join, axis=1).to_numpy() if strata_list else None
            value = -2.0 * null_log_likelihood(t, e, s_arr)
        else:
            ordered = [c for c in candidates if c in terms]
            try:
                fit = fit_cox(
                    df, time, event, ordered, categorical=[c for c in ordered if c in cat],
                    reference=reference, strata=strata_list or None, check_ph=False, alpha=alpha,
                    initial_point=params.get(warm) if warm is not None else None,
                )
                value = -2.0 * fit.log_likelihood + k * fit.n_params
                params[terms] = fit.params.to_dict()
            except InputError as exc:  # e.g. a level without events: this model is not allowed
                errors[terms] = str(exc)
                value = np.inf
        cache[terms] = value
        return value

    if start is not None:
        current = frozenset(start) | frozenset(keep)
    elif direction == "backward":
        current = frozenset(candidates)
    else:
        current = frozenset(keep)
    order = {c: i for i, c in enumerate(candidates)}

    def as_list(terms: frozenset[str]) -> list[str]:
        return sorted(terms, key=order.__getitem__)

    current_aic = score(current)
    if not np.isfinite(current_aic):
        raise InputError(f"The starting model {as_list(current)} cannot be fitted: {errors[current]}")
    rows = [{"step": 0, "action": "start", "term": "", "aic": current_aic, "terms": " + ".join(as_list(current))}]
    for step in range(1, max_steps + 1):
        moves: list[tuple[float, str, str]] = []
        if direction in ("both", "backward"):
            for term in as_list(current):
                if term not in keep:
                    moves.append((score(current - {term}, current), "-", term))
        if direction in ("both", "forward"):
            for term in candidates:
                if term not in current:
                    moves.append((score(current | {term}, current), "+", term))
        if not moves:
            break
        best_aic, action, term = min(moves, key=lambda m: m[0])
        if not best_aic < current_aic - 1e-7:
            break
        current = current - {term} if action == "-" else current | {term}
        current_aic = best_aic
        rows.append({"step": step, "action": action, "term": term, "aic": best_aic, "terms": " + ".join(as_list(current))})
    selected = as_list(current)
    model = None
    if selected:
        model = fit_cox(
            df, time, event, selected, categorical=[c for c in selected if c in cat],
            reference=reference, strata=strata_list or None, alpha=alpha,
        )
    notes = [f"model {sorted(m)} skipped: {msg}" for m, msg in errors.items()]
    return StepwiseResult(direction, k, pd.DataFrame(rows), selected, model, candidates, notes)
