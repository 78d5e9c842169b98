"""Survival and prognosis: Kaplan-Meier, log-rank, Cox (AIC stepwise), C-index, risk groups,
propensity matching, treatment benefit and HER2-low prognosis (seeds 003 and 004).

Every analysis takes a DataFrame and column names and returns a lifelines-style result
object (``.summary`` DataFrame, ``print_summary()``, ``.plot()`` where it makes sense);
nothing is printed by default. :func:`run_survival` runs the whole stage from
:class:`SurvivalSettings` and writes tables and figures atomically.

Modules: ``km`` (Kaplan-Meier, log-rank, trend), ``cox`` (Cox models, PH test),
``stepwise`` (AIC selection), ``cindex`` (Harrell, Uno, bootstrap, CV),
``risk`` (Youden + k-means risk groups), ``matching`` (propensity score matching),
``treatment`` (benefit by group), ``her2low`` (true vs predicted status), ``plots``,
``settings``, ``driver``, ``cli``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names resolve on first use (PEP 562): importing lifelines costs ~2 s, which the command line
# should pay only when a survival command runs.
_LAZY = {
    "ConcordanceResult": "cindex",
    "CoxResult": "cox",
    "CrossValidatedConcordance": "cindex",
    "Her2LowResult": "her2low",
    "Her2LowSettings": "settings",
    "KaplanMeierResult": "km",
    "LogRankResult": "km",
    "MatchResult": "matching",
    "MatchSettings": "settings",
    "RiskStratifier": "risk",
    "StepwiseResult": "stepwise",
    "SurvivalReport": "driver",
    "SurvivalSettings": "settings",
    "TreatmentBenefitResult": "treatment",
    "concordance": "cindex",
    "cross_validated_concordance": "cindex",
    "fit_cox": "cox",
    "harrell_c": "cindex",
    "her2low_prognosis": "her2low",
    "kaplan_meier": "km",
    "load_survival_settings": "settings",
    "logrank_test": "km",
    "null_log_likelihood": "cox",
    "out_of_fold_cox_risk": "cindex",
    "propensity_match": "matching",
    "run_survival": "driver",
    "stepwise_cox": "stepwise",
    "stratified_hr": "treatment",
    "time_dependent_roc": "risk",
    "treatment_benefit": "treatment",
    "univariate_cox": "cox",
    "uno_c": "cindex",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"her2dlr.survival.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'her2dlr.survival' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "ConcordanceResult",
    "CoxResult",
    "CrossValidatedConcordance",
    "Her2LowResult",
    "Her2LowSettings",
    "KaplanMeierResult",
    "LogRankResult",
    "MatchResult",
    "MatchSettings",
    "RiskStratifier",
    "StepwiseResult",
    "SurvivalReport",
    "SurvivalSettings",
    "TreatmentBenefitResult",
    "concordance",
    "cross_validated_concordance",
    "fit_cox",
    "harrell_c",
    "her2low_prognosis",
    "kaplan_meier",
    "load_survival_settings",
    "logrank_test",
    "null_log_likelihood",
    "out_of_fold_cox_risk",
    "propensity_match",
    "run_survival",
    "stepwise_cox",
    "stratified_hr",
    "time_dependent_roc",
    "treatment_benefit",
    "univariate_cox",
    "uno_c",
]
