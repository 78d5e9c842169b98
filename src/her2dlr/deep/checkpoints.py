"""The fold networks of a run: find ``RUN/deep/<arch>/`` checkpoints, their folds, cases and ROI settings.

Used by the deep features (:mod:`her2dlr.deep.features`) and the heat maps
(:mod:`her2dlr.deep.explain_study`): for every outer fold, which checkpoint, which cases the
network was fitted on (training + early-stopping cases: everything it saw), and how its inputs
were made (:class:`~her2dlr.imaging.roi.RoiSpec`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from her2dlr.errors import InputError
from her2dlr.runfolder import BEST_CHECKPOINT, PREDICTIONS

__all__ = ["FoldCheckpoint", "find_fold_checkpoints", "roi_spec_of", "threshold_of", "tta_flips_of"]


@dataclass(frozen=True)
class FoldCheckpoint:
    """One outer fold's trained network.

    Attributes
    ----------
    fold : str
        ``r<rep>f<k>`` (or ``holdout``).
    path : Path
    train_cases : frozenset of str
        Every case the network was fitted on.
    meta : dict
        The checkpoint's metadata (arch, image size, settings, ``extra``), without weights.
    """

    fold: str
    path: Path
    train_cases: frozenset[str]
    meta: Mapping[str, Any]

    def load(self) -> Any:
        """The network with its weights, in eval mode on the CPU."""
        from her2dlr.deep.train import model_from_checkpoint

        return model_from_checkpoint(self.path)


def roi_spec_of(meta: Mapping[str, Any]) -> Any:
    """The :class:`~her2dlr.imaging.roi.RoiSpec` a checkpoint's network was trained with."""
    from her2dlr.deep.cv import roi_spec_of as from_checkpoint

    return from_checkpoint(dict(meta))


def threshold_of(meta: Mapping[str, Any]) -> float | None:
    """The operating threshold stamped in a fold checkpoint (chosen on its training data), if any."""
    thr = dict(meta.get("extra") or {}).get("threshold")
    if isinstance(thr, Mapping) and thr.get("value") is not None:
        return float(thr["value"])
    return None


def tta_flips_of(meta: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's network was trained with ``tta_flips``: its probability is then the mean over
    the ROI and its left-right mirror, as its out-of-fold predictions, its threshold and its deployment were."""
    return bool(dict(meta.get("settings") or {}).get("tta_flips", False))


def _fold_of(meta: Mapping[str, Any], path: Path) -> str:
    extra = dict(meta.get("extra") or {})
    return str(extra.get("fold") or path.parent.name)


def _train_cases(meta: Mapping[str, Any], fold: str, table: pd.DataFrame | None, path: Path,
                 recorded: Mapping[str, frozenset[str]]) -> frozenset[str]:
    extra = dict(meta.get("extra") or {})
    for key in ("train_cases", "training_cases", "cases"):
        if extra.get(key) is not None:
            return frozenset(str(c) for c in extra[key])
    if fold in recorded:
        return recorded[fold]
    if table is None:
        raise InputError(f"Checkpoint {path} does not list its training cases; give the manifest to derive them.")
    from her2dlr.learn.cv import outer_folds

    scheme = "holdout" if fold == "holdout" else "kfold"
    for name, _, train, _ in outer_folds(table, scheme):
        if name == fold:
            return frozenset(table["case_id"].astype(str)[train])
    raise InputError(f"Checkpoint {path} is for fold '{fold}', which is not an outer fold of the manifest.")


def find_fold_checkpoints(folder: str | os.PathLike[str], *, manifest: Any = None,
                          name: str = BEST_CHECKPOINT) -> dict[str, FoldCheckpoint]:
    """Every fold network under ``folder`` (``<fold>/best.pt``), by fold name.

    The cases each network was fitted on come from, in this order: the checkpoint's own
    record (``extra.train_cases``), the ``train`` rows of ``folder/predictions.parquet``
    (written by :func:`her2dlr.deep.cv.run_deep_cv`), or the manifest's training rows of the fold.

    Parameters
    ----------
    folder : path
        ``RUN/deep/<arch>`` (or a bench's work folder laid out the same way).
    manifest : Manifest or DataFrame, optional
        Used when a checkpoint does not list its training cases: the fold's training rows.
    name : str, default="best.pt"
        Checkpoint file name in each fold folder.

    Returns
    -------
    dict
        fold -> :class:`FoldCheckpoint`, in fold order (repetition, then fold).

    Raises
    ------
    InputError
        No checkpoint found (says how to train them).
    """
    from her2dlr.deep.train import load_checkpoint

    folder = Path(folder)
    table = None
    if manifest is not None:
        table = manifest.included if hasattr(manifest, "included") else manifest
        if "label" in table.columns:
            table = table[table["label"].notna()]
    recorded = _recorded_training_cases(folder / PREDICTIONS)
    found: dict[str, FoldCheckpoint] = {}
    for path in sorted(folder.rglob(name)) if folder.is_dir() else []:
        ckpt = load_checkpoint(path)
        meta = {k: v for k, v in ckpt.items() if k not in ("model_state", "optimizer_state", "scheduler_state",
                                                          "scaler_state")}
        fold = _fold_of(meta, path)
        if dict(meta.get("extra") or {}).get("recipe_candidate"):  # a recipe candidate, not the fold's network
            continue
        if fold == "final" or not (fold == "holdout" or (fold.startswith("r") and "f" in fold)):
            continue
        found[fold] = FoldCheckpoint(fold, path, _train_cases(meta, fold, table, path, recorded), meta)
    if not found:
        raise InputError(f"No fold checkpoints ({name}) under {folder}: train the networks first "
                         "(`her2dlr train deep STUDY`).")
    return dict(sorted(found.items(), key=lambda kv: _fold_key(kv[0])))


def _recorded_training_cases(path: Path) -> dict[str, frozenset[str]]:
    """fold -> cases of its ``train`` / ``train_oof`` rows in the deep stage's predictions (if saved)."""
    if not path.is_file():
        return {}
    preds = pd.read_parquet(path, columns=["case_id", "fold", "split"])
    rows = preds[preds["split"].isin(["train", "train_oof"])]
    return {str(f): frozenset(part["case_id"].astype(str)) for f, part in rows.groupby("fold")}


def _fold_key(fold: str) -> tuple[int, int]:
    if fold == "holdout":
        return (-1, -1)
    rep, _, k = fold[1:].partition("f")
    return (int(rep), int(k)) if rep.isdigit() and k.isdigit() else (10**6, 0)
