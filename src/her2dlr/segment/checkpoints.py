"""Segmentation network checkpoints: weights, the network's configuration, the input spec, the settings.

A checkpoint is a dict of tensors and plain Python types (``torch.load(weights_only=True)`` reads
it), written atomically. :func:`load_segmenter` rebuilds the network and refuses a file that is
not a segmentation checkpoint (a classification network's checkpoint is named as such) or one of
the other number of spatial dimensions than asked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from her2dlr.errors import InputError
from her2dlr.imaging.torchutil import checkpoint_safe, read_checkpoint_file
from her2dlr.segment.data import SegSpec
from her2dlr.segment.networks import build_seg_network

__all__ = ["SEG_CHECKPOINT_FORMAT", "load_segmenter", "save_segmenter"]

SEG_CHECKPOINT_FORMAT = "her2dlr-seg-checkpoint"
_VERSION = 1
_DEEP_FORMAT = "her2dlr-deep-checkpoint"  # the classification networks' checkpoints


def save_segmenter(model: nn.Module, spec: SegSpec, settings: Any, path: str | os.PathLike[str],
                   **extra: Any) -> Path:
    """Write a segmentation network, its input spec and its training settings to ``path``.

    Parameters
    ----------
    model : SegNetwork
        From :func:`her2dlr.segment.networks.build_seg_network` (has ``config``).
    spec : SegSpec
    settings : SegTrainSettings or mapping or None
    path : path
    **extra
        Stored under ``meta["extra"]`` (plain types: numbers, strings, lists, dicts).

    Returns
    -------
    Path
    """
    import her2dlr
    from her2dlr.io.atomic import atomic_path

    config = getattr(model, "config", None)
    if not isinstance(config, Mapping) or "arch" not in config:
        raise InputError("save_segmenter takes a network made by build_seg_network (it has no 'config').")
    if int(config["spatial_dims"]) != spec.spatial_dims or int(config["in_channels"]) != spec.in_channels:
        raise InputError(f"The network takes {config['in_channels']} channel(s) in {config['spatial_dims']}D but the "
                         f"spec gives {spec.in_channels} in {spec.spatial_dims}D.")
    payload = {
        "format": SEG_CHECKPOINT_FORMAT, "version": _VERSION, "config": checkpoint_safe(config), "spec": spec.to_dict(),
        "settings": checkpoint_safe(settings) if settings is not None else {},
        "model_state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "extra": checkpoint_safe(extra), "versions": {"her2dlr": str(her2dlr.__version__), "torch": str(torch.__version__)},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_segmenter(path: str | os.PathLike[str], *,
                   spatial_dims: int | None = None) -> tuple[nn.Module, SegSpec, dict[str, Any]]:
    """Rebuild a segmentation network from its checkpoint, in eval mode on the CPU.

    Parameters
    ----------
    path : path
    spatial_dims : {2, 3}, optional
        When given, a checkpoint of the other number of spatial dimensions is refused.

    Returns
    -------
    model : SegNetwork
    spec : SegSpec
    meta : dict
        ``settings``, ``extra``, ``versions`` and the rest of the checkpoint, without the weights.

    Raises
    ------
    InputError
        Missing or unreadable file, not a segmentation checkpoint, or of the other ``spatial_dims``.
    """
    path = Path(path)
    ckpt = read_checkpoint_file(path, "segmentation checkpoint")
    fmt = ckpt.get("format") if isinstance(ckpt, Mapping) else None
    if fmt == _DEEP_FORMAT:
        raise InputError(f"{path} holds a classification network (her2dlr deep stage), not a segmentation network.")
    if fmt != SEG_CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a her2dlr segmentation checkpoint (written by save_segmenter or "
                         "train_segmenter).")
    config = dict(ckpt["config"])
    if spatial_dims is not None and int(config["spatial_dims"]) != int(spatial_dims):
        raise InputError(f"{path} holds a {config['spatial_dims']}D segmentation network ({config['arch']}); "
                         f"{spatial_dims}D {'images' if spatial_dims == 2 else 'volumes'} need a {spatial_dims}D one.")
    model = build_seg_network(**config)
    model.load_state_dict(ckpt["model_state"])
    meta = {k: v for k, v in ckpt.items() if k != "model_state"}
    return model.eval(), SegSpec.from_dict(dict(ckpt["spec"])), meta
