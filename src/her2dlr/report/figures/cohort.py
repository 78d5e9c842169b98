"""Cohort flow diagram (imported -> excluded -> included -> partitions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure
from matplotlib.text import Text

from her2dlr.report.figures._base import new_figure

__all__ = ["FlowCounts", "plot_flow"]


@dataclass
class FlowCounts:
    """Counts of the cohort flow.

    Attributes
    ----------
    imported : int
        Rows (images, videos or volumes) imported.
    imported_patients : int or None
    excluded : dict
        Reason -> rows excluded for it (a row may have several reasons).
    n_excluded : int
    included : int
    included_patients : int or None
    by_label : dict
        Class name -> included rows.
    partitions : list of dict
        Each with ``name, n, patients`` and either ``n_pos, n_neg`` (binary label) or ``classes``
        (class name -> rows, a label with more classes).
    cv : str, optional
        One line on the cross-validation (drawn as a box below the partitions).
    """

    imported: int
    imported_patients: int | None
    excluded: dict[str, int]
    n_excluded: int
    included: int
    included_patients: int | None
    by_label: dict[str, int] = field(default_factory=dict)
    partitions: list[dict[str, Any]] = field(default_factory=list)
    cv: str | None = None


_BOX = {"boxstyle": "round,pad=0.6", "fc": "#f4f6f8", "ec": "#5b6770", "lw": 0.9}
_XBOX = {"boxstyle": "round,pad=0.6", "fc": "#fbf1ee", "ec": "#a0665a", "lw": 0.9}
_ARROW = {"arrowstyle": "-|>", "color": "#5b6770", "lw": 0.9, "shrinkA": 2, "shrinkB": 2}


def _patients(n: int | None) -> str:
    return f" ({n} patients)" if n is not None else ""


def _arrow(ax: object, src: Text, dst: Text, *, src_xy: tuple[float, float] = (0.5, 0.0),
           dst_xy: tuple[float, float] = (0.5, 1.0)) -> None:
    ax.annotate("", xy=dst_xy, xycoords=dst, xytext=src_xy, textcoords=src, arrowprops=_ARROW)  # type: ignore[attr-defined]


def plot_flow(flow: FlowCounts) -> Figure:
    """Draw the cohort flow as boxes and arrows (a CONSORT-style diagram)."""
    n_parts = max(1, len(flow.partitions))
    fig = new_figure(6.6, 3.3 if flow.cv is None or not flow.partitions else 3.8, layout=None)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    fs = 8
    top = ax.text(0.36, 0.92, f"Imported: {flow.imported} images{_patients(flow.imported_patients)}",
                  ha="center", va="center", fontsize=fs, bbox=_BOX)
    reasons = [f"{k.replace('_', ' ')}: {v}" for k, v in sorted(flow.excluded.items(), key=lambda kv: -kv[1])]
    shown = reasons[:6] + ([f"... {len(reasons) - 6} more reasons"] if len(reasons) > 6 else [])
    exc_text = f"Excluded: {flow.n_excluded}" + ("".join(f"\n  {r}" for r in shown) if shown else "")
    exc = ax.text(0.80, 0.74, exc_text, ha="center", va="center", fontsize=fs - 0.5, bbox=_XBOX, linespacing=1.35)
    labels = ", ".join(f"{k} {v}" for k, v in flow.by_label.items())
    inc = ax.text(0.36, 0.56, f"Included: {flow.included} images{_patients(flow.included_patients)}"
                  + (f"\n{labels}" if labels else ""), ha="center", va="center", fontsize=fs, bbox=_BOX,
                  linespacing=1.4)
    _arrow(ax, top, inc)
    ax.annotate("", xy=(0.0, 0.5), xycoords=exc, xytext=(0.36, 0.74), textcoords="data",
                arrowprops={**_ARROW, "shrinkA": 0})
    y_parts = 0.24 if flow.cv and flow.partitions else 0.18
    if flow.partitions:
        xs = [0.5] if n_parts == 1 else [0.12 + 0.76 * i / (n_parts - 1) for i in range(n_parts)]
        if n_parts == 2:
            xs = [0.2, 0.52]
        for x, part in zip(xs, flow.partitions):
            pats = part.get("patients")
            txt = (f"{str(part['name']).capitalize()}: {part['n']} images"
                   + (f"\n{pats} patients" if pats not in (None, "") else "")
                   + (f"\npositive {part['n_pos']}, negative {part['n_neg']}" if "classes" not in part
                      else "".join(f"\n{name} {k}" for name, k in part["classes"].items())))
            box = ax.text(x, y_parts, txt, ha="center", va="center", fontsize=fs, bbox=_BOX, linespacing=1.4)
            _arrow(ax, inc, box)
    if flow.cv:
        y_cv = 0.06 if flow.partitions else 0.2
        box = ax.text(0.5 if flow.partitions else 0.36, y_cv, flow.cv, ha="center", va="center", fontsize=fs - 0.5,
                      bbox={**_BOX, "fc": "#eef4ee", "ec": "#5f7d5f"}, wrap=True)
        if not flow.partitions:
            _arrow(ax, inc, box)
    return fig
