"""DSFR features of a study (seed 003): every segmentation fold network describes every case's lesion.

For each segmentation network of an outer fold (``RUN/segment/<arch>/r<rep>f<k>/best.pt``,
trained by ``her2dlr train seg`` on the cases with a mask outside fold ``k`` of repetition
``rep``; the ``final`` network is never used here) every labelled case is prepared with that
network's own :class:`~her2dlr.segment.data.SegSpec` and described by
:func:`~her2dlr.segment.dsfr.lesion_channel_means`: each channel of one activation layer (seed
003: the 10th, ``segment.dsfr.layer = 9``) averaged over the lesion. The lesion is the case's
given mask, or, when the study uses ``radiomics.roi: auto``, its out-of-fold automatic mask
(``RUN/segment/auto_masks.csv``); the provenance says which.

The tables have the layout of the deep features (:mod:`her2dlr.deep.features`): one table per
fold network, ``RUN/features/dsfr_<arch>/<fold>.parquet`` plus ``provenance.csv`` (which cases
each network trained on; no network probability, ``prob`` is empty), so
:func:`~her2dlr.deep.features.read_fold_features` and
:func:`~her2dlr.deep.features.check_out_of_fold` read and check them unchanged. Nothing here
is fitted on labels; the channel clustering (:class:`~her2dlr.segment.dsfr.DSFRSelector`) is
fitted later, in-fold, by :mod:`her2dlr.deep.dsfr`.

Heat maps (seed 003, Fig. 4): ``RUN/features/dsfr_<arch>/heatmaps/<case>.png`` for a few cases,
each drawn by the network of its own outer fold (which never saw it), with the channels that
fold's selector keeps when fitted on the fold's training cases.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.deep.features import FoldFeatures, check_out_of_fold, fold_test_cases, write_fold_features
from her2dlr.errors import InputError
from her2dlr.io.cells import is_missing, parse_bbox
from her2dlr.runfolder import BEST_CHECKPOINT, case_file_stem, dsfr_features_name

__all__ = ["DSFRFeaturesResult", "extract_dsfr_features", "lesion_source", "seg_fold_networks", "seg_train_cases"]

_FOLD = re.compile(r"r(\d+)f(\d+)")


def seg_fold_networks(folder: Path) -> dict[str, Path]:
    """The outer-fold segmentation checkpoints ``<folder>/r<rep>f<k>/best.pt`` (``final`` left out), by fold.

    Raises
    ------
    InputError
        None found (names ``her2dlr train seg``).
    """
    found = {p.parent.name: p for p in sorted(Path(folder).glob(f"*/{BEST_CHECKPOINT}"))
             if _FOLD.fullmatch(p.parent.name)}
    if not found:
        raise InputError(f"No segmentation fold networks in {folder} (r<rep>f<k>/{BEST_CHECKPOINT}): run "
                         "`her2dlr train seg STUDY` first.")
    return dict(sorted(found.items(), key=lambda kv: tuple(int(g) for g in _FOLD.fullmatch(kv[0]).groups())))


def seg_train_cases(table: pd.DataFrame, fold: str) -> frozenset[str]:
    """Cases the segmentation network of ``fold`` (``r<rep>f<k>``) trained on: a mask, in the k-fold, not fold k.

    This is the rule of :func:`her2dlr.segment.stage.run_seg_stage` (its early-stopping cases included).
    """
    match = _FOLD.fullmatch(fold)
    if match is None:
        raise InputError(f"'{fold}' is not an outer fold name r<rep>f<k>.")
    rep, k = (int(g) for g in match.groups())
    col = f"fold_r{rep}"
    if col not in table.columns:
        raise InputError(f"The manifest has no column {col}: the segmentation network {fold} does not match its "
                         "folds (rebuilt cohort?). Run `her2dlr train seg STUDY` again.")
    f = table[col].fillna(-1).astype(int).to_numpy()
    has_mask = np.asarray([not is_missing(m) for m in table["mask"]]) if "mask" in table.columns \
        else np.zeros(len(table), dtype=bool)
    return frozenset(table["case_id"].astype(str)[has_mask & (f >= 0) & (f != k)])


def lesion_source(study: Any) -> str:
    """``"auto"`` (out-of-fold automatic masks) when the study uses ``radiomics.roi: auto``, else ``"mask"``."""
    roi = getattr(getattr(study, "radiomics", None), "roi", "mask")
    return "auto" if roi == "auto" else "mask"


def _lesions(study: Any, table: pd.DataFrame, source: str) -> list[str | None]:
    if source == "mask":
        return [None if is_missing(m) else str(m) for m in table["mask"]]
    path = study.paths.auto_masks
    if not path.is_file():
        raise InputError(f"The study uses radiomics.roi: auto but {path} is missing: run `her2dlr train seg STUDY`.")
    auto = pd.read_csv(path, dtype={"case_id": str}).set_index("case_id")["mask_auto"]
    return [None if is_missing(auto.get(c)) else str(auto.get(c)) for c in table["case_id"].astype(str)]


def _boxes(table: pd.DataFrame) -> list[Any] | None:
    if "bbox" not in table.columns:
        return None
    return [None if is_missing(b) else parse_bbox(b, where=f"bbox of case {c}")
            for c, b in zip(table["case_id"], table["bbox"])]


@dataclass
class DSFRFeaturesResult:
    """What :func:`extract_dsfr_features` wrote.

    Attributes
    ----------
    folder : Path
        ``RUN/features/dsfr_<arch>``.
    folds : dict
        fold -> :class:`~her2dlr.deep.features.FoldFeatures` (``prob`` is NaN: a segmentation network has none).
    bookkeeping : DataFrame
        :func:`~her2dlr.deep.features.check_out_of_fold` of every fold and case.
    lesion : str
        ``"mask"`` (given masks) or ``"auto"`` (out-of-fold automatic masks).
    layer : str
        The layer's module name.
    heatmaps : list of Path
    skipped : list of str
        Labelled cases without a lesion mask (no features).
    """

    folder: Path
    folds: dict[str, FoldFeatures]
    bookkeeping: pd.DataFrame
    lesion: str
    layer: str
    heatmaps: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _inputs(table: pd.DataFrame, lesions: list[str | None], spec: Any, progress: bool) -> tuple[Any, Any]:
    from her2dlr.segment.data import load_seg_pairs

    boxes = _boxes(table) if spec.box_prompt else None
    x, y, _ = load_seg_pairs(list(table["image"].astype(str)), lesions, boxes, spec=spec, progress=progress)
    return x, y


def extract_dsfr_features(study: Any, *, arch: str | None = None, layer: int | str | None = None,
                          n_heatmaps: int | None = None, batch_size: int = 16,
                          progress: bool = True) -> DSFRFeaturesResult:
    """Lesion channel means of every labelled case from every segmentation fold network (one table per network).

    Parameters
    ----------
    study : Study
    arch : str, optional
        Segmentation network (default: the study's ``segment.arch``).
    layer : int or str, optional
        Activation layer, 0-based index in forward order or module name (default:
        ``segment.dsfr.layer``, 9: seed 003's 10th ReLU).
    n_heatmaps : int, optional
        Cases drawn under ``heatmaps/`` (0: none; default: ``segment.dsfr.heatmaps``, 4).
    batch_size : int, default=16
    progress : bool, default=True

    Returns
    -------
    DSFRFeaturesResult

    Raises
    ------
    InputError
        No fold networks (names ``her2dlr train seg``), a network trained on one of its fold's
        test cases, no lesion mask at all, a layer the networks do not have (names
        ``segment.dsfr.layer``).
    """
    from her2dlr.cohort.manifest import Manifest
    from her2dlr.imaging.torchutil import resolve_device
    from her2dlr.segment.checkpoints import load_segmenter
    from her2dlr.segment.dsfr import lesion_channel_means
    from her2dlr.segment.settings import SegmentSettings

    seg = study.segment or SegmentSettings()
    arch = arch or seg.arch
    layer = seg.dsfr.layer if layer is None else layer
    n_heatmaps = seg.dsfr.heatmaps if n_heatmaps is None else n_heatmaps
    networks = seg_fold_networks(study.paths.segment_arch(arch))
    table = Manifest.load(study.paths.manifest).included
    table = table[table["label"].notna()].reset_index(drop=True)
    source = lesion_source(study)
    lesions = _lesions(study, table, source)
    has = np.asarray([m is not None for m in lesions])
    skipped = table["case_id"].astype(str)[~has].tolist()
    if not has.any():
        raise InputError(f"No labelled case has a lesion mask ({'automatic' if source == 'auto' else 'given'}): "
                         "DSFR averages the feature maps over the lesion.")
    if skipped:
        warnings.warn(f"DSFR: {len(skipped)} labelled case(s) have no lesion mask and get no features: {skipped[:5]}",
                      stacklevel=2)
    cases = table[has].reset_index(drop=True)
    lesions = [m for m in lesions if m is not None]
    ids = cases["case_id"].astype(str).tolist()
    device = resolve_device(seg.device, allow_cpu_fallback=True)
    cache: dict[str, tuple[Any, Any]] = {}
    folds: dict[str, FoldFeatures] = {}
    layer_name = ""
    for fold, path in networks.items():
        model, spec, _ = load_segmenter(path)
        key = json.dumps(spec.to_dict(), sort_keys=True)
        if key not in cache:
            cache[key] = _inputs(cases, lesions, spec, progress)
        x, y = cache[key]
        _check_layer(model, layer, x, device)
        means = lesion_channel_means(model.to(device), x, y, layer=layer, case_ids=ids, batch_size=batch_size,
                                     device=device)
        layer_name = means.columns[0][len("dsfr_"):].rsplit("_", 1)[0]
        folds[fold] = FoldFeatures(fold, means, pd.Series(np.nan, index=means.index, name="prob"),
                                   seg_train_cases(table, fold), str(path),
                                   {"arch": arch, "layer": layer_name, "spec": spec.to_dict(),
                                    "provenance": {"lesion": source}})
    bookkeeping = check_out_of_fold(folds, cases)
    folder = write_fold_features(folds, study.paths.features, arch, name=dsfr_features_name(arch), extra={
        "kind": "dsfr", "layer": layer_name, "layer_asked": layer, "lesion": source, "skipped_cases": skipped,
        "network": "segmentation fold networks (segment/<arch>/r<rep>f<k>)"})
    maps = _heatmaps(study, arch, networks, folds, cases, cache, layer, n_heatmaps, seg.dsfr.n_clusters, device)
    return DSFRFeaturesResult(folder, folds, bookkeeping, source, layer_name, maps, skipped)


def _check_layer(model: Any, layer: int | str, x: Any, device: Any) -> None:
    """Refuse a layer the network does not have, naming the study-file key and the command-line option."""
    import torch

    from her2dlr.segment.dsfr import resolve_layer

    try:
        resolve_layer(model.to(device), layer, torch.as_tensor(np.asarray(x[:1], dtype=np.float32)).to(device))
    except InputError as exc:
        raise InputError(f"segment.dsfr.layer (--layer of `her2dlr extract dsfr`): {exc}") from None


def _heatmaps(study: Any, arch: str, networks: dict[str, Path], folds: dict[str, FoldFeatures], cases: pd.DataFrame,
              cache: dict[str, tuple[Any, Any]], layer: int | str, n: int, n_clusters: int, device: Any
              ) -> list[Path]:
    """A few test cases of each fold drawn by their fold's network with the channels its training cases keep."""
    from her2dlr.segment.checkpoints import load_segmenter
    from her2dlr.segment.dsfr import DSFRSelector, dsfr_heatmaps

    if n <= 0:
        return []
    tests = {fold: [c for c in fold_test_cases(cases, fold) if c in ff.features.index]
             for fold, ff in folds.items()}
    picked: dict[str, list[str]] = {f: [] for f in folds}
    for i in range(max((len(t) for t in tests.values()), default=0)):  # round robin over the folds
        for fold, t in tests.items():
            if i < len(t) and sum(map(len, picked.values())) < n:
                picked[fold].append(t[i])
    ids = cases["case_id"].astype(str).tolist()
    out_dir = study.paths.dsfr_heatmaps(arch)
    written = []
    for fold, chosen in picked.items():
        if not chosen:
            continue
        ff = folds[fold]
        train = [c for c in ff.features.index if c in ff.train_cases]
        rows = ff.features.loc[train]
        selector = DSFRSelector(n_clusters).fit(rows[rows.notna().all(axis=1)])
        model, spec, _ = load_segmenter(networks[fold])
        x, y = cache[json.dumps(spec.to_dict(), sort_keys=True)]
        for case in chosen:
            i = ids.index(case)
            written.append(dsfr_heatmaps(model.to(device), x[i], y[i], layer, selector.selected_features_,
                                         out_dir / f"{case_file_stem(case)}.png", device=device))
    return written
