"""Console summaries (rich tables) of stage outputs, for the command line, the demo and `her2dlr run`.

Tables never cut a name short: the ``model`` column folds long names onto several lines (rich's
default would end them with an ellipsis, and two fusions of the same tables then read alike),
and a table that leaves rows out says how many and where the rest are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["METRIC_COLUMNS", "WRAPPED_COLUMNS", "best_model_line", "print_cohort", "print_frame", "print_metrics"]

console = Console()

#: Columns of a metrics table shown on the console (those present).
METRIC_COLUMNS = ("model", "split", "scope", "n", "auc", "ci_low", "ci_high", "sensitivity", "specificity", "threshold")
#: Columns whose long values are folded onto several lines instead of being cut short.
WRAPPED_COLUMNS = ("model", "case_id", "image")
#: Narrowest a folded column gets (a narrower console makes the table wider than it, never cuts a value).
MIN_FOLDED = 16
#: Scopes of the rows that summarise a model on data it did not see: the hold-out test set, and
#: the k-fold out-of-fold predictions averaged over repetitions (see :mod:`her2dlr.evaluate.metrics`).
SUMMARY_SCOPES = ("holdout", "mean")
_SCOPE_WORDS = {"holdout": "hold-out test set", "mean": "k-fold's out-of-fold predictions (mean over repetitions)"}


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def print_frame(df: Any, title: str, max_rows: int | None = 40, *, note: str | None = None) -> None:
    """Print a DataFrame as a rich table; values of :data:`WRAPPED_COLUMNS` fold, nothing is cut short.

    Parameters
    ----------
    df : DataFrame
    title : str
    max_rows : int or None, default=40
        Rows shown; when the frame has more, a line says how many were left out. None: all.
    note : str, optional
        A line printed under the table (e.g. where the full table is).
    """
    shown = df if max_rows is None else df.head(max_rows)
    cells = [[_cell(v) for v in row] for row in shown.itertuples(index=False)]
    names = [str(c) for c in df.columns]
    natural = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]
    wrapped = [n in WRAPPED_COLUMNS for n in names]
    # rich shrinks every column of a table wider than the console, ending values with an ellipsis;
    # fixed widths keep numbers whole and give the folded columns what is left (at least MIN_FOLDED).
    frame = 3 * len(names) + 1
    fixed = sum(w for w, f in zip(natural, wrapped) if not f)
    n_folded = sum(wrapped)
    room = (console.width - frame - fixed) // n_folded if n_folded else 0
    widths = [min(w, max(room, MIN_FOLDED)) if fold else w for w, fold in zip(natural, wrapped)]
    total = frame + sum(widths)
    table = Table(title=title, show_lines=False, width=total if total > console.width else None)
    for name, width, fold in zip(names, widths, wrapped):
        table.add_column(name, width=width, overflow="fold" if fold else "ignore", no_wrap=not fold)
    for row in cells:
        table.add_row(*row)
    console.print(table, crop=False)
    if len(shown) < len(df):
        console.print(f"{len(shown)} of {len(df)} rows shown.", highlight=False)
    if note:
        console.print(note, highlight=False, soft_wrap=True)


def _summary_rows(metrics: Any) -> Any:
    """The test rows of :data:`SUMMARY_SCOPES`, hold-out first, best AUC first (all rows when there are none)."""
    if not {"split", "scope"}.issubset(metrics.columns):
        return metrics
    rows = metrics[(metrics["split"] == "test") & metrics["scope"].isin(SUMMARY_SCOPES)]
    if rows.empty:
        return metrics
    order = {s: i for i, s in enumerate(SUMMARY_SCOPES)}
    return (rows.assign(_o=rows["scope"].map(order)).sort_values(["_o", "auc"], ascending=[True, False])
            .drop(columns="_o"))


def _is_multiclass(rows: Any) -> bool:
    """Whether metrics rows are a multi-class model's (macro AUC, accuracies; no sensitivity or threshold)."""
    return "balanced_accuracy" in rows.columns and bool(rows["balanced_accuracy"].notna().any())


def _compact(rows: Any) -> Any:
    """Summary rows as the console shows them: model, evaluation, n, AUC with its CI, sensitivity, specificity.

    Multi-class rows (:func:`_is_multiclass`) show the macro one-vs-rest AUC, accuracy and
    balanced accuracy instead: they have no operating threshold, so no sensitivity or specificity.
    Narrow columns leave the model names room on an 80-column terminal.
    """
    import pandas as pd

    def ci(r: Any) -> str:
        return f"{r['auc']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f})" if pd.notna(r["auc"]) else "-"

    multi = _is_multiclass(rows)
    out = pd.DataFrame({"model": rows["model"].astype(str),
                        "evaluation": rows["scope"].map({"holdout": "hold-out", "mean": "k-fold"}),
                        "n": rows["n"], ("macro AUC (95% CI)" if multi else "AUC (95% CI)"): rows.apply(ci, axis=1)})
    shown = (("accuracy", "acc"), ("balanced_accuracy", "bal acc")) if multi else (
        ("sensitivity", "sens"), ("specificity", "spec"))
    for col, head in shown:
        if col in rows.columns:
            out[head] = rows[col].astype(float)
    return out


def best_model_line(metrics: Any, predictions: Any | None = None) -> str | None:
    """One line naming the study's best model the way the report chooses its reference model.

    The choice is the report's (:func:`her2dlr.report.views.reference_model`): the highest AUC of
    inner cross-validation on the training data, so the test data play no part in it; the line
    then gives that model's AUC on the data it did not see.

    Parameters
    ----------
    metrics : DataFrame
        A metrics table (:func:`her2dlr.evaluate.metrics.metrics_table`).
    predictions : DataFrame, optional
        The stage's predictions (with ``label``). Without them the line names the model with the
        highest test AUC and says that this choice is optimistic.

    Returns
    -------
    str or None
        None when no model has a test AUC.
    """
    from her2dlr.report.views import prediction_views, reference_model

    summary = _summary_rows(metrics)
    if "auc" not in summary.columns or summary["auc"].dropna().empty:
        return None
    has_labels = predictions is not None and "label" in getattr(predictions, "columns", ())
    views = prediction_views(predictions, multiclass=_is_multiclass(summary)) if has_labels else []
    model, why = reference_model(metrics, views) if views else (None, "")
    rows = summary[summary["model"] == model] if model is not None else summary.iloc[:0]
    if rows.empty:
        r = summary.dropna(subset=["auc"]).sort_values("auc", ascending=False).iloc[0]
        model, why = r["model"], "highest AUC on the data the models did not see (optimistic: chosen on them)"
    else:
        r = rows.iloc[0]
    where = _SCOPE_WORDS.get(str(r.get("scope")), "test data")
    ci = f" (95% CI {r['ci_low']:.3f}-{r['ci_high']:.3f})" if {"ci_low", "ci_high"} <= set(r.index) else ""
    auc = "macro one-vs-rest AUC" if _is_multiclass(summary) else "AUC"
    return f"Best model: {model}, {auc} {r['auc']:.3f}{ci} on the {where}; chosen by {why}."


def print_metrics(metrics: Any, title: str, *, predictions: Any | None = None, source: str | Path | None = None,
                  run_dir: str | Path | None = None) -> None:
    """Print a metrics table, the best model and where the full table and the report are.

    Shows every model's test rows (hold-out, k-fold mean over repetitions; all rows when the
    table has neither), best AUC first, with full model names, then :func:`best_model_line`.

    Parameters
    ----------
    metrics : DataFrame
        :func:`her2dlr.evaluate.metrics.metrics_table` output.
    title : str
    predictions : DataFrame, optional
        The predictions behind ``metrics``, for the report's choice of the best model.
    source : path, optional
        The ``metrics.csv`` that holds every row (per repetition, training).
    run_dir : path, optional
        The study's run folder, for the pointer to ``her2dlr report``.
    """
    shown = _summary_rows(metrics)
    left_out = len(metrics) - len(shown)
    note = None
    if left_out:
        note = (f"{len(shown)} test rows shown (hold-out: the test set; k-fold: out-of-fold predictions, mean over "
                f"repetitions); the other {left_out} rows (per repetition, training, thresholds) are in "
                f"{source or 'metrics.csv'}.")
        print_frame(_compact(shown), title, max_rows=None, note=note)
    elif _is_multiclass(shown):
        columns = [c for c in METRIC_COLUMNS if c not in ("sensitivity", "specificity", "threshold")]
        print_frame(shown[[c for c in [*columns, "accuracy", "balanced_accuracy"] if c in shown.columns]]
                    .rename(columns={"auc": "macro_auc"}), title, max_rows=None)
    else:
        print_frame(shown[[c for c in METRIC_COLUMNS if c in shown.columns]], title, max_rows=None)
    best = best_model_line(metrics, predictions)
    if best:
        console.print(f"[bold]{best}[/] Differences between models need a test: the report compares them (DeLong).",
                      highlight=False, soft_wrap=True)
    if run_dir is not None:
        console.print(f"Report (ROC, calibration, decision curves, model comparison): her2dlr report {run_dir}",
                      highlight=False, soft_wrap=True)


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
