"""Training one segmentation network: inner validation by group, early stopping on Dice, checkpoints.

:func:`train_segmenter` takes prepared inputs ``X`` ``(n, C, *size)`` and masks ``Y`` ``(n, *size)``
(:func:`her2dlr.segment.data.load_seg_pairs`) and

1. drops training cases whose mask is empty (counted in the notes);
2. holds out an inner validation split that keeps groups (patients, near-duplicates) whole;
3. trains with MONAI's Dice + cross-entropy loss (``DiceCELoss``), AdamW and a cosine schedule,
   augmenting image and mask together (:mod:`her2dlr.segment.augment`);
4. after every epoch scores the validation split (loss, mean per-case Dice of the thresholded
   output), keeps the weights of the best Dice (ties: the lower loss), writes ``best.pt`` /
   ``last.pt`` when an output folder is given, and stops when the Dice has not improved for
   ``patience`` epochs.

Fewer than ``min_val_cases`` validation cases (a small training set): no early stopping, all
``epochs`` are trained and the last weights kept (said in the notes).

Reproducibility: the seed fixes the initial weights, the split, and - reseeded every epoch from
the seed and the epoch number - shuffling, dropout and augmentation; deterministic algorithms are
switched on for the run and every global state is restored afterwards. Same seed and thread count
on the CPU: the same weights. Devices: CUDA with mixed precision (``amp``) when present, else the CPU.

Several processes or GPUs (``distributed``, launched by ``torchrun``): each process trains on its
shard of every epoch with DistributedDataParallel, segments a share of the validation split and
gathers the rest, takes rank 0's Dice for early stopping, and only rank 0 writes checkpoints
(:mod:`her2dlr.imaging.distributed`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from her2dlr.errors import InputError
from her2dlr.imaging.distributed import (
    DistInfo,
    broadcast_floats,
    gather_predictions,
    mean_over_ranks,
    process_group,
    rank_device,
    shard_sampler,
    sync_buffers,
    wrap_ddp,
)
from her2dlr.imaging.torchutil import checkpoint_safe, default_threads, resolve_device, seeded, torch_threads
from her2dlr.segment.augment import AugmentBatch, PairDataset, SegAugment, SegAugmentSettings
from her2dlr.segment.checkpoints import load_segmenter, save_segmenter
from her2dlr.segment.data import SegSpec
from her2dlr.segment.networks import build_seg_network
from her2dlr.segment.postprocess import dice_score
from her2dlr.segment.train_settings import SegTrainSettings

__all__ = [
    "SegAugmentSettings",
    "SegTrainResult",
    "SegTrainSettings",
    "load_segmenter",
    "save_segmenter",
    "train_segmenter",
]


@dataclass
class SegTrainResult:
    """One trained segmentation network and how it got there.

    Attributes
    ----------
    model : SegNetwork
        In eval mode on the CPU, with the weights of ``best_epoch``.
    history : DataFrame
        ``epoch, train_loss, val_loss, val_dice, seconds, lr`` per epoch.
    best_epoch : int
        1-based epoch whose weights were kept.
    val_dice : float
        Mean validation Dice of the kept weights (NaN without a validation split).
    notes : list of str
    checkpoint : Path or None
        ``best.pt`` (None without ``out_dir``).
    val_index : ndarray of int
        Rows of ``X`` held out for validation.
    device : str
    """

    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    val_dice: float
    notes: list[str] = field(default_factory=list)
    checkpoint: Path | None = None
    val_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    device: str = "cpu"


def _check_arrays(X: Any, Y: Any, settings: SegTrainSettings) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float32)
    Y = np.asarray(Y)
    size = (settings.image_size,) * settings.spatial_dims
    if X.ndim != 2 + settings.spatial_dims or tuple(X.shape[2:]) != size:
        raise InputError(f"Segmentation inputs must have shape (n, C, {', '.join(map(str, size))}) for these "
                         f"settings; got {X.shape}.")
    if Y.shape != (len(X), *size):
        raise InputError(f"Masks must have shape ({len(X)}, {', '.join(map(str, size))}); got {Y.shape}.")
    if X.shape[1] < 1 + int(settings.box_prompt):
        raise InputError(f"Box-prompted inputs need an image channel and a prompt channel; got {X.shape[1]}.")
    return X, (Y > 0).astype(np.int64)


def _inner_split(groups: np.ndarray, settings: SegTrainSettings) -> tuple[np.ndarray, str | None]:
    """Boolean validation mask, or all-False with the reason there is none."""
    from her2dlr.cohort.splits import stratified_group_holdout

    n = len(groups)
    if n < 2 * settings.min_val_cases:
        return np.zeros(n, bool), f"only {n} training case(s) with a lesion (fewer than 2 x min_val_cases)"
    fraction = max(settings.val_fraction, settings.min_val_cases / n)
    val = stratified_group_holdout(np.zeros(n, dtype=int), groups, fraction, settings.seed)
    if val.sum() < settings.min_val_cases or (~val).sum() < settings.min_val_cases:
        return np.zeros(n, bool), f"the groups allow no validation split of >= {settings.min_val_cases} cases"
    return val, None


def train_segmenter(X: np.ndarray, Y: np.ndarray, groups: np.ndarray | None = None, *,
                    settings: SegTrainSettings | None = None, out_dir: str | os.PathLike[str] | None = None,
                    spec: SegSpec | None = None, resume: bool = False,
                    callback: Callable[[dict[str, Any]], bool | None] | None = None) -> SegTrainResult:
    """Train a segmentation network with early stopping on the Dice of an inner validation split.

    Parameters
    ----------
    X : ndarray of shape (n_cases, C, image_size, image_size[, image_size])
        Inputs from :func:`her2dlr.segment.data.prepare_seg_input` (last channel: the box prompt
        with ``box_prompt``).
    Y : ndarray of shape (n_cases, image_size, image_size[, image_size])
        Masks (non-zero is lesion).
    groups : ndarray of shape (n_cases,), optional
        Patient or near-duplicate group; the inner split keeps groups whole (default: one per case).
    settings : SegTrainSettings, default=SegTrainSettings()
    out_dir : path, optional
        Folder for ``best.pt`` and ``last.pt``.
    spec : SegSpec, optional
        Stored in the checkpoints (default: made from the settings and the channel count of ``X``).
    resume : bool, default=False
        Continue from ``out_dir/resume.pt`` (written after every epoch with the optimiser, schedule
        and early-stopping state): the result equals that of an uninterrupted run. A finished
        training is not repeated. Without the file, training starts afresh.
    callback : callable, optional
        Called with each epoch's history row after its checkpoints are written; returning True
        stops training there (what an interruption leaves behind).

    Returns
    -------
    SegTrainResult

    Raises
    ------
    InputError
        Arrays of the wrong shape, no mask with a lesion, a GPU asked for and absent, a
        ``resume.pt`` written with other settings or cases.
    """
    settings = settings or SegTrainSettings()
    X, Y = _check_arrays(X, Y, settings)
    groups = np.arange(len(X)).astype(str) if groups is None else np.asarray(groups).astype(str)
    if len(groups) != len(X):
        raise InputError(f"{len(X)} inputs but {len(groups)} groups.")
    spec = spec or SegSpec(size=settings.image_size, spatial_dims=settings.spatial_dims,
                           box_prompt=settings.box_prompt, channels=X.shape[1] - int(settings.box_prompt))
    notes: list[str] = []
    lesion = Y.reshape(len(Y), -1).any(axis=1)
    if not lesion.any():
        raise InputError(f"All {len(Y)} training masks are empty: a segmentation network needs lesions to learn.")
    if not lesion.all():
        notes.append(f"{int((~lesion).sum())} training case(s) with an empty mask excluded.")
    X, Y, groups = X[lesion], Y[lesion], groups[lesion]
    device = resolve_device(settings.device)
    threads = settings.num_threads or default_threads(settings.num_workers)
    out = Path(out_dir) if out_dir is not None else None
    with process_group(settings.distributed, device) as dist_info:
        device = rank_device(device, dist_info)
        with (seeded(settings.seed, devices=[device.index or 0] if device.type == "cuda" else []),
              torch_threads(threads)):
            val, why = _inner_split(groups, settings)
            if why:
                notes.append(f"{why}: no inner validation split; all {settings.epochs} epochs trained and the last "
                             "weights kept.")
            run = _Run(X, Y, np.flatnonzero(~val), np.flatnonzero(val), settings, spec, device, out, notes,
                       dist_info, resume=resume, callback=callback)
            result = _fit(run)
    result.val_index = np.flatnonzero(lesion)[run.val_idx]
    return result


@dataclass
class _Run:
    """What one training run works with."""

    X: np.ndarray
    Y: np.ndarray
    fit_idx: np.ndarray
    val_idx: np.ndarray
    settings: SegTrainSettings
    spec: SegSpec
    device: torch.device
    out: Path | None
    notes: list[str]
    dist_info: DistInfo = field(default_factory=DistInfo)
    resume: bool = False
    callback: Callable[[dict[str, Any]], bool | None] | None = None

    def fingerprint(self) -> str:
        """What a resumed run must share with the interrupted one: the settings that shape the
        training (not threads, workers, device or progress) and the cases."""
        skip = ("progress", "num_threads", "num_workers", "device", "distributed")
        kept = {k: v for k, v in checkpoint_safe(self.settings).items() if k not in skip}
        digest = hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode())
        for arr in (self.X, self.Y, self.fit_idx, self.val_idx):
            digest.update(np.ascontiguousarray(arr).tobytes())
        return digest.hexdigest()


def _fit(run: _Run) -> SegTrainResult:
    """Network, loss, optimiser and schedule; the epoch loop; the kept weights on the CPU."""
    from monai.losses import DiceCELoss

    s, device = run.settings, run.device
    model = build_seg_network(s.arch, spatial_dims=s.spatial_dims, in_channels=run.X.shape[1], features=s.features)
    if s.image_size % model.size_multiple:
        raise InputError(f"image_size {s.image_size} is not a multiple of {model.size_multiple}, which {s.arch} with "
                         f"{len(model.config['features'])} levels needs.")
    model.to(device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=s.epochs, eta_min=s.lr * 0.01)
    use_amp = s.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    net = wrap_ddp(model, run.dist_info, device)  # what the training batches go through
    augment = SegAugment(s.image_size, s.augment, seed=s.seed, spatial_dims=s.spatial_dims,
                         image_channels=run.spec.channels)
    collate = AugmentBatch(augment, s.seed)
    dataset = PairDataset(run.X[run.fit_idx], run.Y[run.fit_idx])
    has_val = len(run.val_idx) > 0
    best: dict[str, Any] = {"dice": -math.inf, "loss": math.inf, "epoch": 0, "bad": 0, "done": False}
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = []
    fingerprint = run.fingerprint()
    start = 0
    if run.resume:
        start, best_state = _restore(run, fingerprint, model, optimizer, scheduler, scaler, best, history)
    bar = _bar(s) if run.dist_info.is_main else None
    try:
        for epoch in range(start + 1, s.epochs + 1):
            if best["done"]:
                break
            t0 = time.perf_counter()
            row: dict[str, Any] = {"epoch": epoch, "lr": float(optimizer.param_groups[0]["lr"])}
            loader = _loader(dataset, collate, augment, s, epoch, run.dist_info)
            row["train_loss"] = _train_epoch(net, loader, optimizer, loss_fn, scaler, device, run.dist_info)
            sync_buffers(model, run.dist_info)
            scheduler.step()
            row["val_loss"], row["val_dice"] = (_validate(model, run, loss_fn) if has_val
                                                else (float("nan"), float("nan")))
            row["val_loss"], row["val_dice"] = broadcast_floats([row["val_loss"], row["val_dice"]], run.dist_info)
            improved = (not has_val or row["val_dice"] > best["dice"] + 1e-9
                        or (abs(row["val_dice"] - best["dice"]) <= 1e-9 and row["val_loss"] < best["loss"]))
            if improved:
                best.update(dice=row["val_dice"], loss=row["val_loss"], epoch=epoch, bad=0)
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                best["bad"] += 1
            row["seconds"] = time.perf_counter() - t0
            history.append(row)
            if has_val and s.patience and best["bad"] >= s.patience:
                run.notes.append(f"Stopped early after epoch {epoch} (best epoch {best['epoch']}).")
                best["done"] = True
            if run.dist_info.is_main:
                _save(run, model, epoch, improved, row)
                _save_resume(run, fingerprint, epoch, model, optimizer, scheduler, scaler, best, history)
            if bar is not None:
                bar.set_postfix(loss=f"{row['train_loss']:.3f}", dice="-" if not has_val else f"{row['val_dice']:.3f}",
                                best=best["epoch"], refresh=False)
                bar.update(1)
            stop = run.callback(dict(row)) if run.callback is not None else None
            stop = bool(broadcast_floats([float(bool(stop))], run.dist_info)[0])
            if best["done"] or stop:
                break
    finally:
        if bar is not None:
            bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.to("cpu").eval()
    ckpt = run.out / "best.pt" if run.out is not None else None
    columns = ["epoch", "train_loss", "val_loss", "val_dice", "seconds", "lr"]
    return SegTrainResult(model=model, history=pd.DataFrame(history, columns=columns), best_epoch=int(best["epoch"]),
                          val_dice=float(best["dice"]) if has_val else float("nan"), notes=run.notes,
                          checkpoint=ckpt if ckpt is not None and ckpt.is_file() else None, device=str(device))


def _bar(settings: SegTrainSettings) -> Any:
    if not settings.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=settings.epochs, desc=f"segmentation {settings.arch}", unit="epoch", leave=False)


def _loader(dataset: PairDataset, collate: AugmentBatch, augment: SegAugment, settings: SegTrainSettings,
            epoch: int, dist_info: DistInfo) -> DataLoader:
    """Reseed dropout and augmentation from the seed and the epoch; the epoch's shuffled loader (or shard).

    Each process of a distributed run draws its own augmentations (rank 0 those of a one-process run).
    """
    epoch_seed = (settings.seed * 1_000_003 + epoch + 7919 * dist_info.rank) % (2**32)
    torch.manual_seed(epoch_seed)
    augment.set_random_state(epoch_seed)
    collate.seed, collate.worker = epoch_seed, None
    sampler = shard_sampler(dataset, dist_info, seed=settings.seed, epoch=epoch)
    return DataLoader(dataset, batch_size=settings.batch_size, shuffle=sampler is None, sampler=sampler,
                      collate_fn=collate, num_workers=settings.num_workers,
                      generator=torch.Generator().manual_seed(epoch_seed))


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, loss_fn: Any, scaler: Any,
                 device: torch.device, dist_info: DistInfo) -> float:
    """One pass over the training cases; the mean training loss (over all processes' shards)."""
    model.train()
    total, count = 0.0, 0
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16) if scaler is not None else nullcontext():
            logits = model(xb)
        loss = loss_fn(logits.float(), yb[:, None])
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        total += float(loss.detach()) * len(xb)
        count += len(xb)
    return mean_over_ranks(total, count, dist_info)


def _validate(model: nn.Module, run: _Run, loss_fn: Any) -> tuple[float, float]:
    """Validation loss and mean per-case Dice of the thresholded lesion probability."""
    from her2dlr.segment.infer import predict_lesion_prob

    s = run.settings
    X = run.X[run.val_idx]
    prob = gather_predictions(lambda rows: predict_lesion_prob(model, X[rows], batch_size=s.batch_size,
                                                               device=run.device, amp=s.amp), len(X), run.dist_info)
    truth = run.Y[run.val_idx]
    with torch.no_grad():
        p = torch.from_numpy(prob).clamp(1e-6, 1 - 1e-6)[:, None]
        loss = float(loss_fn(torch.log(torch.cat([1 - p, p], dim=1)), torch.from_numpy(truth)[:, None]))
    dice = float(np.mean([dice_score(pr >= 0.5, t) for pr, t in zip(prob, truth)]))
    return loss, dice


RESUME = "resume.pt"
_RESUME_FORMAT = "her2dlr-segmentation-resume-1"


def _save_resume(run: _Run, fingerprint: str, epoch: int, model: nn.Module, optimizer: Any, scheduler: Any,
                 scaler: Any, best: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Everything a later ``resume=True`` needs to continue after ``epoch`` as if never stopped."""
    if run.out is None:
        return
    from her2dlr.io.atomic import atomic_path

    payload = {"format": _RESUME_FORMAT, "fingerprint": fingerprint, "epoch": epoch,
               "model_state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
               "optimizer_state": optimizer.state_dict(), "scheduler_state": scheduler.state_dict(),
               "scaler_state": scaler.state_dict() if scaler is not None else None,
               "best": dict(best), "history": list(history), "notes": list(run.notes)}
    with atomic_path(run.out / RESUME) as tmp:
        torch.save(payload, tmp)


def _restore(run: _Run, fingerprint: str, model: nn.Module, optimizer: Any, scheduler: Any, scaler: Any,
             best: dict[str, Any], history: list[dict[str, Any]]) -> tuple[int, dict[str, torch.Tensor] | None]:
    """Load ``resume.pt`` into the training objects; the last epoch done and the kept weights so far."""
    path = run.out / RESUME if run.out is not None else None
    if path is None or not path.is_file():
        return 0, None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a torn or foreign file: say which, never continue from it silently
        raise InputError(f"Cannot resume from {path}: {type(exc).__name__}. Delete it to train afresh.") from None
    if not isinstance(state, dict) or state.get("format") != _RESUME_FORMAT:
        raise InputError(f"{path} is not a segmentation training state. Delete it to train afresh.")
    if state["fingerprint"] != fingerprint:
        raise InputError(f"{path} was written with other training settings or cases than this run's; resuming would "
                         "mix two trainings. Delete it (or the fold folder) to train afresh.")
    model.load_state_dict(state["model_state"])
    optimizer.load_state_dict(state["optimizer_state"])
    scheduler.load_state_dict(state["scheduler_state"])
    if scaler is not None and state.get("scaler_state"):
        scaler.load_state_dict(state["scaler_state"])
    best.update(state["best"])
    history.extend(state["history"])
    run.notes[:] = list(dict.fromkeys([*state["notes"], *run.notes]))
    best_path = run.out / "best.pt"
    best_state = load_segmenter(best_path)[0].state_dict() if best_path.is_file() and best["epoch"] else None
    return int(state["epoch"]), best_state


def _save(run: _Run, model: nn.Module, epoch: int, improved: bool, row: dict[str, Any]) -> None:
    """``best.pt`` when the kept weights changed, ``last.pt`` every epoch."""
    if run.out is None:
        return
    info = {"epoch": epoch, "val_dice": row["val_dice"], "val_loss": row["val_loss"], "notes": run.notes}
    if improved:
        save_segmenter(model, run.spec, run.settings, run.out / "best.pt", kind="best", **info)
    save_segmenter(model, run.spec, run.settings, run.out / "last.pt", kind="last", **info)
