"""Decision-level integration of models run on the same outer folds: stacking, seed 002's
combined logistic model, and every imaging x clinical classifier pairing (seed 001, table 4).

Like :func:`her2dlr.learn.fusion.late_fusion`, nothing here has its own outer loop: each
function takes :class:`~her2dlr.learn.cv.CVResult` objects of the *same* folds and cases and
uses, in every outer fold,

* the base models' ``train_oof`` probabilities (inner out-of-fold predictions on the
  training rows: never a prediction of a model that saw the row) to fit the second level, and
* their ``test`` probabilities to predict the held-out rows.

stacking (:func:`stacking`)
    A logistic regression on the logits of the base models' probabilities.
combined logistic model (:func:`combined_logistic`, seed 002)
    The imaging signature (logit of the radiomics / deep model's probability, the "Rad-score")
    plus the clinical variables kept by univariable + stepwise multivariable selection
    (fitted in-fold), in an unpenalised, unweighted logistic regression: the model a
    nomogram draws (:func:`logistic_coefficients` gives its coefficients on the raw scale).
pairings (:func:`classifier_pairings`, seed 001)
    For every imaging classifier and every clinical classifier, the pair integrated by
    stacking (default) or by the mean probability.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from her2dlr.errors import InputError
from her2dlr.learn.cv import PREDICTION_COLUMNS, CVResult, fit_fold
from her2dlr.learn.fusion import _folds
from her2dlr.learn.thresholds import ThresholdRule, apply_threshold, choose_threshold
from her2dlr.learn.tuning import SearchSettings

__all__ = [
    "COMBINED_PARAMS",
    "SIGNATURE",
    "classifier_pairings",
    "combined_logistic",
    "combined_steps",
    "logistic_coefficients",
    "logit",
    "stacking",
]

#: Column name of the imaging signature in the combined model.
SIGNATURE = "rad_score"
#: Zoo ``lr`` settings of the combined model: (almost) unpenalised, no class weights, so its
#: coefficients are interpretable odds ratios and its probabilities are not shifted.
COMBINED_PARAMS: dict[str, Any] = {"C": 1e4, "class_weight": None}

_EPS = 1e-6


def logit(p: Any) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[1e-6, 1 - 1e-6]``."""
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(q / (1 - q))


def _has_fold(frame: pd.DataFrame, fold: str) -> bool:
    return fold in set(frame.index.get_level_values("fold"))


def _split_rows(result: CVResult, split: str) -> pd.DataFrame:
    p = result.predictions
    return p[p["split"] == split].set_index(["fold", "case_id"])


def _aligned(results: Sequence[CVResult], what: str) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """Test and train_oof rows of every result, checked to cover the same folds and cases."""
    if len(results) < 2:
        raise InputError(f"{what} needs at least two models.")
    for r in results:
        if not (r.predictions["split"] == "train_oof").any():
            raise InputError(f"{what}: model '{r.model}' has no train_oof predictions (run it with keep_train=True).")
    test = [_split_rows(r, "test") for r in results]
    train = [_split_rows(r, "train_oof") for r in results]
    for name, frames in (("test", test), ("train_oof", train)):
        ref = frames[0].index.sort_values()
        for r, other in zip(results[1:], frames[1:]):
            if not other.index.sort_values().equals(ref):
                raise InputError(f"{what}: '{r.model}' and '{results[0].model}' were not evaluated on the same "
                                 f"folds and cases ({name} rows differ).")
    return test, train


def _rows_frame(rows: pd.DataFrame, *, name: str, fold: str, split: str, prob: np.ndarray, thr: Any) -> pd.DataFrame:
    return pd.DataFrame({
        "case_id": rows.index, "patient_id": rows["patient_id"].to_numpy(), "model": name, "fold": fold,
        "split": split, "prob": prob, "class": apply_threshold(prob, thr), "label": rows["label"].to_numpy(),
        "threshold": thr.value,
    })


def stacking(results: Sequence[CVResult], *, name: str, threshold: ThresholdRule | None = None,
             C: float = 1.0) -> CVResult:
    """Stack several models with a logistic regression on their logits, fold by fold.

    Parameters
    ----------
    results : list of CVResult
        Same scheme, folds and cases; each with ``train_oof`` rows.
    name : str
        ``model`` column of the stacked predictions.
    threshold : ThresholdRule, default=Youden
        Chosen on the meta-model's predictions of the training rows (split ``"train"``: the
        meta-model has seen them, but its inputs are out-of-fold and it has only
        ``len(results) + 1`` coefficients, so the optimism is small).
    C : float, default=1.0
        Inverse L2 penalty of the meta-model.

    Returns
    -------
    CVResult
        ``test`` and ``train`` rows; ``fits`` is empty. The meta-model of every fold is in
        ``result.meta`` (fold -> ``{"intercept", "coefficients"}``). Multi-class models are
        stacked by a multinomial regression
        (:func:`~her2dlr.learn.multiclass_fusion.stacking_multiclass`; ``threshold`` unused).
    """
    from her2dlr.learn.multiclass_cv import is_multiclass_predictions

    if any(is_multiclass_predictions(r.predictions) for r in results):
        from her2dlr.learn.multiclass_fusion import stacking_multiclass

        return stacking_multiclass(results, name=name, C=C)
    test, train = _aligned(results, "Stacking")
    frames, meta = [], {}
    for fold in _folds(test[0], train[0]):
        tr = train[0].loc[fold]
        x_tr = np.column_stack([logit(t.loc[fold].loc[tr.index, "prob"]) for t in train])
        y_tr = tr["label"].to_numpy().astype(int)
        if len(np.unique(y_tr)) < 2:
            raise InputError(f"Stacking: training fold '{fold}' has one class only.")
        model = LogisticRegression(C=C, max_iter=1000).fit(x_tr, y_tr)
        p_tr = model.predict_proba(x_tr)[:, 1]
        thr = choose_threshold(y_tr, p_tr, threshold, source="train_fit")
        frames.append(_rows_frame(tr, name=name, fold=fold, split="train", prob=p_tr, thr=thr))
        if _has_fold(test[0], fold):
            te = test[0].loc[fold]
            x_te = np.column_stack([logit(t.loc[fold].loc[te.index, "prob"]) for t in test])
            frames.append(_rows_frame(te, name=name, fold=fold, split="test", prob=model.predict_proba(x_te)[:, 1],
                                      thr=thr))
        meta[fold] = {"intercept": float(model.intercept_[0]),
                      "coefficients": {r.model: float(c) for r, c in zip(results, model.coef_[0])}}
    out = CVResult(name, results[0].scheme, pd.concat(frames, ignore_index=True)[PREDICTION_COLUMNS], [])
    out.meta = meta  # type: ignore[attr-defined]
    return out


def combined_steps(types: Mapping[str, str], options: Mapping[str, Any] | None = None) -> list[tuple[str, Any]]:
    """``("combine", ColumnTransformer)``: the signature passed through || clinical encoder + selector."""
    from her2dlr.learn.fusion import clinical_steps

    ct = ColumnTransformer(
        [("signature", "passthrough", [SIGNATURE]), ("clinical", Pipeline(clinical_steps(types, options)), list(types))],
        remainder="drop", verbose_feature_names_out=False,
    )
    return [("combine", ct.set_output(transform="pandas"))]


def combined_logistic(imaging: CVResult, clinical: pd.DataFrame, types: Mapping[str, str],
                      groups: Mapping[str, str] | None = None, *, name: str,
                      options: Mapping[str, Any] | None = None, threshold: ThresholdRule | None = None,
                      threshold_source: str = "inner_oof", search: SearchSettings | None = None) -> CVResult:
    """Seed 002's combined model: logistic regression on the imaging signature + selected clinical variables.

    Parameters
    ----------
    imaging : CVResult
        The imaging model (radiomics, deep or DLR signature) with ``train_oof`` rows.
    clinical : DataFrame
        Raw clinical columns indexed by case id (:func:`her2dlr.learn.fusion.clinical_frame`).
    types : dict
        Clinical ``column -> type``.
    groups : dict, optional
        Case id -> group for the inner splits (default: the patient id).
    name : str
        ``model`` column of the predictions.
    options : dict, optional
        Clinical encoder / selector options (:func:`her2dlr.learn.fusion.clinical_steps`).
    threshold, threshold_source, search
        As in :func:`her2dlr.learn.cv.fit_fold`.

    Returns
    -------
    CVResult
        With one :class:`~her2dlr.learn.cv.FoldFit` per fold (features = signature + the
        clinical variables kept in that fold).
    """
    if not (imaging.predictions["split"] == "train_oof").any():
        raise InputError(f"Combined model: '{imaging.model}' has no train_oof predictions (keep_train=True).")
    if SIGNATURE in clinical.columns:
        raise InputError(f"A clinical column is named '{SIGNATURE}', the name of the imaging signature: rename it.")
    clinical = clinical.copy()
    clinical.index = clinical.index.astype(str)
    steps = combined_steps(types, options)
    test, train = _split_rows(imaging, "test"), _split_rows(imaging, "train_oof")
    frames, fits = [], []
    for fold in _folds(test, train):
        tr = train.loc[fold]
        te = test.loc[fold] if _has_fold(test, fold) else tr.iloc[:0]
        missing = [c for c in list(tr.index) + list(te.index) if c not in clinical.index]
        if missing:
            raise InputError(f"Combined model: case(s) {missing[:5]} have no clinical row.")
        x_tr = clinical.loc[tr.index].assign(**{SIGNATURE: logit(tr["prob"])})
        x_te = clinical.loc[te.index].assign(**{SIGNATURE: logit(te["prob"])})
        y_tr = tr["label"].to_numpy().astype(int)
        g_tr = np.array([(groups or {}).get(c, p) for c, p in zip(tr.index, tr["patient_id"])])
        fit, oof = fit_fold(x_tr, y_tr, g_tr, model="lr", selection=steps, grid={}, params=COMBINED_PARAMS,
                            search=search, threshold=threshold, threshold_source=threshold_source, fold=str(fold))
        fit.repeat = _repeat_of(str(fold))
        fit.test_cases = list(te.index)
        fits.append(fit)
        frames.append(_rows_frame(tr, name=name, fold=fold, split="train_oof", prob=oof, thr=fit.threshold))
        if len(te):
            frames.append(_rows_frame(te, name=name, fold=fold, split="test",
                                      prob=fit.pipeline.predict_proba(x_te)[:, 1], thr=fit.threshold))
    return CVResult(name, imaging.scheme, pd.concat(frames, ignore_index=True)[PREDICTION_COLUMNS], fits)


def _repeat_of(fold: str) -> int | None:
    if fold.startswith("r") and "f" in fold:
        return int(fold[1:fold.index("f")])
    return None


def classifier_pairings(imaging: Mapping[str, CVResult], clinical: Mapping[str, CVResult], *,
                        method: Literal["stack", "mean"] = "stack", threshold: ThresholdRule | None = None,
                        prefix: str = "pair") -> list[CVResult]:
    """Every imaging classifier integrated with every clinical classifier (seed 001, table 4).

    Parameters
    ----------
    imaging, clinical : dict of classifier name -> CVResult
        E.g. ``{"svm": ..., "rf": ..., "lr": ..., "xgboost": ...}`` for both: 4 x 4 = 16 pairs.
    method : {"stack", "mean"}, default="stack"
        Logistic stacking of the two logits, or the mean probability (late fusion).
    threshold : ThresholdRule, default=Youden
    prefix : str, default="pair"
        Models are named ``"<prefix>(<imaging clf>,<clinical clf>)"``.
    """
    from her2dlr.learn.fusion import late_fusion

    if method not in ("stack", "mean"):
        raise InputError(f"Pairing method must be 'stack' or 'mean'; got {method!r}.")
    out = []
    for img_name, img in imaging.items():
        for clin_name, clin in clinical.items():
            name = f"{prefix}({img_name},{clin_name})"
            if method == "stack":
                out.append(stacking([img, clin], name=name, threshold=threshold))
            else:
                out.append(late_fusion([img, clin], name=name, threshold=threshold))
    return out


def logistic_coefficients(pipeline: Pipeline, training: pd.DataFrame | None = None) -> dict[str, Any]:
    """Intercept and coefficients of a fitted combined model on the scale of its inputs (for a nomogram).

    Parameters
    ----------
    pipeline : Pipeline
        ``combine -> scale -> model`` as built by :func:`combined_logistic`.
    training : DataFrame, optional
        The training inputs, for each variable's range (numeric) in the output.

    Returns
    -------
    dict
        ``{"intercept", "coefficients": {name: coef}, "ranges": {name: [min, max]},
        "levels": {name: ["no", "yes"]}, "variables": {column: {...}}}``; names are the model's
        inputs (``rad_score`` and numeric clinical columns, with their training ranges, and the
        encoded 0/1 indicators of clinical levels or tokens). ``variables`` describes how each
        clinical column behind a kept input was encoded (``type``; categorical and multi:
        ``levels`` with their own indicator, ``reference`` level, ``other`` when rare levels were
        pooled; numeric: the ``imputed`` training median), so that a nomogram draws one axis per
        column: ``Halo=no`` and ``Halo=yes`` as the levels of one ``Halo`` axis, ``Age=<missing>``
        as a point of the ``Age`` axis.
    """
    model = pipeline[-1]
    if not isinstance(model, LogisticRegression):
        raise InputError("logistic_coefficients needs a pipeline ending in a logistic regression.")
    names = [str(n) for n in pipeline[:-1].get_feature_names_out()]
    coef = model.coef_[0].astype(float)
    intercept = float(model.intercept_[0])
    if "scale" in pipeline.named_steps:
        scale = pipeline.named_steps["scale"]
        mean = np.asarray(scale.mean_, dtype=float)
        sd = np.asarray(scale.scale_, dtype=float)
        intercept -= float(np.sum(coef * mean / sd))
        coef = coef / sd
    out: dict[str, Any] = {"intercept": intercept, "coefficients": dict(zip(names, coef.tolist())),
                           "ranges": {}, "levels": {}, "variables": {}}
    if training is not None:
        encoded = pipeline[0].transform(training)
        for col in names:
            values = pd.to_numeric(pd.Series(np.asarray(encoded[col])), errors="coerce").dropna()
            if len(values) and set(values.unique()) <= {0.0, 1.0}:
                out["levels"][col] = ["no", "yes"]  # a level / token indicator: a two-point axis
            elif len(values):
                out["ranges"][col] = [float(values.min()), float(values.max())]
    encoder = _clinical_encoder(pipeline)
    if encoder is not None:
        sources = getattr(encoder, "feature_sources_", {})
        for column in dict.fromkeys(sources[n] for n in names if n in sources):
            kind = encoder.types_[column]
            info: dict[str, Any] = {"type": kind}
            if column in encoder.levels_:
                info.update(levels=list(encoder.levels_[column]), reference=encoder.reference_.get(column),
                            other=bool(encoder.pooled_.get(column)))
            if column in encoder.medians_:
                info["imputed"] = float(encoder.medians_[column])
            out["variables"][column] = info
    return out


def _clinical_encoder(estimator: Any) -> Any:
    """The fitted :class:`~her2dlr.learn.clinical.ClinicalEncoder` inside a pipeline or column transformer, or None."""
    from her2dlr.learn.clinical import ClinicalEncoder

    if isinstance(estimator, ClinicalEncoder):
        return estimator
    children = [step for _, step in estimator.steps] if isinstance(estimator, Pipeline) else (
        [t for _, t, _ in estimator.transformers_] if isinstance(estimator, ColumnTransformer) else [])
    for child in children:
        found = _clinical_encoder(child)
        if found is not None:
            return found
    return None
