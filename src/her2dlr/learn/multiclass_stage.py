"""The learning stage's multi-class parts: settings checks before fitting and the extra tables after.

A label with more than two classes (``label.rule: her2_three_class``) goes through the same
stage (:func:`her2dlr.learn.stage.run_learn_stage`), with these differences:

* refused up front, naming the key: a ``learn.threshold`` other than the default (there is no
  operating threshold: the class is the most probable one), seed 002's combined (nomogram) model
  when ``learn.clinical.fusion`` names it (left out silently when the fusions are the default
  ones), and selection steps without a multi-class form;
* the clinical model selects its variables by multinomial likelihood-ratio tests
  (:mod:`her2dlr.learn.clinical_multiclass`); late fusion averages the class probabilities and
  stacking is a multinomial regression on the models' log-probabilities
  (:mod:`her2dlr.learn.multiclass_fusion`);
* ``metrics.csv`` rows hold the macro one-vs-rest AUC with its interval, and the stage also
  writes ``multiclass.csv`` (per-class AUCs) and ``confusion.csv``
  (:mod:`her2dlr.evaluate.multiclass_tables`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from her2dlr.cohort.manifest import Manifest
from her2dlr.errors import InputError
from her2dlr.evaluate.multiclass_tables import multiclass_tables
from her2dlr.io.atomic import write_csv_atomic
from her2dlr.learn.multiclass_cv import check_multiclass_steps, is_multiclass_predictions, label_classes
from her2dlr.runfolder import CONFUSION, MULTICLASS

__all__ = ["MulticlassOutputs", "check_multiclass_stage", "class_names", "multiclass_outputs", "remove_class_tables"]


@dataclass
class MulticlassOutputs:
    """``metrics.csv`` rows of the multi-class models and the extra files written."""

    metrics: pd.DataFrame
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    files: list[Path] = field(default_factory=list)


def class_names(manifest: Manifest | pd.DataFrame, n_classes: int) -> list[str]:
    """Class names from the label rule (``manifest.meta["label"]["classes"]``), else ``"0"``, ``"1"`` ..."""
    meta = manifest.meta if isinstance(manifest, Manifest) else {}
    names = (meta.get("label") or {}).get("classes")
    if isinstance(names, list) and len(names) == n_classes:
        return [str(n) for n in names]
    return [str(k) for k in range(n_classes)]


def check_multiclass_stage(manifest: Manifest | pd.DataFrame, settings: Any, *, clinical: bool) -> None:
    """Refuse settings that need a binary label when the manifest's label has more than two classes.

    Parameters
    ----------
    manifest : Manifest or DataFrame
    settings : LearnSettings
    clinical : bool
        Whether the stage fits the clinical model.

    Raises
    ------
    InputError
        A ``learn.threshold`` other than the default, ``combined`` named in
        ``learn.clinical.fusion`` (with ``clinical``), or a binary-only selection step.
    """
    k = label_classes(manifest)
    if k <= 2:
        return
    if settings.threshold != type(settings.threshold)():  # the default (youden, as `her2dlr init` writes) is moot
        raise InputError(f"learn.threshold: method {settings.threshold.method!r} sets a binary operating threshold, "
                         f"but the label has {k} classes: the predicted class is the most probable one. Remove the "
                         "'threshold' key.")
    if clinical and "combined" in settings.clinical.fusion and "fusion" in settings.clinical.model_fields_set:
        raise InputError(f"learn.clinical.fusion: 'combined' is seed 002's nomogram model, a binary logistic "
                         "regression on one imaging signature (the logit of the positive class's probability) and "
                         f"the clinical variables; a {k}-class imaging model has no single signature, and a nomogram "
                         "draws the odds of one outcome. Remove 'combined' (early, late, stack and pairs have "
                         f"{k}-class forms).")
    check_multiclass_steps(settings.selection)


def remove_class_tables(out: Path) -> None:
    """Delete ``multiclass.csv`` and ``confusion.csv`` of ``out`` (a stage folder re-run with a binary label)."""
    for name in (MULTICLASS, CONFUSION):
        (Path(out) / name).unlink(missing_ok=True)


def multiclass_outputs(predictions: pd.DataFrame, manifest: Manifest | pd.DataFrame,
                       out: Path) -> MulticlassOutputs | None:
    """Tables of the multi-class predictions, ``multiclass.csv`` and ``confusion.csv`` written; None when binary.

    A binary run removes those two files if an earlier multi-class run of the folder left them,
    so that no table of another label outlives its predictions.
    """
    if not is_multiclass_predictions(predictions):
        remove_class_tables(out)
        return None
    n_classes = sum(1 for c in predictions.columns if str(c).startswith("prob_"))
    tables = multiclass_tables(predictions, class_names=class_names(manifest, n_classes))
    files = [write_csv_atomic(tables.per_class, out / MULTICLASS), write_csv_atomic(tables.confusion, out / CONFUSION)]
    return MulticlassOutputs(tables.metrics, tables.per_class, tables.confusion, files)
