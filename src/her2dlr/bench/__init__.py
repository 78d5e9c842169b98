"""Named benchmarks: ``her2dlr bench NAME`` prints one JSON object per line.

Each line has at least ``{"bench": NAME, "metric": ..., "value": number}`` and, where they
apply, ``ci_low``, ``ci_high``, ``seconds``, ``peak_mb``, ``n``. A benchmark is a generator
registered with :func:`register`; it yields the dicts made by :func:`result`.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from her2dlr.errors import InputError, nearest

__all__ = ["BENCHES", "BenchOptions", "list_benches", "register", "result", "run_bench"]


@dataclass
class BenchOptions:
    """What a benchmark may be given on the command line."""

    data: Path | None = None
    quick: bool = False
    train: Path | None = None
    test: Path | None = None
    seed: int = 0
    n_jobs: int = 2
    work_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


BenchFn = Callable[[BenchOptions], Iterator[dict[str, Any]]]
BENCHES: dict[str, tuple[BenchFn, str]] = {}

# Modules holding benchmarks; imported lazily so `her2dlr --help` stays fast.
_BENCH_MODULES = (
    "her2dlr.bench.cohort_benches",
    "her2dlr.bench.extraction",
    "her2dlr.bench.learn_benches",
    "her2dlr.bench.multiclass_benches",
    "her2dlr.bench.clinical_multiclass",
    "her2dlr.bench.breast_usg",
    "her2dlr.bench.survival_benches",
    "her2dlr.bench.busi_radiomics",
    "her2dlr.bench.external",
    "her2dlr.bench.clustered_ci",
    "her2dlr.bench.evaluate_benches",
    "her2dlr.bench.report_benches",
    "her2dlr.bench.deep_benches",
    "her2dlr.bench.deep_multiclass",
    "her2dlr.bench.deeptepp_stage",
    "her2dlr.bench.deep_slices",
    "her2dlr.bench.dlr_benches",
    "her2dlr.bench.seg_benches",
    "her2dlr.bench.dsfr_benches",
    "her2dlr.bench.seg_quality",
    "her2dlr.bench.seg_autoroi",
    "her2dlr.bench.dce_benches",
    "her2dlr.bench.dce_synthetic",
    "her2dlr.bench.voxel_spacing",
    "her2dlr.bench.bad_inputs",
    "her2dlr.bench.serve_benches",
    "her2dlr.bench.video_benches",
    "her2dlr.bench.torchrun_benches",
    "her2dlr.bench.device_speed",
)


def register(name: str, description: str) -> Callable[[BenchFn], BenchFn]:
    """Register ``fn`` as benchmark ``name``."""

    def deco(fn: BenchFn) -> BenchFn:
        BENCHES[name] = (fn, description)
        return fn

    return deco


def result(bench: str, metric: str, value: float | int, **extra: Any) -> dict[str, Any]:
    """One benchmark line: ``{"bench", "metric", "value", ...extra}`` with NaN written as null."""
    line: dict[str, Any] = {"bench": bench, "metric": metric, "value": _clean(value)}
    line.update({k: _clean(v) for k, v in extra.items() if v is not None})
    return line


def _clean(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if hasattr(v, "item"):  # numpy scalar
        return _clean(v.item())
    return v


def _load_all() -> None:
    for mod in _BENCH_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def list_benches() -> dict[str, str]:
    """Name -> one-line description of every registered benchmark."""
    _load_all()
    return {name: desc for name, (_, desc) in sorted(BENCHES.items())}


def run_bench(name: str, options: BenchOptions) -> Iterator[dict[str, Any]]:
    """Run benchmark ``name`` and yield its result lines."""
    _load_all()
    if name not in BENCHES:
        raise InputError(
            f"Unknown benchmark '{name}'. Known: {', '.join(sorted(BENCHES))}.{nearest(name, BENCHES)}"
        )
    yield from BENCHES[name][0](options)


def dumps(line: dict[str, Any]) -> str:
    """Serialise one result line as JSON."""
    return json.dumps(line, allow_nan=False)
