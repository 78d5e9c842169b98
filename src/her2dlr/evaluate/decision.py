"""Decision curve analysis (Vickers & Elkin 2006).

At a threshold probability ``t`` a case is treated when its predicted risk is ``>= t`` (the
convention of R's ``dcurves`` and of the Python package ``dcurves``). With ``n`` cases,

``net_benefit(t) = TP / n - FP / n * t / (1 - t) - harm``,

"treat all" is the model that predicts 1 for every case
(``prevalence - (1 - prevalence) * t / (1 - t)``) and "treat none" has net benefit 0.
The standardized net benefit (Kerr et al. 2016) is ``net_benefit / prevalence`` (1 for a
perfect model). Net interventions avoided per ``nper`` cases is
``(net_benefit - net_benefit_all) / (t / (1 - t)) * nper``. Checked against the Python
``dcurves`` package (``dcurves.dca``) in ``tests/test_evaluate_decision.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.checks import param_error
from her2dlr.errors import InputError
from her2dlr.evaluate.metrics import check_binary_probs

__all__ = ["DEFAULT_THRESHOLDS", "TREAT_ALL", "TREAT_NONE", "decision_curve"]

#: Model names of the two reference strategies in :func:`decision_curve`'s output.
TREAT_ALL = "treat all"
TREAT_NONE = "treat none"
#: Default threshold probabilities, 0.01 to 0.99 (read-only).
DEFAULT_THRESHOLDS = np.arange(0.01, 1.0, 0.01)
DEFAULT_THRESHOLDS.flags.writeable = False


def decision_curve(
    y: Any,
    probs: Mapping[str, Any],
    thresholds: Any = DEFAULT_THRESHOLDS,
    *,
    standardized: bool = False,
    harm: Mapping[str, float] | None = None,
    nper: float = 100.0,
) -> pd.DataFrame:
    """Net benefit of each model, of treating all and of treating none, at each threshold.

    Parameters
    ----------
    y : array-like of shape (n_cases,)
        0/1 outcomes.
    probs : mapping of str to array-like of shape (n_cases,)
        Model name -> predicted probabilities. The names ``"treat all"`` and
        ``"treat none"`` are reserved.
    thresholds : array-like, default=DEFAULT_THRESHOLDS
        Threshold probabilities, each in [0, 1); the default is ``numpy.arange(0.01, 1.0, 0.01)``.
    standardized : bool, default=False
        Add the column ``standardized_net_benefit`` (net benefit / prevalence).
    harm : mapping of str to float, optional
        Harm of each model (e.g. of the test it needs), subtracted from its net benefit.
    nper : float, default=100
        Scale of ``net_interventions_avoided`` (per ``nper`` cases).

    Returns
    -------
    DataFrame
        Long format, one row per model and threshold, models in the order given followed by
        ``"treat all"`` and ``"treat none"``: ``model, threshold, net_benefit, tp_rate,
        fp_rate, test_pos_rate, net_interventions_avoided`` (NaN at ``t = 0``), ``n, prevalence``
        and, if asked, ``standardized_net_benefit``.

    Examples
    --------
    >>> dc = decision_curve([1, 0, 1, 0], {"m": [0.9, 0.2, 0.6, 0.4]}, thresholds=[0.5])
    >>> dc[["model", "net_benefit"]].to_dict("list")
    {'model': ['m', 'treat all', 'treat none'], 'net_benefit': [0.5, 0.0, 0.0]}
    """
    if not isinstance(probs, Mapping) or not probs:
        raise InputError("decision_curve: probs must be a non-empty mapping of model name -> probabilities.")
    reserved = {TREAT_ALL, TREAT_NONE} & {str(k) for k in probs}
    if reserved:
        raise InputError(f"decision_curve: model name(s) {sorted(reserved)} are reserved; rename the model(s).")
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    if len(t) == 0 or not np.isfinite(t).all() or (t < 0).any() or (t >= 1).any():
        raise param_error("decision_curve", "thresholds", "a non-empty list of numbers in [0, 1)",
                          thresholds if len(t) > 8 else t.tolist())
    harm = dict(harm or {})
    unknown = set(harm) - {str(k) for k in probs}
    if unknown:
        raise InputError(f"decision_curve: harm is given for unknown model(s) {sorted(unknown)}; "
                         f"models are {[str(k) for k in probs]}.")
    items = list(probs.items())
    yy, _ = check_binary_probs(y, items[0][1], where="decision_curve", name=f"probs[{items[0][0]!r}]")
    scores = {str(name): check_binary_probs(yy, p, where="decision_curve", name=f"probs[{name!r}]")[1]
              for name, p in items}
    n = len(yy)
    prevalence = float(yy.mean())
    scores[TREAT_ALL] = np.ones(n)
    scores[TREAT_NONE] = np.zeros(n)
    odds = t / (1.0 - t)
    pos = yy == 1
    frames = []
    nb_all = None
    for name, s in scores.items():
        treated = s[None, :] >= t[:, None]  # (n_thresholds, n_cases)
        if name == TREAT_NONE:
            treated = np.zeros_like(treated)  # never treat, also at t = 0
        tp = (treated & pos).sum(axis=1) / n
        fp = (treated & ~pos).sum(axis=1) / n
        nb = tp - odds * fp - float(harm.get(name, 0.0))
        if name == TREAT_ALL:
            nb_all = nb
        frames.append(pd.DataFrame({"model": name, "threshold": t, "net_benefit": nb, "tp_rate": tp, "fp_rate": fp,
                                    "test_pos_rate": treated.mean(axis=1)}))
    out = pd.concat(frames, ignore_index=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        avoided = (out["net_benefit"].to_numpy() - np.tile(nb_all, len(scores))) / np.tile(odds, len(scores)) * nper
    out["net_interventions_avoided"] = np.where(np.tile(odds, len(scores)) > 0, avoided, np.nan)
    out["n"] = n
    out["prevalence"] = prevalence
    if standardized:
        out["standardized_net_benefit"] = out["net_benefit"] / prevalence
    return out
