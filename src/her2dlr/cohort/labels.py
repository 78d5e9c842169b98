"""Target labels: HER2 rules (ASCO/CAP 2018) and plain label columns.

HER2 from IHC score and ISH result (seeds 000, 001, 003):

=========  ==============  ===========  ==============  =================
IHC        ISH             HER2 status  HER2-low vs 0   three classes
=========  ==============  ===========  ==============  =================
0          not positive    negative     zero            HER2-zero
1+         not positive    negative     low             HER2-low
2+         negative        negative     low             HER2-low
2+         positive        positive     (excluded)      HER2-positive
2+         missing/equiv.  *invalid*: reported, never guessed
3+         any             positive     (excluded)      HER2-positive
0 / 1+     positive        positive     (excluded)      HER2-positive
=========  ==============  ===========  ==============  =================

IHC 3+ with a negative ISH is kept positive (IHC 3+ defines positivity) and flagged
``discordant`` in the label report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from her2dlr.errors import InputError, nearest

__all__ = ["HER2_CLASSES", "LabelResult", "apply_label_rule", "her2_labels", "parse_ihc", "parse_ish"]

HER2_CLASSES = {
    "her2_status": ["HER2-negative", "HER2-positive"],
    "her2_low": ["HER2-zero", "HER2-low"],
    "her2_three_class": ["HER2-zero", "HER2-low", "HER2-positive"],
}

_IHC_RE = re.compile(r"^\s*(?:ihc\s*)?(?:score\s*)?\+?([0-3])\s*\+?\s*$", re.IGNORECASE)
_ISH_POS = {"positive", "pos", "amplified", "amp", "+", "1", "yes", "true", "1.0"}
_ISH_NEG = {"negative", "neg", "not amplified", "non-amplified", "nonamplified", "-", "0", "no", "false", "0.0"}
_ISH_EQUIVOCAL = {"equivocal", "borderline"}


def parse_ihc(value: object) -> int | None:
    """IHC score as 0, 1, 2 or 3 from '0', '1+', '2+', '3+', 2, 'IHC 2+', '+3'; None when missing.

    Raises
    ------
    ValueError
        When the value is present but is not an IHC score.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and float(value).is_integer()):
        if int(value) in (0, 1, 2, 3):
            return int(value)
        raise ValueError(f"IHC score {value!r} is not 0, 1+, 2+ or 3+")
    text = str(value).strip()
    if not text:
        return None
    m = _IHC_RE.match(text)
    if not m:
        raise ValueError(f"IHC score {value!r} is not 0, 1+, 2+ or 3+")
    return int(m.group(1))


def parse_ish(value: object) -> str | None:
    """ISH result as 'positive', 'negative' or 'equivocal'; None when missing.

    Raises
    ------
    ValueError
        When the value is present but not a recognised ISH result.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip().lower()
    if not text:
        return None
    if text in _ISH_POS:
        return "positive"
    if text in _ISH_NEG:
        return "negative"
    if text in _ISH_EQUIVOCAL:
        return "equivocal"
    raise ValueError(f"ISH result {value!r} is not positive/amplified, negative/not amplified or equivocal")


def her2_labels(ihc: object, ish: object) -> tuple[dict[str, int | None], str | None]:
    """Derive the three HER2 labels of one case.

    Returns
    -------
    labels : dict
        ``{"her2_status": 0/1, "her2_low": 0/1/None, "her2_three_class": 0/1/2}`` (None where undefined).
    problem : str or None
        Why no label could be derived (invalid combination), or ``"discordant"`` for IHC 3+ / ISH negative.
    """
    none = {"her2_status": None, "her2_low": None, "her2_three_class": None}
    score = parse_ihc(ihc)
    result = parse_ish(ish)
    if score is None:
        if result == "positive":
            return {"her2_status": 1, "her2_low": None, "her2_three_class": 2}, None
        return none, "IHC score missing"
    if score == 3 or result == "positive":
        flag = "discordant: IHC 3+ with negative ISH" if (score == 3 and result == "negative") else None
        return {"her2_status": 1, "her2_low": None, "her2_three_class": 2}, flag
    if score == 2:
        if result == "negative":
            return {"her2_status": 0, "her2_low": 1, "her2_three_class": 1}, None
        what = "equivocal" if result == "equivocal" else "missing"
        return none, f"IHC 2+ with ISH {what}: HER2 status cannot be assigned (ASCO/CAP 2018 needs ISH)"
    low = 1 if score == 1 else 0
    return {"her2_status": 0, "her2_low": low, "her2_three_class": low}, None


@dataclass
class LabelResult:
    """Labels of a table: ``label`` (Int64, missing when excluded), ``reason`` per excluded row, class names."""

    label: pd.Series
    reason: pd.Series
    classes: list[str]
    flags: pd.Series

    def counts(self) -> dict[str, int]:
        vc = self.label.dropna().astype(int).value_counts()
        return {name: int(vc.get(i, 0)) for i, name in enumerate(self.classes)}


def _require_column(df: pd.DataFrame, column: str, what: str) -> None:
    if column not in df.columns:
        raise InputError(
            f"{what} column '{column}' is not in the cohort. Columns: {', '.join(map(str, df.columns))}."
            f"{nearest(column, map(str, df.columns))}"
        )


def _norm(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip().lower()


def apply_label_rule(
    df: pd.DataFrame,
    rule: str,
    *,
    column: str | None = None,
    positive: list[object] | None = None,
    negative: list[object] | None = None,
    ihc_column: str = "ihc",
    ish_column: str = "ish",
) -> LabelResult:
    """Derive the target of every row of ``df`` by one of the rules of :class:`her2dlr.config.LabelRule`.

    Rows whose label cannot be derived get a missing label and a reason; they are not dropped.

    Raises
    ------
    InputError
        Label column missing, IHC/ISH values that are not scores, or fewer than two classes
        among the labelled rows.
    """
    reason = pd.Series([None] * len(df), index=df.index, dtype=object)
    flags = pd.Series([None] * len(df), index=df.index, dtype=object)
    if rule == "column":
        assert column is not None  # guaranteed by LabelRule validation
        _require_column(df, column, "Label")
        values = df[column]
        present = values.dropna()
        distinct = sorted({_norm(v) for v in present})
        pos = {_norm(v) for v in positive} if positive else None
        neg = {_norm(v) for v in negative} if negative else None
        if pos is None and neg is None:
            if set(distinct) <= {"0", "1"} or set(distinct) <= {"false", "true"}:
                pos, neg = {"1", "true"}, {"0", "false"}
            else:
                raise InputError(
                    f"Label column '{column}' holds {distinct[:10]}: say which values are positive "
                    f"(label.positive) and which negative (label.negative)."
                )
        labels = []
        for idx, v in values.items():
            if v is None or (isinstance(v, float) and np.isnan(v)):
                labels.append(None)
                reason[idx] = f"label '{column}' missing"
                continue
            nv = _norm(v)
            if pos is not None and nv in pos:
                labels.append(1)
            elif (neg is not None and nv in neg) or neg is None:
                labels.append(0)
            elif pos is None:
                labels.append(1)
            else:
                labels.append(None)
                reason[idx] = f"label '{column}' = {v!r} is neither positive nor negative"
        classes = [
            "/".join(map(str, negative)) if negative else "negative",
            "/".join(map(str, positive)) if positive else "positive",
        ]
        label = pd.Series(labels, index=df.index, dtype="Int64")
    elif rule in HER2_CLASSES:
        _require_column(df, ihc_column, "IHC")
        ish = df[ish_column] if ish_column in df.columns else pd.Series([None] * len(df), index=df.index)
        labels = []
        for pos_i, (idx, ihc_v) in enumerate(df[ihc_column].items()):
            try:
                derived, problem = her2_labels(ihc_v, ish.iloc[pos_i])
            except ValueError as exc:
                raise InputError(f"Row {idx} (case {df.get('case_id', pd.Series(dtype=object)).get(idx, idx)}): {exc}.") from None
            value = derived[rule]
            if problem and problem.startswith("discordant"):
                flags[idx] = problem
                problem = None
            if value is None and problem is None:
                problem = "HER2-positive: not part of HER2-low vs HER2-zero"
            reason[idx] = problem
            labels.append(value)
        classes = HER2_CLASSES[rule]
        label = pd.Series(labels, index=df.index, dtype="Int64")
    else:
        raise InputError(f"Unknown label rule '{rule}'. Allowed: column, {', '.join(HER2_CLASSES)}.{nearest(rule, HER2_CLASSES)}")

    present = label.dropna()
    if present.nunique() < 2:
        only = classes[int(present.iloc[0])] if len(present) else "none"
        raise InputError(
            f"The label ({rule}{' on ' + repr(column) if column else ''}) has one class only "
            f"({only}, {len(present)} labelled rows): a model needs at least two."
        )
    return LabelResult(label=label, reason=reason, classes=classes, flags=flags)
