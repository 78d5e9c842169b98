"""Table reader for CSV, TSV, XLSX/XLS and Parquet files."""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import pandas as pd

from her2dlr.errors import InputError

__all__ = ["TABLE_SUFFIXES", "numbers_where_numeric", "read_table"]

#: File endings :func:`read_table` reads.
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".xlsm", ".xls", ".parquet")

#: openpyxl warnings about spreadsheet features a table reader does not need (styling,
#: validation rules, headers/footers); harmless for the cell values, so not shown to users.
_HARMLESS_XLSX_WARNINGS = (
    r".*Conditional Formatting extension is not supported.*",
    r".*Data Validation extension is not supported.*",
    r".*Workbook contains no default style.*",
    r".*Cannot parse header or footer.*",
)


def _read_excel(path: Path, sheet: str | int, na: dict[str, object]) -> pd.DataFrame:
    with warnings.catch_warnings():
        for pattern in _HARMLESS_XLSX_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
        try:
            return pd.read_excel(path, sheet_name=sheet, **na)
        except (ValueError, IndexError) as exc:
            if "not found" in str(exc) or isinstance(exc, IndexError):
                sheets = pd.ExcelFile(path).sheet_names
                raise InputError(f"Sheet {sheet!r} not in {path}. Sheets: {sheets}.") from None
            raise


def _encoding(path: Path) -> str:
    """``utf-8-sig`` (drops a byte-order mark) when the file decodes as UTF-8, else ``cp1252``."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            while fh.read(1 << 20):
                pass
        return "utf-8-sig"
    except UnicodeDecodeError:
        return "cp1252"


def _read_delimited(path: Path, suffix: str, na: dict[str, object]) -> pd.DataFrame:
    """A real CSV parser first (quoted fields may hold separators and newlines); sniff only as a fallback.

    ``.tsv`` is tab-separated; ``.csv`` / ``.txt`` are read as comma-separated, and re-read with the
    separator :class:`csv.Sniffer` finds when that gives a single column (``;`` or tab files).
    """
    encoding = _encoding(path)
    if suffix == ".tsv":
        return pd.read_csv(path, sep="\t", encoding=encoding, **na)
    try:
        table = pd.read_csv(path, encoding=encoding, **na)
    except pd.errors.ParserError:
        table = None
    if table is not None and table.shape[1] > 1:
        return table
    with open(path, encoding=encoding) as fh:
        head = fh.read(64 * 1024)
    try:
        sep = csv.Sniffer().sniff(head, delimiters=";\t,|").delimiter
    except csv.Error:
        sep = ","
    if table is not None and sep == ",":
        return table
    return pd.read_csv(path, sep=sep, encoding=encoding, **na)


def read_table(path: str | os.PathLike[str], *, sheet: str | int = 0, keep_missing_text: bool = False) -> pd.DataFrame:
    """Read a table, every cell kept as text or number as stored (no type guessing beyond pandas').

    Column names are stripped of a leading byte-order mark and of surrounding spaces.

    Parameters
    ----------
    path : path-like
        ``.csv``, ``.tsv``, ``.txt`` (comma, semicolon or tab), ``.xlsx``, ``.xls`` or ``.parquet``.
    sheet : str or int
        Excel sheet name or index.
    keep_missing_text : bool, default False
        Keep the texts pandas reads as missing (``NA``, ``N/A``, ``NULL``, blank ...) as text, so
        the caller decides (and reports) what is missing; columns of numbers then stay text
        until :func:`numbers_where_numeric`.

    Raises
    ------
    InputError
        Missing file, unknown format, unreadable file, missing sheet, an empty file or two
        columns of the same name; the message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"Table not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InputError(f"Unknown table format '{suffix}' for {path}: use CSV, TSV, XLSX or Parquet.")
    na: dict[str, object] = {"keep_default_na": False, "na_values": []} if keep_missing_text else {}
    try:
        if suffix in (".xlsx", ".xlsm", ".xls"):
            table = _read_excel(path, sheet, na)
        elif suffix == ".parquet":
            table = pd.read_parquet(path)
        else:
            table = _read_delimited(path, suffix, na)
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(f"Table {path} is empty (no header line).") from None
    except Exception as exc:
        raise InputError(f"Cannot read table {path}: {exc}") from None
    table.columns = [c.lstrip("\ufeff").strip() if isinstance(c, str) else c for c in table.columns]
    dup = pd.Index(table.columns)[pd.Index(table.columns).duplicated()].tolist()
    if dup:
        raise InputError(f"Table {path} has several columns named {dup[:5]}: give each column its own name.")
    return table


def numbers_where_numeric(table: pd.DataFrame) -> pd.DataFrame:
    """Text columns whose present cells are all numbers, as numbers (what pandas infers when reading).

    For a table read with ``keep_missing_text=True`` once its missing-value texts are NA.
    """
    out = table.copy()
    for col in out.columns:
        if out[col].dtype != object and not str(out[col].dtype).startswith(("str", "string")):
            continue
        present = out[col].dropna()
        if not len(present) or not present.map(lambda v: isinstance(v, (str, int, float))).all():
            continue
        converted = pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
        if converted.notna().all() and not present.astype(str).str.strip().eq("").any():
            out[col] = pd.to_numeric(out[col].map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")
    return out
