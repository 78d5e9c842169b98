"""Clinical columns that may stand in for the label: the reader's or the pathologist's own verdict.

A clinical table often carries the answer in another form: the BI-RADS category or the
reader's "Interpretation" (which already say benign or malignant), the histological diagnosis,
how the finding was verified. Such a column gives a clinical model a high AUC that says nothing
about what the images add, and a reviewer will question it. :func:`label_proxies` checks every
clinical column two ways and flags it when either holds:

**Near-perfect alone.** The column's univariable AUC is at least :data:`NEAR_PERFECT_AUC`
(0.95), or the lower limit of its DeLong 95% confidence interval is at least
:data:`NEAR_PERFECT_CI_LOW` (0.90): one variable that separates the classes almost perfectly, or
whose interval leaves no room for ordinary discrimination, is more likely a restatement of the
label than a predictor (single clinical or imaging predictors of HER2 status reach AUCs of about
0.6-0.8). The AUC is direction-free for numeric and ordinal columns (the larger of AUC and
1 - AUC; missing cells left out); a categorical or multi-valued column is scored by the
positive rate of its value (the best any coding of the column can do), missing cells a value of
their own and values of fewer than :data:`MIN_CASES` cases pooled into one, so that a column
with one value per case (an identifier, free text) does not separate by chance. The rates come
from the same cases, which errs a little towards flagging.

**Named like a verdict.** The column's name, lower-cased with everything but letters and
digits removed, contains one of :data:`PROXY_NAMES` (``birads`` matches "BI-RADS", "bi_rads",
"BIRADS category"; ``diagnos`` matches "Diagnosis"; ``malignan`` matches "malignancy").

A flag is a warning for the reader of the results, not a decision: the stage keeps the column,
records the check in ``learn/<set>/label_proxies.csv`` and the report shows it beside the
results.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.evaluate.delong import delong_auc_ci

__all__ = ["MIN_CASES", "NEAR_PERFECT_AUC", "NEAR_PERFECT_CI_LOW", "PROXY_NAMES", "label_proxies", "proxy_name_match"]

#: A column whose univariable AUC reaches this is flagged.
NEAR_PERFECT_AUC = 0.95
#: A column whose AUC's 95% lower confidence limit reaches this is flagged.
NEAR_PERFECT_CI_LOW = 0.90
#: Values of a categorical column seen in fewer cases are pooled into one before scoring.
MIN_CASES = 5
#: Name fragments of columns that usually hold the reader's, the pathologist's or the outcome's verdict
#: (matched in the name lower-cased, with everything but letters and digits removed).
PROXY_NAMES = (
    "birads",          # BI-RADS category: the reader's assessment of malignancy
    "interpretation",  # the reader's verdict
    "diagnos",         # diagnosis, diagnostic
    "verdict",
    "assessment",
    "impression",
    "patholog",        # pathology, pathological
    "histolog",        # histology, histological (also histopathology)
    "biopsy",
    "verification",    # how the finding was confirmed (biopsy for suspicious, follow-up for benign)
    "malignan",        # malignant, malignancy
    "benign",
)

_COLUMNS = ["column", "type", "n", "auc", "ci_low", "ci_high", "name_match", "near_perfect", "flagged", "reason"]


def proxy_name_match(name: str) -> str | None:
    """The first :data:`PROXY_NAMES` fragment in ``name`` (lower-cased, letters and digits only), or None."""
    key = re.sub(r"[^0-9a-z]", "", str(name).lower())
    return next((p for p in PROXY_NAMES if p in key), None)


def _missing(values: pd.Series) -> np.ndarray:
    return values.isna().to_numpy() | values.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(bool)


def _value_rate(values: pd.Series, missing: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each case's score: the positive rate of its value (missing a value; rare values pooled)."""
    keys = pd.Series(np.where(missing, "<missing>", values.astype(str).str.strip()), dtype=object)
    counts = keys.map(keys.value_counts())
    keys = keys.where(counts >= MIN_CASES, "<rare>")
    return keys.map(pd.Series(y).groupby(keys).mean()).to_numpy(float)


def label_proxies(table: pd.DataFrame, y: Sequence[Any], types: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Check each clinical column for near-perfect discrimination and a verdict-like name (module docstring).

    Parameters
    ----------
    table : DataFrame of shape (n_cases, n_columns)
        Raw clinical columns (as in the manifest; missing cells None or NaN).
    y : array-like of shape (n_cases,)
        The 0/1 label.
    types : dict, optional
        ``column -> "numeric" | "ordinal" | "categorical" | "multi"`` (default: numeric when
        the column's dtype is, else categorical).

    Returns
    -------
    DataFrame
        One row per column: ``column, type, n`` (cases scored), ``auc, ci_low, ci_high``
        (DeLong 95%), ``name_match`` (the :data:`PROXY_NAMES` fragment, or empty),
        ``near_perfect``, ``flagged`` and ``reason`` (in words; empty when not flagged), flagged
        columns first, then by AUC.

    Raises
    ------
    InputError
        ``y`` is not 0/1 with both classes, or its length differs from the table's.

    Examples
    --------
    >>> t = pd.DataFrame({"BIRADS": ["5", "2", "4c", "3"] * 10, "Age": [61, 40, 55, 47] * 10})
    >>> out = label_proxies(t, [1, 0, 1, 0] * 10)
    >>> out.set_index("column").loc["BIRADS", ["name_match", "flagged"]].tolist()
    ['birads', True]
    """
    labels = np.asarray(y)
    if len(labels) != len(table):
        raise InputError(f"label_proxies: {len(labels)} labels for {len(table)} table rows.")
    labels = pd.to_numeric(pd.Series(labels), errors="coerce").to_numpy()
    if not np.isin(labels, (0, 1)).all() or len(np.unique(labels)) < 2:
        raise InputError("label_proxies needs a 0/1 label with both classes.")
    labels = labels.astype(int)
    rows = []
    for column in table.columns:
        values = table[column].reset_index(drop=True)
        kind = (types or {}).get(column) or ("numeric" if pd.api.types.is_numeric_dtype(values) else "categorical")
        missing = _missing(values)
        if kind in ("numeric", "ordinal"):
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(float)
            keep = ~missing & np.isfinite(numbers)
            score, target = numbers[keep], labels[keep]
        else:
            score, target = _value_rate(values, missing, labels), labels
        auc = lo = hi = float("nan")
        if len(np.unique(target)) == 2 and np.ptp(score) > 0:
            res = delong_auc_ci(target, score)
            auc, lo, hi = res.auc, res.ci_low, res.ci_high
            if kind in ("numeric", "ordinal") and auc < 0.5:  # direction-free: the column may run either way
                auc, lo, hi = 1 - auc, 1 - hi, 1 - lo
        match = proxy_name_match(column)
        near = bool(np.isfinite(auc) and (auc >= NEAR_PERFECT_AUC or lo >= NEAR_PERFECT_CI_LOW))
        reasons = []
        if near:
            reasons.append(f"separates the classes almost perfectly on its own (AUC {auc:.3f}, 95% CI "
                           f"{lo:.3f}-{hi:.3f})")
        if match:
            reasons.append(f"its name suggests a verdict ('{match}': the reader's, the pathologist's or the outcome's)")
        rows.append({"column": column, "type": kind, "n": len(target), "auc": auc, "ci_low": lo, "ci_high": hi,
                     "name_match": match or "", "near_perfect": near, "flagged": bool(near or match),
                     "reason": "; ".join(reasons)})
    out = pd.DataFrame(rows, columns=_COLUMNS)
    return out.sort_values(["flagged", "auc"], ascending=[False, False], na_position="last").reset_index(drop=True)
