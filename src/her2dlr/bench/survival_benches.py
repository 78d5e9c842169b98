"""Survival benchmarks: ``her2dlr bench gbsg2``.

GBSG2 (German Breast Cancer Study Group 2; 686 patients, 299 recurrences or deaths) ships
with lifelines, so the benchmark needs no download. Reference values:

* log-rank test for hormonal therapy: chi-square 8.56 on 1 df, p = 0.0034 (published; also
  R ``survdiff``);
* Cox hazard ratios of ``Surv(time, cens) ~ horTh + age + menostat + tsize + tgrade + pnodes +
  progrec + estrec`` from R ``survival::coxph`` (``scripts/r/gbsg2_reference.R`` writes
  ``tests/fixtures/survival/r_coxph_full.csv``);
* cross-validated C-index of a Cox model of the clinical variables: published 0.67-0.69;
* propensity score matching on hormonal therapy: every |SMD| < 0.1 after matching (target).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.bench import BenchOptions, register, result

__all__ = ["R_FIXTURES", "gbsg2_bench", "gbsg2_frame", "gbsg2_settings"]

#: Where the committed R reference values live in a source checkout.
R_FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "survival"

COVARIATES = ["horTh", "age", "menostat", "tsize", "tgrade", "pnodes", "progrec", "estrec"]
CLINICAL = [c for c in COVARIATES if c != "horTh"]


def gbsg2_frame(seed: int = 0) -> pd.DataFrame:
    """GBSG2 from lifelines plus two synthetic HER2-like status columns for the HER2-low analysis.

    ``status`` is ``"HER2-low"`` when the progesterone receptor is above 20 fmol/l (a real
    covariate standing in for a true status) and ``pred`` is a noisy copy with 15% of the
    labels flipped (a stand-in for a model's prediction).
    """
    from lifelines.datasets import load_gbsg2

    df = load_gbsg2()
    rng = np.random.default_rng(seed)
    df["status"] = np.where(df["progrec"] > 20, "HER2-low", "HER2-zero")
    flip = rng.random(len(df)) < 0.15
    df["pred"] = np.where(flip, np.where(df["status"] == "HER2-low", "HER2-zero", "HER2-low"), df["status"])
    return df


def gbsg2_settings(*, n_bootstrap: int = 1000, seed: int = 0) -> Any:
    """Settings of the full GBSG2 analysis (treatment = hormonal therapy, risk score from an
    out-of-fold Cox model of the clinical variables without the treatment)."""
    from her2dlr.survival.settings import SurvivalSettings

    return SurvivalSettings(
        time_column="time", event_column="cens", time_unit="days", group_columns=["horTh", "tgrade"],
        covariates=COVARIATES, score_covariates=CLINICAL, treatment_column="horTh",
        treatment_name="hormonal therapy", horizons=[1, 2, 5], risk_horizon=5,
        her2low={"true_column": "status", "pred_column": "pred", "positive": "HER2-low",
                 "covariates": ["age", "menostat", "tsize", "tgrade", "pnodes"]},
        n_bootstrap=n_bootstrap, seed=seed,
    )


def _r_term(covariate: str, level: str) -> str:
    return f"{covariate}{level}"


@register("gbsg2", "GBSG2 survival: log-rank, Cox vs R, CV C-index, matching balance, full-analysis time")
def gbsg2_bench(options: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield the GBSG2 metrics (see the module docstring)."""
    from her2dlr.survival.cindex import cross_validated_concordance
    from her2dlr.survival.cox import fit_cox
    from her2dlr.survival.driver import run_survival
    from her2dlr.survival.km import logrank_test
    from her2dlr.survival.matching import propensity_match

    name = "gbsg2"
    df = gbsg2_frame(options.seed)
    n_boot = 200 if options.quick else 1000

    lr = logrank_test(df, "time", "cens", "horTh")
    yield result(name, "logrank_chi2_horth", lr.test_statistic, p=lr.p_value, published=8.56, n=len(df))

    cox = fit_cox(df, "time", "cens", COVARIATES)
    fixtures = options.data if options.data is not None else R_FIXTURES
    ref_path = Path(fixtures) / "r_coxph_full.csv"
    if ref_path.exists():
        ref = pd.read_csv(ref_path).set_index("term")
        s = cox.summary
        py = pd.Series({_r_term(r["covariate"], r["level"]): r["hr"] for _, r in s.iterrows()})
        rel = ((py - ref["hr"].reindex(py.index)).abs() / ref["hr"].reindex(py.index)).max()
        lo = {_r_term(r["covariate"], r["level"]): r["hr_lower"] for _, r in s.iterrows()}
        rel_ci = max(abs(lo[t] - ref.loc[t, "hr_lower"]) / ref.loc[t, "hr_lower"] for t in lo)
        yield result(name, "cox_hr_max_rel_diff_vs_r", float(rel), ci_bound_max_rel_diff=float(rel_ci),
                     n_terms=len(py), reference=str(ref_path.name))
    else:
        yield result(name, "cox_hr_max_rel_diff_vs_r", float("nan"),
                     note=f"R fixtures not found at {ref_path}; pass --data DIR holding r_coxph_full.csv")

    cv = cross_validated_concordance(df, "time", "cens", COVARIATES, n_splits=5, seed=options.seed,
                                     n_bootstrap=n_boot)
    yield result(name, "cindex_cox_cv", cv.estimate, ci_low=cv.ci_low, ci_high=cv.ci_high,
                 pooled_oof=cv.pooled.estimate, folds=5, published="0.67-0.69", n=len(df))

    mr = propensity_match(df, "horTh", CLINICAL, seed=options.seed)
    yield result(name, "smd_max_after_psm", mr.max_smd_after, smd_max_before=mr.max_smd_before,
                 n_treated=mr.n_treated, n_treated_matched=mr.n_treated_matched, target=0.1)

    settings = gbsg2_settings(n_bootstrap=n_boot, seed=options.seed)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(options.work_dir) / "gbsg2_survival" if options.work_dir else Path(tmp) / "survival"
        start = time.perf_counter()
        report = run_survival(df, settings, out)
        seconds = time.perf_counter() - start
    yield result(name, "seconds", seconds, seconds=seconds, tables=len(report.tables), figures=len(report.figures),
                 n_bootstrap=n_boot, target=20)
