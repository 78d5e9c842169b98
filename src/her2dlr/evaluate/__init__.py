"""Evaluation: AUC with DeLong confidence intervals, threshold metrics, calibration, decision curves, tables.

* :mod:`her2dlr.evaluate.delong` - fast DeLong (Sun & Xu 2014): AUC variance, CI, paired test
* :mod:`her2dlr.evaluate.clustered` - patient-clustered intervals: Obuchowski (1997) AUC variance,
  clustered Wilson intervals of proportions, patient bootstrap
* :mod:`her2dlr.evaluate.metrics` - accuracy, sensitivity, ..., bootstrap AUC CI, and :func:`metrics_table`
* :mod:`her2dlr.evaluate.compare` - Wilson CIs of threshold metrics, paired bootstrap comparison,
  unpaired DeLong test of two cohorts
* :mod:`her2dlr.evaluate.calibration` - calibration curves, slope and intercept, Brier, Hosmer-Lemeshow
* :mod:`her2dlr.evaluate.decision` - decision curves (net benefit)
* :mod:`her2dlr.evaluate.tables` - baseline characteristics table, univariable/multivariable odds ratios

Checked against R (pROC, rms, stats) by ``scripts/r/evaluate_reference.R`` and against the
``dcurves`` package; see ``tests/test_evaluate_reference.py`` and ``her2dlr bench reference``.
The submodules are imported on first use of a name below, so importing the package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "AUCResult",
    "DeLongTest",
    "HosmerLemeshowResult",
    "OddsRatioTable",
    "auc_ci",
    "auc_interval",
    "baseline_table",
    "bootstrap_auc_ci",
    "bootstrap_compare",
    "brier_score",
    "calibration_curve_binned",
    "calibration_loess",
    "calibration_slope_intercept",
    "calibration_summary",
    "cluster_bootstrap_auc_ci",
    "clustered_auc_ci",
    "clustered_proportion_ci",
    "decision_curve",
    "delong_auc_ci",
    "delong_covariance",
    "delong_test",
    "delong_unpaired",
    "hosmer_lemeshow",
    "metrics_table",
    "odds_ratio_table",
    "threshold_metrics",
    "threshold_metrics_ci",
    "wilson_ci",
]

_WHERE = {
    "delong": ("AUCResult", "DeLongTest", "delong_auc_ci", "delong_covariance", "delong_test"),
    "clustered": ("auc_interval", "cluster_bootstrap_auc_ci", "clustered_auc_ci", "clustered_proportion_ci"),
    "metrics": ("auc_ci", "bootstrap_auc_ci", "metrics_table", "threshold_metrics"),
    "compare": ("bootstrap_compare", "delong_unpaired", "threshold_metrics_ci", "wilson_ci"),
    "calibration": ("HosmerLemeshowResult", "brier_score", "calibration_curve_binned", "calibration_loess",
                    "calibration_slope_intercept", "calibration_summary", "hosmer_lemeshow"),
    "decision": ("decision_curve",),
    "tables": ("OddsRatioTable", "baseline_table", "odds_ratio_table"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"her2dlr.evaluate.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module 'her2dlr.evaluate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
