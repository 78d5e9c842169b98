"""What every section builder shares: the run, the evaluation sets, colours, facts, and block factories."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from her2dlr.report.checklists import RunFacts
from her2dlr.report.document import FigureBlock, TableBlock, slug
from her2dlr.report.figures._base import model_colors, png_bytes
from her2dlr.report.run import RunFolder
from her2dlr.report.views import View, model_order, prediction_views, reference_model
from her2dlr.runfolder import FEATURE_FREQUENCY, FUNNEL, METRICS, PREDICTIONS, PREDICTIONS_CSV

__all__ = ["MAX_CURVES", "MAX_PANELS", "ReportContext"]

#: Models shown in small-multiple figures (the reference first, then by AUC); tables show all.
MAX_PANELS = 9
#: Models drawn in overlay figures (ROC, calibration, decision curves).
MAX_CURVES = 10


@dataclass
class ReportContext:
    """Shared state of one report build.

    Attributes
    ----------
    run : RunFolder
    views : list of View
        Evaluation sets (:func:`her2dlr.report.views.prediction_views`).
    models : list of str
        Every model, in a stable order.
    colors : dict
        Model -> colour, the same in every figure.
    reference : str or None
        The model the others are compared with.
    reference_reason : str
    facts : RunFacts
        Filled by the sections, read by the checklists.
    results : dict
        Numbers a later section reuses (e.g. AUCs per view).
    """

    run: RunFolder
    views: list[View] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    colors: dict[str, str] = field(default_factory=dict)
    reference: str | None = None
    reference_reason: str = ""
    facts: RunFacts = field(default_factory=RunFacts)
    results: dict[str, Any] = field(default_factory=dict)
    _names: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def from_run(cls, run: RunFolder) -> ReportContext:
        """Load predictions, form the views, choose the reference model and the colours."""
        views = prediction_views(run.predictions)
        models = model_order(views)
        ref, why = reference_model(run.metrics, views)
        return cls(run=run, views=views, models=models, colors=model_colors(models), reference=ref,
                   reference_reason=why)

    def view(self, key: str) -> View | None:
        """The view with ``key``, or None."""
        return next((v for v in self.views if v.key == key), None)

    @property
    def primary_view(self) -> View | None:
        """The view results are headlined on: test, else cross-validation, else the first."""
        return self.view("test") or self.view("cv") or (self.views[0] if self.views else None)

    def unique_name(self, name: str, kind: str = "figure") -> str:
        """``name`` made file-safe and unique among the report's figures (or tables)."""
        base = slug(name)
        out, k = base, 2
        while (kind, out) in self._names:
            out, k = f"{base}_{k}", k + 1
        self._names.add((kind, out))
        return out

    def figure(self, name: str, fig: Figure, caption: str, *, sources: list[str] | None = None,
               width: str = "100%", data: pd.DataFrame | None = None) -> FigureBlock:
        """Render ``fig`` to PNG and wrap it as a figure block."""
        png = png_bytes(fig)
        fig.clear()
        return FigureBlock(self.unique_name(name), caption, png, list(sources or []), width, data)

    def table(self, name: str, caption: str, data: pd.DataFrame, *, display: pd.DataFrame | None = None,
              note: str = "", sources: list[str] | None = None, row_classes: list[str] | None = None,
              max_rows: int | None = None) -> TableBlock:
        """Wrap a table (data for the CSV, display for the page)."""
        return TableBlock(self.unique_name(name, "table"), caption, data, display, note, list(sources or []), row_classes,
                          max_rows)

    def sources_of(self, attr: str) -> list[str]:
        """Run-relative paths of one per-set file (``"predictions"`` -> every predictions file)."""
        names = {"predictions": (PREDICTIONS, PREDICTIONS_CSV), "metrics": (METRICS,),
                 "funnel": (FUNNEL,), "feature_frequency": (FEATURE_FREQUENCY,)}[attr]
        out = []
        for s in self.run.learn_sets:
            for n in names:
                if (s.path / n).exists():
                    out.append(self.run.rel(s.path / n))
                    break
        return out

    def shown_models(self, view: View, limit: int) -> list[str]:
        """At most ``limit`` models of ``view``: the reference first, then by AUC on the view."""
        aucs = self.results.get(("auc", view.key), {})
        models = sorted(view.models, key=lambda m: (m != self.reference, -aucs.get(m, {}).get("auc", 0.0),
                                                    self.models.index(m) if m in self.models else 0))
        return models[:limit]
