"""Clinical, combined (early fusion) and late-fusion models, on the same outer loop as radiomics.

Nothing here has its own cross-validation loop: every model goes through
:func:`her2dlr.learn.cv.run_outer_cv` with a *features frame of raw columns* and a list of
``(name, transformer)`` steps placed before the classifier, so the encoding and the
selection are fitted inside each outer (and inner) training fold like any selector:

clinical model (:func:`clinical_steps`)
    The manifest's clinical columns, raw (text, numbers, ``&``-joined cells, missing values),
    typed by ``manifest.clinical_types`` -> :class:`~her2dlr.learn.clinical.ClinicalEncoder`
    -> :class:`~her2dlr.evaluate.logistic.UnivariableMultivariableSelector` (seed 002:
    univariable logistic regression, p < ``alpha_uni``, then backward stepwise multivariable,
    p < ``alpha_multi``) -> classifier (tuned in-fold).
combined model, early fusion (:func:`early_fusion_steps`)
    One ``ColumnTransformer``: the radiomics columns through the radiomics selection, the
    clinical columns through encoder + clinical selector, outputs concatenated with their
    names kept apart (``radiomics__<feature>``, ``clinical__<variable>``) -> classifier.
late fusion (:func:`late_fusion`, seed 003)
    The mean of the clinical and the imaging model's probabilities, fold by fold: test rows
    of each outer fold, and the inner out-of-fold training predictions (both models use the
    same inner splits: same training rows, groups and seed), from which the fused threshold
    is chosen exactly as for a single model.

A label of more than two classes uses the multinomial selector in the clinical steps
(:mod:`her2dlr.learn.clinical_multiclass`) and class-by-class late fusion
(:mod:`her2dlr.learn.multiclass_fusion`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from her2dlr.cohort.manifest import Manifest
from her2dlr.errors import InputError
from her2dlr.learn.cv import PREDICTION_COLUMNS, CVResult
from her2dlr.learn.thresholds import ThresholdRule, apply_threshold, choose_threshold

__all__ = [
    "CLINICAL_FEATURE",
    "CLINICAL_PREFIX",
    "RADIOMICS_PREFIX",
    "clinical_frame",
    "clinical_steps",
    "clinical_variables",
    "early_fusion_steps",
    "late_fusion",
    "selected_clinical_variables",
]

#: Name of the clinical table in ``learn.features``.
CLINICAL_FEATURE = "clinical"
#: Column-name prefixes of the combined model's two blocks.
RADIOMICS_PREFIX = "radiomics__"
CLINICAL_PREFIX = "clinical__"


def clinical_frame(manifest: Manifest, columns: Sequence[str] | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """The raw clinical columns of a manifest, indexed by case id, and their types.

    Parameters
    ----------
    manifest : Manifest
    columns : list of str, optional
        A subset of ``manifest.clinical_columns`` (default: all).

    Raises
    ------
    InputError
        The manifest has no clinical columns, or a requested one is not among them.
    """
    if not isinstance(manifest, Manifest):
        raise InputError("The clinical model needs a Manifest (it names the clinical columns and their types).")
    cols = list(columns) if columns is not None else list(manifest.clinical_columns)
    if not cols:
        raise InputError("The manifest has no clinical columns: name them in the cohort source (clinical_columns).")
    unknown = [c for c in cols if c not in manifest.clinical_columns]
    if unknown:
        raise InputError(f"Clinical column(s) {unknown} are not among the manifest's {manifest.clinical_columns}.")
    table = manifest.table
    frame = table.set_index(table["case_id"].astype(str))[cols].astype(object)
    frame = frame.where(frame.notna(), None)
    frame.index.name = "case_id"
    types = {c: manifest.clinical_types.get(c, "categorical") for c in cols}
    return frame, types


def clinical_steps(types: Mapping[str, str], options: Mapping[str, Any] | None = None, *,
                   multiclass: bool = False) -> list[tuple[str, Any]]:
    """``[("encode", ClinicalEncoder), ("clinical_select", UnivariableMultivariableSelector)]``.

    Parameters
    ----------
    types : dict
        ``column -> type`` (``manifest.clinical_types``).
    options : dict, optional
        ``min_frequency``, ``drop`` (encoder) and ``alpha_uni``, ``alpha_multi``, ``direction``,
        ``criterion``, ``on_separation``, ``fallback`` (selector).
    multiclass : bool, default=False
        A label of more than two classes: the selector is the multinomial
        :class:`~her2dlr.learn.clinical_multiclass.MultinomialStepwiseSelector` (likelihood-ratio
        tests; it takes ``alpha_uni``, ``alpha_multi``, ``direction`` and ``fallback``).

    Raises
    ------
    InputError
        With ``multiclass``, an option only the binary selector has (``criterion``, ...).
    """
    from her2dlr.evaluate.logistic import UnivariableMultivariableSelector
    from her2dlr.learn.clinical import ClinicalEncoder
    from her2dlr.learn.clinical_multiclass import MultinomialStepwiseSelector

    opts = dict(options or {})
    enc_keys = ("min_frequency", "drop", "ordinal", "separator", "add_indicator")
    enc = ClinicalEncoder(dict(types), **{k: opts.pop(k) for k in enc_keys if k in opts})
    if multiclass:
        binary_only = sorted(set(opts) - {"alpha_uni", "alpha_multi", "direction", "fallback"})
        if binary_only:
            raise InputError(f"Clinical selection option(s) {binary_only} belong to the binary stepwise logistic "
                             "regression; the label has more than two classes (multinomial likelihood-ratio "
                             "selection takes alpha_uni, alpha_multi, direction, fallback).")
        sel: Any = MultinomialStepwiseSelector(**opts)
    else:
        sel = UnivariableMultivariableSelector(**opts)
    return [("encode", enc.set_output(transform="pandas")), ("clinical_select", sel.set_output(transform="pandas"))]


def early_fusion_steps(radiomics_columns: Sequence[str], types: Mapping[str, str], selection: Any,
                       options: Mapping[str, Any] | None = None, *, multiclass: bool = False
                       ) -> list[tuple[str, Any]]:
    """One ``("fusion", ColumnTransformer)`` step: radiomics selection || clinical encoder + selector.

    Parameters
    ----------
    radiomics_columns : list of str
        Numeric columns of the imaging table.
    types : dict
        Clinical ``column -> type``.
    selection : list of dict or list of (name, transformer)
        The radiomics selection steps.
    options : dict, optional
        See :func:`clinical_steps`.
    multiclass : bool, default=False
        See :func:`clinical_steps`.
    """
    from her2dlr.learn.tuning import as_steps

    rad = Pipeline(as_steps(selection)) if len(selection) else "passthrough"
    clin = Pipeline(clinical_steps(types, options, multiclass=multiclass))
    ct = ColumnTransformer(
        [("radiomics", rad, list(radiomics_columns)), ("clinical", clin, list(types))],
        remainder="drop", verbose_feature_names_out=True,
    )
    return [("fusion", ct.set_output(transform="pandas"))]


def _folds(*frames: pd.DataFrame) -> list[str]:
    """Fold names of ``(fold, case_id)``-indexed frames, in order of appearance (test rows may be absent)."""
    return list(dict.fromkeys(f for frame in frames for f in frame.index.get_level_values("fold")))


def _fold_probs(result: CVResult, split: str) -> pd.DataFrame:
    p = result.predictions
    return p[p["split"] == split].set_index(["fold", "case_id"])


def late_weights(results: Sequence[Any], weights: Sequence[float] | None) -> np.ndarray:
    """The late fusion's weights, normalised to sum to 1 (equal when not given).

    Raises
    ------
    InputError
        Fewer than two models, or weights that are not one non-negative number per model, not all 0.
    """
    if len(results) < 2:
        raise InputError("Late fusion needs at least two models.")
    w = np.asarray(weights if weights is not None else [1.0] * len(results), dtype=float)
    if len(w) != len(results) or (w < 0).any() or w.sum() <= 0:
        raise InputError(f"Late fusion weights {list(w)} must be {len(results)} non-negative numbers, not all 0.")
    return w / w.sum()


def late_fusion(results: Sequence[CVResult], *, name: str, threshold: ThresholdRule | None = None,
                weights: Sequence[float] | None = None) -> CVResult:
    """Average the probabilities of several models run on the same outer folds (seed 003).

    Parameters
    ----------
    results : list of CVResult
        Same scheme and folds; each needs its ``train_oof`` rows (``keep_train=True``) for the
        fused threshold, else the threshold is chosen on the averaged ``train`` rows.
    name : str
        ``model`` column of the fused predictions.
    threshold : ThresholdRule, default=Youden
    weights : list of float, optional
        Weight of each model (default: equal).

    Returns
    -------
    CVResult
        Predictions for ``test`` (and ``train_oof``) rows; ``fits`` is empty. Multi-class models
        are averaged class by class (:func:`~her2dlr.learn.multiclass_fusion.late_fusion_multiclass`).

    Raises
    ------
    InputError
        Fewer than two results, or results whose folds or cases differ.
    """
    from her2dlr.learn.multiclass_cv import is_multiclass_predictions

    if any(is_multiclass_predictions(r.predictions) for r in results):
        from her2dlr.learn.multiclass_fusion import late_fusion_multiclass

        return late_fusion_multiclass(results, name=name, weights=weights)
    w = late_weights(results, weights)
    test = [_fold_probs(r, "test") for r in results]
    has_oof = all((r.predictions["split"] == "train_oof").any() for r in results)
    train_split = "train_oof" if has_oof else "train"
    train = [_fold_probs(r, train_split) for r in results]
    for other in test[1:]:
        if not other.index.sort_values().equals(test[0].index.sort_values()):
            raise InputError("Late fusion: the models were not evaluated on the same folds and cases.")
    frames = []
    test_folds = set(test[0].index.get_level_values("fold"))
    for fold in _folds(test[0], train[0]):
        parts = []
        if fold in test_folds:
            te = test[0].loc[fold]
            prob_te = sum(wi * t.loc[fold].loc[te.index, "prob"].to_numpy() for wi, t in zip(w, test))
            parts.append(("test", te, prob_te))
        if train[0].empty or fold not in train[0].index.get_level_values("fold"):
            thr = choose_threshold(te["label"].to_numpy(), prob_te, threshold, source="train_fit")  # pragma: no cover
        else:
            tr = train[0].loc[fold]
            prob_tr = sum(wi * t.loc[fold].loc[tr.index, "prob"].to_numpy() for wi, t in zip(w, train))
            thr = choose_threshold(tr["label"].to_numpy(), prob_tr, threshold, source=train_split)
            parts.append((train_split, tr, prob_tr))
        for split, rows, prob in parts:
            frames.append(pd.DataFrame({
                "case_id": rows.index, "patient_id": rows["patient_id"].to_numpy(), "model": name, "fold": fold,
                "split": split, "prob": prob, "class": apply_threshold(prob, thr), "label": rows["label"].to_numpy(),
                "threshold": thr.value,
            }))
    predictions = pd.concat(frames, ignore_index=True)[PREDICTION_COLUMNS]
    return CVResult(name, results[0].scheme, predictions, [])


def clinical_variables(features: Sequence[str]) -> list[str]:
    """Original clinical columns behind encoded names (``clinical__Shape=oval`` -> ``Shape``)."""
    from her2dlr.evaluate.logistic import feature_source

    out: list[str] = []
    for f in features:
        name = f.removeprefix(CLINICAL_PREFIX)
        if f.startswith(RADIOMICS_PREFIX) or f == "rad_score":  # the combined model's imaging signature
            continue
        col = feature_source(name)[0]
        if col not in out:
            out.append(col)
    return out


def selected_clinical_variables(result: CVResult) -> pd.Series:
    """Fraction of outer folds in which each clinical variable (original column) reached the model."""
    counts: dict[str, int] = {}
    for fit in result.fits:
        for col in clinical_variables(fit.features):
            counts[col] = counts.get(col, 0) + 1
    n = max(len(result.fits), 1)
    return (pd.Series(counts, dtype=float) / n).sort_values(ascending=False, kind="stable").rename("frequency")
