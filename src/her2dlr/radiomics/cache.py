"""On-disk cache of per-case radiomics features, so a re-run only computes what changed.

One small Parquet file per case, in long form (``feature``, ``value`` columns: any
feature name survives, and a file reads in about a millisecond), at
``<cache_dir>/<params hash>/<case key>.parquet``. The case key hashes the *content* of
the image and mask files (a copied or touched file with the same bytes is still a hit),
the box, the spacing, the label, the params hash and the PyRadiomics version.

Files are written with :func:`her2dlr.io.atomic.atomic_path` (write, then rename), so
parallel workers or two runs sharing a cache never see half a file; two writers of the
same key write the same values and the last rename wins. An unreadable entry counts as
a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from her2dlr.io.atomic import atomic_path

__all__ = ["FeatureCache", "case_key", "file_fingerprint"]

CACHE_FORMAT = 1
"""Bumped when the cache layout or the extraction semantics change."""

_CHUNK = 1 << 20
_memo: dict[tuple[str, int, int], str] = {}


def _hash_file(path: Path, h: Any) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """BLAKE2b digest of a file's bytes (of every file, for a DICOM folder).

    The digest of a file is remembered for the life of the process under its path,
    size and modification time, so a file shared by several cases is read once.

    Raises
    ------
    OSError
        When the file does not exist or cannot be read.
    """
    path = Path(path)
    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key in _memo:
        return _memo[memo_key]
    h = hashlib.blake2b(digest_size=20)
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(child.relative_to(path)).encode("utf-8") + b"\0")
            _hash_file(child, h)
    else:
        _hash_file(path, h)
    digest = h.hexdigest()
    _memo[memo_key] = digest
    return digest


def case_key(
    image: str | os.PathLike[str],
    mask: str | os.PathLike[str] | None,
    bbox: tuple[float, ...] | None,
    spacing: float | None,
    label: int,
    params_digest: str,
) -> str:
    """Cache key of one case: a hash of everything its features depend on.

    Raises
    ------
    OSError
        When the image or mask file cannot be read.
    """
    import radiomics

    parts = {
        "format": CACHE_FORMAT,
        "radiomics": radiomics.__version__,
        "image": file_fingerprint(image),
        "mask": None if mask is None else file_fingerprint(mask),
        "bbox": None if bbox is None else [float(v) for v in bbox],
        "spacing": None if spacing is None else float(spacing),
        "label": int(label),
        "params": params_digest,
    }
    text = json.dumps(parts, sort_keys=True)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=20).hexdigest()


class FeatureCache:
    """Per-case feature store under one folder, for one parameter set.

    Parameters
    ----------
    root : path-like
        Cache folder (created on first write).
    params_digest : str
        :func:`~her2dlr.radiomics.parameters.params_hash` of the parameter set.
    """

    def __init__(self, root: str | os.PathLike[str], params_digest: str) -> None:
        self.root = Path(root)
        self.params_digest = params_digest

    @property
    def folder(self) -> Path:
        """Folder holding this parameter set's entries."""
        return self.root / self.params_digest

    def path(self, key: str) -> Path:
        """File of the entry ``key``."""
        return self.folder / f"{key}.parquet"

    def get(self, key: str) -> dict[str, float] | None:
        """Features stored under ``key``, or None when absent or unreadable."""
        path = self.path(key)
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException):
            return None
        names = table.column("feature").to_pylist()
        values = table.column("value").to_pylist()
        return {n: (float("nan") if v is None else float(v)) for n, v in zip(names, values)}

    def put(self, key: str, features: dict[str, float]) -> Path:
        """Store ``features`` under ``key`` atomically and return the file."""
        table = pa.table(
            {
                "feature": pa.array(list(features), type=pa.string()),
                "value": pa.array(list(features.values()), type=pa.float64()),
            }
        )
        target = self.path(key)
        with atomic_path(target) as tmp:
            pq.write_table(table, tmp)
        return target
