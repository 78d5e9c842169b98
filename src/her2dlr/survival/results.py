"""Base class of the survival result objects (lifelines style).

Every analysis returns an object with a ``.summary`` DataFrame, ``print_summary()``,
``_repr_html_`` for notebooks and ``to_csv``; nothing is printed unless asked for.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from her2dlr.io.atomic import write_csv_atomic

__all__ = ["SurvivalResult", "format_hr", "format_p"]


def format_p(p: float) -> str:
    """``"p < 0.001"``, ``"p = 0.048"`` (below 0.1) or ``"p = 0.66"`` (NaN gives ``"p = NA"``)."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "p = NA"
    if p < 0.001:
        return "p < 0.001"
    if p < 0.1:
        return f"p = {p:.3f}"
    return f"p = {p:.2f}"


def format_hr(hr: float, low: float, high: float, *, level: float = 0.95) -> str:
    """``"HR 0.91, 95% CI 0.60-1.38"``."""
    return f"HR {hr:.2f}, {level * 100:.0f}% CI {low:.2f}-{high:.2f}"


class SurvivalResult:
    """Common behaviour of result objects; subclasses define :attr:`summary` and :meth:`_header`."""

    #: Title printed above the summary.
    title: str = "result"

    @property
    def summary(self) -> pd.DataFrame:  # pragma: no cover - always overridden
        """The main table of the result."""
        raise NotImplementedError

    def _header(self) -> dict[str, Any]:
        """Key-value lines printed above the summary table."""
        return {}

    def _text(self, decimals: int = 3) -> str:
        lines = [f"<{type(self).__name__}: {self.title}>"]
        for key, value in self._header().items():
            if isinstance(value, float):
                value = f"{value:.{decimals}g}" if abs(value) < 1e-3 and value != 0 else round(value, decimals)
            lines.append(f"{key:>24} = {value}")
        lines.append("---")
        with pd.option_context("display.width", 160, "display.max_columns", 30):
            lines.append(self.summary.to_string(float_format=lambda v: f"{v:.{decimals}f}"))
        return "\n".join(lines)

    def print_summary(self, decimals: int = 3, file: TextIO | None = None) -> None:
        """Print the header and the summary table.

        Parameters
        ----------
        decimals : int
            Digits shown after the decimal point.
        file : text stream, optional
            Where to print (default ``sys.stdout``).
        """
        print(self._text(decimals), file=file or sys.stdout)

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :attr:`summary` to ``path`` atomically and return the path."""
        return write_csv_atomic(self.summary.reset_index(), path)

    def __repr__(self) -> str:
        head = ", ".join(f"{k}={v}" for k, v in list(self._header().items())[:4])
        return f"<{type(self).__name__}: {self.title}{'; ' + head if head else ''}>"

    def _repr_html_(self) -> str:
        head = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in self._header().items())
        return (
            f"<p><b>{type(self).__name__}</b>: {self.title}</p>"
            f"<table>{head}</table>{self.summary.to_html(float_format=lambda v: f'{v:.3f}')}"
        )
