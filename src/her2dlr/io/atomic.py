"""Write-then-rename helpers so no output is ever left half-written."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    Works for files and folders: whatever the caller creates at the yielded path replaces
    ``target`` in one rename. On error the temporary path is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if target.is_dir() and tmp.is_dir():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_text_atomic(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``target`` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_parquet_atomic(
    df: pd.DataFrame, target: str | os.PathLike[str], *, index: bool = True
) -> Path:
    """Write a DataFrame to Parquet atomically and return the path."""
    with atomic_path(target) as tmp:
        df.to_parquet(tmp, index=index)
    return Path(target)


def write_csv_atomic(df: pd.DataFrame, target: str | os.PathLike[str], *, index: bool = False) -> Path:
    """Write a DataFrame to CSV atomically and return the path."""
    with atomic_path(target) as tmp:
        df.to_csv(tmp, index=index)
    return Path(target)
