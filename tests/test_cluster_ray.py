"""Ray's local cluster (2 CPUs): BUSI extraction and the outer folds give the local results."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install '.[cluster]' where ray has a wheel)")

from her2dlr.bench.extraction import select_busi_cases  # noqa: E402
from her2dlr.cohort.splits import repeated_group_kfold  # noqa: E402
from her2dlr.learn.cv import run_outer_cv  # noqa: E402
from her2dlr.learn.tuning import SearchSettings  # noqa: E402
from her2dlr.radiomics.extract import extract_radiomics  # noqa: E402

PARAMS = "us2d_original"


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance (2 CPUs) for the module: starting one costs ~5 s."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.realdata
def test_busi_extraction_on_ray_equals_the_local_one(shared_data):
    """No address and no Ray running: the stage starts a local Ray instance itself, and stops it."""
    cases = select_busi_cases(shared_data / "busi", 24)
    size = cases["mask"].map(lambda m: os.stat(m).st_size)
    manifest = cases.loc[size.sort_values(kind="stable").index[:4]].reset_index(drop=True)
    local = extract_radiomics(manifest, PARAMS, n_jobs=1, progress=False)
    assert not ray.is_initialized()
    remote = extract_radiomics(manifest, PARAMS, n_jobs=2, backend="ray", progress=False)
    assert not ray.is_initialized()
    assert remote.timing["backend"] == "ray" and remote.failures.empty
    assert list(remote.features.index) == list(manifest["case_id"])
    assert list(remote.features.columns) == list(local.features.columns)
    a, b = remote.features.to_numpy(float), local.features.to_numpy(float)
    assert float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(b), 1e-12))) <= 1e-9


def test_outer_folds_on_ray_equal_the_local_ones(ray_local):
    rng = np.random.default_rng(3)
    n = 30
    y = rng.permutation(np.arange(n) % 2)
    ids = [f"c{i:03d}" for i in range(n)]
    X = rng.normal(size=(n, 10))
    X[:, :2] += 1.5 * y[:, None]
    features = pd.DataFrame(X, index=pd.Index(ids, name="case_id"), columns=[f"F{j}" for j in range(10)])
    manifest = pd.DataFrame({"case_id": ids, "patient_id": ids, "label": y, "include": True,
                             "fold_r0": repeated_group_kfold(y, np.array(ids), 3, 1, 3)[0]})
    kw = {"model": "lr", "selection": [{"name": "variance"}, {"name": "ttest", "alpha": 0.1}],
          "grid": {"C": [0.1, 1.0]}, "search": SearchSettings(inner_splits=3)}
    local = run_outer_cv(features, manifest, **kw)
    remote = run_outer_cv(features, manifest, backend="ray", n_jobs=2, **kw)
    pd.testing.assert_frame_equal(remote.predictions.drop(columns="prob"), local.predictions.drop(columns="prob"))
    np.testing.assert_allclose(remote.predictions["prob"], local.predictions["prob"], rtol=0, atol=1e-9)
