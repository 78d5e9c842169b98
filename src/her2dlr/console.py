"""Console summaries (rich tables) of stage outputs, for the command line, the demo and `her2dlr run`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["METRIC_COLUMNS", "print_cohort", "print_frame", "print_metrics"]

console = Console()

#: Columns of a metrics table shown on the console (those present).
METRIC_COLUMNS = ("model", "split", "scope", "n", "auc", "ci_low", "ci_high", "sensitivity", "specificity", "threshold")


def print_frame(df: Any, title: str, max_rows: int = 40) -> None:
    """Print a DataFrame as a rich table."""
    table = Table(title=title, show_lines=False)
    for col in df.columns:
        table.add_column(str(col))
    for _, row in df.head(max_rows).iterrows():
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.tolist()])
    console.print(table)


def print_metrics(metrics: Any, title: str) -> None:
    """Print the :data:`METRIC_COLUMNS` of a metrics table (:func:`her2dlr.evaluate.metrics.metrics_table`)."""
    print_frame(metrics[[c for c in METRIC_COLUMNS if c in metrics.columns]], title)


def print_cohort(build: Any) -> None:
    """Summary of a cohort build: rows, inclusion, labels, QC counts, splits."""
    m = build.manifest
    inc = m.included
    classes = m.meta.get("label", {}).get("classes", [])
    counts = inc["label"].astype(int).value_counts().sort_index()
    label_text = ", ".join(f"{classes[i] if i < len(classes) else i}: {n}" for i, n in counts.items())
    console.print(
        f"[bold]Cohort[/] {len(m)} rows, {len(inc)} included, {inc['patient_id'].nunique()} patients; "
        f"labels {label_text}"
    )
    s = build.qc.summary
    console.print(
        f"[bold]QC[/] excluded {s.get('n_excluded', 0)}, exact-duplicate groups {s.get('exact_duplicate_groups', 0)}, "
        f"near-duplicate groups {s.get('near_duplicate_groups', 0)}, cross-label pairs {s.get('cross_label_pairs', 0)}"
    )
    if len(build.splits):
        print_frame(build.splits, "Splits (groups_straddling must be 0)")
    console.print(f"Written to {build.out_dir}")
