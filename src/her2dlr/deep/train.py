"""Training one network on one training set: inner validation, early stopping, checkpoints, resume.

:func:`train_network` takes ROI arrays (images ``(n, C, S, S)``, or volumes ``(n, C, S, S, S)``
with ``spatial_dims=3``) and labels (one training fold) and

1. holds out an inner validation split, stratified and by group (patient / near-duplicate
   group), with :func:`her2dlr.cohort.splits.stratified_group_holdout`;
2. weights the cross-entropy by the inverse class frequencies of the remaining training
   cases (seed 000), or uses a focal loss;
3. trains with AdamW and a cosine (or on-plateau) learning-rate schedule, augmenting on the fly
   (:mod:`her2dlr.deep.transforms`);
4. after every epoch scores the validation split (loss, AUC), keeps the best epoch's weights
   (highest AUC, then lowest loss) in ``best.pt`` and the latest state in ``last.pt``, and stops
   when the AUC has not improved for ``patience`` epochs (with ``ema``, the moving average of
   the weights is what is scored and kept);
5. returns the network with the best weights.

DeepTEPP's switches (seed 004, :mod:`her2dlr.deep.deeptepp`), each acting on the inner training
part only, never on the inner validation or test cases:

* ``multi_view``: views of the smaller class's inputs (3D: axial, coronal, sagittal and in-plane
  turns; 2D: quarter turns and mirror images) are added once, before training, until the classes
  are balanced (:attr:`TrainResult.views_added`; the checkpoints' ``extra.multi_view``);
* ``jigsaw``: every epoch each training input is shuffled as a jigsaw (2D: ``grid`` x ``grid``
  blocks; 3D: ``grid`` slabs of slices) after augmentation;
* ``clinical_columns``: clinical-pathological values fused at the network's head (archs of
  :data:`her2dlr.deep.networks.CLINICAL_ARCHS`); their median imputation and standardisation
  are fitted on the inner training part (:func:`her2dlr.deep.deeptepp.clinical_scaling`) and
  stored in the network (its buffers) and in the checkpoints' ``extra.clinical``, so every
  prediction of the network, deployed or not, applies the same.

A training set with too few cases of a class for an inner split (``min_class_cases``) is
trained for the full ``epochs`` without early stopping, with a :class:`FewCasesWarning`; the
last epoch's weights are used and :attr:`TrainResult.notes` says so.

Reproducibility: a seed fixes the initial weights (``torch.manual_seed``), the global NumPy
and Python generators, the inner split, and - reseeded at every epoch from ``seed`` and the
epoch number - the shuffling, dropout and augmentation (DataLoader workers are seeded from the
epoch's generator); ``torch.use_deterministic_algorithms`` is switched on (``warn_only``) for
the run. The global states are restored afterwards. On one machine, with the same number of
threads, two runs give the same weights, and a run resumed from ``last.pt`` gives the weights
of the uninterrupted run.

Threads: ``num_threads`` (default :func:`default_threads`: the idle CPUs) is set for the run
and restored afterwards; augmentation runs single-threaded (small tensors are fastest so).

Devices: CUDA (with mixed precision, ``torch.autocast`` + gradient scaling) when present,
else the CPU. Asking for a GPU that is not there is an error unless ``allow_cpu_fallback``.

Several processes or GPUs (DDP, :mod:`her2dlr.imaging.distributed`): launch the same command
once per process with ``torchrun --nproc_per_node=N`` and set ``distributed=True`` (``her2dlr
train deep`` does so by itself under a launcher). Each process trains on its shard of every
epoch (``DistributedSampler``, its own augmentation draws), gradients are averaged by
``DistributedDataParallel`` and batch-norm statistics after every epoch, so all processes hold
the same weights; each scores a share of the validation split and all gather the whole split's
predictions; rank 0's validation scores (and a callback's stop) are broadcast, so all stop at
the same epoch; only rank 0 writes checkpoints. ``batch_size`` is per process. Without a
launcher a one-process group is made and closed again. Tested with two CPU processes (gloo) in
``tests/test_torchrun_ddp.py``. The deep stage (:mod:`her2dlr.deep.cv`) runs its folds one after
another in every process, and only rank 0 writes the tables.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from her2dlr.deep.data import AugmentCollate, RoiDataset
from her2dlr.deep.networks import CHECKPOINT_FORMAT, build_network
from her2dlr.deep.transforms import Augment, AugmentSettings
from her2dlr.errors import InputError, nearest
from her2dlr.imaging.distributed import (
    DistInfo,
    broadcast_floats,
    gather_predictions,
    mean_over_ranks,
    process_group,
    rank_device,
    shard_length,
    shard_sampler,
    sync_buffers,
    wrap_ddp,
)
from her2dlr.imaging.torchutil import (
    checkpoint_safe,
    default_threads,
    read_checkpoint_file,
    resolve_device,
    seeded,
    torch_threads,
)

__all__ = [
    "LOSSES",
    "SCHEDULERS",
    "FewCasesWarning",
    "MixedBatch",
    "TrainResult",
    "TrainSettings",
    "class_weights",
    "default_threads",
    "load_checkpoint",
    "loss_function",
    "make_checkpoint",
    "mixup_batch",
    "model_from_checkpoint",
    "predict_proba",
    "resolve_device",
    "save_checkpoint",
    "seeded",
    "train_network",
]

log = logging.getLogger(__name__)

LOSSES = ("weighted_ce", "ce", "focal")
SCHEDULERS = ("cosine", "plateau", "none")
KEEP = ("best", "last")
CHECKPOINT_VERSION = 1


class FewCasesWarning(UserWarning):
    """A training set has too few cases of a class for an inner validation split."""


@dataclass(frozen=True)
class TrainSettings:
    """How to train one network (all fields are stored in the checkpoints).

    Parameters
    ----------
    arch : str, default="densenet3block"
        See :data:`her2dlr.deep.networks.ARCHS`.
    image_size : int, default=64
        Side of the ROI arrays.
    spatial_dims : {2, 3}, default=2
        ROI arrays ``(n, C, S, S)`` (images) or ``(n, C, S, S, S)`` (volumes); sets the network's
        layers and the augmentation.
    in_channels : int, default=1
    n_classes : int, default=2
    arch_options : dict, optional
        Extra arguments of the network (see :func:`her2dlr.deep.networks.build_network`).
    weights : str, optional
        Local file of starting weights (never downloaded).
    epochs : int, default=40
        Most epochs.
    batch_size : int, default=32
    lr : float, default=1e-3
    weight_decay : float, default=1e-4
    loss : {"weighted_ce", "ce", "focal"}, default="weighted_ce"
        ``weighted_ce``: cross-entropy weighted by inverse class frequency (seed 000);
        ``focal``: MONAI's focal loss with the same class weights.
    focal_gamma : float, default=2.0
    scheduler : {"cosine", "plateau", "none"}, default="cosine"
        Cosine annealing over ``epochs``, or halving the rate when the validation AUC stalls.
    val_fraction : float, default=0.2
        Share of the training cases (by group) held out for early stopping.
    patience : int, default=10
        Epochs without a better validation AUC before stopping; 0 trains all ``epochs``.
    keep : {"best", "last"}, default="best"
        Which weights to keep and return: the epoch with the best validation AUC (early
        stopping), or the last epoch of the full schedule (no early stopping: ``patience`` is
        ignored, the validation split only monitors training and gives unselected predictions
        for the operating threshold). On a small validation split the best epoch is partly
        chosen by noise; ``"last"`` with the cosine schedule ends at a learning rate near zero.
    ema : float, default=0.0
        Decay of an exponential moving average of the weights (and batch-norm statistics),
        updated after every step, e.g. 0.98; the average is what is validated, kept and
        returned. 0 switches it off.
    label_smoothing : float, default=0.0
        Cross-entropy against ``(1 - e) * onehot + e / n_classes`` instead of the one-hot label
        (PyTorch's ``label_smoothing``; with the class weights as PyTorch applies them). Not
        with ``loss="focal"``.
    mixup : float, default=0.0
        Mixup (Zhang et al. 2018) with ``lambda ~ Beta(mixup, mixup)``, one draw per batch: each
        batch is mixed with a shuffled copy of itself, ``lambda * x + (1 - lambda) * x[perm]``,
        and the loss is ``lambda * loss(y) + (1 - lambda) * loss(y[perm])`` (see
        :func:`mixup_batch`). 0 switches it off; 0.2-0.4 are usual.
    pretrain_epochs : int, default=0
        Self-supervised pre-training before the supervised epochs: this many epochs of
        predicting the quarter turn of the inner training part's own ROIs
        (:func:`her2dlr.deep.pretext.rotation_pretrain`; never the inner validation or test
        images). 2D only; 0 switches it off.
    tta_flips : bool, default=False
        Test-time flips: every prediction (validation, test, deployment) is the mean of the
        softmax probabilities of the ROI and its left-right mirror image (the flip the training
        augmentation uses), see :func:`predict_proba`.
    min_epochs : int, default=5
        No early stop before this many epochs.
    min_class_cases : int, default=10
        Fewer cases of a class than this: no inner validation (see the module docstring).
    seed : int, default=0
    device : str, default="auto"
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    allow_cpu_fallback : bool, default=False
        Train on the CPU, with a warning, when the asked GPU is absent.
    amp : bool, default=True
        Mixed precision on CUDA (ignored on the CPU).
    num_workers : int, default=0
        DataLoader worker processes (0: augment in the main process).
    num_threads : int, optional
        Torch CPU threads during training (default: the CPUs this process may use, less the workers).
    deterministic : bool, default=True
        ``torch.use_deterministic_algorithms(True, warn_only=True)`` and deterministic cuDNN.
    augment : AugmentSettings
    distributed : bool, default=False
        DistributedDataParallel (see the module docstring).
    multi_view : bool, default=False
        Balance the classes of the inner training part with views of the smaller class's inputs
        (see the module docstring).
    jigsaw : int, default=0
        Jigsaw shuffle of the training inputs in every epoch with this many blocks (2D) or slabs
        of slices (3D) per side; must divide ``image_size``. 0 is off.
    clinical_columns : tuple of str, default=()
        Clinical-pathological columns fused at the network's head (``mm_resnet`` only); the
        training call then needs their values (``train_network(clinical=...)``).
    progress : bool, default=True
        tqdm bar over epochs with the training loss and validation AUC.
    """

    arch: str = "densenet3block"
    image_size: int = 64
    spatial_dims: int = 2
    in_channels: int = 1
    n_classes: int = 2
    arch_options: Mapping[str, Any] = field(default_factory=dict)
    weights: str | None = None
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    loss: str = "weighted_ce"
    focal_gamma: float = 2.0
    scheduler: str = "cosine"
    val_fraction: float = 0.2
    patience: int = 10
    keep: str = "best"
    ema: float = 0.0
    label_smoothing: float = 0.0
    mixup: float = 0.0
    tta_flips: bool = False
    pretrain_epochs: int = 0
    min_epochs: int = 5
    min_class_cases: int = 10
    seed: int = 0
    device: str = "auto"
    allow_cpu_fallback: bool = False
    amp: bool = True
    num_workers: int = 0
    num_threads: int | None = None
    deterministic: bool = True
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    distributed: bool = False
    multi_view: bool = False
    jigsaw: int = 0
    clinical_columns: tuple[str, ...] = ()
    progress: bool = True

    def __post_init__(self) -> None:
        from her2dlr.deep.networks import ARCHS, CLINICAL_ARCHS, check_spatial_dims

        _choice("arch", self.arch, ARCHS)
        check_spatial_dims(self.spatial_dims, "TrainSettings")
        _choice("loss", self.loss, LOSSES)
        _choice("scheduler", self.scheduler, SCHEDULERS)
        _choice("keep", self.keep, KEEP)
        for name, low in (("image_size", 8), ("in_channels", 1), ("n_classes", 2), ("epochs", 1), ("batch_size", 1),
                          ("patience", 0), ("min_epochs", 0), ("pretrain_epochs", 0), ("min_class_cases", 2), ("num_workers", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise InputError(f"The '{name}' parameter of TrainSettings must be an int >= {low}. "
                                 f"Got {value!r} instead.")
        for name in ("lr", "weight_decay", "focal_gamma"):
            if not float(getattr(self, name)) >= 0 or (name == "lr" and not self.lr > 0):
                raise InputError(f"The '{name}' parameter of TrainSettings must be a number "
                                 f"{'> 0' if name == 'lr' else '>= 0'}. Got {getattr(self, name)!r} instead.")
        if not 0.0 <= float(self.label_smoothing) < 1.0:
            raise InputError(f"The 'label_smoothing' parameter of TrainSettings must be in [0, 1). "
                             f"Got {self.label_smoothing!r} instead.")
        if self.label_smoothing > 0 and self.loss == "focal":
            raise InputError("TrainSettings: label_smoothing works with loss 'weighted_ce' or 'ce', not 'focal'.")
        if self.pretrain_epochs and self.spatial_dims != 2:
            raise InputError("TrainSettings: rotation pre-training (pretrain_epochs) takes 2D images.")
        if not float(self.mixup) >= 0:
            raise InputError(f"The 'mixup' parameter of TrainSettings must be >= 0 (0: off). Got {self.mixup!r} instead.")
        if not 0.0 <= float(self.ema) < 1.0:
            raise InputError(f"The 'ema' parameter of TrainSettings must be in [0, 1). Got {self.ema!r} instead.")
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"The 'val_fraction' parameter of TrainSettings must be in (0, 1). "
                             f"Got {self.val_fraction!r} instead.")
        if self.num_threads is not None and (not isinstance(self.num_threads, int) or self.num_threads < 1):
            raise InputError(f"The 'num_threads' parameter of TrainSettings must be an int >= 1 or None. "
                             f"Got {self.num_threads!r} instead.")
        if isinstance(self.augment, Mapping):
            object.__setattr__(self, "augment", AugmentSettings(**self.augment))
        object.__setattr__(self, "arch_options", dict(self.arch_options))
        self._check_deeptepp(CLINICAL_ARCHS)

    def _check_deeptepp(self, clinical_archs: tuple[str, ...]) -> None:
        """The multi-view, jigsaw and clinical-fusion switches (seed 004)."""
        if not isinstance(self.multi_view, bool):
            raise InputError(f"The 'multi_view' parameter of TrainSettings must be true or false. "
                             f"Got {self.multi_view!r} instead.")
        jig = self.jigsaw
        if isinstance(jig, bool) or not isinstance(jig, (int, np.integer)) or jig < 0 or jig == 1:
            raise InputError(f"The 'jigsaw' parameter of TrainSettings must be 0 (off) or a grid of 2 or more blocks "
                             f"per side. Got {jig!r} instead.")
        if jig and self.image_size % jig:
            raise InputError(f"The 'jigsaw' parameter of TrainSettings must divide image_size={self.image_size} "
                             f"(blocks of equal size). Got {jig!r} instead.")
        columns = self.clinical_columns
        if isinstance(columns, str) or not all(isinstance(c, str) and c for c in columns):
            raise InputError(f"The 'clinical_columns' parameter of TrainSettings must be a list of column names. "
                             f"Got {columns!r} instead.")
        object.__setattr__(self, "clinical_columns", tuple(columns))
        if len(set(columns)) != len(columns):
            raise InputError(f"The 'clinical_columns' parameter of TrainSettings names a column twice: {list(columns)}.")
        if "n_clinical" in self.arch_options:
            raise InputError("TrainSettings: set the clinical inputs with clinical_columns, not arch_options.n_clinical.")
        if columns and self.arch not in clinical_archs:
            raise InputError(f"The 'clinical_columns' parameter of TrainSettings needs a network with a clinical input "
                             f"({', '.join(clinical_archs)}); arch '{self.arch}' has none.")
        if columns and self.pretrain_epochs:
            raise InputError("TrainSettings: rotation pre-training (pretrain_epochs) takes image-only networks; "
                             "it cannot be combined with clinical_columns.")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready; stored in checkpoints)."""
        out = asdict(self)
        out["augment"] = self.augment.to_dict()
        out["arch_options"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.arch_options.items()}
        out["clinical_columns"] = list(self.clinical_columns)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainSettings:
        """Inverse of :meth:`to_dict`; unknown keys are refused with the allowed ones."""
        allowed = {f.name for f in fields(cls)}
        bad = sorted(set(data) - allowed)
        if bad:
            raise InputError(f"Unknown training setting(s) {bad}. Allowed: {sorted(allowed)}."
                             f"{nearest(bad[0], allowed)}")
        data = dict(data)
        if isinstance(data.get("augment"), Mapping):
            data["augment"] = AugmentSettings(**data["augment"])
        return cls(**data)


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise InputError(f"The '{name}' parameter of TrainSettings must be one of "
                         f"{', '.join(repr(o) for o in options)}. Got {value!r} instead.{nearest(str(value), options)}")


@dataclass
class TrainResult:
    """One trained network and how it got there.

    Attributes
    ----------
    model : torch.nn.Module
        In eval mode on the CPU, with the weights of ``best_epoch``.
    best_epoch : int
        1-based epoch whose weights were kept.
    epochs_run : int
    history : DataFrame
        ``epoch, train_loss, val_loss, val_auc, lr, seconds`` per epoch.
    val_index : ndarray of int
        Rows of the training arrays held out as the inner validation split (empty without one).
    val_prob : ndarray of shape (len(val_index),) or (len(val_index), n_classes)
        The kept weights' predictions on those rows.
    class_weights : list of float
    device : str
    best_path, last_path : Path or None
        Checkpoints (None when no ``out_dir`` was given).
    stopped_early : bool
    notes : list of str
    views_added : int
        Multi-view inputs added to the inner training part to balance its classes (0 without ``multi_view``).
    clinical_scaling : dict or None
        ``columns``, ``median``, ``mean``, ``scale`` of a network with clinical fusion (fitted on the
        inner training part).
    """

    model: nn.Module
    best_epoch: int
    epochs_run: int
    history: pd.DataFrame
    val_index: np.ndarray
    val_prob: np.ndarray
    class_weights: list[float]
    device: str
    best_path: Path | None = None
    last_path: Path | None = None
    stopped_early: bool = False
    notes: list[str] = field(default_factory=list)
    views_added: int = 0
    clinical_scaling: dict[str, Any] | None = None


# --------------------------------------------------------------------------- losses, splits
def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency class weights ``n / (n_classes * n_c)`` (scikit-learn's "balanced")."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes).astype(float)
    return np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0.0)


def loss_function(settings: TrainSettings, weights: torch.Tensor
                  ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss ``(logits, labels) -> scalar`` of ``settings`` with class weights ``weights``.

    ``weighted_ce`` / ``ce``: (weighted) cross-entropy with ``settings.label_smoothing``;
    ``focal``: MONAI's focal loss with the class weights.
    """
    if settings.loss == "focal":
        from monai.losses import FocalLoss

        focal = FocalLoss(to_onehot_y=True, use_softmax=True, gamma=settings.focal_gamma, weight=weights)
        return lambda logits, y: focal(logits.float(), y[:, None])
    ce = nn.CrossEntropyLoss(weight=weights if settings.loss == "weighted_ce" else None,
                             label_smoothing=float(settings.label_smoothing))
    return lambda logits, y: ce(logits.float(), y)


def _inner_split(y: np.ndarray, groups: np.ndarray, settings: TrainSettings) -> tuple[np.ndarray, str | None]:
    """Boolean validation mask, or all-False with the reason there is none."""
    from her2dlr.cohort.splits import stratified_group_holdout

    counts = np.bincount(y, minlength=settings.n_classes)
    fewest = int(counts.min())
    if fewest < settings.min_class_cases:
        cls = int(counts.argmin())
        return np.zeros(len(y), dtype=bool), (
            f"only {fewest} case(s) of class {cls} (fewer than min_class_cases={settings.min_class_cases})")
    val = stratified_group_holdout(y, groups, settings.val_fraction, settings.seed)
    for part, name in ((val, "validation"), (~val, "training")):
        present = np.bincount(y[part], minlength=settings.n_classes)
        if (present == 0).any():
            return np.zeros(len(y), dtype=bool), f"the inner {name} split would miss class {int(np.argmin(present))}"
    return val, None


def _auc(y: np.ndarray, prob: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:
        return float("nan")
    if prob.ndim == 2 and prob.shape[1] == 2:
        return float(roc_auc_score(y, prob[:, 1]))
    return float(roc_auc_score(y, prob, multi_class="ovr"))


# --------------------------------------------------------------------------- checkpoints
def make_checkpoint(model: nn.Module, settings: TrainSettings, *, epoch: int, kind: str, optimizer: Any = None,
                    scheduler: Any = None, scaler: Any = None, state: dict[str, Any] | None = None,
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint dict of ``model`` (weights, arch, input size, channels, seed, epoch, optimizer state ...).

    Only tensors and plain Python types, so ``torch.load(weights_only=True)`` reads it.
    """
    import her2dlr

    config = model.config
    return {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "kind": kind,
        "arch": config["arch"], "image_size": config["image_size"], "in_channels": config["in_channels"],
        "n_classes": config["n_classes"], "spatial_dims": int(config.get("spatial_dims", 2)),
        "arch_options": checkpoint_safe(config.get("options", {})),
        "seed": settings.seed, "epoch": epoch,
        "model_state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "scheduler_state": scheduler.state_dict() if scheduler is not None else None,
        "scaler_state": scaler.state_dict() if scaler is not None else None,
        "settings": settings.to_dict(), "state": checkpoint_safe(state or {}), "extra": checkpoint_safe(dict(extra or {})),
        "versions": {"her2dlr": str(her2dlr.__version__), "torch": str(torch.__version__)},
    }


def save_checkpoint(payload: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a checkpoint dict atomically (temporary file, then rename); return the path."""
    from her2dlr.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a her2dlr checkpoint (safely: tensors and plain types only).

    Raises
    ------
    InputError
        Missing file, or a file that is not a her2dlr checkpoint.
    """
    path = Path(path)
    ckpt = read_checkpoint_file(path)
    if not isinstance(ckpt, Mapping) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a her2dlr network checkpoint (written by `her2dlr train deep`).")
    return dict(ckpt)


def model_from_checkpoint(checkpoint: str | os.PathLike[str] | Mapping[str, Any], *, arch: str | None = None,
                          image_size: int | None = None, in_channels: int | None = None,
                          spatial_dims: int | None = None) -> nn.Module:
    """Rebuild the network of a checkpoint with its weights, in eval mode on the CPU.

    Parameters
    ----------
    checkpoint : path or dict
    arch, image_size, in_channels, spatial_dims : optional
        When given, must match the checkpoint (else a clear error). A checkpoint without
        ``spatial_dims`` holds a 2D network.

    Raises
    ------
    InputError
        Not a checkpoint, or one of another arch / input size / channel count / dimensionality than asked.
    """
    ckpt = load_checkpoint(checkpoint) if not isinstance(checkpoint, Mapping) else dict(checkpoint)
    ckpt.setdefault("spatial_dims", 2)
    where = checkpoint if not isinstance(checkpoint, Mapping) else "the checkpoint"
    for key, want in (("arch", arch), ("image_size", image_size), ("in_channels", in_channels),
                      ("spatial_dims", spatial_dims)):
        if want is not None and ckpt.get(key) != want:
            raise InputError(f"{where} holds a network with {key}={ckpt.get(key)!r}, not {want!r} "
                             f"(arch {ckpt.get('arch')!r}, {ckpt.get('image_size')} px, "
                             f"{ckpt.get('in_channels')} channel(s)).")
    options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in dict(ckpt.get("arch_options") or {}).items()}
    model = build_network(ckpt["arch"], in_channels=ckpt["in_channels"], n_classes=ckpt["n_classes"],
                          image_size=ckpt["image_size"], spatial_dims=ckpt["spatial_dims"], **options)
    model.load_state_dict(ckpt["model_state"])
    return model.eval()


# --------------------------------------------------------------------------- prediction
def predict_proba(model: nn.Module, rois: np.ndarray | torch.Tensor, *, batch_size: int = 128,
                  device: str | torch.device = "cpu", amp: bool = True, flips: bool = False,
                  clinical: np.ndarray | torch.Tensor | None = None) -> np.ndarray:
    """Class probabilities of ROI arrays, shape (n_cases, n_classes) (softmax of the logits).

    The model is put in eval mode (and back into its former mode afterwards). ``flips``:
    test-time flips, the mean of the probabilities of each ROI and its left-right mirror
    (the last axis), see ``TrainSettings.tta_flips``. ``clinical``: the raw clinical values
    ``(n_cases, n_clinical)`` of a network with clinical fusion (NaN where missing).
    """
    device = torch.device(device) if not isinstance(device, torch.device) else device
    was_training = model.training
    model.eval()
    x_all = torch.as_tensor(rois, dtype=torch.float32)
    c_all = None if clinical is None else torch.as_tensor(np.asarray(clinical, dtype=np.float32))
    if c_all is not None and len(c_all) != len(x_all):
        raise InputError(f"predict_proba: {len(x_all)} ROIs but {len(c_all)} rows of clinical values.")
    out = []
    use_amp = amp and device.type == "cuda"
    try:
        with torch.inference_mode():
            for start in range(0, len(x_all), batch_size):
                x = x_all[start:start + batch_size].to(device, non_blocking=True)
                more = () if c_all is None else (c_all[start:start + batch_size].to(device),)
                with torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext():
                    prob = torch.softmax(model(x, *more).float(), dim=1)
                    if flips:
                        prob = (prob + torch.softmax(model(torch.flip(x, dims=(-1,)), *more).float(), dim=1)) / 2
                out.append(prob.cpu())
    finally:
        model.train(was_training)
    if not out:
        n_classes = int(getattr(model, "config", {}).get("n_classes", 2))
        return np.zeros((0, n_classes), dtype=np.float64)
    return torch.cat(out).numpy().astype(np.float64)


def _evaluate(model: nn.Module, rois: np.ndarray, y: np.ndarray, loss_fn: Callable[..., torch.Tensor],
              device: torch.device, settings: TrainSettings, dist_info: DistInfo,
              clinical: np.ndarray | None = None) -> tuple[float, float, np.ndarray]:
    """Validation loss, AUC and probabilities; with several processes each predicts a share and all gather them."""
    batch = max(settings.batch_size, 64)
    prob = gather_predictions(lambda rows: predict_proba(model, rois[rows], batch_size=batch, device=device,
                                                         amp=settings.amp, flips=settings.tta_flips,
                                                         clinical=None if clinical is None else clinical[rows]),
                              len(rois), dist_info)
    with torch.no_grad():
        logp = torch.log(torch.as_tensor(prob).clamp_min(1e-12)).float()
        loss = float(loss_fn(logp, torch.as_tensor(y, dtype=torch.long)))
    return loss, _auc(y, prob), prob


# --------------------------------------------------------------------------- training
def train_network(rois: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None, *,
                  settings: TrainSettings | None = None, out_dir: str | os.PathLike[str] | None = None,
                  resume: bool = False, extra: Mapping[str, Any] | None = None, name: str = "training",
                  callback: Callable[[dict[str, Any]], bool | None] | None = None,
                  clinical: np.ndarray | None = None) -> TrainResult:
    """Train one network on ROI arrays (one training fold), with early stopping on an inner split.

    Parameters
    ----------
    rois : ndarray of shape (n_cases, in_channels, image_size, image_size[, image_size])
        Prepared ROIs (:func:`her2dlr.deep.data.manifest_rois`); one more ``image_size`` axis
        for volumes (``settings.spatial_dims=3``).
    labels : ndarray of shape (n_cases,)
        Integer classes 0 .. n_classes - 1.
    groups : ndarray of shape (n_cases,), optional
        Patient or near-duplicate group; the inner split keeps groups whole (default: one per case).
    settings : TrainSettings
    out_dir : path, optional
        Folder for ``best.pt`` and ``last.pt`` (nothing written when None).
    resume : bool, default=False
        Continue from ``out_dir/last.pt`` when it exists (same arch, input, seed and cases).
    extra : mapping, optional
        Stored in the checkpoints (e.g. the ROI settings, the fold name).
    name : str
        Names the training set in messages and the progress bar.
    callback : callable, optional
        Called after every epoch with that epoch's history row; returning True stops the run
        after writing ``last.pt`` (it can be resumed).
    clinical : ndarray of shape (n_cases, len(settings.clinical_columns)), optional
        Raw clinical values (NaN where missing), needed when ``settings.clinical_columns`` is set
        (:func:`her2dlr.deep.data.manifest_clinical`).

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        Arrays of the wrong shape, labels outside 0 .. n_classes - 1 or of one class, a GPU
        asked for and absent, a checkpoint to resume from that belongs to another run.
    """
    settings = settings or TrainSettings()
    rois = np.asarray(rois, dtype=np.float32)
    y = np.asarray(labels)
    want = (settings.in_channels,) + (settings.image_size,) * settings.spatial_dims
    if rois.ndim != 1 + len(want) or tuple(rois.shape[1:]) != want:
        raise InputError(f"{name}: ROI arrays must have shape (n, {', '.join(map(str, want))}) for these "
                         f"settings; got {rois.shape}.")
    if len(y) != len(rois):
        raise InputError(f"{name}: {len(rois)} ROIs but {len(y)} labels.")
    if y.dtype.kind == "f" and (np.isnan(y).any() or not np.all(y == np.round(y))):
        raise InputError(f"{name}: labels must be whole class numbers without missing values.")
    y = y.astype(np.int64)
    if y.min(initial=0) < 0 or y.max(initial=0) >= settings.n_classes:
        raise InputError(f"{name}: labels must lie in 0 .. {settings.n_classes - 1}; got {sorted(set(y.tolist()))}.")
    present = np.bincount(y, minlength=settings.n_classes)
    if (present == 0).any():
        raise InputError(f"{name}: no case of class {int(np.argmin(present))} among {len(y)} training cases; "
                         "a network cannot learn from one class.")
    groups = np.arange(len(y)).astype(str) if groups is None else np.asarray(groups).astype(str)
    out = Path(out_dir) if out_dir is not None else None
    clinical = _check_clinical(clinical, settings, len(y), name)

    device = resolve_device(settings.device, allow_cpu_fallback=settings.allow_cpu_fallback)
    threads = settings.num_threads or default_threads(settings.num_workers)
    with process_group(settings.distributed, device) as dist_info:
        device = rank_device(device, dist_info)
        cuda_devices = [device.index or 0] if device.type == "cuda" else []
        with seeded(settings.seed, deterministic=settings.deterministic, devices=cuda_devices), torch_threads(threads):
            return _train(rois, y, groups, settings, out, resume, dict(extra or {}), name, callback, device,
                          dist_info, clinical)


def _check_clinical(clinical: np.ndarray | None, settings: TrainSettings, n: int, name: str) -> np.ndarray | None:
    """The clinical values as float64 (n, k), checked against ``settings.clinical_columns``."""
    columns = settings.clinical_columns
    if not columns:
        if clinical is not None:
            raise InputError(f"{name}: clinical values were given but the settings fuse none (clinical_columns).")
        return None
    if clinical is None:
        raise InputError(f"{name}: the network fuses clinical columns {list(columns)}; give their values.")
    values = np.asarray(clinical, dtype=np.float64)
    if values.shape != (n, len(columns)):
        raise InputError(f"{name}: clinical values must have shape ({n}, {len(columns)}) for columns {list(columns)}; "
                         f"got {values.shape}.")
    return values


@dataclass
class _Run:
    """What one training run works with: its data, settings, outputs, and where it runs."""

    rois: np.ndarray
    y: np.ndarray
    fit_idx: np.ndarray
    val_idx: np.ndarray
    settings: TrainSettings
    device: torch.device
    dist_info: DistInfo
    name: str
    notes: list[str]
    extra: dict[str, Any]
    best_path: Path | None
    last_path: Path | None
    clinical: np.ndarray | None = None
    # the inner training part the gradient steps see: fit_idx rows, then any multi-view inputs
    train_rois: np.ndarray | None = None
    train_y: np.ndarray | None = None
    train_clinical: np.ndarray | None = None
    views_added: int = 0

    @property
    def has_val(self) -> bool:
        return bool(len(self.val_idx))

    @property
    def is_main(self) -> bool:
        return self.dist_info.rank == 0


@dataclass
class _Fit:
    """What training updates: the network, its optimiser, schedule, gradient scaler and weight average."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    averaged: Any
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    loss_cpu: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    use_amp: bool
    net: nn.Module  # what the batches go through: the model, or its DistributedDataParallel wrapper

    @property
    def kept(self) -> nn.Module:
        """What is validated and kept: the moving average of the weights when there is one."""
        return self.averaged.module if self.averaged is not None else self.model


def _train(rois: np.ndarray, y: np.ndarray, groups: np.ndarray, settings: TrainSettings, out: Path | None,
           resume: bool, extra: dict[str, Any], name: str, callback: Callable[[dict[str, Any]], bool | None] | None,
           device: torch.device, dist_info: DistInfo, clinical: np.ndarray | None = None) -> TrainResult:
    """Setup, resume, the epoch loop, then the final selection (each a step below, in this order)."""
    run = _setup_run(rois, y, groups, settings, out, extra, name, device, dist_info, clinical)
    weights_np = class_weights(run.train_y, settings.n_classes)
    fit = _setup_fit(run, weights_np)
    state: dict[str, Any] = {"best_epoch": 0, "best_auc": -math.inf, "best_loss": math.inf, "bad_epochs": 0,
                             "finished": False, "stopped_early": False, "history": [], "n_cases": len(y),
                             "n_val": len(run.val_idx), "class_weights": weights_np.tolist()}
    start_epoch, best_state = _resume(run, fit, state, resume)
    if start_epoch == 0 and settings.pretrain_epochs:
        _pretrain(run, fit)
    fit.net = wrap_ddp(fit.model, run.dist_info, run.device)
    epoch, best_state = _epoch_loop(run, fit, state, start_epoch, best_state, callback)
    return _final_selection(run, fit, state, epoch, best_state, weights_np)


def _pretrain(run: _Run, fit: _Fit) -> None:
    """Rotation pre-training on the inner training part's ROIs (see ``TrainSettings.pretrain_epochs``)."""
    from her2dlr.deep.pretext import rotation_pretrain

    s = run.settings
    history = rotation_pretrain(fit.model, run.rois[run.fit_idx], epochs=s.pretrain_epochs, batch_size=s.batch_size,
                                lr=s.lr, weight_decay=s.weight_decay, seed=s.seed, device=run.device)
    run.notes.append(f"{run.name}: rotation pre-training, {s.pretrain_epochs} epoch(s) on the {len(run.fit_idx)} "
                     f"inner training images (pretext accuracy {history['pretext_accuracy'].iloc[-1]:.2f}).")


def _setup_run(rois: np.ndarray, y: np.ndarray, groups: np.ndarray, settings: TrainSettings, out: Path | None,
               extra: dict[str, Any], name: str, device: torch.device, dist_info: DistInfo,
               clinical: np.ndarray | None = None) -> _Run:
    """The inner validation split (or the warning that there is none), the training part (balanced with
    views when asked) and the checkpoint paths."""
    notes: list[str] = []
    val_mask, no_val = _inner_split(y, groups, settings)
    if no_val:
        message = (f"{name}: {no_val}; no inner validation split: training all {settings.epochs} epochs without "
                   "early stopping and keeping the last epoch's weights.")
        warnings.warn(message, FewCasesWarning, stacklevel=4)  # the caller of train_network
        notes.append(message)
    run = _Run(rois=rois, y=y, fit_idx=np.flatnonzero(~val_mask), val_idx=np.flatnonzero(val_mask),
               settings=settings, device=device, dist_info=dist_info, name=name, notes=notes,
               extra={**extra, "notes": notes}, best_path=out / "best.pt" if out is not None else None,
               last_path=out / "last.pt" if out is not None else None, clinical=clinical)
    _training_part(run)
    return run


def _training_part(run: _Run) -> None:
    """The inputs of the gradient steps: the inner training rows, plus multi-view inputs that balance them."""
    fit = run.fit_idx
    run.train_rois, run.train_y = run.rois[fit], run.y[fit]
    run.train_clinical = run.clinical[fit] if run.clinical is not None else None
    if not run.settings.multi_view:
        return
    from her2dlr.deep.deeptepp import balance_with_views, roi_views

    before = np.bincount(run.train_y, minlength=run.settings.n_classes)
    dims = run.settings.spatial_dims
    rois, labels, source = balance_with_views(list(run.train_rois), run.train_y.tolist(), seed=run.settings.seed,
                                              views=lambda r: roi_views(r, dims))
    run.train_rois = np.stack(rois).astype(np.float32, copy=False)
    run.train_y = np.asarray(labels, dtype=np.int64)
    if run.train_clinical is not None:  # a view keeps its case's clinical values
        run.train_clinical = run.train_clinical[np.asarray(source)]
    run.views_added = len(labels) - len(fit)
    after = np.bincount(run.train_y, minlength=run.settings.n_classes)
    run.extra["multi_view"] = {"views_added": run.views_added, "class_counts_before": before.tolist(),
                               "class_counts_after": after.tolist()}
    run.notes.append(f"{run.name}: multi-view balancing added {run.views_added} view(s) to the inner training part "
                     f"(classes {before.tolist()} -> {after.tolist()}).")


def _setup_fit(run: _Run, weights_np: np.ndarray) -> _Fit:
    """Network (initial weights drawn here), class-weighted loss, AdamW, schedule, AMP scaler, weight average."""
    settings, device = run.settings, run.device
    weights = torch.as_tensor(weights_np, dtype=torch.float32)
    options = dict(settings.arch_options)
    if settings.clinical_columns:
        options["n_clinical"] = len(settings.clinical_columns)
    model = build_network(settings.arch, in_channels=settings.in_channels, n_classes=settings.n_classes,
                          image_size=settings.image_size, spatial_dims=settings.spatial_dims, weights=settings.weights,
                          **options)
    if run.clinical is not None:  # fitted on the inner training rows only (views repeat their cases)
        from her2dlr.deep.deeptepp import clinical_scaling

        try:
            scaling = clinical_scaling(run.clinical[run.fit_idx])
        except InputError as exc:
            raise InputError(f"{run.name}: {exc} (columns {list(settings.clinical_columns)})") from None
        model.set_clinical_scaling(scaling)
        run.extra["clinical"] = {"columns": list(settings.clinical_columns), **scaling}
    model.to(device)
    loss_fn = loss_function(settings, weights.to(device))
    loss_cpu = loss_function(settings, weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler: Any = None
    if settings.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs,
                                                               eta_min=settings.lr * 0.01)
    elif settings.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max" if run.has_val else "min",
                                                               factor=0.5, patience=max(2, settings.patience // 3))
    use_amp = settings.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    averaged: Any = None
    if settings.ema > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(settings.ema), use_buffers=True)
    return _Fit(model, optimizer, scheduler, scaler, averaged, loss_fn, loss_cpu, use_amp, net=model)


def _resume(run: _Run, fit: _Fit, state: dict[str, Any], resume: bool) -> tuple[int, dict[str, Any] | None]:
    """Epochs already done and the best weights so far, from ``last.pt`` / ``best.pt`` when resuming."""
    start_epoch = 0
    last_path, best_path = run.last_path, run.best_path
    if resume and last_path is not None and last_path.is_file():
        ckpt = load_checkpoint(last_path)
        _check_resumable(ckpt, run.settings, state, last_path)
        fit.model.load_state_dict(ckpt["model_state"])
        fit.optimizer.load_state_dict(ckpt["optimizer_state"])
        if fit.scheduler is not None and ckpt.get("scheduler_state"):
            fit.scheduler.load_state_dict(ckpt["scheduler_state"])
        if fit.scaler is not None and ckpt.get("scaler_state"):
            fit.scaler.load_state_dict(ckpt["scaler_state"])
        if fit.averaged is not None and ckpt.get("ema_state"):
            fit.averaged.load_state_dict(ckpt["ema_state"])
        state.update(ckpt["state"])
        start_epoch = int(ckpt["epoch"])
        log.info("%s: resuming after epoch %d from %s", run.name, start_epoch, last_path)
    best_state = None
    if best_path is not None and best_path.is_file() and start_epoch > 0:
        best_state = load_checkpoint(best_path)["model_state"]
    return start_epoch, best_state


def _epoch_loop(run: _Run, fit: _Fit, state: dict[str, Any], start_epoch: int, best_state: dict[str, Any] | None,
                callback: Callable[[dict[str, Any]], bool | None] | None) -> tuple[int, dict[str, Any] | None]:
    """Train epoch after epoch until the schedule ends, early stopping, or the callback; return the last epoch."""
    settings = run.settings
    augment = Augment(settings.image_size, settings.augment, seed=settings.seed, spatial_dims=settings.spatial_dims)
    collate = AugmentCollate(augment, jigsaw=settings.jigsaw, spatial_dims=settings.spatial_dims, seed=settings.seed)
    dataset = RoiDataset(run.train_rois, run.train_y, run.train_clinical)
    bar: Any = None
    if settings.progress and run.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=settings.epochs, initial=start_epoch, desc=f"{settings.arch} {run.name}", unit="epoch",
                   leave=False)
    epoch = start_epoch
    try:
        while epoch < settings.epochs and not state["finished"]:
            t0 = time.perf_counter()
            loader = _epoch_loader(run, dataset, augment, collate, epoch)
            train_loss = _train_epoch(run, fit, loader)
            sync_buffers(fit.model, run.dist_info)  # each process updated the batch-norm statistics on its shard
            if fit.averaged is not None:
                sync_buffers(fit.averaged, run.dist_info)
            epoch += 1
            row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "val_loss": float("nan"),
                                   "val_auc": float("nan"), "lr": float(fit.optimizer.param_groups[0]["lr"])}
            improved = _validate(run, fit, state, row)
            _step_scheduler(fit.scheduler, row, run.has_val)
            if improved:
                best_state = {k: v.detach().cpu().clone() for k, v in fit.kept.state_dict().items()}
            _record_epoch(run, state, row, improved, t0)
            interrupted = bool(callback(dict(row))) if callback is not None else False
            interrupted = bool(broadcast_floats([interrupted], run.dist_info)[0])  # rank 0's word stops all
            if run.is_main:
                _save_checkpoints(run, fit, state, epoch, improved)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['train_loss']:.3f}",
                                val_auc="-" if math.isnan(row["val_auc"]) else f"{row['val_auc']:.3f}",
                                best=state["best_epoch"])
            if interrupted:
                break
    finally:
        if bar is not None:
            bar.close()
    return epoch, best_state


def _epoch_loader(run: _Run, dataset: RoiDataset, augment: Augment, collate: AugmentCollate, epoch: int
                  ) -> DataLoader:
    """Reseed dropout, NumPy and the augmentation from the seed and the epoch, and make the epoch's loader.

    Each process of a distributed run draws its own augmentations (rank 0 those of a one-process run).
    """
    settings = run.settings
    epoch_seed = (settings.seed * 1_000_003 + epoch + 7919 * run.dist_info.rank) % (2**32)
    torch.manual_seed(epoch_seed)  # dropout; a resumed run draws what the uninterrupted one drew
    np.random.seed(epoch_seed)
    augment.set_random_state(epoch_seed)
    collate.set_random_state(epoch_seed)
    return _loader(dataset, settings, collate, epoch_seed, run.dist_info, epoch)


def _train_epoch(run: _Run, fit: _Fit, loader: DataLoader) -> float:
    """One pass over the training cases; the mean training loss."""
    fit.net.train()
    total, count = 0.0, 0
    # mixup's draws come from the epoch-seeded global NumPy state (a resumed run draws the same)
    mix_rng = np.random.default_rng(np.random.randint(2**31)) if run.settings.mixup > 0 else None
    for xb, yb, *clin in loader:
        xb, yb = xb.to(run.device, non_blocking=True), yb.to(run.device, non_blocking=True)
        fit.optimizer.zero_grad(set_to_none=True)
        mixed = mixup_batch(xb, yb, run.settings.mixup, mix_rng) if mix_rng is not None else None
        more: tuple[torch.Tensor, ...] = ()
        if clin:  # raw values: impute where missing before mixing, so mixup never meets a NaN
            cb = clin[0].to(run.device)
            cb = torch.where(torch.isnan(cb), fit.model.clinical_median.to(cb.dtype), cb)
            more = (mixed.lam * cb + (1 - mixed.lam) * cb[mixed.perm],) if mixed is not None else (cb,)
        with torch.autocast("cuda", dtype=torch.float16) if fit.use_amp else nullcontext():
            logits = fit.net(mixed.x if mixed is not None else xb, *more)
        if mixed is not None:
            loss = mixed.lam * fit.loss_fn(logits, mixed.y_a) + (1 - mixed.lam) * fit.loss_fn(logits, mixed.y_b)
        else:
            loss = fit.loss_fn(logits, yb)
        if fit.scaler is not None:
            fit.scaler.scale(loss).backward()
            fit.scaler.step(fit.optimizer)
            fit.scaler.update()
        else:
            loss.backward()
            fit.optimizer.step()
        if fit.averaged is not None:
            fit.averaged.update_parameters(fit.model)
        total += float(loss.detach()) * len(yb)
        count += len(yb)
    return mean_over_ranks(total, count, run.dist_info)


@dataclass(frozen=True)
class MixedBatch:
    """A mixup batch: ``x = lam * x_a + (1 - lam) * x_b`` with the labels of both parts."""

    x: torch.Tensor
    y_a: torch.Tensor
    y_b: torch.Tensor
    lam: float
    perm: torch.Tensor


def mixup_batch(x: torch.Tensor, y: torch.Tensor, alpha: float, rng: np.random.Generator) -> MixedBatch:
    """Mix a batch with a shuffled copy of itself (mixup, Zhang et al. 2018).

    Parameters
    ----------
    x : Tensor of shape (n, ...)
    y : Tensor of shape (n,)
    alpha : float
        ``lam ~ Beta(alpha, alpha)``, one draw for the batch.
    rng : numpy Generator
        Draws ``lam`` and the pairing permutation.

    Returns
    -------
    MixedBatch
        ``x = lam * x + (1 - lam) * x[perm]``, ``y_a = y``, ``y_b = y[perm]``.
    """
    if not alpha > 0:
        raise InputError(f"mixup_batch: alpha must be > 0. Got {alpha!r} instead.")
    lam = float(rng.beta(alpha, alpha))
    perm = torch.as_tensor(rng.permutation(len(x)), dtype=torch.long, device=x.device)
    return MixedBatch(lam * x + (1.0 - lam) * x[perm], y, y[perm], lam, perm)


def _validate(run: _Run, fit: _Fit, state: dict[str, Any], row: dict[str, Any]) -> bool:
    """Score the validation split into ``row``; whether this epoch's weights are the ones to keep.

    Better: a higher AUC, or the same AUC with a lower loss. Without a validation split, or
    with ``keep="last"``, every epoch replaces the one before.
    """
    improved = True  # no validation: the latest epoch is the one kept
    if run.has_val:
        v_loss, v_auc, _ = _evaluate(fit.kept, run.rois[run.val_idx], run.y[run.val_idx], fit.loss_cpu, run.device,
                                     run.settings, run.dist_info,
                                     run.clinical[run.val_idx] if run.clinical is not None else None)
        v_loss, v_auc = broadcast_floats([v_loss, v_auc], run.dist_info)
        row.update(val_loss=v_loss, val_auc=v_auc)
        better_auc = v_auc > state["best_auc"] + 1e-9
        tie = abs(v_auc - state["best_auc"]) <= 1e-9 and v_loss < state["best_loss"]
        improved = bool(better_auc or tie)
    return improved or run.settings.keep == "last"


def _step_scheduler(scheduler: Any, row: dict[str, Any], has_val: bool) -> None:
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(row["val_auc"] if has_val else row["train_loss"])
    else:
        scheduler.step()


def _record_epoch(run: _Run, state: dict[str, Any], row: dict[str, Any], improved: bool, t0: float) -> None:
    """Best epoch, patience count, history and the early-stopping decision, in ``state``."""
    settings, epoch = run.settings, row["epoch"]
    if improved:
        state.update(best_epoch=epoch, bad_epochs=0)
        if run.has_val:
            state.update(best_auc=row["val_auc"], best_loss=row["val_loss"])
    else:
        state["bad_epochs"] += 1
    row["seconds"] = time.perf_counter() - t0
    state["history"].append(row)
    if (run.has_val and settings.patience and settings.keep == "best"
            and state["bad_epochs"] >= settings.patience and epoch >= settings.min_epochs):
        state["finished"] = True
        state["stopped_early"] = True
    if epoch >= settings.epochs:
        state["finished"] = True


def _save_checkpoints(run: _Run, fit: _Fit, state: dict[str, Any], epoch: int, improved: bool) -> None:
    """``best.pt`` when the kept weights changed, and ``last.pt`` (everything needed to go on) every epoch."""
    if run.best_path is None or run.last_path is None:
        return
    settings = run.settings
    if improved:
        save_checkpoint(make_checkpoint(fit.kept, settings, epoch=epoch, kind="best", state=state, extra=run.extra),
                        run.best_path)
    last = make_checkpoint(fit.model, settings, epoch=epoch, kind="last", optimizer=fit.optimizer,
                           scheduler=fit.scheduler, scaler=fit.scaler, state=state, extra=run.extra)
    if fit.averaged is not None:  # last.pt: training weights to go on from, and their average
        last["ema_state"] = fit.averaged.state_dict()
    save_checkpoint(last, run.last_path)


def _final_selection(run: _Run, fit: _Fit, state: dict[str, Any], epoch: int, best_state: dict[str, Any] | None,
                     weights_np: np.ndarray) -> TrainResult:
    """The kept weights on the CPU in eval mode, their validation predictions, and the run's record."""
    model = fit.model
    if best_state is not None:
        model.load_state_dict(best_state)
    model.to("cpu").eval()
    val_prob = (predict_proba(model, run.rois[run.val_idx], batch_size=128, flips=run.settings.tta_flips,
                              clinical=run.clinical[run.val_idx] if run.clinical is not None else None)
                if run.has_val
                else np.zeros((0, run.settings.n_classes)))
    stopped_early = bool(state.get("stopped_early", False))
    if stopped_early:
        run.notes.append(f"{run.name}: stopped early after epoch {epoch} (best epoch {state['best_epoch']}).")
    best_path, last_path = run.best_path, run.last_path
    return TrainResult(
        model=model, best_epoch=int(state["best_epoch"]), epochs_run=epoch,
        history=pd.DataFrame(state["history"], columns=["epoch", "train_loss", "val_loss", "val_auc", "lr",
                                                         "seconds"]),
        val_index=run.val_idx, val_prob=val_prob, class_weights=weights_np.tolist(), device=str(run.device),
        best_path=best_path if best_path is not None and best_path.is_file() else None,
        last_path=last_path if last_path is not None and last_path.is_file() else None,
        stopped_early=stopped_early, notes=run.notes, views_added=run.views_added,
        clinical_scaling=run.extra.get("clinical"),
    )


def _loader(dataset: RoiDataset, settings: TrainSettings, collate: AugmentCollate, seed: int, dist_info: DistInfo,
            epoch: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    sampler = shard_sampler(dataset, dist_info, seed=settings.seed, epoch=epoch)
    n = shard_length(len(dataset), dist_info)  # a last batch of one case would break batch norm
    return DataLoader(dataset, batch_size=settings.batch_size, shuffle=sampler is None, sampler=sampler,
                      collate_fn=collate, num_workers=settings.num_workers, generator=generator,
                      worker_init_fn=_seed_worker if settings.num_workers else None,
                      drop_last=n > settings.batch_size and n % settings.batch_size == 1)


def _seed_worker(worker_id: int) -> None:
    """Seed a DataLoader worker from its torch seed (itself drawn from the epoch's generator)."""
    seed = torch.initial_seed() % (2**32)
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)


def _check_resumable(ckpt: Mapping[str, Any], settings: TrainSettings, state: dict[str, Any], path: Path) -> None:
    saved = ckpt.get("settings", {})
    saved = {"spatial_dims": 2, **saved}  # checkpoints from before 3D networks are 2D
    for key in ("arch", "image_size", "in_channels", "spatial_dims", "n_classes", "seed", "batch_size", "lr", "loss",
                "scheduler", "val_fraction"):
        if saved.get(key) != getattr(settings, key):
            raise InputError(f"Cannot resume from {path}: it was trained with {key}={saved.get(key)!r}, these "
                             f"settings have {getattr(settings, key)!r}. Use another output folder or the same "
                             "settings.")
    defaults = TrainSettings.__dataclass_fields__
    for key in ("mixup", "label_smoothing", "ema", "tta_flips", "pretrain_epochs", "multi_view", "jigsaw",
                "clinical_columns"):  # absent from older checkpoints
        now = list(settings.clinical_columns) if key == "clinical_columns" else getattr(settings, key)
        if saved.get(key, [] if key == "clinical_columns" else defaults[key].default) != now:
            raise InputError(f"Cannot resume from {path}: it was trained with {key}="
                             f"{saved.get(key, defaults[key].default)!r}, these settings have "
                             f"{getattr(settings, key)!r}. Use another output folder or the same settings.")
    if saved.get("epochs") != settings.epochs and settings.scheduler == "cosine":
        raise InputError(f"Cannot resume from {path} with epochs={settings.epochs}: it was trained for "
                         f"epochs={saved.get('epochs')} and the cosine schedule depends on it.")
    old = ckpt.get("state", {})
    for key in ("n_cases", "n_val"):
        if old.get(key) != state[key]:
            raise InputError(f"Cannot resume from {path}: it was trained on {old.get(key)} cases ({key}), "
                             f"this training set gives {state[key]}.")

