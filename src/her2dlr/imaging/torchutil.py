"""Torch helpers shared by the network stages: device choice, CPU threads, seeded runs.

They live here, below the segmentation and classification stages, so both use one
implementation; :mod:`her2dlr.deep.train` and :mod:`her2dlr.deep.data` re-export them under
their old names.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from her2dlr.errors import InputError, nearest

__all__ = ["checkpoint_safe", "default_threads", "read_checkpoint_file", "resolve_device", "seeded", "torch_threads"]


def resolve_device(device: str = "auto", *, allow_cpu_fallback: bool = False) -> torch.device:
    """The torch device for ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``gpu``).

    Raises
    ------
    InputError
        A GPU was asked for and none is visible (unless ``allow_cpu_fallback``), or an unknown name.
    """
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "gpu":
        name = "cuda"
    if name == "cuda" or name.startswith("cuda:"):
        index = 0 if name == "cuda" else _cuda_index(name)
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index < count:
            return torch.device(name)
        why = ("no CUDA GPU is visible (torch.cuda.is_available() is False; torch "
               f"{torch.__version__}{' is a CPU-only build' if torch.version.cuda is None else ''})"
               if count == 0 else f"only {count} CUDA GPU(s) are visible")
        if allow_cpu_fallback:
            warnings.warn(f"Device '{device}' was asked for but {why}: training on the CPU.", stacklevel=2)
            return torch.device("cpu")
        raise InputError(f"Device '{device}' was asked for but {why}. Use --device cpu (or auto), install a CUDA "
                         "build of torch, or allow the CPU fallback (allow_cpu_fallback=True / --allow-cpu-fallback).")
    options = ("auto", "cpu", "cuda", "cuda:N", "gpu")
    raise InputError(f"Unknown device '{device}'. Use one of {', '.join(options)}.{nearest(name, options)}")


def _cuda_index(name: str) -> int:
    try:
        return int(name.split(":", 1)[1])
    except ValueError:
        raise InputError(f"Device '{name}' must be 'cuda' or 'cuda:N' with N a GPU number.") from None


def default_threads(num_workers: int = 0) -> int:
    """CPU threads for torch: the CPUs this process may use, less the DataLoader workers and busy CPUs.

    On a shared machine threads that wait for busy cores slow small convolutions down many-fold
    (measured: 15x with 2 threads on 2 cores at load 5), so the CPUs other processes keep busy
    (1-minute load average, counting this process as one) are left out; at least 1.
    Pass ``num_threads`` to fix the count (two runs agree bit for bit only with the same count).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    n = cpus - num_workers
    try:
        idle = cpus - os.getloadavg()[0] + 1.0
        n = min(n, int(idle))
    except (AttributeError, OSError):  # no load average on this system
        pass
    return max(1, n)


@contextmanager
def seeded(seed: int, *, deterministic: bool = True, devices: list[int] | None = None) -> Iterator[None]:
    """Seed torch, NumPy and ``random``; switch deterministic algorithms on; restore all afterwards."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    det_before = torch.are_deterministic_algorithms_enabled()
    det_warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    env_before = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    with torch.random.fork_rng(devices=devices or []):
        torch.manual_seed(seed)
        np.random.seed(seed % (2**32))
        random.seed(seed)
        if deterministic:
            if devices and env_before is None:
                os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(det_before, warn_only=det_warn_before)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_before
            if env_before is None:
                os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
            np.random.set_state(np_state)
            random.setstate(py_state)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` and restore the previous count (None: unchanged)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


def read_checkpoint_file(path: str | os.PathLike[str], what: str = "checkpoint") -> Any:
    """``torch.load`` of a checkpoint, safely (tensors and plain types only), on the CPU.

    Raises
    ------
    InputError
        Missing or unreadable file (``what`` names it in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what[:1].upper()}{what[1:]} not found: {path}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"Cannot read {what} {path}: {first}.") from None


def checkpoint_safe(obj: Any) -> Any:
    """``obj`` as the plain types ``torch.load(weights_only=True)`` accepts (dicts, lists, numbers, strings).

    NumPy arrays and scalars become lists and numbers, paths and ``str`` subclasses (such as
    torch's ``TorchVersion``) plain strings, objects with ``to_dict`` their dict.
    """
    if isinstance(obj, Mapping):
        return {str(k): checkpoint_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [checkpoint_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (Path, str)):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return checkpoint_safe(obj.to_dict())
    return obj
