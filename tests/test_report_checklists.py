"""Checklist data and filling, and the small formatting helpers of the report."""

from __future__ import annotations

import pandas as pd
import pytest

from her2dlr.report.checklists import CLEAR, METRICS, TODO, TRIPOD_AI, RunFacts, fill_checklist
from her2dlr.report.document import TableBlock
from her2dlr.report.html import table_view
from her2dlr.report.tables import fmt_ci, fmt_p, funnel_summary


@pytest.mark.parametrize(("checklist", "n_items", "last"), [(TRIPOD_AI, 52, "27c"), (CLEAR, 58, "58"),
                                                            (METRICS, 30, "30")])
def test_items_are_numbered_and_unique(checklist: object, n_items: int, last: str) -> None:
    numbers = [i.number for i in checklist.items]
    assert len(numbers) == n_items == len(set(numbers)) and numbers[-1] == last


def test_unknown_items_are_left_to_the_authors() -> None:
    facts = RunFacts()
    facts.set("sample_size", "780 images, 600 patients", "Cohort")
    facts.set("flow", None, "Cohort")  # unknown facts are not recorded
    table = fill_checklist(TRIPOD_AI, facts).set_index("item")
    assert table.loc["10", "answer"] == "780 images, 600 patients" and table.loc["10", "see"] == "Cohort"
    assert table.loc["20a", "status"] == TODO and table.loc["17", "answer"] == TODO
    assert (fill_checklist(METRICS, RunFacts())["status"] == TODO).all()


def test_formatting_helpers() -> None:
    assert fmt_p(0.0004) == "<0.001" and fmt_p(0.0123) == "0.012" and fmt_p(0.456) == "0.46"
    assert fmt_ci(0.8512, 0.8, 0.9) == "0.851 (0.800\u20130.900)" and fmt_ci(0.5, float("nan"), 1) == "0.500"
    funnel = pd.DataFrame({"fold": ["a", "a", "b", "b"], "step": ["ttest", "lasso"] * 2, "n_in": [100, 20, 100, 30],
                           "n_out": [20, 5, 30, 7], "model": "m"})
    summ = funnel_summary(funnel)
    assert summ["step"].tolist() == ["input", "ttest", "lasso"]
    assert summ["median"].tolist() == [100, 25, 6] and summ["min"].tolist() == [100, 20, 5]
    view = table_view(TableBlock("t", "c", pd.DataFrame({"n": [1.0, None, 3.0], "name": ["a", "b", "c"]})))
    assert [r.cells[0].text for r in view.rows] == ["1", "", "3"]  # whole numbers shown as integers
    assert "num" in view.rows[0].cells[0].cls and "num" not in view.rows[0].cells[1].cls
