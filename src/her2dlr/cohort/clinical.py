"""Typing of clinical columns: missing-value tokens, numeric vs categorical vs multi-valued cells."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from her2dlr.errors import InputError

__all__ = ["MIXED_NUMERIC_FRACTION", "clean_missing", "infer_clinical_types"]

MIXED_NUMERIC_FRACTION = 0.8
"""A column whose present cells are at least this fraction numbers, but not all, is refused as mixed."""

MANY_NUMBERS = 10
"""A column with at least this many distinct numbers among text cells looks like a measurement
(e.g. an age with '58 y' or '>80' cells), not like categories, and is refused unless declared."""


def clean_missing(series: pd.Series, missing_values: Iterable[str]) -> pd.Series:
    """Replace the missing-value tokens (case-insensitive, stripped) of a column by NA."""
    tokens = {str(t).strip().lower() for t in missing_values}

    def fix(v: object) -> object:
        if isinstance(v, str):
            v = v.strip()
            return pd.NA if v.lower() in tokens else v
        return v

    return series.map(fix)


def _is_number(v: object) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, (int, float, np.integer, np.floating)):
        return True
    try:
        float(str(v).replace(",", "."))
        return True
    except ValueError:
        return False


def infer_clinical_types(
    df: pd.DataFrame,
    columns: list[str],
    *,
    declared: dict[str, str] | None = None,
    separator: str = "&",
    source: str = "table",
    row_offset: int = 0,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Type each clinical column and convert numeric ones to float.

    A column is ``numeric`` when every present cell is a number, ``multi`` when cells hold several
    values joined by ``separator``, else ``categorical`` (kept as text). A declared type wins.
    A column that looks numeric but holds text cells is refused rather than silently turned into
    one category per value: when at least :data:`MIXED_NUMERIC_FRACTION` of its cells are
    numbers, or when it holds :data:`MANY_NUMBERS` or more distinct numbers. Row numbers in
    messages are the frame's index plus ``row_offset`` (2 for a table: 1-based, after the header).

    Raises
    ------
    InputError
        A column missing from the table, a declared-numeric column with text cells, or a column
        that is mostly numbers with a few text cells (names the column, rows and values, and says
        how to fix it: add the text to ``missing_values`` or declare the column categorical).
    """
    declared = declared or {}
    out = df.copy()
    types: dict[str, str] = {}
    for col in columns:
        if col not in df.columns:
            raise InputError(f"Clinical column '{col}' is not in {source}. Columns: {list(map(str, df.columns))}.")
        present = df[col].dropna()
        numeric_mask = present.map(_is_number)
        kind = declared.get(col)
        if kind is None:
            if len(present) and numeric_mask.all():
                kind = "numeric"
            elif present.astype(str).str.contains(separator, regex=False).any():
                kind = "multi"
            elif len(present) and (numeric_mask.mean() >= MIXED_NUMERIC_FRACTION
                                   or present[numeric_mask].nunique() >= MANY_NUMBERS):
                bad = present[~numeric_mask]
                raise InputError(
                    f"Clinical column '{col}' in {source} has mixed types: {numeric_mask.mean():.0%} of its "
                    f"cells are numbers ({present[numeric_mask].nunique()} distinct) but {len(bad)} row(s) "
                    f"{[int(i) + row_offset for i in bad.index[:10]]} hold text {sorted(map(str, bad.unique()))[:10]}. "
                    f"Fix those cells, add the texts to cohort.extra_missing_values, or declare the column in "
                    f"clinical_types as 'categorical' (one level per distinct value)."
                )
            else:
                kind = "categorical"
        if kind == "numeric":
            bad = present[~numeric_mask]
            if len(bad):
                raise InputError(
                    f"Clinical column '{col}' in {source} is declared numeric but row(s) "
                    f"{[int(i) + row_offset for i in bad.index[:10]]} hold {sorted(map(str, bad.unique()))[:10]}: "
                    f"fix them or add the texts to cohort.extra_missing_values."
                )
            out[col] = pd.to_numeric(df[col].map(lambda v: str(v).replace(",", ".") if isinstance(v, str) else v), errors="coerce").astype(float)
        else:
            out[col] = df[col].map(lambda v: pd.NA if v is pd.NA or v is None or (isinstance(v, float) and np.isnan(v)) else str(v)).astype("string")
        types[col] = kind
    return out, types
