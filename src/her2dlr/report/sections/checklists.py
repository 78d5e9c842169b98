"""Reporting checklists: TRIPOD+AI, CLEAR and METRICS, filled from the facts the other sections recorded."""

from __future__ import annotations

import pandas as pd

from her2dlr.report.checklists import CHECKLISTS, TODO, fill_checklist
from her2dlr.report.context import ReportContext
from her2dlr.report.document import Section

__all__ = ["checklists_section"]


def checklists_section(ctx: ReportContext) -> Section:
    """One table per checklist; items the run cannot answer say "to be completed by the authors"."""
    sec = Section("checklists", "Reporting checklists")
    ctx.facts.set("checklists", "TRIPOD+AI, CLEAR and METRICS checklists are attached to this report.", sec.title)
    sec.text("Each item is answered from the run where the run knows the answer (with the section to look at); "
             f"every other item is marked \u201c{TODO}\u201d. The item wording is a short paraphrase: check each "
             "answer against the published checklist before submission.")
    summary = []
    for cl in CHECKLISTS:
        table = fill_checklist(cl, ctx.facts)
        n_done = int((table["status"] != TODO).sum())
        summary.append({"checklist": cl.name, "items": len(table), "from the run": n_done,
                        "to be completed by the authors": len(table) - n_done, "reference": cl.reference})
        sub = sec.sub(f"checklist_{cl.key}", f"{cl.name} ({n_done} of {len(table)} items from the run)")
        display = table[["item", "topic", "requirement", "answer", "see"]].rename(columns=str.capitalize)
        sub.add(ctx.table(f"checklist_{cl.key}", f"{cl.name} checklist ({cl.reference}).", table, display=display,
                          row_classes=["todo" if s == TODO else "done" for s in table["status"]]))
    sec.blocks.insert(1, ctx.table("checklist_summary", "Checklist items answered from the run.", pd.DataFrame(summary)))
    return sec
