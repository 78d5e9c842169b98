"""Shared figure helpers: Agg figures, report style, model colours, PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "DPI",
    "NEG_COLOR",
    "POS_COLOR",
    "grid_shape",
    "model_colors",
    "new_figure",
    "png_bytes",
    "report_style",
    "short_label",
]

#: Resolution of the PNG files (also what the HTML embeds).
DPI = 130
POS_COLOR = "#d6604d"
NEG_COLOR = "#4393c3"

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
            "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"]

_RC: dict[str, Any] = {
    "font.size": 8.5,
    "axes.titlesize": 9.5,
    "axes.labelsize": 8.5,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
}


@contextmanager
def report_style() -> Iterator[None]:
    """Local matplotlib settings of the report figures (no global state is changed)."""
    with matplotlib.rc_context(_RC):
        yield


def new_figure(width: float, height: float, *, layout: str | None = "constrained") -> Figure:
    """A figure on the Agg canvas (no pyplot), ``width`` x ``height`` inches."""
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, *, dpi: int = DPI) -> bytes:
    """Render ``fig`` as PNG bytes (cropped to its content unless its layout engine already fits it)."""
    buf = io.BytesIO()
    fitted = fig.get_layout_engine() is not None
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches=None if fitted else "tight", pad_inches=0.06,
                pil_kwargs={"compress_level": 4})
    return buf.getvalue()


def model_colors(models: Sequence[str]) -> dict[str, str]:
    """One fixed colour per model (by position in ``models``)."""
    return {m: _PALETTE[i % len(_PALETTE)] for i, m in enumerate(models)}


def short_label(text: str, width: int = 38) -> str:
    """``text`` cut to ``width`` characters with an ellipsis in the middle."""
    text = str(text)
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep // 2] + "\u2026" + text[-(keep - keep // 2):]


def grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    """Rows and columns of a small-multiples grid of ``n`` panels."""
    cols = min(max_cols, max(1, n))
    rows = -(-n // cols)
    return rows, cols
