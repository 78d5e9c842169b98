"""Settings of a segmentation training run (stored in its checkpoints)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from her2dlr.checks import check_choice, check_number, param_error
from her2dlr.errors import InputError, nearest
from her2dlr.segment.augment import SegAugmentSettings
from her2dlr.segment.networks import SEG_ARCHS

__all__ = ["SegTrainSettings"]


@dataclass(frozen=True)
class SegTrainSettings:
    """How to train one segmentation network (stored in its checkpoints).

    Parameters
    ----------
    arch : {"unet", "attention_unet", "segresnet"}, default="unet"
    spatial_dims : {2, 3}, default=2
    image_size : int, default=128
        Side of the inputs (a multiple of the network's ``size_multiple``).
    box_prompt : bool, default=False
        Inputs carry a box-prompt channel (see :class:`her2dlr.segment.data.SegSpec`).
    features : sequence of int, optional
        Level widths (default: the arch's, :data:`her2dlr.segment.networks.DEFAULT_FEATURES`).
    epochs : int, default=60
    batch_size : int, default=16
    lr : float, default=1e-3
    weight_decay : float, default=1e-4
    patience : int, default=10
        Epochs without a better validation Dice before stopping; 0 trains all epochs.
    val_fraction : float, default=0.15
    min_val_cases : int, default=4
        Fewest validation cases for early stopping.
    seed : int, default=0
    device : str, default="auto"
        ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``.
    amp : bool, default=True
        Mixed precision on CUDA.
    num_threads : int, optional
        Torch CPU threads (default: the idle CPUs, :func:`her2dlr.imaging.torchutil.default_threads`).
    num_workers : int, default=0
        DataLoader worker processes for augmentation.
    progress : bool, default=True
        A bar over epochs with the training loss and the validation Dice.
    distributed : bool, default=False
        DistributedDataParallel over the processes of a ``torchrun`` launch
        (:mod:`her2dlr.imaging.distributed`); ``batch_size`` is per process.
    augment : SegAugmentSettings
    """

    arch: str = "unet"
    spatial_dims: int = 2
    image_size: int = 128
    box_prompt: bool = False
    features: tuple[int, ...] | None = None
    epochs: int = 60
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 10
    val_fraction: float = 0.15
    min_val_cases: int = 4
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_threads: int | None = None
    num_workers: int = 0
    progress: bool = True
    distributed: bool = False
    augment: SegAugmentSettings = field(default_factory=SegAugmentSettings)

    def __post_init__(self) -> None:
        check_choice(self, "arch", self.arch, SEG_ARCHS)
        if isinstance(self.spatial_dims, bool) or self.spatial_dims not in (2, 3):
            raise param_error(self, "spatial_dims", "2 (images) or 3 (volumes)", self.spatial_dims)
        for name, low in (("image_size", 8), ("epochs", 1), ("batch_size", 1), ("patience", 0),
                          ("min_val_cases", 1), ("num_workers", 0), ("seed", 0)):
            check_number(self, name, getattr(self, name), low=low, integer=True)
        check_number(self, "lr", self.lr, low=0.0, low_open=True)
        check_number(self, "weight_decay", self.weight_decay, low=0.0)
        check_number(self, "val_fraction", self.val_fraction, low=0.0, high=0.9, low_open=True)
        if self.num_threads is not None:
            check_number(self, "num_threads", self.num_threads, low=1, integer=True)
        if isinstance(self.augment, Mapping):
            object.__setattr__(self, "augment", SegAugmentSettings(**self.augment))
        if self.features is not None:
            object.__setattr__(self, "features", tuple(self.features))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready; stored in checkpoints)."""
        out = asdict(self)
        out["features"] = list(self.features) if self.features is not None else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegTrainSettings:
        """Inverse of :meth:`to_dict`; unknown keys are refused with the allowed ones."""
        allowed = {f.name for f in fields(cls)}
        bad = sorted(set(data) - allowed)
        if bad:
            raise InputError(f"Unknown segmentation training setting(s) {bad}. Allowed: {sorted(allowed)}."
                             f"{nearest(bad[0], allowed)}")
        return cls(**data)
