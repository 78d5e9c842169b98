"""HER2 label rules (ASCO/CAP 2018) and plain label columns, against hand-worked cases."""

from __future__ import annotations

import pandas as pd
import pytest

from her2dlr.cohort.labels import apply_label_rule, her2_labels, parse_ihc, parse_ish
from her2dlr.errors import InputError


@pytest.mark.parametrize(
    ("ihc", "ish", "status", "low", "three"),
    [
        ("0", None, 0, 0, 0),
        ("1+", None, 0, 1, 1),
        ("1+", "negative", 0, 1, 1),
        ("2+", "negative", 0, 1, 1),
        ("2+", "not amplified", 0, 1, 1),
        ("2+", "positive", 1, None, 2),
        ("2+", "amplified", 1, None, 2),
        ("3+", None, 1, None, 2),
        (3, "positive", 1, None, 2),
        ("IHC 1+", "amplified", 1, None, 2),
    ],
)
def test_asco_cap_2018_table(ihc, ish, status, low, three):
    labels, problem = her2_labels(ihc, ish)
    assert labels == {"her2_status": status, "her2_low": low, "her2_three_class": three}
    assert problem is None


@pytest.mark.parametrize("ish", [None, "", "equivocal"])
def test_ihc_2plus_without_ish_is_reported_not_guessed(ish):
    labels, problem = her2_labels("2+", ish)
    assert labels == {"her2_status": None, "her2_low": None, "her2_three_class": None}
    assert "IHC 2+" in problem


def test_discordant_3plus_flagged_but_positive():
    labels, problem = her2_labels("3+", "negative")
    assert labels["her2_status"] == 1
    assert problem.startswith("discordant")


@pytest.mark.parametrize("bad", ["4+", "strong", "2++x"])
def test_bad_ihc_values_raise(bad):
    with pytest.raises(ValueError, match="IHC score"):
        parse_ihc(bad)


def test_parse_ish_variants():
    assert parse_ish("Amplified") == "positive"
    assert parse_ish("NEG") == "negative"
    assert parse_ish(float("nan")) is None
    with pytest.raises(ValueError, match="ISH result"):
        parse_ish("maybe")


def test_her2_low_rule_excludes_positives_with_reason():
    df = pd.DataFrame({"case_id": list("abcdef"), "ihc": ["0", "1+", "2+", "2+", "3+", "2+"],
                       "ish": [None, None, "neg", "pos", None, None]})
    res = apply_label_rule(df, "her2_low")
    assert res.label.iloc[:3].tolist() == [0, 1, 1]
    assert res.label.iloc[3:].isna().all()
    assert "HER2-positive" in res.reason.iloc[3]
    assert "IHC 2+ with ISH missing" in res.reason.iloc[5]
    assert res.counts() == {"HER2-zero": 1, "HER2-low": 2}


def test_three_class_counts():
    df = pd.DataFrame({"ihc": ["0", "1+", "2+", "3+", "3+"], "ish": [None, None, "neg", None, None]})
    res = apply_label_rule(df, "her2_three_class")
    assert res.counts() == {"HER2-zero": 1, "HER2-low": 2, "HER2-positive": 2}


def test_bad_ihc_in_table_names_the_row():
    df = pd.DataFrame({"case_id": ["p1", "p2"], "ihc": ["1+", "5+"]})
    with pytest.raises(InputError, match="Row 1 \\(case p2\\)"):
        apply_label_rule(df, "her2_status")


def test_column_rule_positive_negative_and_other_values():
    df = pd.DataFrame({"Classification": ["benign", "malignant", "normal", None, "Malignant "]})
    res = apply_label_rule(df, "column", column="Classification", positive=["malignant"], negative=["benign"])
    assert res.label.iloc[:2].tolist() == [0, 1]
    assert res.label.iloc[4] == 1
    assert "neither positive nor negative" in res.reason.iloc[2]
    assert "missing" in res.reason.iloc[3]


def test_missing_label_column_names_it_and_suggests():
    df = pd.DataFrame({"Classification": ["a", "b"]})
    with pytest.raises(InputError, match="'Clasification'.*Did you mean 'Classification'"):
        apply_label_rule(df, "column", column="Clasification", positive=["a"])


def test_one_class_only_is_refused():
    df = pd.DataFrame({"y": ["benign", "benign", "normal"]})
    with pytest.raises(InputError, match="one class only"):
        apply_label_rule(df, "column", column="y", positive=["malignant"], negative=["benign"])


def test_binary_numeric_column_needs_no_values():
    df = pd.DataFrame({"y": [0, 1, 1, 0]})
    assert apply_label_rule(df, "column", column="y").label.tolist() == [0, 1, 1, 0]
