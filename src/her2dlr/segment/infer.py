"""Segmenting new images or volumes with a trained network: full-resolution masks and a confidence.

:func:`segment_images` reads each image (or takes its array), prepares the network input
(:func:`her2dlr.segment.data.prepare_seg_input`: the whole image, or the crop around a user box),
runs the network in batches, pastes the lesion probability back onto the full image
(:func:`her2dlr.segment.data.paste_back`) and post-processes it
(:func:`her2dlr.segment.postprocess.postprocess`). An image where nothing is found gets an
empty mask (``empty=True``, confidence 0.0), never a whole-image ROI.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from her2dlr.errors import InputError
from her2dlr.imaging.roi import Box
from her2dlr.imaging.torchutil import default_threads, resolve_device, torch_threads
from her2dlr.segment.data import SegSpec, paste_back, prepare_seg_input, read_array
from her2dlr.segment.postprocess import PostSettings, postprocess

__all__ = ["SegPrediction", "check_model_spec", "predict_lesion_prob", "segment_images"]

PathLike = str | os.PathLike[str]


@dataclass
class SegPrediction:
    """The segmentation of one image.

    Attributes
    ----------
    mask : ndarray of bool, the image's spatial shape
    prob : ndarray of float32, the image's spatial shape
        Lesion probability (0 outside the crop).
    confidence : float
        Mean probability inside ``mask``; 0.0 when empty.
    empty : bool
        Nothing was found.
    crop : Box
        The part of the image the network saw.
    """

    mask: np.ndarray
    prob: np.ndarray
    confidence: float
    empty: bool
    crop: Box


def predict_lesion_prob(model: nn.Module, X: np.ndarray, *, batch_size: int = 8,
                        device: str | torch.device = "cpu", amp: bool = True) -> np.ndarray:
    """Lesion probability (softmax channel 1) of prepared inputs.

    Parameters
    ----------
    model : SegNetwork
    X : ndarray of shape (n, C, *size)
    batch_size : int, default=8
    device : str or torch.device, default="cpu"
    amp : bool, default=True
        Mixed precision on CUDA.

    Returns
    -------
    ndarray of shape (n, *size), float32
    """
    device = torch.device(device) if not isinstance(device, torch.device) else device
    was_training = model.training
    if was_training:  # switching modes walks every submodule: only when needed
        model.eval()
    out = []
    use_amp = amp and device.type == "cuda"
    try:
        with torch.inference_mode():
            for start in range(0, len(X), batch_size):
                x = torch.as_tensor(np.asarray(X[start:start + batch_size], dtype=np.float32)).to(device)
                with torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext():
                    logits = model(x)
                out.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy())
    finally:
        if was_training:
            model.train()
    if not out:
        return np.zeros((0, *np.shape(X)[2:]), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def check_model_spec(model: nn.Module, spec: SegSpec) -> None:
    """Refuse a network whose dimensions, input channels or size multiple do not fit ``spec``."""
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "spatial_dims" not in config:
        raise InputError("segment_images takes a network made by build_seg_network or load_segmenter.")
    dims = int(config["spatial_dims"])
    if dims != spec.spatial_dims:
        raise InputError(f"The network is {dims}D ({config['arch']}) but the spec is for {spec.spatial_dims}D "
                         f"{'images' if spec.spatial_dims == 2 else 'volumes'}.")
    if int(config["in_channels"]) != spec.in_channels:
        raise InputError(f"The network takes {config['in_channels']} input channel(s); the spec gives "
                         f"{spec.in_channels} ({spec.channels} image{' + 1 box prompt' if spec.box_prompt else ''}).")
    multiple = int(getattr(model, "size_multiple", 1))
    if spec.size % multiple:
        raise InputError(f"Spec size {spec.size} is not a multiple of {multiple}, which the network needs.")


def _check_images(arrays: list[np.ndarray], names: list[str], dims: int) -> None:
    """Refuse 2D images for a 3D network and volumes for a 2D one (an RGB(A) last axis marks an image)."""
    for arr, name in zip(arrays, names):
        image = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))
        if dims == 3 and image:
            raise InputError(f"A 3D segmentation network was given the 2D image {name} (shape {arr.shape}); "
                             "use a 2D network for images, or give volumes (D, H, W).")
        if dims == 2 and not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] <= 4)):
            raise InputError(f"A 2D segmentation network was given the 3D volume {name} (shape {arr.shape}); "
                             "use a 3D network for volumes, or give 2D images.")


def segment_images(model: nn.Module, images: Sequence[PathLike | np.ndarray], *,
                   boxes: Sequence[Sequence[float] | None] | None = None, spec: SegSpec,
                   post: PostSettings | None = None, batch_size: int = 8, device: str = "auto",
                   progress: bool = True) -> list[SegPrediction]:
    """Segment images (or volumes) at full resolution.

    Parameters
    ----------
    model : SegNetwork
        From :func:`her2dlr.segment.train.train_segmenter` or :func:`~her2dlr.segment.train.load_segmenter`.
    images : sequence of path or ndarray
        Image files or arrays ``(H, W[, C])``; volume files or arrays ``(D, H, W)`` for a 3D network.
    boxes : sequence of (x, y, w, h) or (x, y, z, w, h, d), optional
        The user's lesion boxes, one per image; required by a box-prompted spec (and not used otherwise).
    spec : SegSpec
        The spec the network was trained with.
    post : PostSettings, default=PostSettings()
    batch_size : int, default=8
    device : str, default="auto"
    progress : bool, default=True

    Returns
    -------
    list of SegPrediction, one per image

    Raises
    ------
    InputError
        A network of the other dimensionality than the images, a box-prompted spec without
        boxes, unreadable files, boxes outside their image (the message names the image).
    """
    check_model_spec(model, spec)
    post = post or PostSettings()
    n = len(images)
    if spec.box_prompt and (boxes is None or any(b is None for b in boxes)):
        raise InputError("This segmentation network is box-prompted: give one box (x, y, w, h) or "
                         "(x, y, z, w, h, d) per image.")
    if boxes is not None and len(boxes) != n:
        raise InputError(f"Got {n} images but {len(boxes)} boxes: give one box per image.")
    box_list: list[Any] = list(boxes) if boxes is not None else [None] * n
    names = [str(im) if not isinstance(im, np.ndarray) else f"image #{i}" for i, im in enumerate(images)]
    dev = resolve_device(device)
    if next(model.parameters()).device != dev:
        model.to(dev)
    results: list[SegPrediction] = []
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="segmenting", unit="image", leave=False)
    try:
        with torch_threads(default_threads() if dev.type == "cpu" else None):
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                arrays = [read_array(images[i]) for i in range(start, stop)]
                _check_images(arrays, names[start:stop], spec.spatial_dims)
                prepared = []
                for arr, name, box in zip(arrays, names[start:stop], box_list[start:stop]):
                    try:
                        prepared.append(prepare_seg_input(arr, box=box, spec=spec))
                    except InputError as exc:
                        raise InputError(f"{name}: {exc}") from None
                prob = predict_lesion_prob(model, np.stack([p[0] for p in prepared]), batch_size=batch_size,
                                           device=dev)
                for arr, p, (_, crop) in zip(arrays, prob, prepared):
                    full = paste_back(p, crop, arr.shape)
                    mask, confidence = postprocess(full, post)
                    results.append(SegPrediction(mask=mask, prob=full, confidence=confidence,
                                                 empty=not bool(mask.any()), crop=crop))
                if bar is not None:
                    bar.update(stop - start)
    finally:
        if bar is not None:
            bar.close()
    return results
