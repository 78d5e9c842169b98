"""Cohort benchmarks: ``busi-qc`` (duplicates found on BUSI, and that no group straddles a split)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from her2dlr.bench import BenchOptions, register, result
from her2dlr.errors import InputError

__all__ = ["busi_study", "require_data"]


def require_data(opts: BenchOptions, name: str, expect: str) -> Path:
    """The ``--data`` folder, or an error naming the flag and what it should hold."""
    if opts.data is None:
        raise InputError(f"Benchmark '{name}' needs --data: {expect}.")
    if not Path(opts.data).is_dir():
        raise InputError(f"--data {opts.data} is not a folder ({expect}).")
    return Path(opts.data).resolve()


def busi_study(data: Path, out: Path, **overrides: Any) -> Any:
    """The default BUSI study: benign vs malignant (normal images are QC'd but unlabelled), default splits."""
    from her2dlr.config import study_from_dict

    raw = {
        "name": "busi",
        "output_dir": str(out),
        "cohort": {"sources": [{"kind": "folders", "path": str(data), "centre": "Baheya"}]},
        "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]},
        **overrides,
    }
    return study_from_dict(raw, base_dir=out)


@register("busi-qc", "BUSI duplicate groups, cross-label pairs, groups straddling any default split (must be 0)")
def busi_qc(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    from her2dlr.cohort.build import build_cohort

    data = require_data(opts, "busi-qc", "the BUSI folder with benign/, malignant/, normal/")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(opts.work_dir or tmp) / "busi-qc"
        t0 = time.perf_counter()
        build = build_cohort(busi_study(data, out), n_jobs=opts.n_jobs, progress=False)
        seconds = time.perf_counter() - t0
    s = build.qc.summary
    n = len(build.manifest)
    straddling = int(build.splits.groupby("partition")["groups_straddling"].max().sum()) if len(build.splits) else 0
    partitions = build.splits["partition"].nunique() if len(build.splits) else 0
    yield result("busi-qc", "exact_duplicate_groups", s["exact_duplicate_groups"], n=n)
    yield result("busi-qc", "near_duplicate_groups", s["near_duplicate_groups"], n=n,
                 rows_in_groups=s.get("rows_in_duplicate_groups"))
    yield result("busi-qc", "cross_label_pairs", s["cross_label_pairs"], n=n)
    yield result("busi-qc", "groups_straddling_split", straddling, partitions=int(partitions))
    yield result("busi-qc", "seconds", round(seconds, 2), seconds=round(seconds, 2), n=n)
