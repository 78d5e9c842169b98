"""Report-side table assembly: formatting numbers and reshaping stage outputs for the page.

No statistics are computed here (they live in :mod:`her2dlr.evaluate`); these helpers turn
their results and the run's CSV files into the tables a results section shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["METRIC_NAMES", "fmt_ci", "fmt_num", "fmt_p", "format_frame", "funnel_summary", "metrics_display"]

#: Column headings of metric names.
METRIC_NAMES = {
    "auc": "AUC", "accuracy": "Accuracy", "sensitivity": "Sensitivity", "specificity": "Specificity",
    "ppv": "PPV", "npv": "NPV", "youden": "Youden index", "threshold": "Threshold", "brier": "Brier score",
}


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and math.isnan(v))


def fmt_num(v: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals ('' when missing; integers as such)."""
    if _missing(v):
        return ""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{digits}f}"
    return str(v)


def fmt_p(p: Any) -> str:
    """A p-value as journals print it: ``<0.001``, ``0.012``, ``0.43``."""
    if _missing(p):
        return ""
    p = float(p)
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def fmt_ci(v: Any, lo: Any, hi: Any, digits: int = 3) -> str:
    """``value (low-high)``; just the value when the interval is missing."""
    if _missing(v):
        return ""
    if _missing(lo) or _missing(hi):
        return fmt_num(float(v), digits)
    sep = " to " if float(lo) < 0 or float(hi) < 0 else "\u2013"  # a dash would read as a minus sign
    return f"{float(v):.{digits}f} ({float(lo):.{digits}f}{sep}{float(hi):.{digits}f})"


def format_frame(df: pd.DataFrame, *, digits: int = 3, p_columns: tuple[str, ...] = ("p", "p_value", "hl_p"),
                 formats: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """A copy of ``df`` with every cell as text: floats rounded, p-value columns as :func:`fmt_p`.

    Parameters
    ----------
    formats : mapping column -> callable, optional
        Column-specific formatters (value -> str).
    """
    formats = dict(formats or {})
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        values = df[col]
        if col in formats:
            out[col] = [formats[col](v) for v in values]
        elif col in p_columns:
            out[col] = [fmt_p(v) for v in values]
        elif _whole_numbers(values):
            out[col] = ["" if _missing(v) else str(int(v)) for v in values]
        else:
            out[col] = [fmt_num(v, digits) if not isinstance(v, str) else v for v in values]
    return out


def _whole_numbers(values: pd.Series) -> bool:
    """Numeric column whose non-missing values are all whole numbers (counts stored as floats)."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    v = pd.to_numeric(values, errors="coerce").dropna()
    return len(v) > 0 and bool(np.all(np.isfinite(v))) and bool((v == np.round(v)).all()) and float(v.abs().max()) < 1e15


def metrics_display(metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The models table: summary rows of ``metrics.csv`` (per-repetition rows left out).

    Returns
    -------
    data : DataFrame
        Numeric rows kept (scope ``holdout``, ``final``, ``mean``, ``fold-mean`` or anything that is
        not a repetition ``r<k>``).
    display : DataFrame
        The same rows with ``AUC (95% CI)`` and rounded metrics.
    """
    if metrics.empty:
        return metrics, metrics
    scope = metrics["scope"].astype(str) if "scope" in metrics.columns else pd.Series("", index=metrics.index)
    data = metrics[~scope.str.match(r"^r\d+$")].copy()
    order = {"train": 0, "train_oof": 1, "test": 2}
    data = data.assign(_o=data["split"].map(order).fillna(3)).sort_values(["_o", "model"]).drop(columns="_o")
    scope = data.get("scope", pd.Series("", index=data.index)).astype(str)
    display = pd.DataFrame({
        "Model": data["model"],
        "Scheme": scope.map({"holdout": "hold-out", "mean": "k-fold", "fold-mean": "k-fold",
                             "final": "final fit"}).fillna(scope),
        "Set": data["split"].map({"train": "train (apparent)", "train_oof": "train (inner CV)",
                                  "test": "test"}).fillna(data["split"].astype(str)),
        "n (pos.)": [f"{int(n)} ({int(p)})" if not (_missing(n) or _missing(p)) else "" for n, p in
                     zip(data["n"], data["n_pos"])],
        "AUC (95% CI)": [fmt_ci(a, lo, hi) for a, lo, hi in zip(data["auc"], data["ci_low"], data["ci_high"])],
    })
    for col in ("accuracy", "sensitivity", "specificity", "ppv", "npv", "threshold"):
        if col in data.columns:
            display[METRIC_NAMES[col]] = [fmt_num(v) for v in data[col]]
    return data.reset_index(drop=True), display.reset_index(drop=True)


def funnel_summary(funnel: pd.DataFrame) -> pd.DataFrame:
    """Features kept after each selection step per model: median, min and max over folds.

    Parameters
    ----------
    funnel : DataFrame
        ``funnel.csv`` rows: ``fold, step, n_in, n_out, model`` (``scheme`` optional).

    Returns
    -------
    DataFrame
        ``model, order, step, median, min, max, n_folds``; ``order`` 0 is the input (``step ==
        "input"``, the ``n_in`` of the first step).
    """
    if funnel.empty:
        return pd.DataFrame(columns=["model", "order", "step", "median", "min", "max", "n_folds"])
    rows = []
    for model, part in funnel.groupby("model", sort=False):
        part = part.copy()
        part["pos"] = part.groupby("fold").cumcount()
        steps = part.groupby("pos")["step"].first().astype(str)
        seen: dict[str, int] = {}
        for pos, step in steps.items():  # a step used twice gets "(2)" so names stay unique
            seen[step] = seen.get(step, 0) + 1
            if seen[step] > 1:
                steps[pos] = f"{step} ({seen[step]})"
        first = part[part["pos"] == 0]
        rows.append({"model": model, "order": 0, "step": "input", "median": float(first["n_in"].median()),
                     "min": float(first["n_in"].min()), "max": float(first["n_in"].max()),
                     "n_folds": int(first["fold"].nunique())})
        for pos, step in steps.items():
            s = part[part["pos"] == pos]["n_out"]
            rows.append({"model": model, "order": int(pos) + 1, "step": str(step), "median": float(s.median()),
                         "min": float(s.min()), "max": float(s.max()), "n_folds": len(s)})
    return pd.DataFrame(rows)
