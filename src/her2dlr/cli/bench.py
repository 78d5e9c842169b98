"""``her2dlr bench``, ``her2dlr demo`` and ``her2dlr version``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from her2dlr.cli.common import friendly

__all__ = ["bench", "demo", "version"]


@friendly
def bench(
    name: Annotated[str | None, typer.Argument(help="Benchmark name (see --list).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Data folder the benchmark reads.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Small version for CI.")] = False,
    train: Annotated[Path | None, typer.Option("--train", help="Training data (external validation).")] = None,
    test: Annotated[Path | None, typer.Option("--test", help="Test data (external validation).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    n_jobs: Annotated[int, typer.Option("--n-jobs")] = 2,
    work_dir: Annotated[Path | None, typer.Option("--work-dir", help="Folder for caches (default: a temporary one).")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="Also time this cluster backend (extraction: dask).")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="With --backend dask: an existing scheduler's address (default: a local 2-worker cluster).")] = None,
    localiser: Annotated[str | None, typer.Option("--localiser", help="video-sim: tracker (default) or network (a box-prompted U-Net trained per fold).")] = None,
    budget: Annotated[str | None, typer.Option("--budget", help="busi-seg, seg-external, busi-autoroi: bench (default: 64 px, 10 epochs) or stage (the segment stage's defaults: 128 px, 60 epochs, patience 10).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the benchmarks.")] = False,
) -> None:
    """Run a named benchmark; prints one JSON object per line."""
    from her2dlr.bench import BenchOptions, dumps, list_benches, run_bench

    if list_ or name is None:
        for bench_name, desc in list_benches().items():
            typer.echo(f"{bench_name:20s} {desc}")
        return
    extra = {k: v for k, v in {"backend": backend, "scheduler": scheduler, "localiser": localiser,
                               "budget": budget}.items() if v is not None}
    opts = BenchOptions(data=data, quick=quick, train=train, test=test, seed=seed, n_jobs=n_jobs, work_dir=work_dir,
                        extra=extra)
    for line in run_bench(name, opts):
        typer.echo(dumps(line))
        sys.stdout.flush()


@friendly
def demo(
    out: Annotated[Path, typer.Option("--out", help="Run folder of the demo.")] = Path("runs/demo"),
    n_jobs: Annotated[int, typer.Option("--n-jobs", help="Parallel workers (-1: all cores).")] = -1,
) -> None:
    """Run the whole pipeline on the embedded sample (BUSI + BrEaST-Lesions-USG subsets), offline."""
    from her2dlr.demo import run_demo

    run_demo(out, n_jobs=n_jobs)


def version() -> None:
    """Print the version."""
    from her2dlr import __version__

    typer.echo(__version__)
