"""The segmentation stage of a study: one network per outer fold, and an out-of-fold mask for every case.

For the outer folds of one k-fold repetition (``segment.repetition``, ``fold_r<k>`` of the
manifest) a network is trained on the cases of the other folds that have a mask, and it
segments the cases of its own fold, which it never saw. Cases outside the k-fold (no label, or
an external centre) are segmented by the first fold's network, which never saw them either.
With ``final`` a last network is trained on every case with a mask: it is the one applied to
new cases, never to the study's own.

Writes under ``RUN/segment/<arch>/``: ``<fold>/best.pt`` (and ``final/``), ``masks/<case>.png``
(``.nrrd`` for volumes, with the image's geometry), ``masks.csv`` (case, fold, network, mask,
empty, confidence, and Dice / IoU / HD95 / detection against the given mask where there is
one), ``metrics.csv`` (summary with a case-bootstrap CI) and ``montage.png`` (best, median and
worst cases); and ``RUN/segment/auto_masks.csv``, the table ``roi: auto`` reads.

An empty prediction stays empty: the case has no automatic ROI, it is never given the whole
image. Segmentation networks see masks, never labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.io.atomic import write_csv_atomic, write_text_atomic
from her2dlr.io.cells import is_missing, parse_bbox
from her2dlr.runfolder import BEST_CHECKPOINT, case_file_stem
from her2dlr.segment.data import mask_box, write_mask
from her2dlr.segment.settings import SegmentSettings

if TYPE_CHECKING:  # the study model composes every stage; a stage only reads it
    from her2dlr.config import Study

__all__ = ["SegStageResult", "run_seg_stage", "seg_train_settings"]


@dataclass
class SegStageResult:
    """What :func:`run_seg_stage` trained and wrote."""

    out_dir: Path
    masks: pd.DataFrame
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    final: Path | None = None


def seg_train_settings(settings: SegmentSettings, *, progress: bool = True,
                       distributed: bool = False) -> tuple[Any, Any, Any]:
    """The training settings, input spec and post-processing of a ``segment:`` section (loads torch).

    ``distributed``: DistributedDataParallel over the processes of a ``torchrun`` launch.
    """
    from her2dlr.segment.data import SegSpec
    from her2dlr.segment.networks import DEFAULT_FEATURES
    from her2dlr.segment.postprocess import PostSettings
    from her2dlr.segment.train_settings import SegTrainSettings

    levels = len(settings.features or DEFAULT_FEATURES[settings.arch])
    if settings.size < 2 ** levels:  # the deepest level must keep 2 voxels a side for its normalisation
        raise InputError(f"segment.image_size {settings.size} is too small for the {levels}-level {settings.arch}: "
                         f"its deepest level would be one voxel wide. Use image_size >= {2 ** levels}, or fewer "
                         f"levels (segment.features, e.g. {list((settings.features or DEFAULT_FEATURES[settings.arch])[:3])}).")
    train = SegTrainSettings(
        arch=settings.arch, spatial_dims=settings.spatial_dims, image_size=settings.size,
        features=tuple(settings.features) if settings.features else None,
        box_prompt=settings.box_prompt, epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
        patience=settings.patience, val_fraction=settings.val_fraction, seed=settings.seed, device=settings.device,
        progress=progress, distributed=distributed)
    spec = SegSpec(size=settings.size, spatial_dims=settings.spatial_dims, box_prompt=settings.box_prompt,
                   box_margin=settings.box_margin)
    p = settings.post
    post = PostSettings(threshold=p.threshold, keep=p.keep, min_size=p.min_size, fill_holes=p.fill_holes)
    return train, spec, post


def _cases(study: Study, settings: SegmentSettings) -> pd.DataFrame:
    """Included cases with their image, given mask, given box, fold and group."""
    from her2dlr.cohort.manifest import Manifest

    table = Manifest.load(study.paths.manifest).included.copy()
    fold_col = f"fold_r{settings.repetition}"
    if fold_col not in table.columns:
        raise InputError(f"segment.repetition = {settings.repetition}: the manifest has no column {fold_col}. "
                         "Segmentation is trained on the outer folds of split.kfold: set split.kfold (with enough "
                         "n_repeats) and run `her2dlr cohort build STUDY`.")
    out = pd.DataFrame({"case_id": table["case_id"].astype(str), "image": table["image"].astype(str)})
    out["mask"] = [None if is_missing(m) else str(m) for m in table["mask"]]
    out["box"] = [parse_bbox(b, where=f"bbox of case {c}") if "bbox" in table else None
                  for c, b in zip(out["case_id"], table["bbox"] if "bbox" in table else [None] * len(table))]
    out["fold"] = table[fold_col].fillna(-1).astype(int).to_numpy()
    group_col = "group" if "group" in table.columns else "patient_id"
    out["group"] = table[group_col].astype(str).to_numpy()
    out["spacing"] = table["spacing"].to_numpy() if "spacing" in table.columns else np.nan
    return out.reset_index(drop=True)


def _train(cases: pd.DataFrame, rows: np.ndarray, settings: SegmentSettings, out: Path, progress: bool,
           notes: list[str], name: str, distributed: bool = False, resume: bool = False) -> Any:
    """Train one network on ``cases.iloc[rows]`` (cases with a given mask)."""
    from her2dlr.segment.data import load_seg_pairs
    from her2dlr.segment.train import train_segmenter

    train, spec, _ = seg_train_settings(settings, progress=progress, distributed=distributed)
    sub = cases.iloc[rows]
    boxes = [tuple(b) if b is not None else None for b in sub["box"]]
    x, y, _ = load_seg_pairs(list(sub["image"]), list(sub["mask"]), boxes, spec=spec, progress=progress)
    res = train_segmenter(x, y, sub["group"].to_numpy(), settings=train, out_dir=out / name, spec=spec,
                          resume=resume)
    notes += [f"{name}: {n}" for n in res.notes]
    return res.model


def _segment(model: Any, cases: pd.DataFrame, rows: np.ndarray, settings: SegmentSettings,
             progress: bool) -> list[Any]:
    from her2dlr.segment.infer import segment_images

    _, spec, post = seg_train_settings(settings, progress=progress)
    sub = cases.iloc[rows]
    boxes = [_prompt_box(r) for r in sub.itertuples()] if spec.box_prompt else None
    missing = [c for c, b in zip(sub["case_id"], boxes or []) if b is None]
    if missing:
        raise InputError(f"A box-prompted network needs a box or a mask for every case; case(s) {missing[:5]} "
                         "have neither.")
    return segment_images(model, list(sub["image"]), boxes=boxes, spec=spec, post=post, progress=progress)


def _prompt_box(row: Any) -> tuple[float, ...] | None:
    """The reader's box: the given box, else the bounding box of the given mask (as a reader would draw it)."""
    if row.box is not None:
        return tuple(row.box)
    if row.mask is None:
        return None
    from her2dlr.io.images import read_mask_array

    mask = read_mask_array(row.mask)
    return mask_box(mask) if mask.any() else None


def run_seg_stage(study: Study, settings: SegmentSettings | None = None, *, final: bool | None = None,
                  progress: bool = True, distributed: bool = False, resume: bool = False) -> SegStageResult:
    """Train the segmentation networks on the study's outer folds and write every case's out-of-fold mask.

    Parameters
    ----------
    study : Study
    settings : SegmentSettings, optional
        Default: the study's ``segment:`` section (or its defaults).
    final : bool, optional
        Also train the network for new cases on every case with a mask (default: ``settings.final``).
    progress : bool, default=True
    distributed : bool, default=False
        Train each network with DistributedDataParallel over the processes of a ``torchrun``
        launch; only rank 0 segments the cases and writes (the others return an empty result).
    resume : bool, default=False
        Continue each network from its folder's ``resume.pt`` (an interrupted run): finished folds
        are not trained again and the networks equal those of an uninterrupted run.

    Returns
    -------
    SegStageResult

    Raises
    ------
    InputError
        No k-fold split, no case with a mask, a box-prompted network without boxes, a mask of
        another size than its image, a 3D network given 2D images (each named).
    """
    from her2dlr.io.atomic import check_writable

    check_writable(study.paths.root)
    settings = settings or study.segment or SegmentSettings()
    final = settings.final if final is None else final
    cases = _cases(study, settings)
    out = study.paths.segment_arch(settings.arch)
    has_mask = cases["mask"].notna().to_numpy()
    if not has_mask.any():
        raise InputError("No included case has a mask: the segmentation networks learn from delineated lesions.")
    notes: list[str] = []
    folds = sorted(f for f in set(cases["fold"]) if f >= 0)
    if not folds:
        raise InputError(f"fold_r{settings.repetition} assigns no case to a fold: set split.kfold.")
    preds: dict[int, Any] = {}
    network_of: dict[int, str] = {}
    from her2dlr.imaging.distributed import is_main_process

    main = is_main_process()
    for k in folds:
        name = f"r{settings.repetition}f{k}"
        train_rows = np.flatnonzero(has_mask & (cases["fold"].to_numpy() >= 0) & (cases["fold"].to_numpy() != k))
        model = _train(cases, train_rows, settings, out, progress, notes, name, distributed, resume)
        if not main:
            continue
        own = np.flatnonzero(cases["fold"].to_numpy() == k)
        if k == folds[0]:  # outside the k-fold: never seen by any fold network
            own = np.concatenate([own, np.flatnonzero(cases["fold"].to_numpy() < 0)])
        for i, p in zip(own, _segment(model, cases, own, settings, progress)):
            preds[int(i)], network_of[int(i)] = p, name
    final_path = None
    if final:
        from her2dlr.segment.checkpoints import save_segmenter

        model = _train(cases, np.flatnonzero(has_mask), settings, out, progress, notes, "final", distributed, resume)
        if not main:
            return SegStageResult(out, pd.DataFrame(), {}, notes)
        train, spec, _ = seg_train_settings(settings, progress=False)
        final_path = save_segmenter(model, spec, train, out / "final" / BEST_CHECKPOINT,
                                    post=settings.post.model_dump(), n_cases=int(has_mask.sum()))
    if not main:
        return SegStageResult(out, pd.DataFrame(), {}, notes)
    rows = []
    for i, case in cases.iterrows():
        p = preds[int(i)]
        path = out / "masks" / f"{case_file_stem(case['case_id'])}{'.png' if p.mask.ndim == 2 else '.nrrd'}"
        write_mask(p.mask, case["image"], path)
        rows.append({"case_id": case["case_id"], "fold": int(case["fold"]), "network": network_of[int(i)],
                     "mask_auto": str(path), "empty": bool(p.empty), "confidence": float(p.confidence)})
    masks = pd.DataFrame(rows)
    masks, summary = _quality(masks, cases, preds, out)
    write_csv_atomic(masks, out / "masks.csv")
    write_csv_atomic(masks[["case_id", "mask_auto", "empty", "confidence", "network"]], study.paths.auto_masks)
    write_text_atomic(out / "summary.json", json.dumps({**summary, "arch": settings.arch, "notes": notes,
                                                         "settings": settings.model_dump(mode="json")}, indent=2))
    return SegStageResult(out, masks, summary, notes, final_path)


def _quality(masks: pd.DataFrame, cases: pd.DataFrame, preds: dict[int, Any], out: Path
             ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Dice, IoU, HD95 and detection of the cases with a given mask; the summary table and the montage."""
    from her2dlr.io.images import read_mask_array
    from her2dlr.segment.figures import overlay_montage
    from her2dlr.segment.metrics import segmentation_table, summarise

    rows = [i for i in range(len(cases)) if cases.at[i, "mask"] is not None]
    if not rows:
        return masks, {"n_cases": 0}
    truth = [read_mask_array(cases.at[i, "mask"]) > 0 for i in rows]
    pred = [preds[i].mask for i in rows]
    ids = [cases.at[i, "case_id"] for i in rows]
    # one isotropic pixel size per case, as a per-axis tuple (a flat list of floats would read as one shared spacing)
    spacing = [None if is_missing(cases.at[i, "spacing"]) else (float(cases.at[i, "spacing"]),) * t.ndim
               for i, t in zip(rows, truth)]
    table = segmentation_table(pred, truth, ids, spacings=spacing)
    summary = summarise(table)
    write_csv_atomic(pd.DataFrame([summary]), out / "metrics.csv")
    from her2dlr.segment.data import read_array
    from her2dlr.segment.figures import pick_cases

    shown = pick_cases(table)
    where = dict(zip(ids, rows))
    overlay_montage({c: read_array(cases.at[where[c], "image"]) for c in shown},
                    {c: truth[ids.index(c)] for c in shown}, {c: pred[ids.index(c)] for c in shown},
                    table.loc[shown], out / "montage.png")
    merged = masks.merge(table.reset_index(), on="case_id", how="left")
    return merged, summary
