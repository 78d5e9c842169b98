"""Write-then-rename helpers so no output is ever left half-written."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from her2dlr.errors import InputError

#: errno values that mean "this place cannot take the output", reported with the file's name.
_STORAGE_ERRORS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                   errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                   errno.EROFS: "the file system is read-only",
                   errno.ENOTDIR: "a part of the path is a file, not a folder"}


def storage_error(exc: OSError, target: str | os.PathLike[str]) -> InputError | OSError:
    """An :class:`InputError` naming ``target`` for a full disk or a folder that cannot be written; else ``exc``."""
    reason = _STORAGE_ERRORS.get(exc.errno or -1)
    if reason is None:
        return exc
    return InputError(f"Cannot write {target}: {reason} ({exc.strerror}). Nothing was half-written; free space or "
                      "choose a writable run folder, then run the command again (finished steps are reused).")


def check_writable(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed and prove that a file can be written there, before any long computation.

    Raises
    ------
    InputError
        The folder cannot be created or written (read-only, no permission, full disk).
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise storage_error(exc, path) from None
    return path


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    Works for files and folders: whatever the caller creates at the yielded path replaces
    ``target`` in one rename. On error the temporary path is removed and ``target`` is untouched;
    a full disk or a folder that cannot be written becomes an :class:`InputError` naming ``target``.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise storage_error(exc, target) from None
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        try:
            yield tmp
            if target.is_dir() and tmp.is_dir():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except OSError as exc:
            raise storage_error(exc, target) from None
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
