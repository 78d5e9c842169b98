"""The workflow search space: feature set x selection chain x classifier with its hyper-parameters.

A *workflow* is one complete pipeline: a column selector (:class:`ColumnSubset`, the feature
set), a selection chain built from the selection registry (:func:`her2dlr.learn.selection.build_selection`)
and a zoo classifier with one hyper-parameter setting (:func:`her2dlr.learn.zoo.model_grid`).
:class:`WorkflowSpace` holds what may be combined and the budget; :meth:`WorkflowSpace.sample`
draws the workflows to try, seeded, without repeats.

Feature sets are rules on column names (shell-style patterns, :func:`fnmatch.fnmatchcase`):

==============  ===========================================================================
``all``         every column of the learning table
``original``    PyRadiomics' Original image type (columns starting ``original_``)
``shape``       PyRadiomics shape features of the Original image (``original_shape*``)
``firstorder``  first-order (histogram) features of every image type (``*_firstorder_*``)
``texture``     GLCM, GLRLM, GLSZM, GLDM and NGTDM features of every image type
``log``         Laplacian-of-Gaussian image types (``log-sigma-*``)
``wavelet``     wavelet image types (``wavelet-*``)
==============  ===========================================================================

A study names further sets as ``{name: ..., columns: [patterns]}``; when feature tables with
clashing column names are joined, their columns carry a ``<table>:`` prefix, so
``{name: deep, columns: ["deep_features:*"]}`` selects one table.

Selection chains (:data:`CHAINS`): ``none`` (missing / constant filter and z-score: no
selection), ``unsupervised`` (+ Pearson and greedy redundancy pruning at ``|r| > 0.9``; the
label only breaks ties between correlated features), ``seed002`` (seed 002's chain,
:data:`her2dlr.learn.settings.DEFAULT_SELECTION`), ``lasso`` (z-score, Pearson pruning, then L1
logistic with its penalty chosen by 5-fold CV: on a hundred strongly correlated radiomics
features liblinear's L1 path without the pruning takes minutes per fit) and ``mrmr`` (z-score +
mRMR, 20 features). A study may name its own chain as ``{name: ..., steps: [selection steps]}``.

The LASSO steps of the built-in chains stop their penalty path three values after the best
mean CV score (:data:`LASSO_PATIENCE`, :func:`with_lasso_patience`,
:class:`~her2dlr.learn.selection.LassoSelector`): the weakly penalised end of the path is the
slow, overfitting part, and a search fits these chains dozens of times. On BUSI's radiomics
tables this chose the same penalty as the full grid in 24 of 24 fits, in 40% of the time.
``learn.selection`` outside the search keeps the full grid.
"""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from her2dlr.checks import check_number, param_error
from her2dlr.errors import InputError, nearest
from her2dlr.learn.selection import build_selection
from her2dlr.learn.settings import DEFAULT_MODELS, DEFAULT_SELECTION
from her2dlr.learn.tuning import build_pipeline
from her2dlr.learn.zoo import get_model, model_grid

__all__ = ["CHAINS", "FEATURE_SETS", "LASSO_PATIENCE", "ColumnSubset", "Workflow", "WorkflowSpace",
           "with_lasso_patience"]

_TEXTURE = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")
#: Built-in feature sets: name -> column-name patterns.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "all": ("*",),
    "original": ("original_*",),
    "shape": ("original_shape*",),
    "firstorder": ("*_firstorder_*",),
    "texture": tuple(f"*_{t}_*" for t in _TEXTURE),
    "log": ("log-sigma-*",),
    "wavelet": ("wavelet-*",),
}
_BASE = [{"name": "variance"}, {"name": "zscore"}]
#: Penalties fitted past the best mean CV score before a search chain's LASSO stops its path.
LASSO_PATIENCE = 3


def with_lasso_patience(steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of selection ``steps`` whose LASSO steps stop their penalty path early (:data:`LASSO_PATIENCE`,
    unless a step names its own ``patience``)."""
    return [{**step, "patience": step.get("patience", LASSO_PATIENCE)} if step["name"] == "lasso" else dict(step)
            for step in steps]


#: Built-in selection chains: name -> selection steps (study-file style).
CHAINS: dict[str, list[dict[str, Any]]] = {
    "none": _BASE,
    "unsupervised": [*_BASE, {"name": "pearson", "threshold": 0.9}, {"name": "greedy", "threshold": 0.9}],
    "seed002": with_lasso_patience(DEFAULT_SELECTION),
    "lasso": with_lasso_patience([*_BASE, {"name": "pearson", "threshold": 0.9}, {"name": "lasso", "cv": 5, "n_cs": 10}]),
    "mrmr": [*_BASE, {"name": "mrmr", "n_features": 20}],
}


class ColumnSubset(TransformerMixin, BaseEstimator):
    """Keep the columns whose names match any of ``patterns`` (a feature set), fitted in the pipeline.

    Parameters
    ----------
    patterns : sequence of str, default=("*",)
        Shell-style patterns (:func:`fnmatch.fnmatchcase`, case-sensitive).
    name : str, default="all"
        The feature set's name (for messages).

    Attributes
    ----------
    feature_names_in_ : ndarray of str
        Columns seen in ``fit`` (what a saved model needs).
    columns_ : list of str
        The matching columns, in table order.
    """

    def __init__(self, patterns: Sequence[str] = ("*",), name: str = "all") -> None:
        self.patterns = patterns
        self.name = name

    def _names(self, X: Any) -> list[str]:
        if isinstance(X, pd.DataFrame):
            return [str(c) for c in X.columns]
        if tuple(self.patterns) == ("*",):
            return [f"x{j}" for j in range(np.shape(X)[1])]
        raise InputError(f"Feature set '{self.name}' selects columns by name; give a DataFrame, not an array.")

    def fit(self, X: Any, y: Any = None) -> ColumnSubset:
        """Find the matching columns of ``X``.

        Raises
        ------
        InputError
            No column matches (names the feature set and its patterns).
        """
        names = self._names(X)
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        self.columns_ = [c for c in names if any(fnmatch.fnmatchcase(c, p) for p in self.patterns)]
        if not self.columns_:
            raise InputError(f"Feature set '{self.name}' ({', '.join(self.patterns)}) matches none of the "
                             f"{len(names)} columns, e.g. {names[:3]}.")
        self.support_ = np.isin(np.asarray(names, dtype=object), np.asarray(self.columns_, dtype=object))
        return self

    def transform(self, X: Any) -> Any:
        """The feature set's columns of ``X``."""
        check_is_fitted(self, "columns_")
        if isinstance(X, pd.DataFrame):
            return X[self.columns_]
        return np.asarray(X)[:, self.support_]

    def get_support(self) -> np.ndarray:
        """Boolean mask of the kept input columns (read by the selection funnel)."""
        check_is_fitted(self, "support_")
        return self.support_

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the kept columns."""
        check_is_fitted(self, "columns_")
        return np.asarray(self.columns_, dtype=object)


@dataclass(frozen=True)
class Workflow:
    """One point of the space.

    Attributes
    ----------
    id : str
        ``w<index in the sampled order>``.
    feature_set, chain : str
    model : str
        The classifier's label (a zoo name unless the study relabels it).
    params : dict
        Hyper-parameters, user keys (e.g. ``{"C": 0.1}``).
    """

    id: str
    feature_set: str
    chain: str
    model: str
    params: dict[str, Any] = field(default_factory=dict, hash=False)

    def describe(self) -> str:
        """``feature_set / chain / model k=v ...``."""
        kv = " ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.feature_set}/{self.chain}/{self.model}{' ' + kv if kv else ''}"


def _named(kind: str, entries: Sequence[Any], builtin: Mapping[str, Any], body: str) -> dict[str, Any]:
    """Resolve ``entries`` (built-in names, or ``{name, <body>}`` mappings) into ``name -> body``."""
    out: dict[str, Any] = {}
    for entry in entries:
        if isinstance(entry, str):
            if entry not in builtin:
                raise InputError(f"learn.search.workflows.{kind}: unknown name '{entry}'. Built-in: "
                                 f"{', '.join(builtin)}; or give {{name: ..., {body}: [...]}}.{nearest(entry, builtin)}")
            out[entry] = builtin[entry]
        elif isinstance(entry, Mapping) and set(entry) == {"name", body}:
            out[str(entry["name"])] = entry[body]
        else:
            raise InputError(f"learn.search.workflows.{kind}: each entry is a name ({', '.join(builtin)}) or "
                             f"{{name: ..., {body}: [...]}}; got {entry!r}.")
    if not out:
        raise InputError(f"learn.search.workflows.{kind}: give at least one.")
    return out


@dataclass
class WorkflowSpace:
    """What the workflow search may combine, and its budget.

    Parameters
    ----------
    feature_sets : list of str or dict, default=["all"]
        Built-in names (:data:`FEATURE_SETS`) or ``{"name": ..., "columns": [patterns]}``.
    chains : list of str or dict, default=all of :data:`CHAINS`
        Built-in names or ``{"name": ..., "steps": [selection steps]}``.
    models : list of str or dict, default=seed 002's six classifiers
        Zoo names or ``{"name": zoo name, "label": ..., "grid": {...}, "params": {...}}``; the
        grid's values are what the search samples (the zoo's default grid when absent).
    n_workflows : int or None, default=60
        Workflows tried (all of the space when smaller). ``None``: until ``seconds`` runs out.
    seconds : float or None, default=None
        Wall-time budget of one search; checked between batches of workflows, so a search
        stops at most one batch late. Results then depend on the machine's speed.
    top_k : int, default=5
        Workflows in the ensemble (1: the best workflow alone).
    batch : int, default=8
        Workflows evaluated between two checks of ``seconds`` (and progress updates).
    """

    feature_sets: list[Any] = field(default_factory=lambda: ["all"])
    chains: list[Any] = field(default_factory=lambda: list(CHAINS))
    models: list[Any] = field(default_factory=lambda: list(DEFAULT_MODELS))
    n_workflows: int | None = 60
    seconds: float | None = None
    top_k: int = 5
    batch: int = 8

    def __post_init__(self) -> None:
        if self.n_workflows is None and self.seconds is None:
            raise InputError("learn.search.workflows: give a budget: 'n_workflows', 'seconds' or both.")
        if self.n_workflows is not None:
            check_number("learn.search.workflows", "n_workflows", self.n_workflows, low=1, integer=True)
        if self.seconds is not None:
            check_number("learn.search.workflows", "seconds", self.seconds, low=0, low_open=True)
        check_number("learn.search.workflows", "top_k", self.top_k, low=1, integer=True)
        check_number("learn.search.workflows", "batch", self.batch, low=1, integer=True)
        if self.n_workflows is not None and self.top_k > self.n_workflows:
            raise param_error("learn.search.workflows", "top_k", f"<= n_workflows ({self.n_workflows})", self.top_k)
        self.feature_set_patterns = {k: tuple(v) for k, v in _named("feature_sets", self.feature_sets,
                                                                      FEATURE_SETS, "columns").items()}
        for name, patterns in self.feature_set_patterns.items():
            if not patterns or not all(isinstance(p, str) for p in patterns):
                raise InputError(f"learn.search.workflows.feature_sets '{name}': 'columns' must be a non-empty list "
                                 f"of name patterns; got {list(patterns)!r}.")
        self.chain_steps = {k: [dict(s) for s in v] for k, v in _named("chains", self.chains, CHAINS, "steps").items()}
        for name, steps in self.chain_steps.items():
            try:
                build_selection(steps, check_only=True)
            except Exception as exc:
                raise InputError(f"learn.search.workflows.chains '{name}': {exc}") from None
        self.model_entries = self._models()

    def _models(self) -> dict[str, tuple[str, dict[str, list[Any]], dict[str, Any]]]:
        """label -> (zoo name, grid with user keys, fixed params)."""
        out = {}
        for entry in self.models:
            spec = dict(entry) if isinstance(entry, Mapping) else {"name": entry}
            unknown = set(spec) - {"name", "label", "grid", "params"}
            if unknown or "name" not in spec:
                raise InputError(f"learn.search.workflows.models: each entry is a zoo name or {{name, label, grid, "
                                 f"params}}; got {entry!r}.")
            try:
                zoo = get_model(spec["name"])
                grid = model_grid(zoo.name, spec.get("grid"))
            except Exception as exc:
                raise InputError(f"learn.search.workflows.models: {exc}") from None
            user_grid = {k[len("model__") + len(zoo.prefix):]: v for k, v in grid.items()}
            out[str(spec.get("label") or zoo.name)] = (zoo.name, user_grid, dict(spec.get("params") or {}))
        if not out:
            raise InputError("learn.search.workflows.models: give at least one.")
        return out

    def size(self) -> int:
        """Number of distinct workflows in the space."""
        n_models = sum(int(np.prod([len(v) for v in g.values()])) for _, g, _ in self.model_entries.values())
        return len(self.feature_set_patterns) * len(self.chain_steps) * n_models

    def enumerate(self) -> list[Workflow]:
        """Every workflow of the space, in a fixed order (ids not yet assigned)."""
        out = []
        for fs, chain, (label, (_, grid, _)) in itertools.product(self.feature_set_patterns, self.chain_steps,
                                                                  self.model_entries.items()):
            keys = list(grid)
            for values in itertools.product(*(grid[k] for k in keys)):
                out.append(Workflow("", fs, chain, label, dict(zip(keys, values))))
        return out

    def sample(self, random_state: int = 0) -> list[Workflow]:
        """The workflows to try, in the order they are tried: a seeded random order of the space,
        cut at ``n_workflows``."""
        every = self.enumerate()
        order = np.random.default_rng(random_state).permutation(len(every))
        if self.n_workflows is not None:
            order = order[: self.n_workflows]
        return [Workflow(f"w{i:03d}", every[j].feature_set, every[j].chain, every[j].model, every[j].params)
                for i, j in enumerate(order)]

    def prefix(self, workflow: Workflow) -> list[tuple[str, BaseEstimator]]:
        """Unfitted column selector + selection steps of ``workflow`` (shared by workflows with the same
        feature set and chain)."""
        patterns = self.feature_set_patterns[workflow.feature_set]
        return [("columns", ColumnSubset(patterns, workflow.feature_set)),
                *build_selection(self.chain_steps[workflow.chain])]

    def pipeline(self, workflow: Workflow, random_state: int = 0) -> Pipeline:
        """The unfitted pipeline of ``workflow``: columns -> chain [-> z-score] -> classifier."""
        zoo, _, fixed = self.model_entries[workflow.model]
        return build_pipeline(self.prefix(workflow), zoo, params={**fixed, **workflow.params},
                              random_state=random_state)
