"""Feature selection as scikit-learn transformers, each fitted on the training fold only.

Every selector takes a DataFrame (names kept as given, any characters) or an array, and
returns the same kind; ``get_support`` and ``get_feature_names_out`` say what survived.

======================  ==========================================================
study-file name         class
======================  ==========================================================
``variance``            :class:`MissingVarianceFilter` (drop all-missing/constant, impute median)
``zscore``              :class:`ZScore`
``ttest``               :class:`UnivariateFilter` (``test="ttest"``)
``mannwhitney``         :class:`UnivariateFilter` (``test="mannwhitney"``)
``anova``               :class:`UnivariateFilter` (``test="anova"``, one-way ANOVA F)
``kruskal``             :class:`UnivariateFilter` (``test="kruskal"``, Kruskal-Wallis H)
``pearson``             :class:`PearsonRedundancy`
``greedy``              :class:`GreedyElimination` (seed 002)
``mrmr``                :class:`MRMR`
``lasso``               :class:`LassoSelector` (L1 logistic, 10-fold CV)
``rfe``                 :class:`RFESelector`
``chi2``                :class:`ChiSquareSelector`
``mutual_info``         :class:`MutualInfoSelector`
``icc``                 :class:`ICCFilter` (seed 003)
======================  ==========================================================

Every step accepts a multi-class label (class numbers 0 .. k-1): ``ttest`` / ``mannwhitney``
run their k-sample counterparts (ANOVA / Kruskal-Wallis), ``lasso`` a multinomial L1 logistic
regression, ``pearson`` / ``greedy`` a one-vs-rest relevance; ``_multiclass`` marks them.
"""

from __future__ import annotations

from her2dlr.learn.selection._base import BaseSelector
from her2dlr.learn.selection.build import (
    SELECTION_STEPS,
    build_selection,
    selection_funnel,
    step_parameters,
)
from her2dlr.learn.selection.embedded import LassoSelector, RFESelector
from her2dlr.learn.selection.filters import MissingVarianceFilter, ZScore
from her2dlr.learn.selection.icc import ICC_FORMS, ICCFilter, intraclass_correlation
from her2dlr.learn.selection.redundancy import (
    MRMR,
    GreedyElimination,
    PearsonRedundancy,
    abs_correlation,
)
from her2dlr.learn.selection.univariate import (
    ChiSquareSelector,
    MutualInfoSelector,
    TopKSelector,
    UnivariateFilter,
)

__all__ = [
    "ICC_FORMS",
    "MRMR",
    "SELECTION_STEPS",
    "BaseSelector",
    "ChiSquareSelector",
    "GreedyElimination",
    "ICCFilter",
    "LassoSelector",
    "MissingVarianceFilter",
    "MutualInfoSelector",
    "PearsonRedundancy",
    "RFESelector",
    "TopKSelector",
    "UnivariateFilter",
    "ZScore",
    "abs_correlation",
    "build_selection",
    "intraclass_correlation",
    "selection_funnel",
    "step_parameters",
]
