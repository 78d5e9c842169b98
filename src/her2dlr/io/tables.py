"""Table reader for CSV, TSV, XLSX/XLS and Parquet files."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from her2dlr.errors import InputError

__all__ = ["read_table"]


def read_table(path: str | os.PathLike[str], *, sheet: str | int = 0) -> pd.DataFrame:
    """Read a table, every cell kept as text or number as stored (no type guessing beyond pandas').

    Parameters
    ----------
    path : path-like
        ``.csv``, ``.tsv``, ``.txt`` (tab or comma), ``.xlsx``, ``.xls`` or ``.parquet``.
    sheet : str or int
        Excel sheet name or index.

    Raises
    ------
    InputError
        Missing file, unknown format, unreadable file or missing sheet; the message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"Table not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm", ".xls"):
            try:
                return pd.read_excel(path, sheet_name=sheet)
            except (ValueError, IndexError) as exc:
                if "not found" in str(exc) or isinstance(exc, IndexError):
                    sheets = pd.ExcelFile(path).sheet_names
                    raise InputError(f"Sheet {sheet!r} not in {path}. Sheets: {sheets}.") from None
                raise
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(path, sep=None, engine="python")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"Cannot read table {path}: {exc}") from None
    raise InputError(f"Unknown table format '{suffix}' for {path}: use CSV, TSV, XLSX or Parquet.")
