"""PDF of the report, rendered from the same HTML by WeasyPrint (which uses the system's Pango)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from her2dlr.errors import Her2dlrError
from her2dlr.io.atomic import atomic_path

__all__ = ["PDFError", "write_pdf"]


class PDFError(Her2dlrError, RuntimeError):
    """WeasyPrint (or the system libraries it needs) is not usable."""


@contextmanager
def _quiet(names: tuple[str, ...] = ("weasyprint", "fontTools")) -> Iterator[None]:
    """Silence the INFO/WARNING chatter of WeasyPrint and fontTools while rendering (levels restored after)."""
    loggers = [logging.getLogger(n) for n in names]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, before):
            lg.setLevel(level)


def write_pdf(html: str, target: str | os.PathLike[str]) -> Path:
    """Render ``html`` to a PDF at ``target`` (atomically).

    Raises
    ------
    PDFError
        WeasyPrint cannot be imported (e.g. Pango is missing on the system).
    """
    try:
        import weasyprint
    except (ImportError, OSError) as exc:
        raise PDFError(f"WeasyPrint is not usable ({exc}); install the system Pango library, or build the "
                       "report with pdf=False (`--no-pdf`).") from None
    target = Path(target)
    with _quiet(), atomic_path(target) as tmp:
        weasyprint.HTML(string=html, base_url=str(target.parent)).write_pdf(tmp)
    return target
