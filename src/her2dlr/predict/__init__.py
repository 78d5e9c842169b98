"""One entry point for new cases: a model artefact + a case -> a result object.

:func:`predict` is what the command line and the server call; :class:`Case` is one new case
(an image with its mask or box, clinical values, or a feature row); :class:`PredictionResult`
is the answer with its threshold, provenance, warnings and heat map.
"""

from her2dlr.predict.api import PredictionResult, predict, results_frame
from her2dlr.predict.cases import Case, cases_from_frame, cases_from_options

__all__ = ["Case", "PredictionResult", "cases_from_frame", "cases_from_options", "predict", "results_frame"]
