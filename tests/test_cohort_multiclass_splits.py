"""Split counts of a three-class label (HER2-zero / HER2-low / HER2-positive): one count per class in
``splits.csv`` and in the report's cohort tables, checked against a hand count of the manifest."""

from __future__ import annotations

import pandas as pd

from her2dlr.cohort.build import build_cohort, split_summary
from her2dlr.config import load_study
from her2dlr.report.context import ReportContext
from her2dlr.report.document import TableBlock
from her2dlr.report.html import table_view
from her2dlr.report.run import RunFolder
from her2dlr.report.sections.cohort import cohort_section, splits_section
from test_learn_multiclass import _table_study

CLASSES = ["HER2-zero", "HER2-low", "HER2-positive"]


def _hand_count(labels: pd.Series) -> dict[str, int]:
    return {name: sum(1 for v in labels if int(v) == k) for k, name in enumerate(CLASSES)}


def _cells(block) -> pd.DataFrame:
    view = table_view(block)
    return pd.DataFrame([[c.text for c in r.cells] for r in view.rows], columns=view.columns)


def test_three_class_splits_count_each_class_and_the_report_shows_them(tmp_path):
    build = build_cohort(load_study(_table_study(tmp_path, "her2_three_class", n=30)), progress=False)
    table = build.manifest.table
    splits = pd.read_csv(tmp_path / "runs" / "her2" / "cohort" / "splits.csv")
    assert "n_pos" not in splits.columns and "n_neg" not in splits.columns
    fold_col = build.manifest.fold_columns[0]
    for _, row in splits.iterrows():
        if row["partition"] == "holdout":
            part = table[table["split"] == row["part"]]
        else:
            part = table[table[fold_col] == int(str(row["part"]).removeprefix("fold "))]
        hand = _hand_count(part["label"])
        assert {name: int(row[f"n_{name}"]) for name in CLASSES} == hand
        assert sum(hand.values()) == row["n"]
    assert (splits.loc[splits["partition"] == "holdout", [f"n_{c}" for c in CLASSES]].to_numpy() > 0).all()

    ctx = ReportContext.from_run(RunFolder(tmp_path / "runs" / "her2"))
    flow = next(b for b in cohort_section(ctx).all_blocks() if isinstance(b, TableBlock) and b.name == "cohort_flow")
    cells = _cells(flow).set_index("step")
    assert "positive" not in cells.columns and list(cells.columns[-3:]) == CLASSES
    included = _hand_count(table.loc[table["include"], "label"])
    assert [int(cells.loc["included", c]) for c in CLASSES] == list(included.values())
    for name in ("train", "test"):
        hand = _hand_count(table.loc[table["split"] == name, "label"])
        assert [int(cells.loc[f"split: {name}", c]) for c in CLASSES] == list(hand.values())
    shown = _cells(next(b for b in splits_section(ctx).all_blocks() if isinstance(b, TableBlock)))
    assert [f"n_{c}" for c in CLASSES] == [c for c in shown.columns if c.startswith("n_")]
    assert "prevalence" not in shown.columns  # a share of 'label 1' would be the HER2-low share


def test_binary_splits_keep_positive_and_negative_columns(tmp_path):
    build = build_cohort(load_study(_table_study(tmp_path, "her2_status", n=30)), progress=False)
    splits = split_summary(build.manifest)
    assert list(splits.columns) == ["partition", "part", "n", "n_pos", "n_neg", "patients", "groups_straddling"]
    test = build.manifest.table[build.manifest.table["split"] == "test"]
    row = splits[(splits["partition"] == "holdout") & (splits["part"] == "test")].iloc[0]
    assert (row["n_pos"], row["n_neg"]) == ((test["label"] == 1).sum(), (test["label"] == 0).sum())
