"""Running extraction tasks over joblib backends without oversubscribing the CPU.

PyRadiomics spends its time in single-threaded C code and NumPy, while the SimpleITK
filters it calls (LoG, resampling) start one thread per core. Two worker processes on
two cores, each running SimpleITK with two threads, fight for the cores, so each
process worker is told to use ``cores // n_workers`` SimpleITK threads (joblib's loky
backend already limits the BLAS / OpenMP pools the same way). One worker runs in the
calling process with the threads untouched, exactly like a plain PyRadiomics loop.

On a lab cluster the same tasks go to Dask or Ray workers through joblib's ``dask`` and
``ray`` backends: :func:`cluster_session` connects to the scheduler whose address the study
file gives (``scheduler: tcp://host:8786`` for Dask, ``ray://host:10001`` or ``host:6379``
for Ray) for the duration of one stage, and refuses an address it cannot reach within
:data:`CONNECT_TIMEOUT_S` seconds. The learning stage's outer folds use the same session.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import joblib
import SimpleITK as sitk

from her2dlr.errors import InputError, nearest

__all__ = [
    "BACKENDS",
    "CLUSTER_BACKENDS",
    "CONNECT_TIMEOUT_S",
    "check_backend",
    "chunked",
    "cluster_session",
    "effective_workers",
    "run_chunks",
    "scheduler_backend",
]

BACKENDS = ("loky", "threading", "sequential", "dask", "ray")
"""joblib backends accepted by :func:`~her2dlr.radiomics.extract.extract_radiomics`."""

CLUSTER_BACKENDS = ("dask", "ray")
"""Backends whose workers may run on other machines (tasks go to a scheduler)."""

CONNECT_TIMEOUT_S = 10
"""Seconds to wait for a scheduler before refusing its address."""

_OPTIONAL = {
    "dask": ("distributed", "dask[distributed]"),
    "ray": ("ray", "ray"),
}

T = TypeVar("T")
R = TypeVar("R")


def check_backend(backend: str, allowed: Sequence[str] = BACKENDS, where: str = "extract_radiomics") -> None:
    """Raise :class:`InputError` unless ``backend`` is one of ``allowed`` and its packages import.

    ``"dask"`` needs ``dask[distributed]`` and a scheduler (a ``distributed.Client`` in this
    process, or an address for :func:`cluster_session`); ``"ray"`` needs ``ray``
    (``pip install her2dlr[cluster]`` installs both).
    """
    if backend not in allowed:
        raise InputError(
            f"The 'backend' parameter of {where} must be one of "
            f"{', '.join(allowed)}. Got {backend!r} instead.{nearest(backend, allowed)}"
        )
    if backend in _OPTIONAL:
        module, package = _OPTIONAL[backend]
        try:
            importlib.import_module(module)
        except ImportError:
            raise InputError(
                f"backend={backend!r} needs the optional package '{package}', which is not "
                f"installed: pip install '{package}' (or her2dlr[cluster])."
            ) from None


def effective_workers(n_jobs: int, backend: str) -> int:
    """Number of workers joblib would use for ``n_jobs`` (``-1``: all cores)."""
    if backend == "sequential":
        return 1
    if n_jobs == 0:
        raise InputError("The 'n_jobs' parameter of extract_radiomics must not be 0.")
    if backend in CLUSTER_BACKENDS:
        return max(1, n_jobs if n_jobs > 0 else joblib.cpu_count())
    return max(1, joblib.effective_n_jobs(n_jobs))


def worker_threads(n_workers: int) -> int:
    """SimpleITK threads each of ``n_workers`` workers may use on this machine."""
    return max(1, joblib.cpu_count() // max(1, n_workers))


def chunked(items: Sequence[T], n_workers: int, chunk_size: int | None = None) -> list[list[T]]:
    """Split ``items`` into chunks: ~16 per worker (balances uneven cases), at most 8 long."""
    if chunk_size is None:
        chunk_size = min(8, max(1, -(-len(items) // (n_workers * 16))))
    if chunk_size < 1:
        raise InputError(f"The 'chunk_size' parameter must be >= 1. Got {chunk_size} instead.")
    return [list(items[i : i + chunk_size]) for i in range(0, len(items), chunk_size)]


@contextmanager
def _sitk_threads(n: int) -> Iterator[None]:
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def scheduler_backend(scheduler: str | None, backend: str) -> str:
    """The backend a scheduler address asks for: ``ray`` for ``ray://`` addresses, else ``dask``.

    Without an address, or when ``backend`` already names a cluster backend, ``backend`` is kept.
    """
    if not scheduler or backend in CLUSTER_BACKENDS:
        return backend
    return "ray" if scheduler.startswith("ray://") else "dask"


@contextmanager
def _dask_client(scheduler: str | None) -> Iterator[None]:
    from distributed import Client, get_client

    if scheduler is None:
        try:
            get_client()
        except ValueError:
            raise InputError(
                "backend='dask' sends the work to a dask.distributed cluster: give its scheduler's address "
                "(study file: `scheduler: tcp://host:8786` beside `backend: dask`, or --scheduler ADDRESS), "
                "or create a distributed.Client in this process first."
            ) from None
        yield
        return
    try:
        client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=True)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise InputError(
            f"Cannot reach the Dask scheduler at {scheduler!r} within {CONNECT_TIMEOUT_S} s ({exc}). Check the "
            "address (tcp://host:port, as `dask scheduler` prints it) and that the scheduler is running."
        ) from None
    try:
        yield
    finally:
        client.close()


@contextmanager
def _ray_runtime(scheduler: str | None, n_workers: int | None) -> Iterator[None]:
    import ray
    from ray.util.joblib import register_ray

    register_ray()
    if ray.is_initialized():
        yield
        return
    try:
        if scheduler is None:  # a local Ray instance for this stage
            ray.init(num_cpus=n_workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=scheduler, log_to_driver=False)
    except (ConnectionError, OSError, TimeoutError, ValueError, RuntimeError) as exc:
        raise InputError(f"Cannot connect to the Ray cluster at {scheduler!r} ({exc}).") from None
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def cluster_session(backend: str, scheduler: str | None = None, *, n_workers: int | None = None) -> Iterator[None]:
    """Connect to the backend's cluster and make it joblib's backend for the duration.

    Parameters
    ----------
    backend : {"dask", "ray"}
    scheduler : str, optional
        Dask: the scheduler's address (``tcp://host:8786``); without it a ``distributed.Client``
        must already exist in this process. Ray: the cluster's address (``ray://host:10001``,
        ``host:6379`` or ``auto``); without it a local Ray instance with ``n_workers`` CPUs
        runs for the duration (unless Ray is already initialised).
    n_workers : int, optional
        joblib's ``n_jobs`` inside the session (default: every worker of the cluster).

    Raises
    ------
    InputError
        Unknown backend, missing package, no scheduler, or an address not reached within
        :data:`CONNECT_TIMEOUT_S` seconds (the message names the address).
    """
    check_backend(backend, CLUSTER_BACKENDS, where="cluster_session")
    connect = _dask_client(scheduler) if backend == "dask" else _ray_runtime(scheduler, n_workers)
    with connect, joblib.parallel_config(backend=backend, n_jobs=n_workers if n_workers else -1):
        yield


def run_chunks(
    fn: Callable[..., R],
    chunks: Iterable[list[T]],
    *,
    n_workers: int,
    backend: str,
    scheduler: str | None = None,
    **kwargs: Any,
) -> Iterator[R]:
    """Yield ``fn(chunk, sitk_threads=..., **kwargs)`` for each chunk, as they finish.

    With one worker, ``backend="sequential"``, or a single chunk on a local backend, the
    chunks run here, in order. With ``threading`` the process-wide SimpleITK thread count
    is lowered for the duration; with ``loky`` each worker process sets its own through
    ``sitk_threads`` (cores // workers); on ``dask``/``ray`` clusters, whose workers
    already get one task per core, each task runs SimpleITK on one thread, and every chunk
    goes to the cluster (``scheduler``: see :func:`cluster_session`).
    """
    chunks = list(chunks)
    cluster = backend in CLUSTER_BACKENDS
    local = backend in ("loky", "threading") and len(chunks) <= 1  # no pool for one task
    if (n_workers <= 1 and not cluster) or backend == "sequential" or local or not chunks:
        for chunk in chunks:
            yield fn(chunk, sitk_threads=None, **kwargs)
        return
    threads = worker_threads(n_workers)
    if backend == "threading":
        with _sitk_threads(threads):
            parallel = joblib.Parallel(
                n_jobs=n_workers, backend="threading", return_as="generator_unordered"
            )
            yield from parallel(joblib.delayed(fn)(c, sitk_threads=None, **kwargs) for c in chunks)
        return
    if backend == "loky":
        parallel = joblib.Parallel(n_jobs=n_workers, backend="loky", return_as="generator_unordered")
        yield from parallel(joblib.delayed(fn)(c, sitk_threads=threads, **kwargs) for c in chunks)
        return
    tasks = [joblib.delayed(fn)(c, sitk_threads=1, **kwargs) for c in chunks]
    with cluster_session(backend, scheduler, n_workers=n_workers):
        try:
            results = joblib.Parallel(return_as="generator_unordered")(tasks)
        except ValueError as exc:  # ray's backend cannot stream results back
            if "return_as" not in str(exc):
                raise
            results = joblib.Parallel(return_as="list")(tasks)
        yield from results
