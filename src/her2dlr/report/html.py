"""HTML rendering of the report (Jinja2 template, CSS and figures inlined: one self-contained file)."""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2
import pandas as pd

from her2dlr.report.document import Section, TableBlock, slug
from her2dlr.report.tables import format_frame

__all__ = ["TEMPLATE", "render_html", "table_view"]

#: Template file under ``her2dlr/report/templates``.
TEMPLATE = "report.html.j2"
#: Cells up to this many characters are kept on one line.
_SHORT = 22
_NUMERIC = re.compile(r"^[<>\u2264\u2265]?[-+\u2212]?\d[\d.,]*(e[-+]?\d+)?%?( \([^()]{0,32}\))?$")


@dataclass
class _Cell:
    text: str
    cls: str


@dataclass
class _Row:
    cells: list[_Cell]
    cls: str


@dataclass
class _TableView:
    columns: list[str]
    rows: list[_Row]
    hidden: int


def _text(v: Any) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def table_view(block: TableBlock) -> _TableView:
    """What the template needs of a table: header, cells as text with alignment classes, rows left out."""
    frame = block.display if block.display is not None else format_frame(block.data)
    limit = block.max_rows if block.max_rows is not None else len(frame)
    shown = frame.iloc[:limit]
    texts = [[_text(v) for v in r] for r in shown.itertuples(index=False, name=None)]
    col_cls = []
    for j, c in enumerate(frame.columns):
        column = [row[j] for row in texts if row[j]]
        numeric = bool(column) and all(len(t) < 40 and _NUMERIC.match(t) for t in column)
        col_cls.append(f"c-{slug(c)} num" if numeric else f"c-{slug(c)}")
    classes = block.row_classes or []
    rows = [_Row([_Cell(t, f"{cls} short" if 0 < len(t) <= _SHORT else cls) for t, cls in zip(row, col_cls)],
                 classes[i] if i < len(classes) else "") for i, row in enumerate(texts)]
    return _TableView([str(c) for c in frame.columns], rows, max(0, len(frame) - len(shown)))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("her2dlr", "report/templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["b64"] = _b64
    env.filters["table_view"] = table_view
    return env


def render_html(sections: list[Section], *, title: str, run_name: str, created: str, version: str,
                summary: list[str] | None = None) -> str:
    """The whole report as one HTML document (CSS inline, figures as base64 PNG data).

    Parameters
    ----------
    sections : list of Section
        Numbered sections (:func:`her2dlr.report.build.build_report` numbers them).
    title : str
    run_name : str
        Name of the run folder shown in the header.
    created : str
    version : str
    summary : list of str, optional
        Paragraphs of the summary box.
    """
    css = resources.files("her2dlr").joinpath("report/templates/report.css").read_text(encoding="utf-8")
    template = _environment().get_template(TEMPLATE)
    return template.render(sections=sections, title=title, run_name=run_name, created=created, version=version,
                           summary=summary or [], css=css)
