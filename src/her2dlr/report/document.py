"""The report as data: sections made of paragraphs, notes, figures and tables.

Section builders (:mod:`her2dlr.report.sections`) return :class:`Section` objects; the HTML
renderer (:mod:`her2dlr.report.html`) turns them into markup and :func:`her2dlr.report.build.build_report`
writes every :class:`FigureBlock` as PNG and every :class:`TableBlock` as CSV. Nothing here
computes statistics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

__all__ = ["Block", "FigureBlock", "Note", "Paragraph", "Section", "TableBlock", "slug"]


def slug(text: str) -> str:
    """A file- and anchor-safe name: lower case letters, digits and ``_``."""
    out = re.sub(r"[^0-9a-zA-Z]+", "_", str(text)).strip("_").lower()
    return out or "x"


@dataclass
class Paragraph:
    """Running text (plain text; the renderer escapes it)."""

    text: str
    kind: str = field(default="paragraph", init=False)


@dataclass
class Note:
    """A boxed remark: ``missing`` (an optional part the run lacks), ``info`` or ``warning``."""

    text: str
    level: Literal["missing", "info", "warning", "error"] = "info"
    kind: str = field(default="note", init=False)


@dataclass
class FigureBlock:
    """A figure: PNG bytes, its caption and the run files it was drawn from.

    Attributes
    ----------
    name : str
        File stem under ``report/figures/`` (unique within a report).
    caption : str
    png : bytes
    sources : list of str
        Run-relative paths of the files the figure is computed from (rule 4 of the design).
    width : str
        CSS width of the image in the page (e.g. ``"100%"``, ``"70%"``).
    data : DataFrame, optional
        The numbers drawn, written beside the PNG as ``<name>.csv``.
    """

    name: str
    caption: str
    png: bytes
    sources: list[str] = field(default_factory=list)
    width: str = "100%"
    data: pd.DataFrame | None = None
    number: int = 0
    kind: str = field(default="figure", init=False)


@dataclass
class TableBlock:
    """A table: the data written as CSV and, optionally, a formatted twin shown in the page.

    Attributes
    ----------
    name : str
        File stem under ``report/tables/`` (unique within a report).
    caption : str
    data : DataFrame
        What the CSV holds (numbers unformatted).
    display : DataFrame, optional
        What the page shows (default: ``data`` with floats rounded to 3 decimals).
    note : str
        Footnote under the table.
    sources : list of str
    row_classes : list of str, optional
        One CSS class per displayed row (e.g. ``"todo"`` for checklist items left open).
    max_rows : int, optional
        Rows shown in the page (the CSV keeps all of them).
    """

    name: str
    caption: str
    data: pd.DataFrame
    display: pd.DataFrame | None = None
    note: str = ""
    sources: list[str] = field(default_factory=list)
    row_classes: list[str] | None = None
    max_rows: int | None = None
    number: int = 0
    kind: str = field(default="table", init=False)


Block = Paragraph | Note | FigureBlock | TableBlock


@dataclass
class Section:
    """A numbered section of the report with its blocks and subsections."""

    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    subsections: list[Section] = field(default_factory=list)
    number: str = ""

    def add(self, *blocks: Block | None) -> Section:
        """Append blocks (``None`` entries are skipped); return ``self``."""
        self.blocks.extend(b for b in blocks if b is not None)
        return self

    def text(self, text: str) -> Section:
        """Append a paragraph."""
        return self.add(Paragraph(text))

    def note(self, text: str, level: Literal["missing", "info", "warning", "error"] = "info") -> Section:
        """Append a note."""
        return self.add(Note(text, level))

    def sub(self, sid: str, title: str) -> Section:
        """Create, append and return a subsection with anchor ``sid``."""
        child = Section(id=sid, title=title)
        self.subsections.append(child)
        return child

    def walk(self) -> list[Section]:
        """This section and all subsections, depth first."""
        out = [self]
        for s in self.subsections:
            out.extend(s.walk())
        return out

    def all_blocks(self) -> list[Block]:
        """Blocks of this section and its subsections, in reading order."""
        return [b for s in self.walk() for b in s.blocks]
