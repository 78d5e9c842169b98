"""Evaluation: AUC with DeLong confidence intervals, threshold metrics, results tables.

* :mod:`her2dlr.evaluate.delong` - fast DeLong (Sun & Xu 2014): AUC variance, CI, paired test
* :mod:`her2dlr.evaluate.metrics` - accuracy, sensitivity, ..., and :func:`metrics_table`
"""
