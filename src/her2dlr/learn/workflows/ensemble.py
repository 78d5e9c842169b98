"""The top-k ensemble of a workflow search: a scikit-learn classifier that averages its members."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from her2dlr.checks import param_error

__all__ = ["WorkflowEnsemble"]


class WorkflowEnsemble(ClassifierMixin, BaseEstimator):
    """Mean of the predicted probabilities of several pipelines, each refitted on the same rows.

    A plain scikit-learn estimator (``fit`` / ``predict_proba`` / ``predict``, clones, pickles),
    so model artefacts, ``her2dlr predict``, tracking and serving treat it like any pipeline.

    Parameters
    ----------
    members : sequence of Pipeline
        Unfitted workflows (column selector -> selection -> classifier); cloned in ``fit``.
    names : sequence of str, optional
        One name per member (e.g. the workflow ids), kept for the model card and reports.

    Attributes
    ----------
    estimators_ : list of Pipeline
        The fitted members.
    classes_ : ndarray of shape (2,)
    feature_names_in_ : ndarray of str
        Columns seen in ``fit`` (when ``X`` was a DataFrame).

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> X, y = make_classification(60, 4, random_state=0)
    >>> ens = WorkflowEnsemble([make_pipeline(LogisticRegression(C=c)) for c in (0.1, 1.0)]).fit(X, y)
    >>> ens.predict_proba(X).shape
    (60, 2)
    """

    def __init__(self, members: Sequence[Pipeline] = (), names: Sequence[str] | None = None) -> None:
        self.members = members
        self.names = names

    def fit(self, X: Any, y: Any) -> WorkflowEnsemble:
        """Fit every member on ``X``, ``y``."""
        if len(self.members) == 0:
            raise param_error(self, "members", "a non-empty list of pipelines", self.members)
        if self.names is not None and len(self.names) != len(self.members):
            raise param_error(self, "names", f"one name per member ({len(self.members)})", self.names)
        self.estimators_ = [clone(m).fit(X, y) for m in self.members]
        self.classes_ = self.estimators_[0].classes_
        self.n_features_in_ = np.shape(X)[1]
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Mean of the members' ``predict_proba``, shape (n_cases, 2)."""
        check_is_fitted(self, "estimators_")
        return np.mean([est.predict_proba(X) for est in self.estimators_], axis=0)

    def predict(self, X: Any) -> np.ndarray:
        """Class with the larger mean probability."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    @property
    def used_features_(self) -> list[str]:
        """Input columns reaching at least one member's classifier, in first-seen order."""
        check_is_fitted(self, "estimators_")
        seen: dict[str, None] = {}
        for est in self.estimators_:
            names = est[:-1].get_feature_names_out() if len(est) > 1 else getattr(self, "feature_names_in_", [])
            seen.update(dict.fromkeys(str(n) for n in names))
        return list(seen)
