"""Where a network looks: CAM, Grad-CAM and Grad-CAM++ heat maps, mapped back onto the image.

Methods (seed 000 shows class activation maps, seed 002 Grad-CAM):

``cam``
    Class activation map (Zhou et al. 2016) of a network whose head is global average
    pooling + one linear layer: ``sum_k w[c, k] * A_k(x, y)``, with ``A`` the feature map of
    the network's ``target_layer`` and ``w`` the linear layer's weights (its bias, a constant
    shift, is left out). Computed by :class:`monai.visualize.CAM`. The head is checked on
    the first batch: the pooled feature map must equal ``embed(x)`` and the linear layer of
    it the logits, else :class:`~her2dlr.errors.InputError` says to use ``gradcam``.
``gradcam``
    Grad-CAM (Selvaraju et al. 2017) by :class:`monai.visualize.GradCAM`:
    ``relu(sum_k mean_xy(d logit_c / d A_k) * A_k)``. For a GAP + linear head the gradient
    is ``w[c, k] / (H * W)`` everywhere, so Grad-CAM is ``relu(CAM) / (H * W)``: the two
    agree up to scale (tested).
``gradcampp``
    Grad-CAM++ (Chattopadhyay et al. 2018) by :class:`monai.visualize.GradCAMpp`, run one
    image at a time (its weighting broadcasts the class score over the batch incorrectly).

Every method explains, per image, the predicted class by default (``class_idx=None``), or a
given class.

The probability beside a map is the network's own prediction, computed by the function that
makes its predictions everywhere else (:func:`her2dlr.deep.train.predict_proba`): a network
trained with ``tta_flips`` (``flips=True``, read from its checkpoint by
:func:`her2dlr.deep.checkpoints.tta_flips_of`) predicts the mean over the input and its
left-right mirror, and so does its heat map's probability and predicted class. The map itself
is the Grad-CAM (or CAM) of the unflipped input only.

MONAI's hook wrapper picks ``logits[:, class_idx]``, which mixes images when the classes differ
within a batch, so images are grouped by class first. Maps are returned
at the network's input size, non-negative, on their raw scale (:class:`HeatMaps`);
:meth:`HeatMaps.normalised` scales each to a maximum of 1 for display. The explainer works
on a private copy of the network (MONAI's hooks stay on the copy and turn in-place
activations off), so the caller's network is never changed.

Back on the image: the network saw a crop (the ROI box with its margin, resized);
:func:`paste_heat` resizes a map to the crop box and places it in a full-size canvas, and
:func:`heat_in_mask` scores where the heat is: the fraction of the heat mass that lies inside
the lesion mask, against the fraction of the crop the lesion covers (what heat spread evenly
over the crop would give). A fraction well above the lesion's area share means the network
looks at the lesion, not at text, calipers or the background.

Volumes: a 3D network (``spatial_dims=3``) gets 3D maps ``(n, D, H, W)`` by the same code
(MONAI's CAM classes upsample trilinearly), and :func:`paste_heat`, :func:`box_region` and
:func:`heat_in_mask` take 3D boxes ``(x0, y0, z0, x1, y1, z1)`` and volumes. The figures
(:mod:`her2dlr.deep.figures`, the study-level montage) stay 2D: draw one slice of a map, e.g.
the lesion's middle slice ``maps[i, D // 2]``.

A network that fuses clinical-pathological values at its head (``MMResNet`` with
``n_clinical``, ``deep.clinical_columns``) needs each case's values in every forward pass: give
them as ``clinical`` (raw values, NaN where missing; the network imputes and standardises them
with its stored training statistics). The map then explains the image branch with the case's
own clinical values held fixed. CAM does not apply to such a head (its logits are no linear
layer of the pooled feature map alone); Grad-CAM and Grad-CAM++ do.

The study-level driver (the crop boxes, checkpoints and the run folder's ``explain/``
outputs) is :func:`her2dlr.deep.explain_study.explain_study`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from her2dlr.errors import InputError, nearest

__all__ = [
    "METHODS",
    "CamExplainer",
    "HeatMaps",
    "HeatScore",
    "Method",
    "box_region",
    "check_gap_head",
    "find_fc_layer",
    "heat_in_mask",
    "heat_maps",
    "paste_heat",
]

Method = Literal["cam", "gradcam", "gradcampp"]
#: Allowed values of ``method``.
METHODS: tuple[str, ...] = ("cam", "gradcam", "gradcampp")


@dataclass
class HeatMaps:
    """Heat maps of a batch of images.

    Attributes
    ----------
    maps : ndarray of shape (n_images, height, width) or (n_images, depth, height, width)
        Non-negative, at the network's input size, raw scale.
    prob : ndarray of shape (n_images,)
        The network's probability of the positive class (softmax column 1; sigmoid for one
        logit); for a network of more than two classes, the probability of the explained class.
        With test-time flips, the mean over the input and its mirror, as the network predicts.
    explained_class : ndarray of shape (n_images,)
        Class each map explains.
    method : str
    target_layer : str
    """

    maps: np.ndarray
    prob: np.ndarray
    explained_class: np.ndarray
    method: str
    target_layer: str

    def normalised(self) -> np.ndarray:
        """Each map divided by its maximum (all-zero maps stay zero), shape of :attr:`maps`."""
        peak = self.maps.reshape(len(self.maps), -1).max(axis=1) if len(self.maps) else np.zeros(0)
        scale = np.where(peak > 0, peak, 1.0)
        return self.maps / scale.reshape((-1,) + (1,) * (self.maps.ndim - 1))

    def __len__(self) -> int:
        return len(self.maps)


@dataclass(frozen=True)
class HeatScore:
    """Where the heat of one map lies.

    Attributes
    ----------
    in_lesion : float
        Fraction of the heat mass inside the lesion mask (within the region scored).
    lesion_area : float
        Fraction of the region the lesion covers: ``in_lesion`` of heat spread evenly.
    lift : float
        ``in_lesion / lesion_area`` (1: no preference for the lesion; NaN without lesion).
    total : float
        Heat mass in the region (0: the map is empty, the fractions are NaN).
    """

    in_lesion: float
    lesion_area: float
    lift: float
    total: float


def _module_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def _target_layer(model: nn.Module, target_layer: str | None) -> str:
    name = target_layer if target_layer is not None else getattr(model, "target_layer", None)
    if not isinstance(name, str) or not name:
        raise InputError(
            f"{type(model).__name__} has no 'target_layer' attribute: give target_layer, the name of its last "
            f"convolutional feature map (one of model.named_modules())."
        )
    names = _module_names(model)
    if name not in names:
        raise InputError(
            f"Target layer '{name}' is not a module of {type(model).__name__}.{nearest(name, names)} "
            f"Layers: {names[-8:]} (last 8)."
        )
    return name


def find_fc_layer(model: nn.Module, n_outputs: int | None = None) -> str:
    """Name of the network's classification layer: its ``fc_layer`` attribute, else its last ``nn.Linear``.

    Parameters
    ----------
    model : nn.Module
    n_outputs : int, optional
        Required ``out_features`` (the number of logits).

    Raises
    ------
    InputError
        No linear layer (with ``n_outputs`` outputs).
    """
    given = getattr(model, "fc_layer", None)
    if isinstance(given, str) and given:
        return given
    linear = [name for name, mod in model.named_modules()
              if isinstance(mod, nn.Linear) and (n_outputs is None or mod.out_features == n_outputs)]
    if not linear:
        raise InputError(
            f"{type(model).__name__} has no linear layer with {n_outputs} outputs: CAM needs a global-average-"
            f"pooling + linear head (use method='gradcam')."
        )
    return linear[-1]


def _activations(model: nn.Module, layer: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(feature map of ``layer``, logits) of one forward pass, without gradients."""
    store: dict[str, torch.Tensor] = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _i, out: store.__setitem__("a", out))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        handle.remove()
    return store["a"], logits


def check_gap_head(model: nn.Module, x: torch.Tensor, *, target_layer: str | None = None,
                   fc_layer: str | None = None, rtol: float = 1e-3, atol: float = 1e-4) -> str:
    """Check that ``logits = fc(mean_xy(A))`` with ``A`` the target layer's map; return the fc layer name.

    CAM is exact only for such a head (global average pooling of the target feature map,
    then one linear layer).

    Parameters
    ----------
    model : nn.Module
        In eval mode.
    x : Tensor of shape (n_images, channels, height, width) or (n_images, channels, depth, height, width)
    target_layer, fc_layer : str, optional
        Default: ``model.target_layer`` and :func:`find_fc_layer`.
    rtol, atol : float
        Tolerances of the comparison.

    Raises
    ------
    InputError
        The head is not GAP + linear (names what differs and suggests ``gradcam``).
    """
    layer = _target_layer(model, target_layer)
    acti, logits = _activations(model, layer, x)
    fc_name = fc_layer or find_fc_layer(model, logits.shape[1])
    fc = model.get_submodule(fc_name)
    if not isinstance(fc, nn.Linear):
        raise InputError(f"Layer '{fc_name}' of {type(model).__name__} is a {type(fc).__name__}, not nn.Linear.")
    if acti.ndim < 3 or acti.shape[1] != fc.in_features:
        raise InputError(
            f"CAM needs the target layer '{layer}' to have {fc.in_features} channels (the inputs of '{fc_name}'); "
            f"it has shape {tuple(acti.shape)}. Use method='gradcam'."
        )
    pooled = acti.flatten(2).mean(dim=2)
    with torch.no_grad():
        recomputed = fc(pooled)
    if not torch.allclose(recomputed, logits, rtol=rtol, atol=atol):
        diff = float((recomputed - logits).abs().max())
        raise InputError(
            f"{type(model).__name__}'s logits are not '{fc_name}' of the average-pooled '{layer}' "
            f"(max difference {diff:.3g}): CAM does not apply to this head. Use method='gradcam'."
        )
    return fc_name


def _class_indices(logits: torch.Tensor, class_idx: int | Sequence[int] | np.ndarray | None) -> np.ndarray:
    n, n_classes = logits.shape
    if class_idx is None:
        if n_classes == 1:
            return np.zeros(n, dtype=int)
        return logits.argmax(dim=1).cpu().numpy().astype(int)
    idx = np.broadcast_to(np.asarray(class_idx, dtype=int), (n,)).copy() if np.ndim(class_idx) == 0 else \
        np.asarray(class_idx, dtype=int)
    if idx.shape != (n,):
        raise InputError(f"class_idx has {idx.size} values for {n} images.")
    bad = idx[(idx < 0) | (idx >= n_classes)]
    if bad.size:
        raise InputError(f"class_idx {int(bad[0])} is out of range: the network has {n_classes} class(es).")
    return idx


class CamExplainer:
    """Heat maps of one network by one method.

    Parameters
    ----------
    model : nn.Module
        A toolkit network (``target_layer``, ``embed``, ``forward``); copied, never changed.
    method : {"cam", "gradcam", "gradcampp"}, default="gradcam"
    target_layer : str, optional
        Default: ``model.target_layer``.
    fc_layer : str, optional
        Classification layer for ``cam`` (default: :func:`find_fc_layer`).
    batch_size : int, default=32
    device : str or torch.device, optional
        Default: the device of the network's parameters.
    flips : bool, default=False
        The network was trained with test-time flips (``tta_flips``): its probabilities (and so
        the class explained by default) are the mean over each input and its left-right mirror,
        as :func:`her2dlr.deep.train.predict_proba` computes them for its predictions. The maps
        are of the unflipped inputs.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     target_layer = "conv"
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4, 2)
    ...     def embed(self, x):
    ...         return torch.relu(self.conv(x)).mean(dim=(2, 3))
    ...     def forward(self, x):
    ...         return self.fc(self.embed(x))
    >>> heat = CamExplainer(Net(), method="gradcam")(torch.rand(3, 1, 16, 16))
    >>> heat.maps.shape
    (3, 16, 16)
    """

    def __init__(self, model: nn.Module, *, method: Method = "gradcam", target_layer: str | None = None,
                 fc_layer: str | None = None, batch_size: int = 32, device: str | torch.device | None = None,
                 flips: bool = False) -> None:
        if method not in METHODS:
            raise InputError(
                f"The 'method' parameter of CamExplainer must be one of {list(METHODS)}. Got {method!r} instead."
                f"{nearest(str(method), METHODS)}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"The 'batch_size' parameter of CamExplainer must be an int >= 1. Got {batch_size!r}.")
        self.method = method
        self.target_layer = _target_layer(model, target_layer)
        self.fc_layer = fc_layer
        self.batch_size = batch_size
        self.flips = bool(flips)
        params = list(model.parameters())
        self.device = torch.device(device) if device is not None else (params[0].device if params else
                                                                          torch.device("cpu"))
        self._model = copy.deepcopy(model).to(self.device).eval()
        for p in self._model.parameters():
            p.requires_grad_(True)
        self._cam: Any = None
        self._checked = False

    def _build(self, x: torch.Tensor) -> Any:
        from monai.visualize import CAM, GradCAM, GradCAMpp

        def keep(a: Any) -> Any:
            return a

        if self.method == "cam":
            fc_name = check_gap_head(self._model, x, target_layer=self.target_layer, fc_layer=self.fc_layer)
            fc = self._model.get_submodule(fc_name)
            self.fc_layer = fc_name
            def weight_only(_m: Any) -> Any:
                return lambda a: F.linear(a, fc.weight)

            return CAM(self._model, target_layers=self.target_layer, fc_layers=weight_only, postprocessing=keep)
        cls = GradCAM if self.method == "gradcam" else GradCAMpp
        return cls(self._model, target_layers=self.target_layer, postprocessing=keep)

    def __call__(self, x: torch.Tensor | np.ndarray, class_idx: int | Sequence[int] | np.ndarray | None = None,
                 *, clinical: torch.Tensor | np.ndarray | None = None) -> HeatMaps:
        """Heat maps of ``x``.

        Parameters
        ----------
        x : Tensor or ndarray of shape (n_images, channels, height, width) or (n_images, channels, depth, height, width)
            Network inputs (already cropped, resized and normalised); volumes for a 3D network.
        class_idx : int or sequence of int, optional
            Class to explain (one for all images or one per image); default: the predicted class.
        clinical : Tensor or ndarray of shape (n_images, n_clinical), optional
            Raw clinical values of each image's case, NaN where missing; required by (and only
            by) a network that fuses clinical values at its head (``n_clinical > 0``).

        Returns
        -------
        HeatMaps

        Raises
        ------
        InputError
            Clinical values missing for a network that fuses them, given to one that does not, or
            of the wrong shape; ``cam`` asked of a network that fuses them.
        """
        from her2dlr.deep.data import torch_threads
        from her2dlr.deep.train import default_threads

        x = torch.as_tensor(np.asarray(x, dtype=np.float32) if isinstance(x, np.ndarray) else x).float()
        if x.ndim not in (4, 5):
            raise InputError("Images must have shape (n_images, channels, height, width), volumes (n_images, channels, "
                             f"depth, height, width); got {tuple(x.shape)}.")
        values = self._clinical(clinical, len(x))
        # threads waiting for busy cores slow small convolutions down many-fold (see default_threads)
        with torch_threads(default_threads() if self.device.type == "cpu" else None):
            try:
                return self._explain(x, class_idx, values)
            finally:
                self._release()

    def _clinical(self, clinical: torch.Tensor | np.ndarray | None, n: int) -> torch.Tensor | None:
        """The clinical values as a float tensor (n, n_clinical) on the device, checked against the network."""
        name = type(self._model).__name__
        needed = int(getattr(self._model, "n_clinical", 0) or 0)
        if not needed:
            if clinical is not None:
                raise InputError(f"{name} has no clinical input: give no clinical values for its heat maps.")
            return None
        if clinical is None:
            raise InputError(f"{name} fuses {needed} clinical value(s) at its head (deep.clinical_columns): its heat "
                             "maps need each case's clinical values (clinical=, shape (n_images, "
                             f"{needed})).")
        if self.method == "cam":
            raise InputError(f"CAM does not apply to {name}: its head fuses clinical values, so its logits are no "
                             "linear layer of the pooled feature map. Use method='gradcam'.")
        values = torch.as_tensor(np.asarray(clinical, dtype=np.float32) if not isinstance(clinical, torch.Tensor)
                                 else clinical).float()
        if tuple(values.shape) != (n, needed):
            raise InputError(f"{name} needs clinical values of shape ({n}, {needed}) for {n} image(s); got "
                             f"{tuple(values.shape)}.")
        return values.to(self.device)

    def _release(self) -> None:
        """Drop the tensors MONAI's hooks keep from the last pass.

        Their autograd graph holds the hooks' closures, which hold the network: a cycle through
        C++ that Python's garbage collector cannot see, so every explainer (one network copy
        each) would otherwise stay in memory for good.
        """
        hooks = getattr(self._cam, "nn_module", None)
        for name in ("activations", "gradients"):
            store = getattr(hooks, name, None)
            if isinstance(store, dict):
                store.clear()
        if hooks is not None and hasattr(hooks, "score"):
            hooks.score = None

    def _proba(self, x: torch.Tensor, clinical: torch.Tensor | None) -> np.ndarray:
        """The network's predicted probabilities of a batch, shape (n, n_outputs): by the function its
        predictions use (flip-averaged when ``flips``); one logit gives the sigmoid, one column."""
        from her2dlr.deep.train import predict_proba

        proba = predict_proba(self._model, x, batch_size=len(x), device=self.device, flips=self.flips,
                              clinical=None if clinical is None else clinical.cpu())
        if proba.shape[1] > 1:
            return proba
        # one logit (predict_proba's softmax is for two or more outputs): its sigmoid
        extra = {} if clinical is None else {"clinical": clinical}
        with torch.no_grad():
            prob = torch.sigmoid(self._model(x, **extra))
            if self.flips:
                prob = (prob + torch.sigmoid(self._model(torch.flip(x, dims=(-1,)), **extra))) / 2
        return prob.cpu().numpy().astype(np.float64)

    def _explain(self, x: torch.Tensor, class_idx: Any, clinical: torch.Tensor | None = None) -> HeatMaps:
        n, _, *spatial = x.shape
        maps = np.zeros((n, *spatial), np.float32)
        prob = np.zeros(n, np.float64)
        classes = np.zeros(n, int)
        per_image = self.method == "gradcampp"
        step = 1 if per_image else self.batch_size
        for start in range(0, n, self.batch_size):
            xb = x[start:start + self.batch_size].to(self.device)
            # the batch's clinical values go into every forward pass (MONAI passes keyword arguments to the network)
            cb = None if clinical is None else clinical[start:start + len(xb)]
            if self._cam is None:
                self._cam = self._build(xb)
            proba = self._proba(xb, cb)
            idx = _class_indices(torch.as_tensor(proba), None if class_idx is None else
                                 _slice(class_idx, start, len(xb), n))
            prob[start:start + len(xb)] = proba[:, -1] if proba.shape[1] <= 2 else proba[np.arange(len(xb)), idx]
            classes[start:start + len(xb)] = idx
            if self.method == "cam":  # MONAI's CAM takes one class per image
                out = self._cam(xb, class_idx=torch.as_tensor(idx))
                maps[start:start + len(xb)] = out.detach().float().cpu().numpy()[:, 0]
                continue
            for c in np.unique(idx):
                rows = np.flatnonzero(idx == c)
                for r0 in range(0, len(rows), step):
                    sel = torch.as_tensor(rows[r0:r0 + step], device=self.device)
                    xs = xb.index_select(0, sel).requires_grad_(True)  # keeps MONAI's full backward hook quiet
                    rows_extra = {} if cb is None else {"clinical": cb.index_select(0, sel)}
                    with torch.enable_grad():
                        out = self._cam(xs, class_idx=int(c), **rows_extra)
                    maps[start + rows[r0:r0 + step]] = out.detach().float().cpu().numpy()[:, 0]
        if self.method == "cam":
            maps = np.maximum(maps, 0.0)
        return HeatMaps(maps, prob, classes, self.method, self.target_layer)


def _slice(class_idx: Any, start: int, size: int, n: int) -> Any:
    if np.ndim(class_idx) == 0:
        return class_idx
    arr = np.asarray(class_idx)
    if arr.shape != (n,):
        raise InputError(f"class_idx has {arr.size} values for {n} images.")
    return arr[start:start + size]


def heat_maps(model: nn.Module, x: torch.Tensor | np.ndarray, *, method: Method = "gradcam",
              class_idx: int | Sequence[int] | np.ndarray | None = None, target_layer: str | None = None,
              batch_size: int = 32, clinical: torch.Tensor | np.ndarray | None = None,
              flips: bool = False) -> HeatMaps:
    """Heat maps of ``x`` by ``method`` (see :class:`CamExplainer`; ``clinical`` for a network that fuses them,
    ``flips`` for one trained with test-time flips)."""
    return CamExplainer(model, method=method, target_layer=target_layer, batch_size=batch_size, flips=flips)(
        x, class_idx, clinical=clinical)


def _box_bounds(box: Sequence[int], image_shape: Sequence[int], n: int) -> tuple[list[int], list[int], tuple[int, ...]]:
    """Array-order corners of ``(x0, y0[, z0], x1, y1[, z1])`` and the image's first ``n`` axes."""
    if len(box) != 2 * n:
        raise InputError(f"Crop box {list(box)} must have {2 * n} numbers for a {n}D map.")
    shape = tuple(int(v) for v in image_shape[:n])
    values = [int(v) for v in box]
    return values[:n][::-1], values[n:][::-1], shape


def paste_heat(heat: np.ndarray, box: Sequence[int], image_shape: Sequence[int]) -> np.ndarray:
    """Put a crop's heat map back where the crop came from.

    Parameters
    ----------
    heat : ndarray of shape (height, width) or (depth, height, width)
        Map at the network's input size.
    box : (x0, y0, x1, y1) or (x0, y0, z0, x1, y1, z1)
        The crop in image pixels, half-open, as cut before resizing
        (:func:`her2dlr.imaging.roi.roi_box`); it may reach past the image border (the crop
        was padded there): the part outside is dropped.
    image_shape : (rows, columns) or (slices, rows, columns)

    Returns
    -------
    ndarray of shape image_shape, float32
        The map resized (bilinear, trilinear for volumes) to the box, zero outside it.

    Raises
    ------
    InputError
        The box has no area inside the image.

    Examples
    --------
    >>> import numpy as np
    >>> full = paste_heat(np.ones((4, 4)), (-2, 1, 6, 5), (6, 6))
    >>> float(full.sum()), float(full[0].sum()), full[1, :4].tolist()
    (24.0, 0.0, [1.0, 1.0, 1.0, 1.0])
    >>> paste_heat(np.ones((2, 2, 2)), (0, 0, 1, 2, 2, 3), (4, 3, 3))[:, 0, 0].tolist()
    [0.0, 1.0, 1.0, 0.0]
    """
    heat = np.asarray(heat, dtype=np.float32)
    n = heat.ndim
    lo, hi, shape = _box_bounds(box, image_shape, n)
    ilo = [max(v, 0) for v in lo]
    ihi = [min(v, s) for v, s in zip(hi, shape)]
    if any(h <= v for v, h in zip(lo, hi)) or any(h <= v for v, h in zip(ilo, ihi)):
        names = "(x0, y0, x1, y1)" if n == 2 else "(x0, y0, z0, x1, y1, z1)"
        raise InputError(f"Crop box {list(box)} {names} has no area inside the "
                         f"{'x'.join(str(s) for s in shape[::-1])} image.")
    t = torch.as_tensor(heat)[None, None]
    resized = F.interpolate(t, size=tuple(h - v for v, h in zip(lo, hi)), mode="bilinear" if n == 2 else "trilinear",
                            align_corners=False)[0, 0].numpy()
    out = np.zeros(shape, np.float32)
    out[tuple(slice(a, b) for a, b in zip(ilo, ihi))] = resized[tuple(slice(a - v, b - v)
                                                                      for a, b, v in zip(ilo, ihi, lo))]
    return out


def box_region(box: Sequence[int], image_shape: Sequence[int]) -> np.ndarray:
    """Boolean mask of the part of box ``(x0, y0[, z0], x1, y1[, z1])`` inside an image of shape ``image_shape``.

    ``image_shape``: ``(rows, columns, ...)`` for a 4-number box, ``(slices, rows, columns, ...)``
    for a 6-number one.
    """
    n = len(box) // 2
    lo, hi, shape = _box_bounds(box, image_shape, n)
    out = np.zeros(shape, bool)
    out[tuple(slice(max(v, 0), max(min(h, s), 0)) for v, h, s in zip(lo, hi, shape))] = True
    return out


def heat_in_mask(heat: np.ndarray, lesion: np.ndarray, region: np.ndarray | None = None) -> HeatScore:
    """Fraction of the heat mass inside the lesion, within ``region`` (the crop).

    Parameters
    ----------
    heat : ndarray of shape (rows, columns) or (slices, rows, columns)
        Negative values count as 0.
    lesion : ndarray of the shape of ``heat``
        Lesion mask (non-zero inside).
    region : ndarray of the shape of ``heat``, optional
        Pixels scored (default: all), e.g. the crop box on the full image (:func:`box_region`).

    Returns
    -------
    HeatScore

    Examples
    --------
    >>> import numpy as np
    >>> heat = np.zeros((4, 4)); heat[:2, :2] = 1.0
    >>> lesion = np.zeros((4, 4), bool); lesion[:2, :] = True
    >>> s = heat_in_mask(heat, lesion)
    >>> s.in_lesion, s.lesion_area, s.lift
    (1.0, 0.5, 2.0)
    """
    heat = np.maximum(np.asarray(heat, dtype=np.float64), 0.0)
    lesion = np.asarray(lesion) > 0
    if lesion.shape != heat.shape:
        raise InputError(f"Lesion mask shape {lesion.shape} differs from the heat map's {heat.shape}.")
    region = np.ones(heat.shape, bool) if region is None else np.asarray(region) > 0
    if region.shape != heat.shape:
        raise InputError(f"Region shape {region.shape} differs from the heat map's {heat.shape}.")
    if not region.any():
        raise InputError("The region scored is empty.")
    total = float(heat[region].sum())
    inside = float(heat[region & lesion].sum())
    area = float((region & lesion).sum() / region.sum())
    frac = inside / total if total > 0 else float("nan")
    lift = frac / area if area > 0 and np.isfinite(frac) else float("nan")
    return HeatScore(frac, area, lift, total)
