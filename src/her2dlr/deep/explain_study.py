"""Heat maps of a study's cases: per-case overlays, scores, the TP / FP / FN / TN montage, the embedding.

:func:`explain_cases` explains every case with the network that never saw it: for repetition
``rep`` of the outer k-fold, a case is explained by the network of the fold in which it is a
test case (:mod:`her2dlr.deep.checkpoints`), on exactly the input that network gets
(:func:`her2dlr.deep.data.manifest_rois` with the checkpoint's ROI settings). Its heat map is
put back on the image over the crop box (:func:`~her2dlr.deep.explain.paste_heat`) and scored
against the lesion mask (:func:`~her2dlr.deep.explain.heat_in_mask`; a case given by a box only
is scored against the box). A case is TP / FP / FN / TN by its out-of-fold probability and
its fold's training threshold (from the deep stage's ``predictions.parquet`` or the fold
checkpoint, else 0.5); that probability is the network's prediction as the deep stage made it
(the mean over the ROI and its mirror for a network trained with ``tta_flips``), while its map
is the Grad-CAM of the unflipped ROI.

Volumes (networks trained with ``spatial_dims=3``): maps, crop boxes, the pasted heat and its
scores are 3D (``heat_maps.npz`` holds ``(n, S, S, S)`` maps); the pictures (per-case overlays,
montage) are 2D and show the slice through the middle of the crop box, i.e. of the lesion.

Networks that fuse clinical-pathological values at their head (``deep.clinical_columns``): each
case's values come from the manifest into the network's forward pass, so a map explains the
image with the case's own clinical values held fixed; the deep-feature embedding is left out
(with a warning), as such a network's penultimate features hold the clinical values too.

Outputs under ``out_dir`` (``RUN/deep/<arch>/explain``):

=======================  ================================================================
``heat_scores.csv``      one row per case: fold, label, prob, threshold, group, explained
                         class, ``heat_in_lesion``, ``lesion_area``, ``lift``, crop box
``heat_summary.json``    method, layer, medians of the scores, by group
``heat_maps.npz``        every case's map at the network's input size (figures redraw from it)
``cases/<case>.png``     the image with the heat on the crop box (box yellow, lesion green)
                         beside the network input with its heat
``montage.png``          ``n_per_group`` cases per row: most confident TP, FP, FN, TN
``embedding.png``/.csv   t-SNE of one fold network's deep features coloured by label
                         (training cases hollow, unseen cases filled), seed 000 figure 4
=======================  ================================================================
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.deep.checkpoints import (
    FoldCheckpoint,
    find_fold_checkpoints,
    roi_spec_of,
    threshold_of,
    tta_flips_of,
)
from her2dlr.deep.explain import (
    METHODS,
    CamExplainer,
    box_region,
    heat_in_mask,
    paste_heat,
)
from her2dlr.deep.figures import (
    GROUP_ORDER,
    MontageCell,
    draw_box,
    draw_outline,
    overlay_rgb,
    save_embedding,
    save_montage,
    save_png,
)
from her2dlr.errors import InputError, nearest
from her2dlr.imaging.figures import heat_map_figure
from her2dlr.io.atomic import atomic_path, write_csv_atomic, write_text_atomic
from her2dlr.runfolder import PREDICTIONS

__all__ = [
    "OVERLAYS",
    "ExplainResult",
    "case_group",
    "embedding_figure",
    "explain_cases",
    "explain_study",
    "lesion_region",
    "select_montage",
]

#: Which per-case overlays are written.
OVERLAYS = ("all", "montage", "none")
_PANEL = 256


@dataclass
class ExplainResult:
    """What :func:`explain_cases` wrote.

    Attributes
    ----------
    scores : DataFrame
        ``heat_scores.csv``.
    summary : dict
    out_dir, montage : Path
    embedding : Path or None
    files : list of Path
    """

    scores: pd.DataFrame
    summary: dict[str, Any]
    out_dir: Path
    montage: Path
    embedding: Path | None = None
    files: list[Path] = field(default_factory=list)


def case_group(label: int, predicted: int) -> str:
    """``"TP"``, ``"FP"``, ``"FN"`` or ``"TN"``."""
    return {(1, 1): "TP", (0, 1): "FP", (1, 0): "FN", (0, 0): "TN"}[(int(label), int(predicted))]


def select_montage(scores: pd.DataFrame, n_per_group: int = 4) -> pd.DataFrame:
    """The montage's cases: per group the most confident ones.

    TP and FP: highest probability first; FN and TN: lowest first (the clearest errors and
    the clearest correct calls). Returns the rows of ``scores`` in montage order.
    """
    parts = []
    for group in GROUP_ORDER:
        rows = scores[scores["group"] == group]
        rows = rows.sort_values("prob", ascending=group in ("FN", "TN"), kind="stable")
        parts.append(rows.head(n_per_group))
    return pd.concat(parts) if parts else scores.iloc[:0]


def _safe_name(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(case_id)).strip("_") or "case"


def _read_case(row: pd.Series) -> tuple[np.ndarray, np.ndarray | None, tuple[float, ...] | None]:
    """Grey image array, lesion mask array (or None) and box (or None) of a manifest row."""
    import SimpleITK as sitk

    from her2dlr.io.cells import is_missing, parse_bbox
    from her2dlr.io.images import read_image, read_mask_array

    image = sitk.GetArrayFromImage(read_image(str(row["image"])))
    mask = None
    if not is_missing(row.get("mask")):
        mask = read_mask_array(str(row["mask"])) > 0
    bbox = parse_bbox(row.get("bbox"), where=f"bbox of case {row['case_id']}")
    return image, mask, bbox


def lesion_region(shape: tuple[int, ...], mask: np.ndarray | None, bbox: tuple[float, ...] | None, *,
                  spatial_dims: int = 2) -> np.ndarray:
    """The lesion as a boolean image: the mask, else the box filled (clipped to the image).

    The box is ``(x, y, w, h)``, or ``(x, y, z, w, h, d)`` with ``spatial_dims=3`` (``shape``
    then starts with the slices).
    """
    if mask is not None:
        return mask
    n = spatial_dims
    out = np.zeros(shape[:n], bool)
    if bbox is not None:
        start, extent = bbox[:n][::-1], bbox[n:][::-1]  # array order: (z,) y, x
        out[tuple(slice(max(int(s), 0), max(int(np.ceil(s + e)), 0)) for s, e in zip(start, extent))] = True
    return out


def _middle_slice(volume: np.ndarray, lesion: np.ndarray, box: tuple[int, ...], heat_full: np.ndarray,
                  net_input: np.ndarray, heat: np.ndarray) -> tuple[Any, ...]:
    """The arguments of :func:`_case_panels` for the slice through the middle of a 3D crop box."""
    x0, y0, z0, x1, y1, z1 = box
    z = min(max((z0 + z1) // 2, 0), volume.shape[0] - 1)
    k = min(int((z - z0 + 0.5) * heat.shape[0] / (z1 - z0)), heat.shape[0] - 1)  # that slice in the resized crop
    return volume[z], lesion[z], (x0, y0, x1, y1), heat_full[z], net_input[:, k], heat[k]


def _centre_slice_view(volume: np.ndarray, mask: np.ndarray | None, bbox: tuple[float, ...] | None, spec: Any,
                       net_input: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int], np.ndarray]:
    """A 2.5D network's case in 2D: the lesion's centre slice, its lesion there, the in-plane crop box and the
    input's centre channel (:func:`her2dlr.imaging.roi.slice_stack_box`)."""
    from her2dlr.imaging.roi import slice_stack_box

    x0, y0, z0, x1, y1, z1 = slice_stack_box(volume.shape, mask=mask, bbox=None if mask is not None else bbox,
                                             spec=spec)
    z = min(max((z0 + z1) // 2, 0), volume.shape[0] - 1)  # an odd number of slices: the middle one
    lesion = lesion_region(volume.shape, mask, bbox, spatial_dims=3)[z]
    return volume[z], lesion, (x0, y0, x1, y1), net_input[spec.slices // 2][None]


def _resize(arr: np.ndarray, rows: int, cols: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(np.asarray(arr, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(rows, cols), mode="bilinear", align_corners=False)[0, 0].numpy()


def _context_box(box: tuple[int, int, int, int], shape: tuple[int, ...], factor: float = 0.5
                 ) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    dx, dy = int((x1 - x0) * factor), int((y1 - y0) * factor)
    return max(x0 - dx, 0), max(y0 - dy, 0), min(x1 + dx, shape[1]), min(y1 + dy, shape[0])


def _case_panels(image: np.ndarray, lesion: np.ndarray, box: tuple[int, int, int, int], heat_full: np.ndarray,
                 net_input: np.ndarray, heat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-case overlay: image + network input, montage picture: the box with context)."""
    peak = float(heat.max())
    scaled = heat_full / peak if peak > 0 else heat_full
    full = draw_outline(draw_box(overlay_rgb(image, scaled), box, width=2), lesion)
    rows, cols = image.shape[:2]
    width = max(round(cols * _PANEL / rows), 1)
    from PIL import Image

    left = np.asarray(Image.fromarray(full).resize((width, _PANEL), Image.BILINEAR))
    grey = net_input[0] if net_input.ndim == 3 else net_input
    right = overlay_rgb(_resize(grey, _PANEL, _PANEL), np.clip(_resize(heat / peak if peak > 0 else heat,
                                                                       _PANEL, _PANEL), 0, 1))
    gap = np.full((_PANEL, 4, 3), 255, np.uint8)
    overlay = np.concatenate([left, gap, right], axis=1)
    cx0, cy0, cx1, cy1 = _context_box(box, image.shape)
    context = full[cy0:cy1, cx0:cx1]
    return overlay, context


def _case_caption(rec: dict[str, Any], method: str, neg_name: str, pos_name: str, in_lesion: float) -> list[str]:
    """Caption of a case's overlay: the case, its out-of-fold probability and class, the true label, what is drawn."""
    names = {0: neg_name, 1: pos_name}
    pct = "" if not np.isfinite(in_lesion) else f"; {100 * in_lesion:.0f}% of the heat in the lesion"
    return [f"Case {rec['case_id']} | network of fold {rec['fold']} (never saw this case)",
            f"P(positive) = {rec['prob']:.3f} -> class {rec['predicted']}, {names[rec['predicted']]}, at threshold "
            f"{rec['threshold']:.3f}; true label {rec['label']}, {names[rec['label']]} ({rec['group']})",
            f"{_METHOD_TITLES[method]} of class {rec['explained_class']}{pct}",
            "left: the image (yellow: crop; green: lesion); right: the network's input"]


def _refuse_multiclass(checkpoints: Mapping[str, FoldCheckpoint]) -> None:
    """The study explanation sorts cases into TP / FP / FN / TN at a threshold: binary networks only."""
    for ck in checkpoints.values():
        k = int(ck.meta.get("n_classes", 2))
        if k > 2:
            raise InputError(f"The network of fold '{ck.fold}' ({ck.path}) has {k} classes (label.rule "
                             "her2_three_class): `her2dlr explain` groups cases as TP / FP / FN / TN of one positive "
                             "class and has no multi-class form. A single case's heat map of its most probable class: "
                             "her2dlr predict MODEL --image IMAGE --mask MASK --heatmap PNG.")


def _fused_columns(checkpoint: FoldCheckpoint) -> list[str]:
    """The clinical columns a fold network fuses at its head (empty for an image-only network)."""
    from her2dlr.deep.cv import clinical_columns_of

    return clinical_columns_of(checkpoint.meta)


def _fused_clinical(rows: pd.DataFrame, checkpoint: FoldCheckpoint) -> np.ndarray | None:
    """The cases' raw clinical values a fold network fuses (its forward needs them), or None."""
    from her2dlr.deep.data import manifest_clinical

    columns = _fused_columns(checkpoint)
    return manifest_clinical(rows, columns, key=f"clinical values of {checkpoint.path}") if columns else None


def _thresholds(predictions: pd.DataFrame | None) -> dict[tuple[str, str], float]:
    if predictions is None or predictions.empty or "threshold" not in predictions.columns:
        return {}
    test = predictions[predictions["split"] == "test"]
    return {(str(r.fold), str(r.case_id)): float(r.threshold) for r in test.itertuples() if pd.notna(r.threshold)}


def _label_names(manifest: Any) -> tuple[str, str]:
    meta = getattr(manifest, "meta", {}) or {}
    rule = meta.get("label", {}) if isinstance(meta, Mapping) else {}
    neg, pos = rule.get("negative"), rule.get("positive")
    if neg and pos:
        return "/".join(map(str, neg)), "/".join(map(str, pos))
    return "negative", "positive"


def explain_cases(checkpoints: Mapping[str, FoldCheckpoint], manifest: Any, out_dir: str | os.PathLike[str], *,
                  method: str = "gradcam", repetition: int = 0, n_per_group: int = 4, overlays: str = "all",
                  predictions: pd.DataFrame | None = None, embedding: str | None = "tsne", n_jobs: int = 1,
                  progress: bool = False) -> ExplainResult:
    """Explain every labelled case of one repetition with its out-of-fold network (see the module docstring).

    Parameters
    ----------
    checkpoints : dict
        fold -> :class:`~her2dlr.deep.checkpoints.FoldCheckpoint` (:func:`find_fold_checkpoints`).
    manifest : Manifest or DataFrame
        With ``image``, ``mask`` or ``bbox``, ``label`` and ``fold_r<repetition>``.
    out_dir : path
    method : {"cam", "gradcam", "gradcampp"}, default="gradcam"
    repetition : int, default=0
    n_per_group : int, default=4
        Montage pictures per group.
    overlays : {"all", "montage", "none"}, default="all"
        Per-case overlays written for every case, only the montage's, or none.
    predictions : DataFrame, optional
        The deep stage's predictions (``fold, case_id, split, threshold``): each fold's
        training threshold; default: the threshold stamped in the fold checkpoint, else 0.5.
    embedding : {"tsne", "pca"} or None, default="tsne"
        Also draw the deep-feature embedding of the repetition's first fold network.
    n_jobs : int, default=1
        Threads reading images for the network inputs.
    progress : bool, default=False

    Returns
    -------
    ExplainResult
    """
    from her2dlr.deep.data import manifest_rois
    from her2dlr.imaging.roi import roi_box

    if method not in METHODS:
        raise InputError(f"The 'method' parameter of explain_cases must be one of {list(METHODS)}. "
                         f"Got {method!r} instead.{nearest(str(method), METHODS)}")
    if overlays not in OVERLAYS:
        raise InputError(f"The 'overlays' parameter of explain_cases must be one of {list(OVERLAYS)}. "
                         f"Got {overlays!r} instead.{nearest(str(overlays), OVERLAYS)}")
    out = Path(out_dir)
    table = manifest.included if hasattr(manifest, "included") else manifest
    table = table[table["label"].notna()].copy()
    table["case_id"] = table["case_id"].astype(str)
    col = f"fold_r{repetition}"
    if col not in table.columns:
        raise InputError(f"The manifest has no '{col}' column (repetition {repetition} of the outer k-fold).")
    folds = sorted(int(k) for k in table[col].dropna().unique() if int(k) >= 0)
    _refuse_multiclass(checkpoints)
    thresholds = _thresholds(predictions)
    neg_name, pos_name = _label_names(manifest)

    # pass 1: heat maps of every case by the network that never saw it
    maps: dict[str, np.ndarray] = {}
    inputs: dict[str, np.ndarray] = {}
    records: list[dict[str, Any]] = []
    fold_iter: Any = folds
    if progress:
        from tqdm.auto import tqdm

        fold_iter = tqdm(folds, desc=f"{method} by fold", leave=False)
    for k in fold_iter:
        fold = f"r{repetition}f{k}"
        if fold not in checkpoints:
            raise InputError(f"No network for outer fold '{fold}' among {sorted(checkpoints)[:8]}.")
        ck = checkpoints[fold]
        rows = table[table[col].fillna(-1).astype(int) == k]
        seen = sorted(set(rows["case_id"]) & ck.train_cases)
        if seen:
            raise InputError(f"The network of fold '{fold}' ({ck.path}) was trained on its test case(s) {seen[:5]}.")
        spec = roi_spec_of(ck.meta)
        fold_thr = threshold_of(ck.meta)
        fold_thr = 0.5 if fold_thr is None else fold_thr
        x = manifest_rois(rows, spec, n_jobs=n_jobs)
        # the probability (and TP / FP / FN / TN) is the fold network's prediction, flips included
        heat = CamExplainer(ck.load(), method=method, flips=tta_flips_of(ck.meta))(x, clinical=_fused_clinical(rows, ck))
        for i, (_, row) in enumerate(rows.iterrows()):
            cid = row["case_id"]
            maps[cid], inputs[cid] = heat.maps[i], x[i]
            thr = thresholds.get((fold, cid), fold_thr)
            predicted = int(heat.prob[i] >= thr)
            records.append({"case_id": cid, "patient_id": str(row.get("patient_id")), "fold": fold,
                            "label": int(row["label"]), "prob": float(heat.prob[i]), "threshold": thr,
                            "predicted": predicted, "group": case_group(int(row["label"]), predicted),
                            "explained_class": int(heat.explained_class[i]), "method": method,
                            "target_layer": heat.target_layer, "_spec": spec, "_row": row})
    if not records:
        raise InputError(f"No labelled case in repetition {repetition} to explain.")
    chosen = set(select_montage(pd.DataFrame(records)[["case_id", "group", "prob"]], n_per_group)["case_id"])

    # pass 2: back on the image, scores, overlays, montage pictures
    cells: dict[str, MontageCell] = {}
    cases_dir = out / "cases"
    files: list[Path] = []
    it: Any = records
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(records, desc="overlays", leave=False)
    for rec in it:
        row, spec = rec.pop("_row"), rec.pop("_spec")
        n = spec.spatial_dims
        image, mask, bbox = _read_case(row)
        net_input = inputs[rec["case_id"]]
        if spec.slices is not None:  # 2.5D: the heat map lies in the plane of the lesion's centre slice
            image, lesion, box, net_input = _centre_slice_view(image, mask, bbox, spec, net_input)
        else:
            box = roi_box(image.shape, mask=mask, bbox=None if mask is not None else bbox, margin=spec.margin,
                          min_size=spec.min_size, square=spec.keep_aspect, spatial_dims=n)
            lesion = lesion_region(image.shape, mask, bbox, spatial_dims=n)
        heat_full = paste_heat(maps[rec["case_id"]], box, image.shape[:n])
        score = heat_in_mask(heat_full, lesion, box_region(box, image.shape[:n]))
        rec.update({"heat_in_lesion": score.in_lesion, "lesion_area": score.lesion_area, "lift": score.lift,
                    "heat_total": score.total, "lesion_from": "mask" if mask is not None else "bbox",
                    "box": json.dumps([int(v) for v in box])})
        cid = rec["case_id"]
        if overlays == "all" or cid in chosen:
            panels = ((image if image.ndim == 2 else image[..., 0], lesion, box, heat_full, net_input, maps[cid])
                      if n == 2 else _middle_slice(image, lesion, box, heat_full, net_input, maps[cid]))
            overlay, context = _case_panels(*panels)
            if overlays == "all" or (overlays == "montage" and cid in chosen):
                caption = _case_caption(rec, method, neg_name, pos_name, score.in_lesion)
                files.append(save_png(heat_map_figure(overlay, caption), cases_dir / f"{_safe_name(cid)}.png",
                                      text={"Caption": "\n".join(caption)}))
            if cid in chosen:
                name = pos_name if rec["label"] == 1 else neg_name
                pct = "" if not np.isfinite(score.in_lesion) else f", {100 * score.in_lesion:.0f}% in lesion"
                cells[cid] = MontageCell(rec["group"], context,
                                         f"{cid[:22]}\n{name}, p={rec['prob']:.2f}{pct}")
    scores = pd.DataFrame(records)
    ordered = [cells[c] for c in select_montage(scores, n_per_group)["case_id"] if c in cells]
    montage = save_montage(ordered, out / "montage.png", colour_bar=True,
                           suptitle=f"{_METHOD_TITLES[method]} ({scores['target_layer'].iloc[0]}), out-of-fold; "
                                    f"yellow: crop, green: lesion")
    summary = _summary(scores, method)
    files += [write_csv_atomic(scores, out / "heat_scores.csv"),
              write_text_atomic(out / "heat_summary.json", json.dumps(summary, indent=2)), montage]
    with atomic_path(out / "heat_maps.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, case_id=np.asarray(list(maps), dtype=object).astype(str),
                            maps=np.stack(list(maps.values())))
    files.append(out / "heat_maps.npz")
    emb_path = None
    if embedding and _fused_columns(checkpoints[f"r{repetition}f{folds[0]}"]):
        warnings.warn("The deep-feature embedding is left out: the networks fuse clinical values at their head "
                      "(deep.clinical_columns), so their penultimate features are no imaging features.",
                      stacklevel=2)
    elif embedding:
        first = checkpoints[f"r{repetition}f{folds[0]}"]
        emb_path = embedding_figure(first, table, out / "embedding.png", method=embedding,
                                    class_names=(neg_name, pos_name), n_jobs=n_jobs)
        files += [emb_path, emb_path.with_suffix(".csv")]
    return ExplainResult(scores, summary, out, montage, emb_path, files)


_METHOD_TITLES = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++"}


def _summary(scores: pd.DataFrame, method: str) -> dict[str, Any]:
    def stats(frame: pd.DataFrame) -> dict[str, Any]:
        lift = frame["lift"].replace([np.inf, -np.inf], np.nan)
        return {"n": len(frame), "median_heat_in_lesion": _num(frame["heat_in_lesion"].median()),
                "median_lesion_area": _num(frame["lesion_area"].median()), "median_lift": _num(lift.median()),
                "share_lift_above_1": _num((lift > 1).mean()) if lift.notna().any() else None,
                "share_empty_maps": _num((frame["heat_total"] <= 0).mean())}

    return {"method": method, "target_layer": str(scores["target_layer"].iloc[0]), **stats(scores),
            "by_group": {g: stats(scores[scores["group"] == g]) for g in GROUP_ORDER if (scores["group"] == g).any()}}


def _num(v: Any) -> float | None:
    v = float(v)
    return None if not np.isfinite(v) else round(v, 4)


def embedding_figure(checkpoint: FoldCheckpoint, manifest: Any, path: str | os.PathLike[str], *,
                     method: str = "tsne", class_names: tuple[str, str] = ("negative", "positive"),
                     n_jobs: int = 1, seed: int = 0) -> Path:
    """t-SNE (or PCA) of one fold network's deep features of every labelled case, coloured by label.

    The network's training cases are drawn hollow, the cases it never saw filled (seed 000,
    figure 4). One network only: the features of different fold networks are different
    coordinates and cannot share a plot.
    """
    from her2dlr.deep.data import manifest_rois
    from her2dlr.deep.features import deep_frame, embed_arrays

    table = manifest.included if hasattr(manifest, "included") else manifest
    table = table[table["label"].notna()]
    x = manifest_rois(table, roi_spec_of(checkpoint.meta), n_jobs=n_jobs)
    emb, _ = embed_arrays(checkpoint.load(), x)
    ids = table["case_id"].astype(str).tolist()
    features = deep_frame(emb, ids)
    labels = pd.Series(table["label"].astype(int).to_numpy(), index=ids)
    seen = pd.Series([c in checkpoint.train_cases for c in ids], index=ids)
    png, _ = save_embedding(features, labels, path, method=method, seed=seed, class_names=class_names, seen=seen,
                            title=f"Deep features ({features.shape[1]}-d) of network {checkpoint.fold}, "
                                  f"{'t-SNE' if method == 'tsne' else 'PCA'}")
    return png


def explain_study(study: Any, *, arch: str = "densenet3block", method: str = "gradcam", repetition: int = 0,
                  n_per_group: int = 4, overlays: str = "all", embedding: str | None = "tsne", n_jobs: int = 1,
                  progress: bool = True) -> ExplainResult:
    """Explain the study's cases with its fold networks; write ``RUN/deep/<arch>/explain/``.

    Parameters
    ----------
    study : Study
    arch : str, default="densenet3block"
        The network whose checkpoints are under ``RUN/deep/<arch>/``.
    method, repetition, n_per_group, overlays, embedding, n_jobs, progress
        See :func:`explain_cases`.
    """
    from her2dlr.cohort.build import manifest_path
    from her2dlr.cohort.manifest import Manifest
    from her2dlr.deep.stage import deep_dir

    manifest = Manifest.load(manifest_path(study))
    folder = deep_dir(study, arch)
    checkpoints = find_fold_checkpoints(folder, manifest=manifest)
    preds_path = folder / PREDICTIONS
    predictions = pd.read_parquet(preds_path) if preds_path.is_file() else None
    return explain_cases(checkpoints, manifest, study.paths.explain(arch), method=method, repetition=repetition,
                         n_per_group=n_per_group, overlays=overlays, predictions=predictions, embedding=embedding,
                         n_jobs=n_jobs, progress=progress)
