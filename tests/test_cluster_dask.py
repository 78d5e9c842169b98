"""A real dask.distributed cluster (2 worker processes): extraction and the outer folds give the local results."""

from __future__ import annotations

import os
import socket

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import write_folder_study, write_lesion_folders

distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed (pip install '.[cluster]')")

from her2dlr.bench.extraction import select_busi_cases  # noqa: E402
from her2dlr.cohort.splits import repeated_group_kfold  # noqa: E402
from her2dlr.errors import InputError, StudyFileError  # noqa: E402
from her2dlr.learn.cv import run_outer_cv  # noqa: E402
from her2dlr.learn.tuning import SearchSettings  # noqa: E402
from her2dlr.radiomics import parallel  # noqa: E402
from her2dlr.radiomics.extract import extract_radiomics  # noqa: E402

SELECTION = [{"name": "variance"}, {"name": "ttest", "alpha": 0.1}]
FAST = {"model": "lr", "selection": SELECTION, "grid": {"C": [0.1, 1.0]}, "search": SearchSettings(inner_splits=3)}
PARAMS = "us2d_original"  # Original image type only: seconds per case would be minutes per test on a busy CPU


def small_busi_lesions(busi, n: int) -> pd.DataFrame:
    """``n`` of the extraction benchmark's BUSI lesions with the smallest masks (the quickest to extract)."""
    cases = select_busi_cases(busi, 24)
    size = cases["mask"].map(lambda m: os.stat(m).st_size)
    return cases.loc[size.sort_values(kind="stable").index[:n]].reset_index(drop=True)


@pytest.fixture(scope="module")
def dask_cluster():
    """Two single-threaded worker processes behind a scheduler on a local TCP port."""
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0")
    yield cluster
    cluster.close()


def _task_count(cluster, run) -> int:
    """Tasks the cluster's scheduler ran while ``run()`` ran (from any client)."""
    with distributed.Client(cluster.scheduler_address) as client, distributed.get_task_stream(client) as stream:
        run()
    return len(stream.data)


def _rel_diff(a: pd.DataFrame, b: pd.DataFrame) -> float:
    x, y = a.to_numpy(float), b.loc[a.index, a.columns].to_numpy(float)
    return float(np.nanmax(np.abs(x - y) / np.maximum(np.abs(y), 1e-12)))


@pytest.mark.realdata
def test_busi_extraction_on_the_cluster_equals_the_local_one(shared_data, dask_cluster):
    manifest = small_busi_lesions(shared_data / "busi", 4)
    local = extract_radiomics(manifest, PARAMS, n_jobs=2, backend="loky", progress=False, chunk_size=1)
    out = {}
    n_tasks = _task_count(dask_cluster, lambda: out.setdefault("dask", extract_radiomics(
        manifest, PARAMS, n_jobs=2, backend="dask", scheduler=dask_cluster.scheduler_address, progress=False)))
    remote = out["dask"]
    assert n_tasks > 0  # the cases really went to the workers
    assert remote.failures.empty and local.failures.empty
    assert list(remote.features.index) == list(manifest["case_id"]) and remote.features.shape[1] > 90
    assert list(remote.features.columns) == list(local.features.columns)
    assert _rel_diff(remote.features, local.features) <= 1e-9


def _cohort(n_patients: int = 30, p: int = 12, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n_patients) % 2)
    ids = [f"c{i:03d}" for i in range(n_patients)]
    X = rng.normal(size=(n_patients, p))
    X[:, :2] += 1.5 * y[:, None]
    features = pd.DataFrame(X, index=pd.Index(ids, name="case_id"), columns=[f"F{j}" for j in range(p)])
    manifest = pd.DataFrame({"case_id": ids, "patient_id": ids, "label": y, "include": True})
    manifest["fold_r0"] = repeated_group_kfold(y, np.array(ids), 3, 1, seed)[0]
    return features, manifest


def test_outer_folds_on_the_cluster_equal_the_local_ones(dask_cluster):
    features, manifest = _cohort()
    kw = FAST
    local = run_outer_cv(features, manifest, n_jobs=1, **kw)  # in-process: a loky pool costs ~10 s on a busy CPU
    out = {}
    n_tasks = _task_count(dask_cluster, lambda: out.setdefault("dask", run_outer_cv(
        features, manifest, backend="dask", scheduler=dask_cluster.scheduler_address, **kw)))
    remote = out["dask"]
    assert n_tasks >= 3  # one task per outer fold at least
    pd.testing.assert_frame_equal(remote.predictions.drop(columns="prob"), local.predictions.drop(columns="prob"))
    np.testing.assert_allclose(remote.predictions["prob"], local.predictions["prob"], rtol=0, atol=1e-9)
    assert [f.features for f in remote.fits] == [f.features for f in local.fits]


def test_a_joblib_dask_config_sends_the_outer_folds_to_the_cluster(dask_cluster):
    import joblib

    features, manifest = _cohort(seed=1)
    kw = FAST
    local = run_outer_cv(features, manifest, **kw)

    def on_cluster():
        with joblib.parallel_config(backend="dask"):
            return run_outer_cv(features, manifest, n_jobs=2, **kw)

    out = {}
    n_tasks = _task_count(dask_cluster, lambda: out.setdefault("dask", on_cluster()))
    assert n_tasks >= 3
    np.testing.assert_allclose(out["dask"].predictions["prob"], local.predictions["prob"], rtol=0, atol=1e-9)


def test_the_study_file_and_the_command_line_point_at_the_scheduler(dask_cluster, tmp_path):
    from her2dlr.cli import app
    from her2dlr.cohort.build import build_cohort
    from her2dlr.config import load_study
    from her2dlr.radiomics.stage import run_radiomics_stage

    cohort = write_lesion_folders(tmp_path / "cohort", 3)
    address = dask_cluster.scheduler_address
    study_path = write_folder_study(tmp_path / "study.yaml", cohort, split={"kfold": None},
                                    radiomics={"backend": "dask", "scheduler": address, "n_jobs": 2,
                                                               "params": PARAMS})
    study = load_study(study_path)
    build_cohort(study, progress=False)
    out = {}
    n_tasks = _task_count(dask_cluster, lambda: out.setdefault("stage", run_radiomics_stage(study, progress=False)))
    assert n_tasks > 0 and out["stage"].n_cases == 6
    on_cluster = pd.read_parquet(out["stage"].path)
    rows = pd.read_parquet(study.paths.manifest)[["case_id", "image", "mask"]]
    local = extract_radiomics(rows, PARAMS, n_jobs=1, progress=False).features
    assert _rel_diff(on_cluster, local) <= 1e-9

    plain = write_folder_study(tmp_path / "plain.yaml", cohort, name="plain", split={"kfold": None},
                               radiomics={"params": PARAMS})
    build_cohort(load_study(plain), progress=False)
    res = {}
    n_tasks = _task_count(dask_cluster, lambda: res.setdefault("cli", CliRunner().invoke(
        app, ["extract", "radiomics", str(plain), "--scheduler", address])))
    assert res["cli"].exit_code == 0, res["cli"].output
    assert n_tasks > 0
    assert _rel_diff(pd.read_parquet(load_study(plain).paths.feature_table(f"radiomics_{PARAMS}_mask")), local) <= 1e-9


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_an_input_error_naming_it(monkeypatch, tmp_path):
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT_S", 1)
    address = f"tcp://127.0.0.1:{_closed_port()}"
    features, manifest = _cohort()
    with pytest.raises(InputError, match=f"Dask scheduler at '{address}' within 1 s"):
        run_outer_cv(features, manifest, backend="dask", scheduler=address, **FAST)
    rows = pd.DataFrame({"case_id": ["a", "b"], "image": ["a.png", "b.png"], "mask": ["m.png", "m.png"]})
    with pytest.raises(InputError, match="Dask scheduler at"):
        extract_radiomics(rows, "us2d", n_jobs=2, backend="dask", scheduler=address, progress=False)
    with pytest.raises(InputError, match="give its scheduler's address"):  # dask, no address, no Client
        extract_radiomics(rows, "us2d", n_jobs=2, backend="dask", progress=False)
    with pytest.raises(InputError, match="needs backend='dask'"):
        extract_radiomics(rows, "us2d", backend="loky", scheduler=address, progress=False)
    cohort = write_lesion_folders(tmp_path / "cohort", 1)
    with pytest.raises(StudyFileError, match="needs backend: dask"):
        from her2dlr.config import load_study

        load_study(write_folder_study(tmp_path / "s.yaml", cohort, learn={"scheduler": address}))
