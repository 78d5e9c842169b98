"""Deployable deep and DLR models: artefacts that ``her2dlr predict`` applies to an image and its lesion.

Three kinds of artefact come from a trained network (see :mod:`her2dlr.learn.artefact`):

``deep_<arch>-signature`` (kind ``deep``)
    The network's own probability of the positive class (seed 002's deep-learning signature),
    at the threshold chosen on its training fold (inner validation predictions).
``deep_<arch>+<radiomics>-<clf>`` (kind ``pipeline`` with ``network.pt``: a DLR model)
    The network's penultimate features (``deep_0 ..``) and the radiomics features, through
    z-score + PCA to 64 components of the deep block, seed 002's selection and the classifier
    (:func:`her2dlr.deep.dlr.dlr_steps`), fitted on the network's training cases.
``late(deep_<arch>-signature,<radiomics>-<clf>)`` (kind ``late``)
    Mean of the signature's and the radiomics model's probabilities (seed 003).

Which network is deployed: the hold-out fold's (``RUN/deep/<arch>/holdout``: the card's test
metrics are then the hold-out's), else the one trained for deployment with ``her2dlr train
deep --final`` (``RUN/deep/<arch>/final``: every labelled case of a k-fold-only study, or the
hold-out's training rows). The radiomics and DLR models of the artefacts are fitted on exactly
the cases that network was trained on, so no deployed part has seen a case the others have not.

At prediction time (:func:`network_columns`) the lesion is cropped, padded, resized and
normalised with the ROI settings stored in the network's checkpoint, as in training; a mask or
a box gives the same crop (the network reads the lesion's bounding rectangle plus a margin).
:func:`case_heat_map` draws where the network looked (Grad-CAM by default).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from her2dlr.errors import InputError
from her2dlr.runfolder import BEST_CHECKPOINT
from her2dlr.learn.artefact import ModelArtefact, artefact_slug, save_artefact

__all__ = ["DEEP_PROB", "DeployNetwork", "HeatMapResult", "case_heat_map", "deploy_network", "network_columns",
           "save_deep_artefact", "save_dlr_artefacts"]

#: Input column of a ``deep`` artefact: the network's probability of the positive class.
DEEP_PROB = "deep_prob"


@dataclass(frozen=True)
class DeployNetwork:
    """The network to deploy for an architecture: its fold, checkpoint and training cases."""

    fold: str
    path: Path
    train_cases: frozenset[str]
    meta: Mapping[str, Any]


def deploy_network(deep_folder: str | os.PathLike[str]) -> DeployNetwork | None:
    """The ``holdout`` network under ``RUN/deep/<arch>``, else the ``final`` one; None when neither was trained."""
    from her2dlr.deep.train import load_checkpoint

    for fold in ("holdout", "final"):
        path = Path(deep_folder) / fold / BEST_CHECKPOINT
        if path.is_file():
            ckpt = load_checkpoint(path)
            meta = {k: v for k, v in ckpt.items() if not k.endswith("_state")}
            cases = dict(meta.get("extra") or {}).get("train_cases")
            if cases is None:
                raise InputError(f"Checkpoint {path} does not list its training cases; train it again with "
                                 "`her2dlr train deep`.")
            return DeployNetwork(fold, path, frozenset(str(c) for c in cases), meta)
    return None


def _network_card(meta: Mapping[str, Any], fold: str) -> dict[str, Any]:
    from her2dlr.deep.checkpoints import roi_spec_of

    return {"arch": meta.get("arch"), "image_size": meta.get("image_size"), "in_channels": meta.get("in_channels"),
            "roi": roi_spec_of(meta).to_dict(), "fold": fold, "lesion": "mask or box (its bounding rectangle)"}


def save_deep_artefact(models_dir: str | os.PathLike[str], deep_folder: str | os.PathLike[str], *, name: str,
                       metrics: pd.DataFrame | None = None, task: Mapping[str, Any] | None = None,
                       config_hash: str | None = None) -> Path | None:
    """Save the deploy network of ``deep_folder`` as a ``deep`` artefact ``models_dir/<name>``.

    Returns None (nothing written) when no hold-out or final network was trained.
    """
    from her2dlr.learn.deploy import metrics_of
    from her2dlr.learn.thresholds import Threshold

    net = deploy_network(deep_folder)
    if net is None:
        return None
    thr = dict(net.meta.get("extra") or {}).get("threshold")
    if not thr:
        raise InputError(f"Checkpoint {net.path} carries no operating threshold; train it again with "
                         "`her2dlr train deep`.")
    card: dict[str, Any] = {"training": {"scheme": net.fold, "n_cases": len(net.train_cases),
                                         "epoch": net.meta.get("epoch"), "seed": net.meta.get("seed")}}
    if metrics is not None and len(metrics):
        trained_as = str(dict(net.meta.get("extra") or {}).get("model", name))
        found = metrics_of(metrics, name)
        card["metrics"] = found if found["table"] else metrics_of(metrics, trained_as)
    if task is not None:
        card["task"] = dict(task)
    if config_hash is not None:
        card["config_hash"] = config_hash
    return save_artefact(Path(models_dir) / artefact_slug(name), name=name, kind="deep", threshold=Threshold(**thr),
                         inputs={"columns": [DEEP_PROB], "features": [DEEP_PROB],
                                 "image": _network_card(net.meta, net.fold)},
                         network=net.path, **card)


@functools.lru_cache(maxsize=4)
def _digest_and_model(path: str, mtime_ns: int) -> tuple[str, Any, Any]:
    """SHA-256 of a network file and the loaded network, cached while the file is unchanged (many cases, one load)."""
    from her2dlr.deep.cv import load_deep_model

    model, spec, _ = load_deep_model(path)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest(), model, spec


def _network(path: Path) -> tuple[str, Any, Any]:
    return _digest_and_model(str(path), path.stat().st_mtime_ns)


def network_columns(artefact: ModelArtefact, images: Sequence[Any], rois: Sequence[Any]) -> pd.DataFrame:
    """The columns the networks of ``artefact`` (and its components) compute from images and lesions.

    Parameters
    ----------
    artefact : ModelArtefact
    images : sequence of path or ndarray
    rois : sequence
        Per image: mask file, mask array or box ``(x, y, w, h)``.

    Returns
    -------
    DataFrame
        One row per image: ``deep_prob`` and/or ``deep_<j>``, as the models need them.

    Raises
    ------
    InputError
        The model combines two different networks (their columns would clash), a missing ROI,
        unreadable images or masks (named).
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
    x = load_rois(list(images), list(rois), spec=spec)
    emb, prob = embed_arrays(model, x)
    out = pd.DataFrame(emb, columns=[f"deep_{j}" for j in range(emb.shape[1])])
    needed = {c for n in nodes for c in n.card["inputs"].get("features", [])}
    wanted = deep_columns(sorted(needed))
    if len(wanted) > emb.shape[1] or any(c not in out.columns for c in wanted):
        raise InputError(f"Model '{artefact.name}' needs deep features {wanted[:3]} ... that its network "
                         f"({emb.shape[1]} features) does not give: the artefact is inconsistent.")
    out = out[[c for c in out.columns if c in needed]]
    if DEEP_PROB in needed:
        out[DEEP_PROB] = prob
    return out


@dataclass
class HeatMapResult:
    """A heat map written by :func:`case_heat_map`."""

    path: Path
    prob: float
    explained_class: int
    method: str
    lesion_share: float


def case_heat_map(artefact: ModelArtefact, image: str | os.PathLike[str], path: str | os.PathLike[str], *,
                  mask: str | os.PathLike[str] | None = None, box: Sequence[float] | None = None,
                  method: str = "gradcam") -> HeatMapResult:
    """Where the artefact's network looked on one image: overlay PNG of the heat map on the whole image.

    The map explains the class the network predicts (``method``: ``"cam"``, ``"gradcam"`` or
    ``"gradcampp"``), is computed on the network's input and pasted back onto the crop it came
    from; the crop is drawn in yellow, a given mask's outline in green. ``lesion_share`` is the
    share of the heat inside the lesion (mask, else box) within the crop.
    """
    import SimpleITK as sitk

    from her2dlr.deep.cv import load_deep_model
    from her2dlr.deep.explain import CamExplainer, box_region, heat_in_mask, paste_heat
    from her2dlr.deep.explain_study import lesion_region
    from her2dlr.deep.figures import draw_box, draw_outline, overlay_rgb, save_png
    from her2dlr.imaging.roi import prepare_roi, roi_box
    from her2dlr.io.cells import parse_bbox
    from her2dlr.io.images import read_image, read_mask_array

    nodes = artefact.with_networks()
    if not nodes:
        raise InputError(f"Model '{artefact.name}' has no network: a heat map needs a deep or DLR model.")
    if mask is None and box is None:
        raise InputError("A heat map needs the lesion: give --mask or --box.")
    model, spec, _ = load_deep_model(nodes[0].network_path)
    img = sitk.GetArrayFromImage(read_image(str(image)))
    if img.ndim != 2:
        raise InputError(f"{image}: heat maps are drawn on 2D images; this one has shape {img.shape}.")
    lesion_mask = read_mask_array(mask) > 0 if mask is not None else None
    if lesion_mask is not None and lesion_mask.shape != img.shape:
        raise InputError(f"Mask {mask} has shape {lesion_mask.shape}, image {image} has {img.shape}.")
    bbox = parse_bbox(list(box), where="--box") if box is not None else None
    x = prepare_roi(img, mask=lesion_mask, bbox=bbox, spec=spec)
    heat = CamExplainer(model, method=method)(x[None])
    crop = roi_box(img.shape, mask=lesion_mask, bbox=bbox, margin=spec.margin, min_size=spec.min_size,
                   square=spec.keep_aspect)
    full = paste_heat(heat.maps[0], crop, img.shape)
    lesion = lesion_region(img.shape, lesion_mask, bbox)
    share = heat_in_mask(full, lesion, box_region(crop, img.shape)).in_lesion
    peak = float(full.max())
    rgb = draw_outline(draw_box(overlay_rgb(img, full / peak if peak > 0 else full), crop, width=2), lesion)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    out = save_png(rgb, path)
    return HeatMapResult(out, float(heat.prob[0]), int(heat.explained_class[0]), method, float(share))


def save_dlr_artefacts(study: Any, *, arch: str = "densenet3block", radiomics: str = "radiomics", model: str = "lr",
                       n_components: int = 64, metrics: pd.DataFrame | None = None, progress: bool = True
                       ) -> list[Path]:
    """Save the deployable signature, DLR and late-fusion artefacts of ``arch`` under ``RUN/models``.

    The DLR and radiomics models are fitted (tuning, selection, threshold: the study's ``learn:``
    settings, as :func:`her2dlr.deep.dlr.run_study_dlr` uses them) on the deploy network's
    training cases; with a hold-out network their hold-out test metrics go into the cards, with
    ``metrics`` (the k-fold metrics of :func:`~her2dlr.deep.dlr.run_study_dlr`). Returns the
    artefact folders: none when no hold-out or final network was trained.

    Raises
    ------
    InputError
        No radiomics table, cases without radiomics features, a hold-out network trained on a
        hold-out test case.
    """
    from her2dlr.cohort.build import manifest_path
    from her2dlr.cohort.manifest import Manifest
    from her2dlr.deep.cv import load_deep_model
    from her2dlr.deep.data import manifest_rois
    from her2dlr.deep.dlr import fit_dlr_models
    from her2dlr.deep.features import fold_features
    from her2dlr.deep.stage import deep_dir
    from her2dlr.evaluate.metrics import metrics_table
    from her2dlr.learn.deploy import ModelInputs, save_stage_artefacts
    from her2dlr.learn.settings import LearnSettings
    from her2dlr.learn.study import (
        _radiomics_params,
        feature_table_provenance,
        load_feature_tables,
    )
    from her2dlr.provenance import config_hash

    folder = deep_dir(study, arch)
    net = deploy_network(folder)
    if net is None:
        return []
    settings = study.learn or LearnSettings()
    manifest = Manifest.load(manifest_path(study))
    table = manifest.included[manifest.included["label"].notna()].copy()
    table["case_id"] = table["case_id"].astype(str)
    scheme = net.fold
    if scheme == "holdout":
        split = table["split"].astype("string")
        seen = sorted(set(table.loc[(split == "test").fillna(False), "case_id"]) & net.train_cases)
        if seen:
            raise InputError(f"The hold-out network {net.path} was trained on hold-out test case(s) {seen[:5]}.")
        table = table[split.isin(["train", "test"]).fillna(False)]
    else:  # "final": fit the rest on exactly the network's training cases
        table = table[table["case_id"].isin(net.train_cases)]
    network, spec, _ = load_deep_model(net.path)
    x = manifest_rois(table, spec, progress=progress)
    folds = fold_features([(scheme, network, net.train_cases, str(net.path))], x, table["case_id"].tolist())
    rad, rad_name = load_feature_tables(study, [radiomics])
    models = fit_dlr_models(folds, rad, rad_name, table, arch=arch, model=model, settings=settings,
                            n_components=n_components, scheme=scheme, deep_only=False)
    dlr, rad_res, signature, late = models.dlr, models.radiomics, models.signature, models.late
    dlr_name, sig_name, rule = dlr.model, signature.model, settings.threshold_rule()
    held = pd.concat([r.predictions for r in (dlr, rad_res, signature, late)], ignore_index=True)
    held = held[held["split"] == "test"]
    tables = [m for m in (metrics, metrics_table(held) if len(held) else None) if m is not None and len(m)]
    card_metrics = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["model", "split", "scope"])
    prov = [feature_table_provenance(study, radiomics)]
    deep_prov = {"name": f"deep_{arch}", "network": arch, "fold": scheme, "n_components": n_components}
    task = dict(manifest.meta.get("label", {}))
    chash = config_hash(settings)
    models_dir = study.paths.models
    sig_path = save_deep_artefact(models_dir, folder, name=sig_name, metrics=card_metrics, task=task,
                                  config_hash=chash)
    assert sig_path is not None
    inputs = {
        dlr_name: ModelInputs(list(dlr.fits[0].pipeline.feature_names_in_), feature_tables=[*prov, deep_prov]),
        rad_res.model: ModelInputs(list(rad.columns), feature_tables=prov),
        late.model: ModelInputs([], components=[sig_name, rad_res.model]),
    }
    saved = save_stage_artefacts([dlr, rad_res, late], inputs, models_dir, metrics=card_metrics, task=task,
                                 config_hash=chash, rule=rule, radiomics_params=_radiomics_params(prov),
                                 saved={sig_name: sig_path}, networks={dlr_name: net.path})
    return [sig_path, *saved]
