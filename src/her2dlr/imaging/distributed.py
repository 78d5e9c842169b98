"""Several processes training one network (PyTorch DistributedDataParallel), shared by deep and segmentation training.

A launcher starts the same command once per process (``torchrun --nproc_per_node N -m her2dlr
train deep STUDY``) and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``. Each process then

- joins one process group (:func:`process_group`: NCCL on GPUs, gloo on the CPU) and, on GPUs,
  works on the GPU of its ``LOCAL_RANK`` (:func:`rank_device`);
- trains on its shard of every epoch (:func:`shard_sampler`), the network wrapped in
  ``DistributedDataParallel`` (:func:`wrap_ddp`), which averages the gradients, so every
  process holds the same weights after every step;
- averages the normalisation statistics (batch-norm running means) after every epoch
  (:func:`sync_buffers`): each process updated them from its own shard;
- scores its share of the validation split, and every process gathers the whole split's
  predictions (:func:`gather_predictions`), so the validation metric is that of the whole split;
- takes rank 0's early-stopping numbers (:func:`broadcast_floats`), so all stop at the same epoch;
- writes nothing unless it is rank 0 (:func:`is_main_process`).

Under a launcher the process group is made once and kept until the process ends: a study
trains one network per fold, and closing and remaking the group between folds races (a fast
process can meet the slow one's stale rendezvous keys and both wait for ever). Without a
launcher (no ``RANK`` / ``WORLD_SIZE`` in the environment) a one-process group is made and
closed again, which runs the same code path in one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from her2dlr.errors import InputError

__all__ = [
    "DistInfo",
    "broadcast_floats",
    "gather_predictions",
    "is_main_process",
    "launched_world_size",
    "mean_over_ranks",
    "process_group",
    "rank_device",
    "shard_length",
    "shard_sampler",
    "sync_buffers",
    "wrap_ddp",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a distributed run (``enabled=False``: a plain one-process run)."""

    enabled: bool = False
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        """More than one process: collectives are needed."""
        return self.enabled and self.world > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"The environment variable {name}={value!r} must be a whole number "
                         "(set by torchrun or another launcher).") from None


def launched_world_size() -> int:
    """The number of processes a launcher started (``WORLD_SIZE``; 1 without a launcher)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def is_main_process() -> bool:
    """False in the processes of a distributed launch other than rank 0 (only rank 0 writes)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return _env_int("RANK", 0) == 0


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process_group(enabled: bool, device: str | torch.device = "auto") -> Iterator[DistInfo]:
    """Join (or make) the default process group for one training run; leave it as found.

    Parameters
    ----------
    enabled : bool
        False: yield a disabled :class:`DistInfo` and do nothing.
    device : str or torch.device
        ``"cpu"`` picks gloo; otherwise NCCL when CUDA is available, else gloo.

    Yields
    ------
    DistInfo

    Raises
    ------
    InputError
        This torch build has no ``torch.distributed``.
    """
    if not enabled:
        yield DistInfo()
        return
    import torch.distributed as dist

    if not dist.is_available():
        raise InputError("distributed=True but this torch build has no torch.distributed.")
    owns, env_set = False, []
    if not dist.is_initialized():
        env = os.environ
        launched = "RANK" in env and "WORLD_SIZE" in env
        if not launched:  # a one-process group, closed again below
            defaults = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
                        "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
            env_set = [k for k in defaults if k not in env]
            for k in env_set:
                env[k] = defaults[k]
        on_gpu = torch.cuda.is_available() and str(device) != "cpu"
        dist.init_process_group(backend="nccl" if on_gpu else "gloo", init_method="env://")
        owns = not launched
        if launched:  # kept for the next network of this process (see the module docstring)
            import atexit

            atexit.register(_close_group)
    try:
        yield DistInfo(True, dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    finally:
        if owns:
            dist.destroy_process_group()
            for key in env_set:
                os.environ.pop(key, None)


def _close_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: torch.device, info: DistInfo) -> torch.device:
    """The GPU of this process's ``LOCAL_RANK`` when training on CUDA with several processes, else ``device``."""
    if not info.enabled or device.type != "cuda":
        return device
    device = torch.device(f"cuda:{info.local_rank}")
    torch.cuda.set_device(device)  # NCCL collectives of Python objects use the current device
    return device


def wrap_ddp(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel when the run is distributed, else ``model`` itself.

    Wrapping copies rank 0's weights and buffers to every process.
    """
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shard_sampler(dataset: Any, info: DistInfo, *, seed: int, epoch: int) -> Any:
    """A ``DistributedSampler`` giving this process its shuffled share of ``epoch`` (None when not distributed).

    The shards of one epoch are disjoint and cover every case (the last cases are repeated to
    make the shards equal in length, as ``DistributedSampler`` does).
    """
    if not info.enabled:
        return None
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(dataset, num_replicas=info.world, rank=info.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return sampler


def shard_length(n: int, info: DistInfo) -> int:
    """Cases one process sees per epoch (``ceil(n / world)``, ``n`` when not distributed)."""
    return -(-n // info.world) if info.enabled else n


def sync_buffers(module: nn.Module, info: DistInfo) -> None:
    """Average the floating-point buffers (normalisation statistics) over the processes; rank 0's for the others."""
    if not info.several:
        return
    import torch.distributed as dist

    for buf in module.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf.data, op=dist.ReduceOp.SUM)
            buf.data.div_(info.world)
        else:
            dist.broadcast(buf.data, src=0)


def mean_over_ranks(total: float, count: int, info: DistInfo) -> float:
    """The mean ``sum(total) / sum(count)`` over the processes (``total / count`` in one process)."""
    if not info.several:
        return total / max(count, 1)
    import torch.distributed as dist

    t = torch.tensor([float(total), float(count)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t[0] / max(float(t[1]), 1.0))


def broadcast_floats(values: Sequence[float], info: DistInfo) -> tuple[float, ...]:
    """Rank 0's ``values`` on every process (so all take the same decision)."""
    if not info.several:
        return tuple(float(v) for v in values)
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.broadcast(t, src=0)
    return tuple(float(v) for v in t)


def gather_predictions(predict: Callable[[np.ndarray], np.ndarray], n: int, info: DistInfo) -> np.ndarray:
    """``predict(rows)`` of all ``n`` rows, each process computing one contiguous share; every process gets all.

    ``predict`` takes an array of row numbers and returns one result row per number. In one
    process it is called once with every row.
    """
    rows = np.arange(n)
    if not info.several:
        return predict(rows)
    import torch.distributed as dist

    mine = np.array_split(rows, info.world)[info.rank]
    parts: list[Any] = [None] * info.world
    dist.all_gather_object(parts, np.asarray(predict(mine)))
    return np.concatenate(parts, axis=0)
