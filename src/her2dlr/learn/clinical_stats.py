"""Former home of the clinical logistic statistics, now :mod:`her2dlr.evaluate.logistic`.

Kept so that model artefacts pickled before the move (their ``model.joblib`` names classes of
this module) still load; new code imports from :mod:`her2dlr.evaluate.logistic`.
"""

from her2dlr.evaluate.logistic import (
    INTERCEPT,
    SEPARATION_FALLBACKS,
    LogitFit,
    UnivariableMultivariableSelector,
    feature_source,
    fit_logit,
)

__all__ = ["INTERCEPT", "SEPARATION_FALLBACKS", "LogitFit", "UnivariableMultivariableSelector", "feature_source",
           "fit_logit"]
