"""DSFR: deep semantic segmentation feature-based radiomics (seed 003).

Seed 003 feeds each image to its trained segmentation network, takes the feature maps of
the 10th ReLU layer, averages them over the tumour and over the slices, clusters the
features into two groups by k-means and keeps the larger group; LASSO / mutual-information
selection and a classifier follow. Here:

1. :func:`lesion_channel_means` (no labels): a forward hook on one activation layer, named
   or counted in forward order among the network's activation modules (``layer=9`` is the
   10th); each channel's map averaged over the lesion, the mask brought to the map's size by
   area weights (the fraction of each feature cell the lesion covers; ``"nearest"`` keeps a
   0/1 mask). For a volume the average runs over the lesion's voxels, i.e. over its slices.
   One row per case, columns ``dsfr_<layer>_<channel>``. It can be computed for every case by
   a network that never saw them (an out-of-fold network, as in
   :mod:`her2dlr.deep.features`).
2. :class:`DSFRSelector` (data-dependent, so fitted on training cases only, inside the fold's
   pipeline): each channel is described by its vector of lesion averages over the training
   cases, standardised (so the distance between two channels is ``2 n (1 - r)`` with ``r``
   their correlation across cases); k-means groups the channels, and the channels of the
   largest group are kept. ``transform`` keeps the same columns for new cases, without
   refitting.

A case with an empty lesion mask (or one the ``"nearest"`` resize loses) gets NaN features
and a warning naming it. :func:`dsfr_heatmaps` draws kept channels' maps over the image
(seed 003, Fig. 4 g-h).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from her2dlr.checks import check_choice, check_number
from her2dlr.errors import InputError, nearest
from her2dlr.imaging.figures import (
    PANEL,
    draw_outline,
    grey_rgb,
    lesion_slice,
    overlay_rgb,
    save_png,
    scale_to_height,
    titled_row,
)

__all__ = [
    "ACTIVATION_TYPES",
    "DSFR_PREFIX",
    "MASK_RESIZE",
    "DSFRResult",
    "DSFRSelector",
    "activation_layers",
    "dsfr_columns",
    "dsfr_features",
    "dsfr_heatmaps",
    "layer_maps",
    "lesion_channel_means",
    "resolve_layer",
]

#: Column prefix of DSFR features (``dsfr_<layer>_<channel>``).
DSFR_PREFIX = "dsfr_"
#: Allowed values of ``mask_resize``.
MASK_RESIZE: tuple[str, ...] = ("area", "nearest")
#: Modules counted as activation layers when a network does not list its own (``activation_layers()``).
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.PReLU, nn.LeakyReLU, nn.ReLU6, nn.ELU, nn.SELU,
                                                 nn.CELU, nn.GELU, nn.SiLU, nn.Mish)

LayerSpec = str | int


def activation_layers(model: nn.Module, example: torch.Tensor | None = None) -> list[str]:
    """Names of the network's activation modules, in forward order.

    The network's own ``activation_layers()`` when it has one; else the modules of
    :data:`ACTIVATION_TYPES`, ordered by their first call in a forward pass of ``example``
    (modules the pass does not call are left out), or in registration order without one.

    Parameters
    ----------
    model : nn.Module
    example : Tensor of shape (n, channels, *spatial), optional
        One input, to trace the order.

    Returns
    -------
    list of str
    """
    own = getattr(model, "activation_layers", None)
    if callable(own) and not isinstance(own, nn.Module):
        return list(own())
    names = [n for n, m in model.named_modules() if n and isinstance(m, ACTIVATION_TYPES)]
    if example is None or not names:
        return names
    order: list[str] = []

    def record(name: str) -> Any:
        return lambda _m, _i, _o: order.append(name) if name not in order else None

    handles = [model.get_submodule(n).register_forward_hook(record(n)) for n in names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return order


def resolve_layer(model: nn.Module, layer: LayerSpec, example: torch.Tensor | None = None) -> str:
    """Module name of ``layer``: a name of ``model.named_modules()``, or an index into :func:`activation_layers`.

    Raises
    ------
    InputError
        Unknown name (suggests the nearest) or index out of range (says how many there are).
    """
    if isinstance(layer, str):
        names = [n for n, _ in model.named_modules() if n]
        if layer not in names:
            raise InputError(f"Layer '{layer}' is not a module of {type(model).__name__}.{nearest(layer, names)}")
        return layer
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise InputError(f"The 'layer' parameter must be a module name or an int index among the activation layers. "
                         f"Got {layer!r} instead.")
    acts = activation_layers(model, example)
    if not acts:
        raise InputError(f"Activation layer {layer} asked for, but {type(model).__name__} has no activation layer; "
                         "name a module instead.")
    if not -len(acts) <= int(layer) < len(acts):
        raise InputError(
            f"Activation layer {layer} asked for, but {type(model).__name__} has {len(acts)} activation layers "
            f"(indices 0 .. {len(acts) - 1}, or -{len(acts)} .. -1 from the end). The highest valid index is "
            f"{len(acts) - 1} (module '{acts[-1]}'); or give a module name, e.g. '{acts[len(acts) // 2]}'. Seed "
            "003's 10th ReLU (index 9) needs a network of at least 10 activation layers (more levels).")
    return acts[int(layer)]


def _inputs(inputs: Any) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float32)) if not isinstance(inputs, torch.Tensor) \
        else inputs.float()
    if x.ndim not in (4, 5):
        raise InputError("Inputs must have shape (n_cases, channels, height, width) or (n_cases, channels, depth, "
                         f"height, width); got {tuple(x.shape)}.")
    return x


def _masks(masks: Any, x: torch.Tensor) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(masks) != 0) if not isinstance(masks, torch.Tensor) else masks != 0
    spatial = tuple(x.shape[2:])
    if m.ndim == x.ndim and m.shape[1] == 1:
        m = m[:, 0]
    if tuple(m.shape) != (x.shape[0], *spatial):
        raise InputError(f"Masks must have shape (n_cases, *spatial) = {(x.shape[0], *spatial)} like the inputs; "
                         f"got {tuple(m.shape)}.")
    return m[:, None].float()


def _device(model: nn.Module, device: Any) -> torch.device:
    if device is not None:
        return torch.device(device)
    params = list(model.parameters())
    return params[0].device if params else torch.device("cpu")


def layer_maps(model: nn.Module, inputs: Any, layer: LayerSpec, *, batch_size: int = 8, device: Any = None,
               reduce: Any = None) -> tuple[str, list[Any]]:
    """Run ``inputs`` through the network in eval mode and collect the output of one layer, batch by batch.

    Parameters
    ----------
    model : nn.Module
    inputs : ndarray or Tensor of shape (n_cases, channels, *spatial)
    layer : str or int
        See :func:`resolve_layer`.
    batch_size : int, default=8
    device : str or torch.device, optional
        Default: the device of the network's parameters.
    reduce : callable, optional
        ``reduce(maps, start)`` applied to each batch's maps (on the device; ``start`` is the
        batch's first case); its results are returned instead of the maps.

    Returns
    -------
    name : str
        The layer's module name.
    outputs : list
        One item per batch: the maps (Tensor of shape (batch, channels, *feature_spatial), CPU)
        or what ``reduce`` returned.
    """
    check_number("layer_maps", "batch_size", batch_size, low=1, integer=True)
    x = _inputs(inputs)
    dev = _device(model, device)
    name = resolve_layer(model, layer, x[:1].to(dev))
    store: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        if not isinstance(out, torch.Tensor):
            raise InputError(f"Layer '{name}' returns {type(out).__name__}, not one feature map tensor.")
        store["a"] = out.detach().clone()  # clone: a later in-place op must not change the kept map

    handle = model.get_submodule(name).register_forward_hook(hook)
    was_training = model.training
    model.eval()
    outputs: list[Any] = []
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                model(x[start:start + batch_size].to(dev))
                if "a" not in store:
                    raise InputError(f"Layer '{name}' was not called in the forward pass of {type(model).__name__}.")
                maps = store.pop("a")
                outputs.append(maps.cpu() if reduce is None else reduce(maps, start))
    finally:
        handle.remove()
        model.train(was_training)
    return name, outputs


def dsfr_columns(columns: Sequence[Any], prefix: str = DSFR_PREFIX) -> list[str]:
    """The DSFR feature columns (``dsfr_...``) among ``columns``, in order."""
    return [str(c) for c in columns if str(c).startswith(prefix)]


def lesion_channel_means(model: nn.Module, inputs: Any, masks: Any, *, layer: LayerSpec,
                         case_ids: Sequence[Any] | None = None, batch_size: int = 8, mask_resize: str = "area",
                         device: Any = None) -> pd.DataFrame:
    """Average of every channel of one layer's feature map over each case's lesion.

    Parameters
    ----------
    model : nn.Module
        A segmentation network (any ``nn.Module``); run in eval mode without gradients, left unchanged.
    inputs : ndarray or Tensor of shape (n_cases, channels, height, width) or (n_cases, channels, depth, height, width)
        The network's inputs.
    masks : ndarray or Tensor of shape (n_cases, *spatial) or (n_cases, 1, *spatial)
        Lesion masks on the inputs' grid; non-zero is lesion.
    layer : str or int
        Module name, or index among the activation layers in forward order (seed 003: 9, the 10th ReLU).
    case_ids : sequence of str, optional
        Default: ``"0" .. "n-1"``.
    batch_size : int, default=8
    mask_resize : {"area", "nearest"}, default="area"
        How the mask reaches the feature map's size: the lesion fraction of every feature cell
        (a weighted average, never loses a small lesion) or nearest neighbour (0/1).
    device : str or torch.device, optional

    Returns
    -------
    DataFrame of shape (n_cases, n_channels)
        Index ``case_id``, columns ``dsfr_<layer>_<channel>`` (float64); NaN rows for cases
        without a lesion at the feature map's size (warned).

    Examples
    --------
    >>> from monai.networks.nets import UNet
    >>> net = UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(4, 8, 16), strides=(2, 2))
    >>> x = np.random.default_rng(0).normal(size=(3, 1, 32, 32)).astype("float32")
    >>> m = np.zeros((3, 32, 32)); m[:, 8:24, 8:24] = 1
    >>> lesion_channel_means(net, x, m, layer=1).shape
    (3, 8)
    """
    check_choice("lesion_channel_means", "mask_resize", mask_resize, MASK_RESIZE)
    x = _inputs(inputs)
    m = _masks(masks, x)
    ids = [str(i) for i in range(len(x))] if case_ids is None else [str(c) for c in case_ids]
    if len(ids) != len(x):
        raise InputError(f"{len(ids)} case ids for {len(x)} inputs.")
    dev = _device(model, device)

    def means(maps: torch.Tensor, start: int) -> tuple[np.ndarray, np.ndarray]:
        mb = m[start:start + len(maps)].to(dev)
        size = tuple(maps.shape[2:])
        w = F.interpolate(mb, size=size, mode="area") if mask_resize == "area" else \
            F.interpolate(mb, size=size, mode="nearest")
        den = w.flatten(2).sum(dim=2, dtype=torch.float64)
        num = (maps.double() * w.double()).flatten(2).sum(dim=2)
        return (num / den.clamp_min(1e-300)).cpu().numpy(), den[:, 0].cpu().numpy()

    name, parts = layer_maps(model, x, layer, batch_size=batch_size, device=dev, reduce=means)
    values = np.concatenate([p[0] for p in parts])
    weight = np.concatenate([p[1] for p in parts])
    empty = m.flatten(1).sum(dim=1).numpy() == 0
    lost = (weight <= 0) & ~empty
    values[(weight <= 0)] = np.nan
    if empty.any():
        warnings.warn(f"DSFR: {int(empty.sum())} case(s) have an empty lesion mask and get NaN features: "
                      f"{[ids[i] for i in np.flatnonzero(empty)]}", stacklevel=2)
    if lost.any():
        warnings.warn(f"DSFR: the lesion of {int(lost.sum())} case(s) vanishes at the feature map's size with "
                      f"mask_resize='nearest'; they get NaN features (use mask_resize='area'): "
                      f"{[ids[i] for i in np.flatnonzero(lost)]}", stacklevel=2)
    cols = [f"{DSFR_PREFIX}{name}_{c}" for c in range(values.shape[1])]
    return pd.DataFrame(values, index=pd.Index(ids, name="case_id"), columns=cols)


class DSFRSelector(TransformerMixin, BaseEstimator):
    """Keep the DSFR channels of the largest k-means cluster, chosen on the training cases (seed 003).

    Each channel (a ``dsfr_`` column) is described by its lesion averages over the training
    rows, standardised across the rows when ``standardise`` (a constant channel becomes the
    zero vector); k-means (scikit-learn, fixed seed) groups these channel profiles and the
    largest group is kept (a tie goes to the group holding the earliest column). Rows with a
    missing DSFR value are left out of the fit. Other columns pass through unchanged.

    Parameters
    ----------
    n_clusters : int, default=2
    standardise : bool, default=True
    random_state : int, default=0
    n_init : int, default=10
        k-means restarts.
    prefix : str, default="dsfr_"
        Columns of a DataFrame that take part (an array: all of them).

    Attributes
    ----------
    selected_features_ : list of str
        The kept DSFR columns, in input order.
    support_ : ndarray of bool of shape (n_dsfr_columns,)
    cluster_labels_ : Series
        k-means cluster of every DSFR column.
    cluster_sizes_ : ndarray of shape (n_clusters,)
    kept_cluster_ : int
    feature_names_in_ : ndarray of str
    n_features_in_ : int

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(2, 30, 1))
    >>> X = pd.DataFrame(np.hstack([a + 0.1 * rng.normal(size=(30, 5)), b + 0.1 * rng.normal(size=(30, 2))]),
    ...                  columns=[f"dsfr_l_{c}" for c in range(7)])
    >>> DSFRSelector().fit(X).selected_features_
    ['dsfr_l_0', 'dsfr_l_1', 'dsfr_l_2', 'dsfr_l_3', 'dsfr_l_4']
    """

    def __init__(self, n_clusters: int = 2, *, standardise: bool = True, random_state: int = 0, n_init: int = 10,
                 prefix: str = DSFR_PREFIX) -> None:
        self.n_clusters = n_clusters
        self.standardise = standardise
        self.random_state = random_state
        self.n_init = n_init
        self.prefix = prefix

    def _channels(self, X: Any) -> tuple[list[str], np.ndarray]:
        if isinstance(X, pd.DataFrame):
            cols = dsfr_columns(X.columns, self.prefix)
            return cols, X[cols].to_numpy(dtype=np.float64) if cols else np.zeros((len(X), 0))
        arr = np.asarray(X, dtype=np.float64)
        if arr.ndim != 2:
            raise InputError(f"DSFRSelector takes a 2D table; got shape {arr.shape}.")
        return [f"x{j}" for j in range(arr.shape[1])], arr

    def fit(self, X: Any, y: Any = None) -> DSFRSelector:
        """Cluster the DSFR channels of ``X`` (DataFrame or array of shape (n_cases, n_features)); ``y`` is ignored."""
        from sklearn.cluster import KMeans

        check_number(self, "n_clusters", self.n_clusters, low=1, integer=True)
        check_number(self, "n_init", self.n_init, low=1, integer=True)
        cols, A = self._channels(X)
        if len(cols) < self.n_clusters:
            raise InputError(f"DSFRSelector: {len(cols)} '{self.prefix}' column(s) for {self.n_clusters} clusters.")
        A = A[np.isfinite(A).all(axis=1)]
        if len(A) < 2:
            raise InputError(f"DSFRSelector needs at least 2 training rows without missing DSFR values; got {len(A)}.")
        profiles = A.T
        if self.standardise:
            sd = profiles.std(axis=1, keepdims=True)
            profiles = (profiles - profiles.mean(axis=1, keepdims=True)) / np.where(sd > 1e-12, sd, 1.0)
        with warnings.catch_warnings():  # fewer distinct profiles than clusters: k-means says so, harmlessly
            warnings.filterwarnings("ignore", message="Number of distinct clusters")
            labels = KMeans(self.n_clusters, n_init=self.n_init, random_state=self.random_state).fit_predict(profiles)
        sizes = np.bincount(labels, minlength=self.n_clusters)
        largest = np.flatnonzero(sizes == sizes.max())
        keep = int(next(lab for lab in labels if lab in largest))
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns] if isinstance(X, pd.DataFrame) else cols,
                                            dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.dsfr_columns_ = cols
        self.cluster_labels_ = pd.Series(labels, index=cols, name="cluster")
        self.cluster_sizes_ = sizes
        self.kept_cluster_ = keep
        self.support_ = labels == keep
        self.selected_features_ = [c for c, s in zip(cols, self.support_) if s]
        return self

    def transform(self, X: Any) -> Any:
        """The kept DSFR columns (and any other columns) of ``X``; the columns chosen in ``fit``, nothing refitted."""
        check_is_fitted(self, "support_")
        if isinstance(X, pd.DataFrame):
            cols = dsfr_columns(X.columns, self.prefix)
            if cols != list(self.dsfr_columns_):
                missing = [c for c in self.dsfr_columns_ if c not in cols]
                extra = [c for c in cols if c not in self.dsfr_columns_]
                raise InputError(f"DSFRSelector: the '{self.prefix}' columns differ from those it was fitted on "
                                 f"(missing {missing[:5]}, unexpected {extra[:5]}).")
            dropped = {c for c, s in zip(cols, self.support_) if not s}
            return X[[c for c in X.columns if str(c) not in dropped]]
        arr = np.asarray(X)
        if arr.ndim != 2 or arr.shape[1] != len(self.support_):
            raise InputError(f"DSFRSelector was fitted on {len(self.support_)} columns; got shape {arr.shape}.")
        return arr[:, self.support_]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns: the input's, less the DSFR columns not kept."""
        check_is_fitted(self, "support_")
        dropped = {c for c, s in zip(self.dsfr_columns_, self.support_) if not s}
        return np.asarray([c for c in self.feature_names_in_ if c not in dropped], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


@dataclass
class DSFRResult:
    """DSFR features of a set of cases.

    Attributes
    ----------
    layer : str
        Module name of the layer.
    means : DataFrame of shape (n_cases, n_channels)
        Every channel's lesion average (:func:`lesion_channel_means`).
    selector : DSFRSelector
        Fitted on ``fit_cases``.
    features : DataFrame of shape (n_cases, n_kept)
        ``selector.transform(means)``: the kept channels of every case.
    fit_cases : list of str
    empty_cases : list of str
        Cases with NaN features (no lesion at the feature map's size).
    """

    layer: str
    means: pd.DataFrame
    selector: DSFRSelector
    features: pd.DataFrame
    fit_cases: list[str]
    empty_cases: list[str] = field(default_factory=list)

    @property
    def kept(self) -> list[str]:
        """The kept columns."""
        return list(self.selector.selected_features_)

    def summary(self) -> dict[str, Any]:
        """``layer, n_cases, n_fit_cases, n_channels, n_kept, cluster_sizes, n_empty``."""
        return {"layer": self.layer, "n_cases": len(self.means), "n_fit_cases": len(self.fit_cases),
                "n_channels": self.means.shape[1], "n_kept": len(self.kept),
                "cluster_sizes": self.selector.cluster_sizes_.tolist(), "n_empty": len(self.empty_cases)}


def dsfr_features(model: nn.Module, inputs: Any, masks: Any, *, layer: LayerSpec, case_ids: Sequence[Any] | None = None,
                  fit_cases: Sequence[Any] | None = None, n_clusters: int = 2, batch_size: int = 8, seed: int = 0,
                  mask_resize: str = "area", device: Any = None) -> DSFRResult:
    """DSFR features (seed 003): lesion channel averages, channels of the largest k-means cluster.

    Parameters
    ----------
    model, inputs, masks, layer, case_ids, batch_size, mask_resize, device
        See :func:`lesion_channel_means`.
    fit_cases : sequence of str, optional
        Cases the channel clustering is fitted on: the training cases when ``inputs`` also
        hold test cases. Default: every case (all of them are training cases).
    n_clusters : int, default=2
    seed : int, default=0
        k-means seed.

    Returns
    -------
    DSFRResult
    """
    means = lesion_channel_means(model, inputs, masks, layer=layer, case_ids=case_ids, batch_size=batch_size,
                                 mask_resize=mask_resize, device=device)
    fit_ids = means.index.tolist() if fit_cases is None else [str(c) for c in fit_cases]
    unknown = sorted(set(fit_ids) - set(means.index))
    if unknown:
        raise InputError(f"fit_cases {unknown[:5]} are not among the case ids.")
    selector = DSFRSelector(n_clusters, random_state=seed).fit(means.loc[fit_ids])
    layer_name = dsfr_columns(means.columns)[0][len(DSFR_PREFIX):].rsplit("_", 1)[0]
    empty = means.index[means.isna().all(axis=1)].tolist()
    return DSFRResult(layer_name, means, selector, selector.transform(means), fit_ids, empty)


def _channel_index(channel: Any) -> int:
    if isinstance(channel, (int, np.integer)) and not isinstance(channel, bool):
        return int(channel)
    match = re.search(r"_(\d+)$", str(channel))
    if not match:
        raise InputError(f"Channel {channel!r} is neither an int nor a DSFR column name 'dsfr_<layer>_<channel>'.")
    return int(match.group(1))


def dsfr_heatmaps(model: nn.Module, input: Any, mask: Any, layer: LayerSpec, channels: Sequence[Any],
                  path: str | os.PathLike[str], *, max_channels: int = 4, device: Any = None) -> Path:
    """Feature maps of a few channels of one case over its image (seed 003, Fig. 4 g-h).

    Each channel's map is upsampled to the input's size (bilinear, trilinear for volumes),
    scaled to [0, 1] (its minimum to maximum) and laid over the image's first channel, with
    the lesion outlined in green; the first picture is the image alone. Volumes show the
    middle slice of the lesion.

    Parameters
    ----------
    model : nn.Module
    input : ndarray or Tensor of shape (channels, *spatial)
        One case's network input.
    mask : ndarray of shape (*spatial)
    layer : str or int
        See :func:`resolve_layer`.
    channels : sequence of int or str
        Channel indices or DSFR column names (e.g. ``result.kept``); the first ``max_channels`` are drawn.
    path : path-like
        The PNG, written atomically.
    max_channels : int, default=4
    device : optional

    Returns
    -------
    Path
    """
    x = _inputs(np.asarray(input)[None] if not isinstance(input, torch.Tensor) else input[None])
    m = _masks(np.asarray(mask)[None], x)[0, 0].numpy() > 0
    picked = [_channel_index(c) for c in list(channels)[:max_channels]]
    if not picked:
        raise InputError("dsfr_heatmaps: no channels to draw.")
    name, parts = layer_maps(model, x, layer, batch_size=1, device=device)
    maps = parts[0]
    bad = [c for c in picked if not 0 <= c < maps.shape[1]]
    if bad:
        raise InputError(f"Layer '{name}' has {maps.shape[1]} channels; channel(s) {bad} asked for.")
    mode = "bilinear" if x.ndim == 4 else "trilinear"
    up = F.interpolate(maps[:, picked].float(), size=tuple(x.shape[2:]), mode=mode, align_corners=False)[0].numpy()
    image = x[0, 0].numpy()
    if image.ndim == 3:
        z = lesion_slice(m)
        image, m, up = image[z], m[z], up[:, z]
    image = scale_to_height(image, PANEL)  # before the outlines, so they stay one pixel wide
    m = scale_to_height(m, PANEL, mask=True)
    pictures = [draw_outline(grey_rgb(image), m)]
    titles = [f"input\n{name}"]
    for c, heat in zip(picked, up):
        lo, hi = float(heat.min()), float(heat.max())
        scaled = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
        pictures.append(draw_outline(overlay_rgb(image, np.clip(scale_to_height(scaled, PANEL), 0, 1)), m))
        titles.append(f"channel {c}\nrange {lo:.3g} .. {hi:.3g}")
    return save_png(titled_row(pictures, titles), path)
