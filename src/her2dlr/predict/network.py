"""The network of a deep or DLR model artefact applied to new images: its input columns and heat maps.

A deep artefact's ``network.pt`` turns the lesion's ROI into the ``deep_prob`` / ``deep_<j>``
columns its model reads (:func:`network_columns`); a multi-class network into
``deep_prob_0 .. deep_prob_<k-1>``, its class probabilities. The lesion is cropped, padded, resized and
normalised with the ROI settings stored in the network's checkpoint, as in training; a mask or
a box gives the same crop (the network reads the lesion's bounding rectangle plus a margin).
:func:`case_heat_map` draws where the network looked (Grad-CAM by default).
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from her2dlr.deep.deploy import DEEP_PROB, deep_prob_columns
from her2dlr.errors import InputError
from her2dlr.learn.artefact import ModelArtefact

__all__ = ["HeatMapResult", "case_heat_map", "heat_map_caption", "network_columns", "network_digest"]


@functools.lru_cache(maxsize=4)
def _digest_and_model(path: str, mtime_ns: int) -> tuple[str, Any, Any]:
    """SHA-256 of a network file and the loaded network, cached while the file is unchanged (many cases, one load)."""
    from her2dlr.deep.cv import load_deep_model

    model, spec, _ = load_deep_model(path)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest(), model, spec


def _network(path: Path) -> tuple[str, Any, Any]:
    return _digest_and_model(str(path), path.stat().st_mtime_ns)


_EXPLAINERS: dict[tuple[str, int, str], tuple[Any, threading.Lock]] = {}
_EXPLAINERS_LOCK = threading.Lock()


def _explainer(path: Path, method: str) -> tuple[Any, threading.Lock]:
    """One heat-map explainer per network file and method, with the lock its users share.

    An explainer holds its own copy of the network with hooks on it: building one copies the
    network (most of a heat map's time), and two passes at once would mix their hooks' tensors.
    """
    from her2dlr.deep.explain import CamExplainer

    key = (str(path), path.stat().st_mtime_ns, method)
    with _EXPLAINERS_LOCK:
        if key not in _EXPLAINERS:
            if len(_EXPLAINERS) >= 4:
                _EXPLAINERS.pop(next(iter(_EXPLAINERS)))
            explainer = CamExplainer(_network(path)[1], method=method, flips=_trained_with_flips(path))  # type: ignore[arg-type]
            _EXPLAINERS[key] = (explainer, threading.Lock())
        return _EXPLAINERS[key]


def network_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a network file (cached while the file is unchanged)."""
    return _network(Path(path))[0]


def network_columns(artefact: ModelArtefact, images: Sequence[Any], rois: Sequence[Any],
                    clinical: Sequence[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """The columns the networks of ``artefact`` (and its components) compute from images and lesions.

    Parameters
    ----------
    artefact : ModelArtefact
    images : sequence of path or ndarray
    rois : sequence
        Per image: mask file, mask array or box ``(x, y, w, h)``.
    clinical : sequence of mapping, optional
        Per image: clinical values by column, for a network that fuses clinical-pathological
        factors at its head (``deep.clinical_columns``); a missing value gets the training
        median the network stores (with a warning).

    Returns
    -------
    DataFrame
        One row per image: ``deep_prob`` and/or ``deep_<j>``, as the models need them.

    Raises
    ------
    InputError
        The model combines two different networks (their columns would clash), a missing ROI,
        unreadable images or masks (named), a clinical column the network fuses that is not
        given (named).
    """
    from her2dlr.deep.data import load_rois
    from her2dlr.deep.features import deep_columns, embed_arrays

    nodes = artefact.with_networks()
    if not nodes:
        return pd.DataFrame(index=range(len(images)))
    digests = {_network(n.network_path)[0] for n in nodes if n.network_path is not None}
    if len(digests) > 1:
        raise InputError(f"Model '{artefact.name}' combines {len(digests)} different networks; predicting it from "
                         "images is not supported (give its feature rows with --features).")
    if any(r is None for r in rois):
        raise InputError(f"Model '{artefact.name}' reads the lesion's ROI: give --mask or --box.")
    _, model, spec = _network(nodes[0].network_path)  # type: ignore[arg-type]
    fused = _fused_clinical(artefact, nodes[0].network_path, len(images), clinical)  # type: ignore[arg-type]
    x = load_rois(list(images), list(rois), spec=spec)
    if artefact.classes is not None:
        return _class_probability_columns(artefact, nodes[0].network_path, model, x, fused)  # type: ignore[arg-type]
    flips = _trained_with_flips(nodes[0].network_path)  # type: ignore[arg-type]
    if fused is not None:
        return _clinical_network_columns(artefact, nodes, model, x, fused, flips)
    emb, prob = embed_arrays(model, x)
    out = pd.DataFrame(emb, columns=[f"deep_{j}" for j in range(emb.shape[1])])
    needed = {c for n in nodes for c in n.card["inputs"].get("features", [])}
    wanted = deep_columns(sorted(needed))
    if len(wanted) > emb.shape[1] or any(c not in out.columns for c in wanted):
        raise InputError(f"Model '{artefact.name}' needs deep features {wanted[:3]} ... that its network "
                         f"({emb.shape[1]} features) does not give: the artefact is inconsistent.")
    out = out[[c for c in out.columns if c in needed]]
    if DEEP_PROB in needed:
        if flips:
            from her2dlr.deep.train import predict_proba

            prob = predict_proba(model, x, flips=True)[:, 1]
        out[DEEP_PROB] = prob
    return out


def _trained_with_flips(path: Path) -> bool:
    """Whether the network was trained with ``tta_flips``: its probability is then the mean over the ROI and
    its mirror, as its out-of-fold predictions and its threshold were."""
    from her2dlr.deep.checkpoints import tta_flips_of

    return tta_flips_of(_checkpoint_meta(str(path), path.stat().st_mtime_ns))


def _fused_clinical(artefact: ModelArtefact, path: Path, n: int,
                    clinical: Sequence[Mapping[str, Any]] | None) -> Any:
    """The raw clinical values (n, k) a network with clinical fusion needs, or None for an image-only network."""
    import warnings

    import numpy as np

    from her2dlr.deep.cv import clinical_columns_of
    from her2dlr.deep.data import manifest_clinical

    meta = _checkpoint_meta(str(path), path.stat().st_mtime_ns)
    columns = clinical_columns_of(meta)
    if not columns:
        return None
    rows = [dict(r) for r in (clinical or [{} for _ in range(n)])]
    missing = [c for c in columns if any(c not in r for r in rows)]
    if missing:
        raise InputError(f"Model '{artefact.name}' fuses clinical-pathological factors at its network's head and needs "
                         f"clinical column(s) {missing} (it reads {columns}). Give them (e.g. --clinical "
                         f"{missing[0]}=VALUE, or a column of the cases table).")
    values = manifest_clinical(pd.DataFrame([{c: r[c] for c in columns} for r in rows]), columns,
                               key=f"model '{artefact.name}'")
    medians = dict(zip(columns, dict(meta.get("extra") or {}).get("clinical", {}).get("median", [])))
    for j, col in enumerate(columns):
        if np.isnan(values[:, j]).any():
            warnings.warn(f"{col} is missing; the network used its training median {medians.get(col, float('nan')):g}.",
                          stacklevel=3)
    return values


@functools.lru_cache(maxsize=8)
def _checkpoint_meta(path: str, mtime_ns: int) -> dict[str, Any]:
    """A network file's settings and ``extra`` (no weights), cached while the file is unchanged."""
    from her2dlr.deep.train import load_checkpoint

    ckpt = load_checkpoint(path)
    return {"settings": ckpt.get("settings") or {}, "extra": ckpt.get("extra") or {}}


def _clinical_network_columns(artefact: ModelArtefact, nodes: list[ModelArtefact], model: Any, x: Any,
                              clinical: Any, flips: bool = False) -> pd.DataFrame:
    """``deep_prob`` of a network that fuses clinical values (its penultimate features hold them: no deep_<j>)."""
    from her2dlr.deep.train import predict_proba

    needed = {c for n in nodes for c in n.card["inputs"].get("features", [])}
    if needed - {DEEP_PROB}:
        raise InputError(f"Model '{artefact.name}' reads deep features of a network with clinical fusion; only its "
                         "probability (a deep signature) can be predicted from images.")
    return pd.DataFrame({DEEP_PROB: predict_proba(model, x, clinical=clinical, flips=flips)[:, 1]})


def _class_probability_columns(artefact: ModelArtefact, path: Path, model: Any, x: Any, clinical: Any) -> pd.DataFrame:
    """``deep_prob_0 .. deep_prob_<k-1>`` of a multi-class network: its class probabilities, computed as the
    deep stage computed its out-of-fold ones (flip averaging when the network was trained with it)."""
    from her2dlr.deep.train import predict_proba

    needed = list(artefact.card["inputs"].get("features", []))
    wanted = deep_prob_columns(len(artefact.classes or []))
    if needed != wanted:
        raise InputError(f"Model '{artefact.name}' has {len(wanted)} classes and reads {needed[:4]}; a multi-class "
                         f"deep model reads its network's class probabilities {wanted}: the artefact is inconsistent.")
    proba = predict_proba(model, x, flips=_trained_with_flips(path), clinical=clinical)
    if proba.shape[1] != len(wanted):
        raise InputError(f"Model '{artefact.name}' names {len(wanted)} classes but its network has {proba.shape[1]} "
                         "outputs: the artefact is inconsistent.")
    return pd.DataFrame(proba, columns=wanted)


@dataclass
class HeatMapResult:
    """A heat map written by :func:`case_heat_map`.

    ``prob`` is the network's probability of the positive class (of the explained class for a
    multi-class network) as its predictions compute it, test-time flips included.
    """

    path: Path
    prob: float
    explained_class: int
    method: str
    lesion_share: float


def case_heat_map(artefact: ModelArtefact, image: str | os.PathLike[str], path: str | os.PathLike[str], *,
                  mask: str | os.PathLike[str] | None = None, box: Sequence[float] | None = None,
                  method: str = "gradcam", probability: float | None = None, predicted_class: int | None = None,
                  threshold: float | None = None, case_id: str | None = None,
                  clinical: Mapping[str, Any] | None = None) -> HeatMapResult:
    """Where the artefact's network looked on one image: overlay PNG of the heat map on the whole image.

    The map explains the class the network predicts (``method``: ``"cam"``, ``"gradcam"`` or
    ``"gradcampp"``), is computed on the network's input and pasted back onto the crop it came
    from; the crop is drawn in yellow, a given mask's outline in green. ``lesion_share`` is the
    share of the heat inside the lesion (mask, else box) within the crop. The PNG has a caption
    (the case, the model, its probability and class) and a colour bar
    (:func:`her2dlr.imaging.figures.heat_map_figure`): ``probability``, ``predicted_class`` and
    ``threshold`` are the model's answer for the case (:func:`her2dlr.predict.predict`); without
    them the caption gives the network's own probability.

    The returned ``prob`` (and a caption without ``probability``) is the network's probability as
    its predictions compute it (:func:`her2dlr.deep.train.predict_proba`): the mean over the ROI
    and its left-right mirror when the network was trained with ``tta_flips``, so a deep model's
    heat map gives the probability ``her2dlr predict`` gives. The map itself is the Grad-CAM (or
    CAM) of the unflipped ROI; the class it explains is the network's predicted (flip-averaged)
    class.

    A network that fuses clinical-pathological values at its head reads the case's ``clinical``
    values (by column; scaled by the network as for its probability): the map explains the image
    with them held fixed. Without the columns it needs, InputError names them.
    """
    import warnings

    import SimpleITK as sitk

    from her2dlr.deep.explain import box_region, heat_in_mask, paste_heat
    from her2dlr.deep.explain_study import lesion_region
    from her2dlr.deep.figures import draw_box, draw_outline, overlay_rgb, save_png
    from her2dlr.imaging.figures import heat_map_figure
    from her2dlr.imaging.roi import prepare_roi, roi_box
    from her2dlr.io.cells import parse_bbox
    from her2dlr.io.images import read_image, read_mask_array

    nodes = artefact.with_networks()
    if not nodes:
        raise InputError(f"Model '{artefact.name}' has no network: a heat map needs a deep or DLR model.")
    if mask is None and box is None:
        raise InputError("A heat map needs the lesion: give --mask or --box.")
    spec = _network(nodes[0].network_path)[2]  # loaded once (network_columns already did)
    with warnings.catch_warnings():  # a missing value's note came with the probability already
        warnings.simplefilter("ignore")
        fused = _fused_clinical(artefact, Path(nodes[0].network_path), 1,
                                None if clinical is None else [dict(clinical)])
    img = sitk.GetArrayFromImage(read_image(str(image)))
    if img.ndim != 2:
        raise InputError(f"{image}: heat maps are drawn on 2D images; this one has shape {img.shape}.")
    lesion_mask = read_mask_array(mask) > 0 if mask is not None else None
    if lesion_mask is not None and lesion_mask.shape != img.shape:
        raise InputError(f"Mask {mask} has shape {lesion_mask.shape}, image {image} has {img.shape}.")
    bbox = parse_bbox(list(box), where="--box") if box is not None else None
    x = prepare_roi(img, mask=lesion_mask, bbox=bbox, spec=spec)
    explainer, busy = _explainer(Path(nodes[0].network_path), method)
    with busy:
        heat = explainer(x[None], clinical=fused)
    crop = roi_box(img.shape, mask=lesion_mask, bbox=bbox, margin=spec.margin, min_size=spec.min_size,
                   square=spec.keep_aspect)
    full = paste_heat(heat.maps[0], crop, img.shape)
    lesion = lesion_region(img.shape, lesion_mask, bbox)
    share = heat_in_mask(full, lesion, box_region(crop, img.shape)).in_lesion
    peak = float(full.max())
    rgb = draw_outline(draw_box(overlay_rgb(img, full / peak if peak > 0 else full), crop, width=2), lesion)
    result = HeatMapResult(Path(path), float(heat.prob[0]), int(heat.explained_class[0]), method, float(share))
    caption = heat_map_caption(artefact, result, case=case_id or Path(str(image)).name, probability=probability,
                               predicted_class=predicted_class, threshold=threshold)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_png(heat_map_figure(rgb, caption), path, text={"Caption": "\n".join(caption)})
    return result


_METHOD_NAMES = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++"}


def _class_words(artefact: ModelArtefact, cls: int) -> str:
    """``positive (malignant)`` / ``negative (benign)``: the class and the label values it stands for."""
    task = artefact.card.get("task") if isinstance(artefact.card.get("task"), dict) else {}
    values = task.get("positive" if cls == 1 else "negative") or []
    names = ", ".join(str(v) for v in values) if isinstance(values, list) else str(values)
    return ("positive" if cls == 1 else "negative") + (f" ({names})" if names else "")


def heat_map_caption(artefact: ModelArtefact, heat: HeatMapResult, *, case: str, probability: float | None = None,
                     predicted_class: int | None = None, threshold: float | None = None) -> list[str]:
    """The caption lines of a case's heat map: case and model; probability and class; what is drawn."""
    method = _METHOD_NAMES.get(heat.method, heat.method)
    names = artefact.classes
    if names is not None:  # a multi-class network: the map explains its most probable class
        cls = predicted_class if predicted_class is not None else heat.explained_class
        answer = (f"P({names[cls]}) = {probability:.3f} -> class {cls}, {names[cls]} (most probable)"
                  if probability is not None else f"network's most probable class {cls}, {names[cls]}")
        return [f"Case {case} | model {artefact.name}", answer,
                f"{method} of class {heat.explained_class} ({names[heat.explained_class]}); "
                f"{heat.lesion_share:.0%} of the heat in the lesion",
                "yellow: the network's crop; green: the lesion outline"]
    if probability is not None and predicted_class is not None:
        at = f" at threshold {threshold:.3f}" if threshold is not None else ""
        answer = (f"P(positive) = {probability:.3f} -> class {predicted_class}, "
                  f"{_class_words(artefact, predicted_class)}{at}")
    else:
        answer = f"network's P(positive) = {heat.prob:.3f}"
    return [f"Case {case} | model {artefact.name}",
            answer,
            f"{method} of class {heat.explained_class} ({_class_words(artefact, heat.explained_class).split(' ')[0]}); "
            f"{heat.lesion_share:.0%} of the heat in the lesion",
            "yellow: the network's crop; green: the lesion outline"]
