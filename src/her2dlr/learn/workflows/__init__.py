"""Workflow search (the WORC idea on nested folds): feature set, selection chain and classifier with
its hyper-parameters as one search space, scored by inner-CV AUC, the top-k averaged.

See :mod:`her2dlr.learn.workflows.space` (the space), :mod:`her2dlr.learn.workflows.search`
(the search) and :mod:`her2dlr.learn.workflows.ensemble` (the averaged model).
"""

from her2dlr.learn.workflows.ensemble import WorkflowEnsemble
from her2dlr.learn.workflows.search import search_workflows, workflow_table
from her2dlr.learn.workflows.space import (
    CHAINS,
    FEATURE_SETS,
    LASSO_PATIENCE,
    ColumnSubset,
    Workflow,
    WorkflowSpace,
    with_lasso_patience,
)

__all__ = ["CHAINS", "FEATURE_SETS", "LASSO_PATIENCE", "ColumnSubset", "Workflow", "WorkflowEnsemble", "WorkflowSpace",
           "search_workflows", "with_lasso_patience", "workflow_table"]
