"""Deployable deep and DLR models: artefacts that ``her2dlr predict`` applies to an image and its lesion.

Four artefacts come from a trained network (see :mod:`her2dlr.learn.artefact`):

``deep_<arch>-signature`` (kind ``deep``)
    The network's own probability of the positive class (seed 002's deep-learning signature),
    at the threshold chosen on its training fold (inner validation predictions). A network of
    more than two classes (``her2_three_class``) gives every class's probability and the most
    probable class (card ``classes``); the other three artefacts are binary only
    (:func:`her2dlr.deep.dlr.refuse_multiclass_dlr`).
``deep_<arch>+<radiomics>-<clf>`` (kind ``pipeline`` with ``network.pt``: a DLR model)
    The network's penultimate features (``deep_0 ..``) and the radiomics features, through
    z-score + PCA to 64 components of the deep block, seed 002's selection and the classifier
    (:func:`her2dlr.deep.dlr.dlr_steps`), fitted on the network's training cases.
``late(deep_<arch>-signature,<radiomics>-<clf>)`` (kind ``late``)
    Mean of the signature's and the radiomics model's probabilities (seed 003).
``deep_<arch>+<radiomics>-fused`` (kind ``late`` or ``stack``)
    The study's DLR model: early fusion, late fusion or stacking, whichever wins on the deployed
    network's own inner validation cases (:func:`her2dlr.deep.dlr_fusion.choose_on_inner`), as
    each outer fold chose its own; the card's ``fusion`` names the choice and every candidate's
    inner AUC.

Which network is deployed: the hold-out fold's (``RUN/deep/<arch>/holdout``: the card's test
metrics are then the hold-out's), else the one trained for deployment with ``her2dlr train
deep --final`` (``RUN/deep/<arch>/final``: every labelled case of a k-fold-only study, or the
hold-out's training rows). The radiomics and DLR models of the artefacts are fitted on exactly
the cases that network was trained on, so no deployed part has seen a case the others have not.

At prediction time (:mod:`her2dlr.predict.network`) the lesion is cropped, padded, resized and
normalised with the ROI settings stored in the network's checkpoint, as in training.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from her2dlr.errors import InputError
from her2dlr.learn.artefact import artefact_slug, save_artefact
from her2dlr.runfolder import BEST_CHECKPOINT

__all__ = ["DEEP_PROB", "DeployNetwork", "deep_prob_columns", "deploy_network", "save_deep_artefact",
           "save_dlr_artefacts"]

#: Input column of a ``deep`` artefact: the network's probability of the positive class.
DEEP_PROB = "deep_prob"


def deep_prob_columns(n_classes: int) -> list[str]:
    """Input columns of a multi-class ``deep`` artefact: ``deep_prob_0 .. deep_prob_<k-1>``, one per class."""
    return [f"{DEEP_PROB}_{k}" for k in range(n_classes)]


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

    card = {"arch": meta.get("arch"), "image_size": meta.get("image_size"), "in_channels": meta.get("in_channels"),
            "spatial_dims": meta.get("spatial_dims", 2), "roi": roi_spec_of(meta).to_dict(), "fold": fold,
            "lesion": "mask or box (its bounding rectangle)"}
    settings = dict(meta.get("settings") or {})
    for key in ("multi_view", "jigsaw"):
        if settings.get(key):
            card[key] = settings[key]
    clinical = dict(meta.get("extra") or {}).get("clinical")
    if clinical:  # fused at the head; the network imputes and standardises with these training values
        card["clinical"] = dict(clinical)
    return card


def save_deep_artefact(models_dir: str | os.PathLike[str], deep_folder: str | os.PathLike[str], *, name: str,
                       metrics: pd.DataFrame | None = None, task: Mapping[str, Any] | None = None,
                       config_hash: str | None = None, segmenter: Path | None = None,
                       cases: pd.DataFrame | None = None) -> Path | None:
    """Save the deploy network of ``deep_folder`` as a ``deep`` artefact ``models_dir/<name>``.

    A network of more than two classes reads ``deep_prob_0 .. deep_prob_<k-1>`` (its class
    probabilities, :func:`deep_prob_columns`) and its card names the classes (``classes``, from
    ``task["classes"]``, the label rule's names); its class is the most probable one.

    ``segmenter``: the segmentation network of a network trained on automatic masks
    (``deep.roi: auto``), saved with it so that a new case needs no mask. A network with
    clinical fusion lists its clinical columns among the card's inputs (``inputs.clinical``),
    with the training medians, means and scales it applies (``inputs.image.clinical``). Returns None (nothing
    written) when no hold-out or final network was trained.

    ``cases``: the cohort's rows (``case_id, patient_id, label``); the card's ``training`` then counts
    the network's training cases per class and its patients, as a radiomics model's card does
    (:func:`her2dlr.learn.deploy.cases_summary`). Without it, or when a training case is missing
    from it, the card records ``n_cases`` only.
    """
    from her2dlr.learn.deploy import cases_summary, metrics_of
    from her2dlr.learn.thresholds import Threshold

    net = deploy_network(deep_folder)
    if net is None:
        return None
    thr = dict(net.meta.get("extra") or {}).get("threshold")
    if not thr:
        raise InputError(f"Checkpoint {net.path} carries no operating threshold; train it again with "
                         "`her2dlr train deep`.")
    n_classes = int(net.meta.get("n_classes", 2))
    training: dict[str, Any] = {"scheme": net.fold, "n_cases": len(net.train_cases)}
    if cases is not None:
        rows = cases[cases["case_id"].astype(str).isin(net.train_cases)]
        if rows["case_id"].nunique() == len(net.train_cases) and rows["label"].notna().all():
            training.update(cases_summary(rows, n_classes, task or {}))
    card: dict[str, Any] = {"training": {**training, "epoch": net.meta.get("epoch"), "seed": net.meta.get("seed")}}
    if metrics is not None and len(metrics):
        trained_as = str(dict(net.meta.get("extra") or {}).get("model", name))
        found = metrics_of(metrics, name)
        card["metrics"] = found if found["table"] else metrics_of(metrics, trained_as)
    if task is not None:
        card["task"] = dict(task)
    if config_hash is not None:
        card["config_hash"] = config_hash
    columns = [DEEP_PROB] if n_classes == 2 else deep_prob_columns(n_classes)
    if n_classes > 2:  # the class is the argmax of the network's probabilities (no threshold)
        names = list((task or {}).get("classes") or [])
        card["classes"] = [str(n) for n in names] if len(names) == n_classes else [str(k) for k in range(n_classes)]
    inputs: dict[str, Any] = {"columns": columns, "features": columns,
                              "image": _network_card(net.meta, net.fold)}
    fused = dict(net.meta.get("settings") or {}).get("clinical_columns") or []
    if fused:  # the network reads them: predict refuses a case without them, by name
        inputs["clinical"] = {str(c): "numeric" for c in fused}
    return save_artefact(Path(models_dir) / artefact_slug(name), name=name, kind="deep", threshold=Threshold(**thr),
                         inputs=inputs,
                         network=net.path, segmenter=segmenter, **card)


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
    from her2dlr.deep.features import apply_checkpoint_record, fold_features
    from her2dlr.deep.stage import deep_dir
    from her2dlr.evaluate.metrics import metrics_table
    from her2dlr.learn.deploy import ModelInputs, save_stage_artefacts
    from her2dlr.learn.settings import LearnSettings
    from her2dlr.learn.study import (
        feature_table_provenance,
        load_feature_tables,
        radiomics_params_of,
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
    apply_checkpoint_record(folds[scheme], net.meta, network, x)
    rad, rad_name = load_feature_tables(study, [radiomics])
    models = fit_dlr_models(folds, rad, rad_name, table, arch=arch, model=model, settings=settings,
                            n_components=n_components, scheme=scheme, deep_only=False, choose=False)
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
                                  config_hash=chash, cases=manifest.table)
    assert sig_path is not None
    inputs = {
        dlr_name: ModelInputs(list(dlr.fits[0].pipeline.feature_names_in_), feature_tables=[*prov, deep_prov]),
        rad_res.model: ModelInputs(list(rad.columns), feature_tables=prov),
        late.model: ModelInputs([], components=[sig_name, rad_res.model]),
    }
    saved = save_stage_artefacts([dlr, rad_res, late], inputs, models_dir, metrics=card_metrics, task=task,
                                 config_hash=chash, rule=rule, radiomics_params=radiomics_params_of(prov),
                                 saved={sig_name: sig_path}, networks={dlr_name: net.path})
    paths = {m: models_dir / artefact_slug(m) for m in (dlr_name, rad_res.model)} | {sig_name: sig_path}
    fused = _save_fused_artefact(models_dir, folds[scheme], dlr, rad_res, sig_name, paths, arch=arch,
                                 radiomics_name=rad_name, rule=rule, seed=settings.search_settings().random_state,
                                 metrics=card_metrics, task=task, config_hash=chash)
    return [sig_path, *saved, *([fused] if fused is not None else [])]


def _save_fused_artefact(models_dir: Path, net: Any, dlr: Any, rad: Any, sig_name: str, paths: Mapping[str, Path], *,
                         arch: str, radiomics_name: str, rule: Any, seed: int, metrics: pd.DataFrame,
                         task: Mapping[str, Any], config_hash: str) -> Path | None:
    """The study's DLR model to deploy, ``deep_<arch>+<radiomics>-fused``: the fusion chosen on the deploy
    network's own inner validation cases, as every outer fold chose its own.

    ``early`` is saved as a one-component ``late`` artefact over the early-fusion model, ``late``
    as the mean of the signature and the radiomics model, ``stacking`` as a ``stack`` artefact
    (intercept and coefficients on the two components' logits, :func:`stacker_on_logits`). None,
    with a log message, when the network's inner validation cases cannot decide (none listed,
    or one class only).
    """
    import logging

    from her2dlr.deep.dlr_fusion import choose_on_inner, stacker_on_logits
    from her2dlr.learn.deploy import metrics_of

    name = f"deep_{arch}+{radiomics_name}-fused"
    fold = str(dlr.predictions["fold"].iloc[0])
    try:
        inner = choose_on_inner(dlr, rad, net, fold, threshold=rule, seed=seed)
    except InputError as err:
        logging.getLogger(__name__).warning("No deployable %s: %s", name, err)
        return None
    chosen = inner.choice.chosen
    extra: dict[str, Any]
    if chosen == "early":
        kind, components, extra = "late", [paths[dlr.model]], {"weights": [1.0]}
    elif chosen == "late":
        kind, components, extra = "late", [paths[sig_name], paths[rad.model]], {"weights": [1.0, 1.0]}
    else:
        intercept, coef = stacker_on_logits(inner.stacker)
        kind, components = "stack", [paths[sig_name], paths[rad.model]]
        extra = {"meta": {"intercept": intercept, "coefficients": {sig_name: float(coef[0]), rad.model: float(coef[1])}}}
    n_pos = int(inner.y.sum())
    return save_artefact(
        models_dir / artefact_slug(name), name=name, kind=kind, threshold=inner.threshold, inputs={},
        components=components, task=dict(task), config_hash=config_hash, metrics=metrics_of(metrics, name),
        fusion={"chosen": chosen, "inner_auc": inner.choice.scores, "n_inner": inner.choice.n_inner,
                "n_inner_positive": n_pos},
        training={"scheme": fold, "n_cases": len(net.train_cases), "fusion_chosen_on": len(inner.cases)}, **extra)
