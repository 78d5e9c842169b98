"""Resumable outer folds: a learn run killed half-way (SIGKILL) resumes from the folds it finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2dlr.cohort.splits import repeated_group_kfold
from her2dlr.learn import cv
from her2dlr.learn.fold_cache import FoldCache
from her2dlr.learn.settings import LearnSettings
from her2dlr.learn.stage import run_learn_stage
from her2dlr.learn.tuning import SearchSettings
from her2dlr.runfolder import FOLD_CACHE, PARAMS

FIT = {"model": "lr", "grid": {"C": [0.1, 1.0]}, "search": SearchSettings(inner_splits=3),
       "selection": [{"name": "variance"}, {"name": "zscore"}, {"name": "ttest", "alpha": 0.2},
                     {"name": "lasso", "cv": 3, "n_cs": 5}]}
REPEATS, K = 3, 4


def cohort(n_patients: int = 48, p: int = 20, seed: int = 0, repeats: int = REPEATS,
           k: int = K) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One case per patient, features 0-2 informative, repeated group k-fold (``repeats`` x ``k`` outer folds)."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n_patients) % 2)
    ids = np.array([f"p{i:03d}" for i in range(n_patients)])
    X = rng.normal(size=(n_patients, p))
    X[:, :3] += 1.2 * y[:, None]
    features = pd.DataFrame(X, index=pd.Index(ids, name="case_id"), columns=[f"F{j} (T=0.5)" for j in range(p)])
    manifest = pd.DataFrame({"case_id": ids, "patient_id": ids, "label": y, "include": True})
    for r, folds in enumerate(repeated_group_kfold(y, ids, k, repeats, seed)):
        manifest[f"fold_r{r}"] = folds
    return features, manifest


#: The learning stage the killed run and its re-run share (a lasso selection makes each fold take a while).
KILLED = {"models": [{"name": "lr", "grid": {"C": [0.1, 1.0]}}], "schemes": ["kfold"], "save_models": False,
          "selection": FIT["selection"], "search": {"inner_splits": 3}}

CHILD = """
import sys
import pandas as pd
sys.path.insert(0, {tests!r})
from test_cv_resume import KILLED
from her2dlr.learn.settings import LearnSettings
from her2dlr.learn.stage import run_learn_stage
run_learn_stage(pd.read_parquet({features!r}), pd.read_parquet({manifest!r}), LearnSettings(**KILLED), {out!r},
                feature_set="radiomics")
"""


def _kill_after(cmd: list[str], cache: Path, n_files: int, timeout: float = 240.0) -> int:
    """Start ``cmd``, SIGKILL it once ``cache`` holds ``n_files`` folds; the number of folds then kept."""
    proc = subprocess.Popen(cmd, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while len(list(cache.glob("*.joblib"))) < n_files:
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before it was killed: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {n_files} finished folds after {timeout} s")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    return len(list(cache.glob("*.joblib")))


@pytest.mark.slow
def test_a_killed_learn_run_resumes_from_its_finished_folds_and_gives_the_uninterrupted_result(tmp_path, monkeypatch):
    features, manifest = cohort()
    paths = {"features": str(tmp_path / "features.parquet"), "manifest": str(tmp_path / "manifest.parquet")}
    features.to_parquet(paths["features"])
    manifest.to_parquet(paths["manifest"])
    out = tmp_path / "learn"
    cache = out / FOLD_CACHE
    script = CHILD.format(tests=str(Path(__file__).parent), out=str(out), **paths)
    kept = _kill_after([sys.executable, "-c", script], cache, n_files=2)
    n_folds = REPEATS * K
    assert 2 <= kept < n_folds  # really interrupted half-way
    assert not list(cache.glob(".*.tmp"))  # nothing half-written

    fitted = []
    real_fit = cv.fit_fold
    monkeypatch.setattr(cv, "fit_fold", lambda *a, **kw: fitted.append(kw["fold"]) or real_fit(*a, **kw))
    resumed = run_learn_stage(features, manifest, LearnSettings(**KILLED), out, feature_set="radiomics")
    assert resumed.results[0].n_cached == kept and len(fitted) == n_folds - kept  # finished folds not fitted again
    monkeypatch.setattr(cv, "fit_fold", real_fit)

    whole = run_learn_stage(features, manifest, LearnSettings(**KILLED), tmp_path / "whole", feature_set="radiomics")
    assert whole.results[0].n_cached == 0
    a, b = resumed.predictions, whole.predictions
    pd.testing.assert_frame_equal(a.drop(columns="prob"), b.drop(columns="prob"))
    np.testing.assert_allclose(a["prob"], b["prob"], rtol=0, atol=1e-12)
    pd.testing.assert_frame_equal(pd.read_csv(out / PARAMS), pd.read_csv(tmp_path / "whole" / PARAMS))


def _stage(features: pd.DataFrame, manifest: pd.DataFrame, out: Path, seed: int = 0):
    settings = LearnSettings(models=[{"name": "lr", "grid": {}}], schemes=["kfold"], save_models=False, seed=seed,
                             selection=[{"name": "variance"}, {"name": "ttest", "alpha": 0.2}],
                             search={"inner_splits": 3})
    return run_learn_stage(features, manifest, settings, out, feature_set="radiomics")


def test_the_stage_reuses_unchanged_folds_only(tmp_path):
    repeats, k = 2, 3
    features, manifest = cohort(n_patients=24, p=8, repeats=repeats, k=k)
    n_folds = repeats * k
    out = tmp_path / "learn"
    first = _stage(features, manifest, out)
    cache = out / FOLD_CACHE
    assert first.results[0].n_cached == 0 and len(list(cache.glob("*.joblib"))) == n_folds

    again = _stage(features, manifest, out)
    assert again.results[0].n_cached == n_folds
    pd.testing.assert_frame_equal(again.predictions, first.predictions)

    # One case's features changed: only the folds that test it (one per repetition) keep their training
    # data, so only those are reused; their test predictions come from the new values.
    changed = features.copy()
    case = changed.index[0]
    changed.loc[case, "F0 (T=0.5)"] += 3.0
    edited = _stage(changed, manifest, out)
    assert edited.results[0].n_cached == repeats
    fresh = _stage(changed, manifest, tmp_path / "fresh")
    np.testing.assert_allclose(edited.predictions["prob"], fresh.predictions["prob"], rtol=0, atol=1e-12)
    assert len(list(cache.glob("*.joblib"))) == n_folds  # the stale folds were pruned

    other_seed = _stage(changed, manifest, out, seed=1)  # changed settings: nothing reused
    assert other_seed.results[0].n_cached == 0

    other_folds = manifest.copy()  # another fold definition: nothing reused
    other_folds["fold_r0"] = repeated_group_kfold(manifest["label"].to_numpy(), manifest["case_id"].to_numpy(),
                                                  k, 1, 7)[0]
    regrouped = _stage(changed, other_folds, out, seed=1)
    assert regrouped.results[0].n_cached == (repeats - 1) * k


def test_an_unreadable_cached_fold_is_fitted_again(tmp_path):
    features, manifest = cohort(n_patients=24, p=6, repeats=1, k=3)
    kw = {**FIT, "selection": [{"name": "variance"}], "grid": {}}
    first = cv.run_outer_cv(features, manifest, cache=tmp_path, **kw)
    broken = sorted(tmp_path.glob("*.joblib"))[0]
    broken.write_bytes(b"not a pickle")
    store = FoldCache(tmp_path)
    again = cv.run_outer_cv(features, manifest, cache=store, **kw)
    assert again.n_cached == 2
    np.testing.assert_allclose(again.predictions["prob"], first.predictions["prob"], rtol=0, atol=1e-12)
