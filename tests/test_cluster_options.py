"""Where a study's work runs: the scheduler keys and the --scheduler option (no cluster needed)."""

from __future__ import annotations

import pytest

from conftest import write_folder_study, write_lesion_folders
from her2dlr.cli.cluster import with_scheduler
from her2dlr.config import load_study
from her2dlr.errors import InputError, StudyFileError
from her2dlr.radiomics.parallel import cluster_session, scheduler_backend


def test_a_command_line_address_points_the_configured_stages_only(tmp_path):
    cohort = write_lesion_folders(tmp_path / "cohort", 1)
    bare = load_study(write_folder_study(tmp_path / "bare.yaml", cohort))
    pointed = with_scheduler(bare, "tcp://node01:8786")
    assert (pointed.radiomics.backend, pointed.radiomics.scheduler) == ("dask", "tcp://node01:8786")
    assert pointed.learn is None  # `her2dlr run` must not gain a learning stage the file lacks
    assert pointed.model_fields_set == bare.model_fields_set and pointed.base_dir == bare.base_dir
    assert with_scheduler(bare, "tcp://node01:8786", add_learn=True).learn.scheduler == "tcp://node01:8786"

    ray_study = load_study(write_folder_study(tmp_path / "ray.yaml", cohort, learn={"models": ["lr"]},
                                              radiomics={"backend": "ray"}))
    pointed = with_scheduler(ray_study, "node01:6379")
    assert (pointed.radiomics.backend, pointed.learn.backend) == ("ray", "dask")  # a set cluster backend is kept
    assert with_scheduler(ray_study, "ray://node01:10001").learn.backend == "ray"
    assert with_scheduler(ray_study, None) is ray_study


def test_scheduler_keys_are_checked_when_the_study_is_read(tmp_path):
    cohort = write_lesion_folders(tmp_path / "cohort", 1)
    study = load_study(write_folder_study(tmp_path / "s.yaml", cohort,
                                          radiomics={"backend": "dask", "scheduler": "tcp://node01:8786"},
                                          learn={"backend": "ray", "scheduler": "ray://node01:10001"}))
    assert study.radiomics.scheduler == "tcp://node01:8786" and study.learn.backend == "ray"
    with pytest.raises(StudyFileError, match="radiomics.*needs backend: dask"):
        load_study(write_folder_study(tmp_path / "bad.yaml", cohort, radiomics={"scheduler": "tcp://node01:8786"}))
    with pytest.raises(StudyFileError, match="backend"):
        load_study(write_folder_study(tmp_path / "bad2.yaml", cohort, learn={"backend": "spark"}))


def test_backend_from_address_and_unknown_backends():
    assert scheduler_backend("ray://h:10001", "loky") == "ray"
    assert scheduler_backend("tcp://h:8786", "loky") == "dask"
    assert scheduler_backend(None, "loky") == "loky"
    with pytest.raises(InputError, match="must be one of dask, ray. Got 'loky'"), cluster_session("loky"):
        pass
