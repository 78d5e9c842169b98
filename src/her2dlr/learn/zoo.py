"""Model registry: the classifiers a study can name, their class weighting and default grids.

=============  ==================================================  ===============================
name           estimator                                           class weighting
=============  ==================================================  ===============================
``lr``         L2 logistic regression (lbfgs)                      ``class_weight="balanced"``
``svm``        RBF SVC, Platt-calibrated by CalibratedClassifierCV ``class_weight="balanced"``
``rf``         random forest, 300 trees                            ``class_weight="balanced"``
``extratrees`` extremely randomised trees, 300 trees               ``class_weight="balanced"``
``xgboost``    XGBoost (hist), 200 rounds                          ``scale_pos_weight`` = n_neg / n_pos of the training fold
``lightgbm``   LightGBM, quiet                                     ``class_weight="balanced"``
``knn``        k nearest neighbours                                none (not supported)
``nb``         Gaussian naive Bayes                                none (class priors shift every log-odds by one constant: AUC unchanged)
=============  ==================================================  ===============================

**SVM probabilities.** ``SVC(probability=True)`` is deprecated in scikit-learn 1.9; it ran
libsvm's internal 5-fold Platt scaling with its own random state. We use
``CalibratedClassifierCV(SVC(...), method="sigmoid", cv=StratifiedKFold(3), ensemble=False)``:
the same Platt sigmoid, fitted on out-of-fold decision values of a deterministic stratified
3-fold split, then applied to one SVC refitted on all training rows. Because the sigmoid is
monotone, the probabilities rank cases exactly as the final SVC's decision function (AUC is
that of the SVC); it costs 4 SVC fits instead of libsvm's 6.

**Parallelism.** Every model runs single-threaded (``n_jobs=1``, LightGBM ``n_jobs=1``,
XGBoost ``n_jobs=1``); parallelism lives one level up, in the inner search (``n_jobs`` of
:class:`~her2dlr.learn.tuning.SearchSettings`), so a 2-core laptop is never oversubscribed.

**Feature names.** XGBoost refuses names with ``[``, ``]`` or ``<`` and LightGBM refuses JSON
special characters. Both are wrapped in :class:`ArrayInputClassifier`, which hands them a plain
float array (the names stay in ``feature_names_in_``); the other models take DataFrames as is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from her2dlr.errors import StudyFileError, nearest

__all__ = [
    "ALIASES",
    "MODELS",
    "ArrayInputClassifier",
    "ModelSpec",
    "get_model",
    "list_models",
    "make_model",
    "model_grid",
]


class ArrayInputClassifier(ClassifierMixin, BaseEstimator):
    """Give the wrapped classifier a float array instead of a DataFrame (names kept here).

    The boundary with libraries that refuse some characters in feature names (LightGBM: JSON
    special characters; XGBoost: ``[``, ``]``, ``<``): they see columns by position only.
    With ``balance_pos_weight`` it sets ``scale_pos_weight = n_negative / n_positive`` of the
    training rows (XGBoost's class weighting) on a clone before fitting; with more than two
    classes it passes balanced sample weights instead.

    Parameters
    ----------
    estimator : classifier
        Unfitted; cloned in ``fit``.
    balance_pos_weight : bool, default=False

    Attributes
    ----------
    estimator_ : fitted classifier
    classes_ : ndarray of shape (2,)
    feature_names_in_ : ndarray of str, only when fitted on a DataFrame
    n_features_in_ : int
    """

    def __init__(self, estimator: Any = None, *, balance_pos_weight: bool = False) -> None:
        self.estimator = estimator
        self.balance_pos_weight = balance_pos_weight

    @staticmethod
    def _array(X: Any) -> np.ndarray:
        return np.asarray(X.to_numpy(dtype=np.float64) if isinstance(X, pd.DataFrame) else X, dtype=np.float64)

    def fit(self, X: Any, y: Any, **fit_params: Any) -> ArrayInputClassifier:
        """Fit a clone of ``estimator`` on ``X`` as a float array.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_cases, n_features)
        y : array-like of shape (n_cases,)
        """
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        Xa = self._array(X)
        self.n_features_in_ = Xa.shape[1]
        est = clone(self.estimator)
        y = np.asarray(y)
        if self.balance_pos_weight:
            classes = np.unique(y)
            if len(classes) > 2:  # scale_pos_weight is binary-only: weight each case by n / (k * n_class)
                from sklearn.utils.class_weight import compute_sample_weight

                fit_params = {**fit_params, "sample_weight": compute_sample_weight("balanced", y)}
            else:
                n_pos = int((y == classes[-1]).sum())
                est.set_params(scale_pos_weight=(len(y) - n_pos) / max(n_pos, 1))
        self.estimator_ = est.fit(Xa, y, **fit_params)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n_cases, n_classes)."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(self._array(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted classes, shape (n_cases,)."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(self._array(X))

    @property
    def feature_importances_(self) -> np.ndarray:
        """Importances of the wrapped model, in input column order."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.feature_importances_


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the model zoo.

    Attributes
    ----------
    name : str
    description : str
    factory : callable ``random_state -> estimator``
    grid : dict
        Default hyper-parameter grid, keys as the user writes them (``C``, ``max_depth``).
    prefix : str
        Where those keys live inside the built estimator (``"estimator__"`` for wrapped models).
    needs_scaling : bool
        Distance / margin based: the pipeline puts a z-score step right before it.
    class_weighting : str
        How classes are balanced (for the model card).
    """

    name: str
    description: str
    factory: Callable[[int], BaseEstimator]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    prefix: str = ""
    needs_scaling: bool = False
    class_weighting: str = "none"


def _lr(seed: int) -> BaseEstimator:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000, random_state=seed)


def _svm(seed: int) -> BaseEstimator:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import SVC

    svc = SVC(C=1.0, kernel="rbf", gamma="scale", class_weight="balanced", random_state=seed)
    return CalibratedClassifierCV(svc, method="sigmoid", ensemble=False,
                                  cv=StratifiedKFold(3, shuffle=True, random_state=seed))


def _rf(seed: int) -> BaseEstimator:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=300, class_weight="balanced", n_jobs=1, random_state=seed)


def _et(seed: int) -> BaseEstimator:
    from sklearn.ensemble import ExtraTreesClassifier

    return ExtraTreesClassifier(n_estimators=300, class_weight="balanced", n_jobs=1, random_state=seed)


def _xgb(seed: int) -> BaseEstimator:
    from xgboost import XGBClassifier

    model = XGBClassifier(n_estimators=200, learning_rate=0.05, max_depth=3, subsample=0.8,
                          colsample_bytree=0.8, tree_method="hist", n_jobs=1, verbosity=0, random_state=seed)
    return ArrayInputClassifier(model, balance_pos_weight=True)


def _lgbm(seed: int) -> BaseEstimator:
    from lightgbm import LGBMClassifier

    model = LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=7, min_child_samples=10,
                           subsample=0.8, subsample_freq=1, colsample_bytree=0.8, class_weight="balanced",
                           n_jobs=1, verbose=-1, random_state=seed)
    return ArrayInputClassifier(model)


def _knn(seed: int) -> BaseEstimator:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=11, n_jobs=1)


def _nb(seed: int) -> BaseEstimator:
    from sklearn.naive_bayes import GaussianNB

    return GaussianNB()


#: The zoo. Grids have 3-4 settings so an inner 5-fold search is ~20 fits per outer fold.
MODELS: dict[str, ModelSpec] = {
    "lr": ModelSpec("lr", "logistic regression (L2)", _lr, {"C": [0.01, 0.1, 1.0, 10.0]},
                    needs_scaling=True, class_weighting="class_weight='balanced'"),
    "svm": ModelSpec("svm", "support vector machine (RBF, Platt-calibrated)", _svm,
                     {"C": [0.1, 1.0, 10.0]}, prefix="estimator__", needs_scaling=True,
                     class_weighting="class_weight='balanced'"),
    "rf": ModelSpec("rf", "random forest", _rf, {"max_depth": [3, None], "min_samples_leaf": [1, 5]},
                    class_weighting="class_weight='balanced'"),
    "extratrees": ModelSpec("extratrees", "extremely randomised trees", _et,
                            {"max_depth": [3, None], "min_samples_leaf": [1, 5]},
                            class_weighting="class_weight='balanced'"),
    "xgboost": ModelSpec("xgboost", "gradient boosting (XGBoost)", _xgb,
                         {"max_depth": [2, 4], "learning_rate": [0.03, 0.1]}, prefix="estimator__",
                         class_weighting="scale_pos_weight = n_negative / n_positive of the training fold"),
    "lightgbm": ModelSpec("lightgbm", "gradient boosting (LightGBM)", _lgbm,
                          {"num_leaves": [4, 15], "learning_rate": [0.03, 0.1]}, prefix="estimator__",
                          class_weighting="class_weight='balanced'"),
    "knn": ModelSpec("knn", "k nearest neighbours", _knn, {"n_neighbors": [5, 11, 21]}, needs_scaling=True),
    "nb": ModelSpec("nb", "Gaussian naive Bayes", _nb, {"var_smoothing": [1e-9, 1e-6, 1e-3]},
                    class_weighting="none (priors shift all log-odds equally)"),
}

#: Other spellings accepted in a study file.
ALIASES: dict[str, str] = {
    "logistic": "lr", "logistic_regression": "lr", "logisticregression": "lr",
    "svc": "svm", "random_forest": "rf", "randomforest": "rf",
    "et": "extratrees", "extra_trees": "extratrees",
    "xgb": "xgboost", "lgbm": "lightgbm", "lgb": "lightgbm",
    "k-nn": "knn", "naive_bayes": "nb", "gnb": "nb", "naivebayes": "nb",
}


def get_model(name: str) -> ModelSpec:
    """The zoo entry of ``name`` (case-insensitive, aliases accepted).

    Raises
    ------
    StudyFileError
        Unknown name: lists the allowed names and suggests the nearest.
    """
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in MODELS:
        options = list(MODELS) + list(ALIASES)
        raise StudyFileError(
            f"Unknown model '{name}'. Allowed: {', '.join(MODELS)} (aliases: {', '.join(ALIASES)})."
            f"{nearest(key, options)}"
        )
    return MODELS[key]


def make_model(name: str, *, random_state: int = 0, params: Mapping[str, Any] | None = None) -> BaseEstimator:
    """A fresh, unfitted estimator of zoo model ``name``.

    Parameters
    ----------
    name : str
    random_state : int, default=0
    params : dict, optional
        Fixed hyper-parameters, keys as in :attr:`ModelSpec.grid` (e.g. ``{"C": 0.5}``).

    Raises
    ------
    StudyFileError
        Unknown model name or hyper-parameter (names the model and the valid keys).
    """
    spec = get_model(name)
    est = spec.factory(random_state)
    if params:
        est.set_params(**_prefixed(spec, est, params))
    return est


def _prefixed(spec: ModelSpec, est: BaseEstimator, params: Mapping[str, Any]) -> dict[str, Any]:
    valid = {k[len(spec.prefix):] for k in est.get_params(deep=True) if k.startswith(spec.prefix)}
    valid = {k for k in valid if "__" not in k}
    for key in params:
        if key not in valid:
            raise StudyFileError(
                f"Model '{spec.name}' has no hyper-parameter '{key}'. Valid: {', '.join(sorted(valid))}."
                f"{nearest(key, valid)}"
            )
    return {spec.prefix + k: v for k, v in params.items()}


def model_grid(name: str, grid: Mapping[str, list[Any]] | None = None, *, step: str = "model") -> dict[str, list[Any]]:
    """Hyper-parameter grid of zoo model ``name`` with Pipeline keys (``model__C``).

    Parameters
    ----------
    name : str
    grid : dict, optional
        Replaces the default grid; keys as the user writes them. ``{}`` means no search.
    step : str, default="model"
        Name of the model step in the Pipeline.
    """
    spec = get_model(name)
    user = spec.grid if grid is None else grid
    est = spec.factory(0)
    for key, values in user.items():
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise StudyFileError(f"Grid of model '{spec.name}': '{key}' needs a non-empty list of values; got {values!r}.")
    return {f"{step}__{k}": list(v) for k, v in _prefixed(spec, est, user).items()}


def list_models() -> dict[str, str]:
    """Name -> one-line description of every zoo model."""
    return {name: spec.description for name, spec in MODELS.items()}
