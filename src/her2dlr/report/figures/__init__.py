"""Report figures, one module per family; every function draws numbers it is given on an Agg figure.

* :mod:`~her2dlr.report.figures.cohort` - cohort flow diagram
* :mod:`~her2dlr.report.figures.features` - selection funnel, frequency, importance, correlation
* :mod:`~her2dlr.report.figures.discrimination` - ROC, histograms, waterfall, confusion matrices, AUC forest
* :mod:`~her2dlr.report.figures.calibration` - calibration curves
* :mod:`~her2dlr.report.figures.utility` - decision curves
"""

from __future__ import annotations

from her2dlr.report.figures._base import model_colors, new_figure, png_bytes, report_style

__all__ = ["model_colors", "new_figure", "png_bytes", "report_style"]
