"""The DLR fusion chosen per outer fold by inner validation: early, late or stacking.

Three ways to join a fold network and a radiomics model (:mod:`her2dlr.deep.dlr`):

``early``
    Deep features (in-fold PCA) and radiomics in one model (:func:`~her2dlr.deep.dlr.run_dlr_cv`).
``late``
    The mean of the network's probability (the deep signature) and the radiomics model's.
``stacking``
    A logistic regression on the two models' z-scored logits (:func:`make_stacker`), fitted on
    held-out predictions of both.

Where they are compared: on each outer fold's **inner validation cases** of the network (the
cases its training held out from the gradient steps, :attr:`FoldFeatures.val_cases`). Only
there is the network's probability out of sample inside the training rows; on its other
training cases it is apparent and would flatter ``late`` and ``stacking``. On those cases:

* ``early`` is scored by its inner out-of-fold predictions (``train_oof`` rows);
* ``late`` by the mean of the network's probability and the radiomics model's inner
  out-of-fold probability;
* ``stacking`` by stratified ``stack_folds``-fold cross-validated predictions of the stacker
  on those cases (its final fit uses them all).

The candidate with the highest AUC is the fold's fusion (ties: the order of :data:`FUSIONS`);
its threshold is chosen (Youden, or the rule given) on its inner predictions of those cases,
and its test predictions are the fold's. No outer test row is read before the choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.deep.features import FoldFeatures
from her2dlr.errors import InputError
from her2dlr.learn.cv import PREDICTION_COLUMNS, CVResult
from her2dlr.learn.thresholds import Threshold, ThresholdRule, apply_threshold, choose_threshold

__all__ = ["FUSIONS", "ChosenFusion", "FusionChoice", "InnerChoice", "choose_fusion", "choose_on_inner",
           "make_stacker", "stacker_on_logits", "stacking_features"]

#: The candidate fusions, in order of preference on a tie.
FUSIONS = ("early", "late", "stacking")
_EPS = 1e-6


@dataclass(frozen=True)
class FusionChoice:
    """One outer fold's fusion and every candidate's inner AUC.

    Attributes
    ----------
    fold : str
    chosen : str
    scores : dict
        fusion -> AUC on the fold's inner validation cases.
    n_inner : int
        Inner validation cases the choice was made on.
    """

    fold: str
    chosen: str
    scores: dict[str, float]
    n_inner: int


@dataclass
class ChosenFusion:
    """The fused model whose fusion each fold chose, and the choices.

    Attributes
    ----------
    result : CVResult
        ``test`` and ``train_oof`` (the inner validation cases) rows; ``fits`` is empty.
    choices : list of FusionChoice
    """

    result: CVResult
    choices: list[FusionChoice] = field(default_factory=list)

    def choice_table(self) -> pd.DataFrame:
        """One row per fold: ``fold, chosen, n_inner, auc_<fusion>`` ..."""
        return pd.DataFrame([{"fold": c.fold, "chosen": c.chosen, "n_inner": c.n_inner,
                              **{f"auc_{k}": v for k, v in c.scores.items()}} for c in self.choices])


def stacking_features(p_deep: np.ndarray, p_radiomics: np.ndarray) -> np.ndarray:
    """The stacker's inputs: the logits ``log(p / (1 - p))`` of both models (clipped at 1e-6), shape (n, 2)."""
    p = np.clip(np.column_stack([p_deep, p_radiomics]).astype(float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def make_stacker(seed: int = 0) -> Any:
    """The stacker: z-score of the two logits, then an L2 logistic regression (C = 1).

    The z-score makes the penalty blind to each model's probability scale (a network whose
    probabilities all sit near 0.5 is not penalised for needing a large coefficient).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, random_state=seed))


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def _stacking_inner(X: np.ndarray, y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    k = int(min(n_folds, np.bincount(y).min()))
    if k < 2:
        return np.full(len(y), np.nan)
    cv = StratifiedKFold(k, shuffle=True, random_state=seed)
    return cross_val_predict(make_stacker(seed), X, y, cv=cv, method="predict_proba")[:, 1]


def _rows(pred: pd.DataFrame, fold: str, split: str) -> pd.DataFrame:
    part = pred[(pred["fold"] == fold) & (pred["split"] == split)]
    if part["case_id"].duplicated().any():
        raise InputError(f"Fold '{fold}': more than one {split} prediction for some cases.")
    return part.set_index(part["case_id"].astype(str))



@dataclass
class InnerChoice:
    """The fusion chosen on one network's inner validation cases, with what applying it needs.

    Attributes
    ----------
    choice : FusionChoice
    cases : list of str
        The inner validation cases, sorted.
    y : ndarray
        Their labels.
    patients : ndarray
        Their patient ids.
    prob : ndarray
        The chosen fusion's held-out probabilities of those cases.
    threshold : Threshold
        Chosen on ``prob`` with the study's rule.
    stacker : fitted Pipeline or None
        The stacker fitted on all inner validation cases (``stacking`` only).
    """

    choice: FusionChoice
    cases: list[str]
    y: np.ndarray
    patients: np.ndarray
    prob: np.ndarray
    threshold: Threshold
    stacker: Any = None


def choose_on_inner(early: CVResult, radiomics: CVResult, net: FoldFeatures, fold: str, *,
                    threshold: ThresholdRule | None = None, stack_folds: int = 5, seed: int = 0) -> InnerChoice:
    """The fusion with the best AUC on ``net``'s inner validation cases of ``fold`` (see :func:`choose_fusion`).

    Reads only the ``train_oof`` rows of ``fold``; usable for an outer fold and for the network
    trained for deployment alike.

    Raises
    ------
    InputError
        The network lists no inner validation cases, some lack inner out-of-fold predictions, or
        they are all of one class.
    """
    inner = sorted(net.val_cases)
    if not inner:
        raise InputError(f"Fold '{fold}': the network lists no inner validation cases (its checkpoint has no "
                         "'val_cases'); the fusions cannot be compared on held-out predictions.")
    e_oof, r_oof = _rows(early.predictions, fold, "train_oof"), _rows(radiomics.predictions, fold, "train_oof")
    missing = sorted(set(inner) - (set(e_oof.index) & set(r_oof.index)))
    if missing:
        raise InputError(f"Fold '{fold}': {len(missing)} inner validation case(s) lack inner out-of-fold "
                         f"predictions, e.g. {missing[:5]}.")
    y = e_oof.loc[inner, "label"].to_numpy(dtype=int)
    if len(np.unique(y)) < 2:
        raise InputError(f"Fold '{fold}': the network's {len(inner)} inner validation cases are all of one "
                         "class; the fusions cannot be compared on them.")
    p_net = net.prob.reindex(inner).to_numpy(dtype=float)
    p_rad, p_early = r_oof.loc[inner, "prob"].to_numpy(float), e_oof.loc[inner, "prob"].to_numpy(float)
    X_inner = stacking_features(p_net, p_rad)
    inner_prob = {"early": p_early, "late": (p_net + p_rad) / 2,
                  "stacking": _stacking_inner(X_inner, y, stack_folds, seed)}
    scores = {k: _auc(y, v) if not np.isnan(v).any() else float("nan") for k, v in inner_prob.items()}
    chosen = max(FUSIONS, key=lambda k: (not np.isnan(scores[k]), scores[k] if not np.isnan(scores[k]) else 0,
                                         -FUSIONS.index(k)))
    stacker = make_stacker(seed).fit(X_inner, y) if chosen == "stacking" else None
    thr = choose_threshold(y, inner_prob[chosen], threshold, source="inner_val")
    return InnerChoice(FusionChoice(fold, chosen, scores, len(inner)), inner, y,
                       e_oof.loc[inner, "patient_id"].to_numpy(), inner_prob[chosen], thr, stacker)


def stacker_on_logits(stacker: Any) -> tuple[float, np.ndarray]:
    """A fitted :func:`make_stacker` as ``(intercept, coefficients)`` on the raw logits of (deep, radiomics).

    The z-score folds into the logistic regression: ``b + sum(w_i (z_i - m_i) / s_i)`` =
    ``(b - sum(w_i m_i / s_i)) + sum((w_i / s_i) z_i)``, so a model artefact of kind ``stack``
    (intercept + coefficients on its components' logits) reproduces the stacker exactly.
    """
    scaler, lr = stacker[0], stacker[-1]
    w = lr.coef_.ravel() / scaler.scale_
    return float(lr.intercept_[0] - np.sum(w * scaler.mean_)), w


def choose_fusion(early: CVResult, radiomics: CVResult, networks: Mapping[str, FoldFeatures], *,
                  name: str = "dlr-chosen", threshold: ThresholdRule | None = None, stack_folds: int = 5,
                  seed: int = 0) -> ChosenFusion:
    """Per outer fold, the fusion with the best AUC on the network's inner validation cases.

    Parameters
    ----------
    early : CVResult
        The early-fusion model with its ``train_oof`` rows (``keep_train=True``).
    radiomics : CVResult
        The radiomics model on the same folds, with its ``train_oof`` rows.
    networks : dict
        Outer fold -> :class:`~her2dlr.deep.features.FoldFeatures` of the fold network, with
        ``val_cases`` (the inner validation cases stamped in its checkpoint) and ``prob``.
    name : str, default="dlr-chosen"
        ``model`` column of the predictions.
    threshold : ThresholdRule, default=Youden
    stack_folds : int, default=5
        Folds of the stacker's inner cross-validation.
    seed : int, default=0

    Returns
    -------
    ChosenFusion

    Raises
    ------
    InputError
        A fold without its network, a network without inner validation cases, or inner
        validation cases missing from the models' inner out-of-fold rows.
    """
    frames, choices = [], []
    test_pred = early.predictions[early.predictions["split"] == "test"]
    for fold in dict.fromkeys(test_pred["fold"]):
        if fold not in networks:
            raise InputError(f"No network for outer fold '{fold}'.")
        net = networks[fold]
        inner = choose_on_inner(early, radiomics, net, fold, threshold=threshold, stack_folds=stack_folds, seed=seed)
        choices.append(inner.choice)
        e_test, r_test = _rows(early.predictions, fold, "test"), _rows(radiomics.predictions, fold, "test")
        ids = e_test.index.tolist()
        if inner.choice.chosen == "early":
            p_test = e_test["prob"].to_numpy(float)
        else:
            p_net_test = net.prob.reindex(ids).to_numpy(dtype=float)
            p_rad_test = r_test.loc[ids, "prob"].to_numpy(float)
            if inner.choice.chosen == "late":
                p_test = (p_net_test + p_rad_test) / 2
            else:
                p_test = inner.stacker.predict_proba(stacking_features(p_net_test, p_rad_test))[:, 1]
        thr = inner.threshold
        for split, case_ids, prob, labels, patients in (
                ("test", ids, p_test, e_test["label"].to_numpy(), e_test["patient_id"].to_numpy()),
                ("train_oof", inner.cases, inner.prob, inner.y, inner.patients)):
            frames.append(pd.DataFrame({
                "case_id": case_ids, "patient_id": patients, "model": name, "fold": fold, "split": split,
                "prob": prob, "class": apply_threshold(prob, thr), "label": labels, "threshold": thr.value}))
    predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PREDICTION_COLUMNS)
    return ChosenFusion(CVResult(name, early.scheme, predictions[PREDICTION_COLUMNS], []), choices)
