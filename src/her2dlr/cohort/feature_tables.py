"""Feature tables a study brings (computed by another tool): reading, checking, finding them in the study.

A feature-only cohort (a table source without images) gets its features from such tables, named
in ``learn.features`` by path. The cohort reads them too, so that QC can find duplicate cases
(identical feature rows) and cases without features before any model is fitted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from her2dlr.errors import InputError
from her2dlr.io.tables import TABLE_SUFFIXES, read_table

if TYPE_CHECKING:  # the study model composes every stage; a stage only reads it
    from her2dlr.config import Study

__all__ = ["read_feature_table", "study_feature_tables"]


def read_feature_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A feature table indexed by ``case_id`` (the ``case_id`` column, else the first column).

    Parameters
    ----------
    path : path-like
        CSV / TSV / XLSX / Parquet; a Parquet table may carry ``case_id`` as its index.

    Returns
    -------
    DataFrame of shape (n_cases, n_features)
        Numeric columns, names kept as given.

    Raises
    ------
    InputError
        No rows, duplicate case ids (named with their rows), missing case ids or non-numeric
        columns; the message names the file.
    """
    path = Path(path)
    df = read_table(path)
    if df.index.name == "case_id":
        df = df.reset_index()
    if df.shape[1] == 0:
        raise InputError(f"Feature table {path} has no columns.")
    key = "case_id" if "case_id" in df.columns else df.columns[0]
    if df.empty:
        raise InputError(f"Feature table {path} has a header but no rows.")
    ids = df[key]
    if ids.isna().any():
        rows = [int(i) + 2 for i in ids.index[ids.isna()][:10]]
        raise InputError(f"Feature table {path}: the case id column '{key}' is empty at row(s) {rows}.")
    ids = ids.astype(str)
    dup = ids.duplicated(keep=False)
    if dup.any():
        shown = {i: [int(r) + 2 for r in ids.index[ids == i][:5]] for i in sorted(set(ids[dup]))[:5]}
        raise InputError(f"Feature table {path} has {int(ids[dup].nunique())} case id(s) on several rows "
                         f"(case id: rows) {shown}; a feature table has one row per case.")
    df = df.assign(**{key: ids}).set_index(key).rename_axis("case_id")
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise InputError(f"Feature table {path} has non-numeric column(s) {bad[:5]}; a feature table holds numbers "
                         f"only (clinical columns belong in the cohort table).")
    return df


def study_feature_tables(study: Study) -> dict[str, pd.DataFrame]:
    """The feature tables the study brings by path in ``learn.features`` (file stem -> table)."""
    names = list(study.learn.features) if study.learn is not None else []
    out = {}
    for name in names:
        if name.lower().endswith(TABLE_SUFFIXES):
            path = study.resolve(name)
            if not path.exists():
                raise InputError(f"learn.features names the feature table {path}, which does not exist.")
            out[path.stem] = read_feature_table(path)
    return out
