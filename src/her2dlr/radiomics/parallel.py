"""Running extraction tasks over joblib backends without oversubscribing the CPU.

PyRadiomics spends its time in single-threaded C code and NumPy, while the SimpleITK
filters it calls (LoG, resampling) start one thread per core. Two worker processes on
two cores, each running SimpleITK with two threads, fight for the cores, so each
process worker is told to use ``cores // n_workers`` SimpleITK threads (joblib's loky
backend already limits the BLAS / OpenMP pools the same way). One worker runs in the
calling process with the threads untouched, exactly like a plain PyRadiomics loop.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import joblib
import SimpleITK as sitk

from her2dlr.errors import InputError, nearest

__all__ = ["BACKENDS", "check_backend", "chunked", "effective_workers", "run_chunks"]

BACKENDS = ("loky", "threading", "sequential", "dask", "ray")
"""joblib backends accepted by :func:`~her2dlr.radiomics.extract.extract_radiomics`."""

_OPTIONAL = {
    "dask": ("distributed", "dask[distributed]"),
    "ray": ("ray", "ray"),
}

T = TypeVar("T")
R = TypeVar("R")


def check_backend(backend: str) -> None:
    """Raise :class:`InputError` unless ``backend`` is known and its packages import.

    ``"dask"`` needs ``dask[distributed]`` and a running ``distributed.Client``;
    ``"ray"`` needs ``ray`` (``pip install her2dlr[cluster]`` installs both).
    """
    if backend not in BACKENDS:
        raise InputError(
            f"The 'backend' parameter of extract_radiomics must be one of "
            f"{', '.join(BACKENDS)}. Got {backend!r} instead.{nearest(backend, BACKENDS)}"
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
    if backend in ("dask", "ray"):
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


def _backend_context(backend: str, n_workers: int) -> Any:
    if backend == "ray":
        from ray.util.joblib import register_ray

        register_ray()
    if backend == "dask":
        from distributed import get_client

        try:
            get_client()
        except ValueError:
            raise InputError(
                "backend='dask' sends the cases to a dask.distributed cluster: create a "
                "distributed.Client (e.g. `Client()` for a local cluster) before extracting."
            ) from None
    return joblib.parallel_config(backend=backend, n_jobs=n_workers)


def run_chunks(
    fn: Callable[..., R],
    chunks: Iterable[list[T]],
    *,
    n_workers: int,
    backend: str,
    **kwargs: Any,
) -> Iterator[R]:
    """Yield ``fn(chunk, sitk_threads=..., **kwargs)`` for each chunk, as they finish.

    With one worker, ``backend="sequential"``, or a single chunk on a local backend, the
    chunks run here, in order. With ``threading`` the process-wide SimpleITK thread count
    is lowered for the duration; with ``loky`` each worker process sets its own through
    ``sitk_threads`` (cores // workers); on ``dask``/``ray`` clusters, whose workers
    already get one task per core, each task runs SimpleITK on one thread.
    """
    chunks = list(chunks)
    local = backend in ("loky", "threading") and len(chunks) <= 1  # no pool for one task
    if n_workers <= 1 or backend == "sequential" or local:
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
    with _backend_context(backend, n_workers):
        try:
            results = joblib.Parallel(return_as="generator_unordered")(tasks)
        except ValueError as exc:  # ray's backend cannot stream results back
            if "return_as" not in str(exc):
                raise
            results = joblib.Parallel(return_as="list")(tasks)
        yield from results
