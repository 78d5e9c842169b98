"""Evaluation benchmark: ``her2dlr bench reference``.

Agreement of :mod:`her2dlr.evaluate` with independent implementations, on the committed
inputs of ``tests/fixtures/evaluate`` (written by ``make_inputs.py`` there):

* ``delong_max_abs_diff`` - AUC, DeLong variance and CI (pROC ``ci.auc(method = "delong")``),
  paired ``roc.test(method = "delong")`` z and p, unpaired ``roc.test(paired = FALSE)`` D and p
  (pROC's t reference), against the R values that ``scripts/r/evaluate_reference.R`` wrote;
* ``hl_max_abs_diff`` - Hosmer-Lemeshow statistic and p-value (hoslem.test grouping);
* ``calibration_max_abs_diff`` - rms ``val.prob`` Brier, slope, intercept, Eavg/E90/Emax and
  calibration-in-the-large;
* ``dca_max_abs_diff`` - net benefit against the ``dcurves`` package (a development
  dependency; the line reports null with a note when it is not installed).

R is not needed at run time: its outputs are committed fixtures. ``--data DIR`` points to
another folder holding the same files.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.bench import BenchOptions, register, result

__all__ = ["FIXTURES", "calibration_differences", "dca_differences", "delong_differences", "hl_differences",
           "reference_bench"]

#: Where the committed inputs and R reference values live in a source checkout.
FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "evaluate"
DCA_MODELS = ("p_model", "p_clin", "p_tied")


def _predictions(folder: Path) -> dict[str, pd.DataFrame]:
    return {k: pd.read_csv(folder / f"predictions_{k}.csv") for k in ("a", "b", "small")}


def delong_differences(folder: Path = FIXTURES) -> np.ndarray:
    """Absolute differences from pROC of every DeLong quantity in the fixtures."""
    from her2dlr.evaluate.compare import delong_unpaired
    from her2dlr.evaluate.delong import delong_auc_ci, delong_test

    pred = _predictions(folder)
    diffs: list[float] = []
    for r in pd.read_csv(folder / "r_auc_delong.csv").itertuples():
        d = pred[r.dataset]
        res = delong_auc_ci(d["y"], d[r.predictor])
        diffs += [res.auc - r.auc, res.se**2 - r.var, res.ci_low - r.ci_low, res.ci_high - r.ci_high]
    for r in pd.read_csv(folder / "r_roc_test_paired.csv").itertuples():
        d = pred[r.dataset]
        t = delong_test(d["y"], d[r.a], d[r.b])
        diffs += [t.auc_a - r.auc_a, t.auc_b - r.auc_b, t.z - r.z, t.p_value - r.p]
    for r in pd.read_csv(folder / "r_roc_test_unpaired.csv").itertuples():
        u = delong_unpaired(pred[r.d1]["y"], pred[r.d1][r.p1], pred[r.d2]["y"], pred[r.d2][r.p2], distribution="t")
        diffs += [u["auc_1"] - r.auc_1, u["auc_2"] - r.auc_2, u["z"] - r.z, u["p_value"] - r.p]
    return np.abs(np.asarray(diffs, dtype=float))


def hl_differences(folder: Path = FIXTURES) -> np.ndarray:
    """Absolute differences of the Hosmer-Lemeshow statistics and p-values from the R values."""
    from her2dlr.evaluate.calibration import hosmer_lemeshow

    pred = _predictions(folder)
    diffs: list[float] = []
    for r in pd.read_csv(folder / "r_hosmer_lemeshow.csv").itertuples():
        d = pred[r.dataset]
        h = hosmer_lemeshow(d["y"], d[r.predictor], int(r.g))
        diffs += [h.statistic - r.statistic, h.p_value - r.p, h.df - r.df]
    return np.abs(np.asarray(diffs, dtype=float))


def calibration_differences(folder: Path = FIXTURES) -> np.ndarray:
    """Absolute differences from rms ``val.prob`` and ``glm`` calibration-in-the-large."""
    from her2dlr.evaluate.calibration import (
        calibration_slope_intercept,
        calibration_summary,
    )

    pred = _predictions(folder)
    diffs: list[float] = []
    for r in pd.read_csv(folder / "r_val_prob.csv").itertuples():
        d = pred[r.dataset]
        s = calibration_summary(d["y"], d[r.predictor])
        si = calibration_slope_intercept(d["y"], d[r.predictor])
        diffs += [s[k] - getattr(r, k) for k in ("brier", "slope", "intercept_recal", "eavg", "e90", "emax")]
        diffs.append(si["intercept"] - r.intercept_citl)
    return np.abs(np.asarray(diffs, dtype=float))


def dca_differences(folder: Path = FIXTURES, thresholds: Any = None) -> np.ndarray:
    """Absolute differences of net benefit from ``dcurves.dca`` (models and treat all / none).

    Raises
    ------
    ModuleNotFoundError
        When ``dcurves`` is not installed.
    """
    import dcurves

    from her2dlr.evaluate.decision import TREAT_ALL, TREAT_NONE, decision_curve

    d = _predictions(folder)["a"]
    t = np.arange(0.01, 1.0, 0.01) if thresholds is None else np.asarray(thresholds, dtype=float)
    ref = dcurves.dca(data=d, outcome="y", modelnames=list(DCA_MODELS), thresholds=t)
    ref["model"] = ref["model"].replace({"all": TREAT_ALL, "none": TREAT_NONE})
    mine = decision_curve(d["y"], {m: d[m] for m in DCA_MODELS}, t)
    both = mine.merge(ref, on=["model", "threshold"], suffixes=("", "_ref"), validate="one_to_one")
    if len(both) != len(mine):
        raise RuntimeError(f"dcurves returned {len(both)} matching rows for {len(mine)} of ours")
    return np.abs(both["net_benefit"].to_numpy(float) - both["net_benefit_ref"].to_numpy(float))


@register("reference", "her2dlr.evaluate against R (pROC, rms) fixtures and dcurves: max abs differences")
def reference_bench(options: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield the maximum absolute differences (see the module docstring)."""
    name = "reference"
    folder = Path(options.data) if options.data is not None else FIXTURES
    if not (folder / "r_auc_delong.csv").exists():
        note = f"reference fixtures not found in {folder}; pass --data DIR holding the r_*.csv files"
        for metric in ("delong_max_abs_diff", "hl_max_abs_diff", "calibration_max_abs_diff"):
            yield result(name, metric, float("nan"), note=note)
    else:
        for metric, fn, tol in (("delong_max_abs_diff", delong_differences, 1e-6),
                                ("hl_max_abs_diff", hl_differences, 1e-6),
                                ("calibration_max_abs_diff", calibration_differences, 1e-6)):
            start = time.perf_counter()
            d = fn(folder)
            yield result(name, metric, float(d.max()), n=int(d.size), tolerance=tol,
                         seconds=time.perf_counter() - start, reference=_r_versions(folder))
    start = time.perf_counter()
    try:
        d = dca_differences(folder)
    except ModuleNotFoundError:
        yield result(name, "dca_max_abs_diff", float("nan"), note="dcurves is not installed (pip install dcurves)")
    else:
        import dcurves

        yield result(name, "dca_max_abs_diff", float(d.max()), n=int(d.size), tolerance=1e-9,
                     seconds=time.perf_counter() - start,
                     reference=f"dcurves {getattr(dcurves, '__version__', '?')}")


def _r_versions(folder: Path) -> str:
    path = folder / "r_versions.csv"
    if not path.exists():
        return "?"
    v = pd.read_csv(path).set_index("item")["version"]
    return ", ".join(f"{k} {v[k]}" for k in v.index)
