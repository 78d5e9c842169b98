"""C-index (Harrell, Uno), its bootstrap, and cross-validated Cox C-index."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines.utils import concordance_index

from her2dlr.errors import InputError
from her2dlr.survival import concordance, cross_validated_concordance, harrell_c, out_of_fold_cox_risk, uno_c

# the package exports the function `concordance`, which shadows the submodule of that name
concordance_module = importlib.import_module("her2dlr.survival.cindex")

FIX = Path(__file__).parent / "fixtures" / "survival"


def synthetic(n: int = 200, seed: int = 0, censor: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    t = np.round(rng.exponential(np.exp(-risk)), 1) + 0.1  # rounded: tied times
    e = rng.random(n) < 0.7 if censor else np.ones(n, dtype=bool)
    return t, e, np.round(risk, 1)  # rounded: tied risks


def test_harrell_equals_lifelines_with_ties() -> None:
    t, e, r = synthetic()
    assert harrell_c(t, e, r) == pytest.approx(concordance_index(t, -r, e), abs=1e-14)


def test_uno_equals_harrell_without_censoring() -> None:
    # no censoring -> G = 1 -> every weight is 1
    t, e, r = synthetic(censor=False)
    assert uno_c(t, e, r) == pytest.approx(harrell_c(t, e, r), abs=1e-14)


def test_perfect_and_reversed_scores() -> None:
    t = np.arange(1.0, 11.0)
    e = np.ones(10, dtype=bool)
    assert harrell_c(t, e, -t) == 1.0
    assert harrell_c(t, e, t) == 0.0
    assert uno_c(t, e, -t) == 1.0
    assert harrell_c(t, e, np.zeros(10)) == 0.5  # all risks tied


@pytest.mark.parametrize("method", ["harrell", "uno"])
def test_bootstrap_weights_equal_resampling(method: str) -> None:
    # the multiplicity trick gives exactly the index of each resampled cohort
    t, e, r = synthetic(n=120, seed=5)
    rng = np.random.default_rng(11)
    M = rng.multinomial(len(t), np.full(len(t), 1 / len(t)), size=4).astype(float)
    A, B = concordance_module._pair_matrices(t, e, r)
    for m in M:
        idx = np.repeat(np.arange(len(t)), m.astype(int))
        if method == "harrell":
            w = m
            direct = harrell_c(t[idx], e[idx], r[idx])
        else:
            w = m * concordance_module._uno_weights_boot(t, e, None, m[None, :])[0]
            direct = uno_c(t[idx], e[idx], r[idx])
        assert (w @ A @ m) / (w @ B @ m) == pytest.approx(direct, abs=1e-12)


@pytest.mark.parametrize("method", ["harrell", "uno"])
def test_concordance_result_has_ci(method: str) -> None:
    t, e, r = synthetic(n=300, seed=2)
    res = concordance(t, e, r, method=method, n_bootstrap=300, seed=1, label="score")  # type: ignore[arg-type]
    assert res.ci_low < res.estimate < res.ci_high
    assert 0.5 < res.estimate < 1
    assert res.n_bootstrap == 300
    assert res.summary.loc[0, "model"] == "score"
    again = concordance(t, e, r, method=method, n_bootstrap=300, seed=1)  # type: ignore[arg-type]
    assert (again.ci_low, again.ci_high) == (res.ci_low, res.ci_high)  # seeded


def test_concordance_bad_input() -> None:
    t, e, r = synthetic()
    with pytest.raises(InputError, match="all censored|every case is censored"):
        concordance(t, np.zeros_like(e), r)
    with pytest.raises(InputError, match="'method' parameter of concordance must be one of.*Did you mean 'uno'"):
        concordance(t, e, r, method="unos")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="risk values have 1 missing"):
        concordance(t, e, np.r_[r[:-1], np.nan])
    with pytest.raises(InputError, match="one length"):
        harrell_c(t, e, r[:-1])


def test_uno_zero_censoring_survival_asks_for_tau() -> None:
    # last case censored at the same time as the last event: G(T) = 0 there
    t = np.array([1.0, 2.0, 3.0, 4.0, 4.0])
    e = np.array([1, 0, 1, 1, 0], dtype=bool)
    with pytest.raises(InputError, match="set tau below 4"):
        uno_c(t, e, -t)
    assert uno_c(t, e, -t, tau=3.5) == 1.0


def test_cross_validated_concordance_on_gbsg2() -> None:
    df = pd.read_csv(FIX / "gbsg2.csv")
    covs = ["horTh", "age", "menostat", "tsize", "tgrade", "pnodes", "progrec", "estrec"]
    cv = cross_validated_concordance(df, "time", "cens", covs, n_splits=5, n_bootstrap=200, seed=0)
    assert 0.64 < cv.estimate < 0.71  # published 0.67-0.69
    assert cv.ci_low < cv.estimate < cv.ci_high
    assert len(cv.folds) == 5 and cv.folds["n"].sum() == len(df)
    assert abs(cv.pooled.estimate - cv.estimate) < 0.02  # centred scores pool well
    assert {"mean", "pooled"} <= set(cv.summary["fold"])


def test_out_of_fold_scores_are_honest() -> None:
    # a case's score never comes from a model that saw it: changing one case's outcome
    # leaves its own out-of-fold score unchanged
    df = pd.read_csv(FIX / "gbsg2.csv")
    covs = ["age", "tsize", "pnodes"]
    a = out_of_fold_cox_risk(df, "time", "cens", covs, n_splits=5, seed=3)
    i = int(np.flatnonzero(a["fold"].to_numpy() == 0)[0])
    df2 = df.copy()
    df2.loc[i, "time"] = 1.0
    b = out_of_fold_cox_risk(df2, "time", "cens", covs, n_splits=5, seed=3, folds=a["fold"])
    assert b["risk"].iloc[i] == pytest.approx(a["risk"].iloc[i], abs=1e-12)
    assert not np.allclose(b["risk"].to_numpy()[a["fold"] == 1], a["risk"].to_numpy()[a["fold"] == 1])


def test_large_cohort_path_gives_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    # above the matrix limit the estimates loop over rows / replicates: same point estimates
    t, e, r = synthetic(n=150, seed=8)
    fast_h, fast_u = concordance(t, e, r, n_bootstrap=0), concordance(t, e, r, method="uno", n_bootstrap=0)
    monkeypatch.setattr(concordance_module, "_MATRIX_LIMIT", 10)
    slow_u = concordance(t, e, r, method="uno", n_bootstrap=20, seed=1)
    assert slow_u.estimate == pytest.approx(fast_u.estimate, abs=1e-12)
    assert concordance(t, e, r, n_bootstrap=0).estimate == pytest.approx(fast_h.estimate, abs=1e-12)
    assert slow_u.ci_low < slow_u.estimate < slow_u.ci_high
