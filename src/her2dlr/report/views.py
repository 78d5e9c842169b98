"""Evaluation sets of the report: one prediction per model and case, split by how it was made.

The learning stage writes several kinds of prediction rows (:mod:`her2dlr.learn.cv`):
hold-out rows (``fold == "holdout"``) on the ``test`` and ``train`` (apparent) / ``train_oof``
(inner cross-validation) splits, and repeated k-fold rows (``fold == "r<k>f<j>"``) where every
case is predicted once per repetition. A :class:`View` is one such set where each case appears
once per model, so that curves, calibration and decision curves are drawn on it:

=============  =================================================================================
``train``      hold-out training set, apparent predictions of the final fit (``train_oof`` rows
               when ``train`` was not kept)
``test``       hold-out test set (or the external centre)
``cv``         out-of-fold predictions of the first repetition of the repeated k-fold
``final``      rows of a final fit on the whole training set (``fold == "final"``)
=============  =================================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["View", "model_order", "prediction_views", "reference_model", "view_labels"]

_CV_FOLD = re.compile(r"^r(\d+)f(\d+)$")


@dataclass
class View:
    """One evaluation set.

    Attributes
    ----------
    key : str
        ``"train"``, ``"test"``, ``"cv"`` or ``"final"``.
    title : str
        Human name, e.g. ``"Test set (hold-out)"``.
    description : str
        One sentence on how the predictions were made.
    frame : DataFrame
        Prediction rows, one per (model, case).
    """

    key: str
    title: str
    description: str
    frame: pd.DataFrame

    @property
    def models(self) -> list[str]:
        return sorted(self.frame["model"].unique())

    def model_frame(self, model: str) -> pd.DataFrame:
        """Rows of one model."""
        return self.frame[self.frame["model"] == model]

    def y_prob(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        """Labels and probabilities of one model."""
        f = self.model_frame(model)
        return f["label"].astype(int).to_numpy(), f["prob"].to_numpy(dtype=float)

    def classes(self, model: str) -> np.ndarray:
        """Predicted classes at the stored threshold(s) (``class`` column, else ``prob >= threshold``)."""
        f = self.model_frame(model)
        if "class" in f.columns and f["class"].notna().all():
            return f["class"].astype(int).to_numpy()
        if "threshold" in f.columns and f["threshold"].notna().all():
            return (f["prob"].to_numpy(dtype=float) >= f["threshold"].to_numpy(dtype=float)).astype(int)
        return (f["prob"].to_numpy(dtype=float) >= 0.5).astype(int)

    def threshold(self, model: str) -> float:
        """The stored threshold (mean over folds for cross-validation), NaN when none."""
        f = self.model_frame(model)
        if "threshold" in f.columns and f["threshold"].notna().any():
            return float(f["threshold"].mean())
        return float("nan")

    def single_threshold(self, model: str) -> bool:
        """Whether every row of the model was classified with the same threshold."""
        f = self.model_frame(model)
        return "threshold" in f.columns and f["threshold"].nunique(dropna=True) <= 1

    def paired(self, models: list[str]) -> pd.DataFrame:
        """Wide table ``case_id, label, <model>...`` over the cases every model predicted."""
        wide = self.frame.pivot_table(index="case_id", columns="model", values="prob", aggfunc="first")
        labels = self.frame.groupby("case_id")["label"].first()
        wide = wide[[m for m in models if m in wide.columns]].dropna()
        wide.insert(0, "label", labels.reindex(wide.index).astype(int))
        return wide


def _usable(frame: pd.DataFrame, multiclass: bool = False) -> pd.DataFrame:
    frame = frame[frame["label"].notna() & frame["prob"].notna()]
    # rows of multi-class models (prob_0 .. prob_<k-1>; their 'prob' is the predicted class's probability)
    many = frame["prob_2"].notna() if "prob_2" in frame.columns else pd.Series(False, index=frame.index)
    frame = frame[many if multiclass else ~many]
    frame = frame.drop_duplicates(["model", "case_id"], keep="first")
    good = frame.groupby("model")["label"].transform(lambda s: (s.astype(int).nunique() > 2) if multiclass
                                                      else (s.astype(int).nunique() == 2))
    return frame[good.astype(bool)]


def prediction_views(predictions: pd.DataFrame, *, multiclass: bool = False) -> list[View]:
    """Split the run's predictions into :class:`View` objects (train, test, cv, final; those present).

    Parameters
    ----------
    predictions : DataFrame
        Columns ``case_id, model, fold, split, prob, label`` (``class``, ``threshold`` optional).

    multiclass : bool, default=False
        Views of the multi-class models (rows with ``prob_2``) instead of the binary ones; each
        kind is left out of the other's views.

    Returns
    -------
    list of View
        In reading order; views whose models all lack one of the two classes (multi-class: have
        fewer than three) are left out.
    """
    if predictions.empty:
        return []
    p = predictions.copy()
    p["fold"] = p["fold"].astype(str)
    p["split"] = p["split"].astype(str)
    views: list[View] = []
    holdout = p[p["fold"] == "holdout"]
    train = holdout[holdout["split"] == "train"]
    if train.empty:
        train = holdout[holdout["split"] == "train_oof"]
        train_desc = ("Training set, inner cross-validated predictions of the chosen setting "
                      "(the predictions the operating threshold was chosen from).")
    else:
        train_desc = "Training set, apparent predictions of the model fitted on it (optimistic by construction)."
    candidates = [
        ("train", "Training set", train_desc, train),
        ("test", "Test set (hold-out)", "Held-out test set, predicted once by the model fitted on the training set, "
                                        "with the threshold chosen on training data.",
         holdout[holdout["split"] == "test"]),
    ]
    cv = p[p["fold"].str.match(_CV_FOLD.pattern) & (p["split"] == "test")]
    if not cv.empty:
        reps = cv["fold"].str.extract(_CV_FOLD.pattern)[0].astype(int)
        first = int(reps.min())
        n_reps = int(reps.nunique())
        cv = cv[reps == first]
        rep_txt = f"repetition {first + 1} of {n_reps}" if n_reps > 1 else "one repetition"
        candidates.append(("cv", "Cross-validation (out-of-fold)",
                           f"Out-of-fold predictions of the repeated k-fold ({rep_txt}): every case predicted "
                           "once by a model that never saw it, each fold with its own training threshold.", cv))
    final = p[p["fold"] == "final"]
    candidates.append(("final", "Final model (apparent)",
                       "Predictions of the final model on the cases it was fitted on.", final))
    for key, title, desc, frame in candidates:
        frame = _usable(frame, multiclass)
        if len(frame):
            views.append(View(key, title, desc, frame.reset_index(drop=True)))
    return views


def view_labels(views: list[View]) -> dict[str, str]:
    """Key -> title of the views."""
    return {v.key: v.title for v in views}


def reference_model(metrics: pd.DataFrame, views: list[View]) -> tuple[str | None, str]:
    """The model the others are compared with, and how it was chosen.

    The reference is the model with the highest AUC on internal validation of the training
    data (``train_oof`` rows of ``metrics.csv``), so the test set plays no part in the choice;
    when no such rows exist, the highest AUC on the first of test / cv views is used and the
    reason says so.

    Returns
    -------
    model : str or None
    reason : str
    """
    known = set().union(*(set(v.models) for v in views)) if views else set()
    if not known:
        return None, "no predictions"
    if len(metrics) and {"split", "auc", "model"}.issubset(metrics.columns):
        inner = metrics[(metrics["split"] == "train_oof") & metrics["model"].isin(known)]
        if "scope" in inner.columns:
            summary = inner[inner["scope"].isin(["fold-mean", "holdout", "final"])]
            inner = summary if len(summary) else inner
        inner = inner.dropna(subset=["auc"])
        if len(inner):
            best = inner.groupby("model")["auc"].mean().sort_values(ascending=False)
            return str(best.index[0]), ("highest inner cross-validated AUC on the training data "
                                        f"({best.iloc[0]:.3f}); the test data played no part in the choice")
    from her2dlr.evaluate.delong import placement_values

    for key in ("test", "cv", "train", "final"):
        view = next((v for v in views if v.key == key), None)
        if view is None:
            continue
        aucs = {}
        for m in view.models:
            y, p = view.y_prob(m)
            aucs[m] = float(placement_values(y, p)[0][0])
        best_model = max(aucs, key=aucs.get)
        return best_model, (f"highest AUC on the {view.title.lower()} ({aucs[best_model]:.3f}); the run has no "
                            "inner cross-validated predictions to choose it on training data alone")
    return None, "no predictions"


def model_order(views: list[View]) -> list[str]:
    """Every model of the views, in a stable order (learn set, then name)."""
    seen: dict[str, str] = {}
    for v in views:
        if "learn_set" in v.frame.columns:
            sets = v.frame.groupby("model")["learn_set"].first()
        else:
            sets = pd.Series("", index=v.models)
        for m, s in sets.items():
            seen.setdefault(str(m), str(s))
    return sorted(seen, key=lambda m: (seen[m], m))
