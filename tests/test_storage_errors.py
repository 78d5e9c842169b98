"""A full disk or a run folder that cannot be written gives a message naming the file, before the work when possible."""

from __future__ import annotations

import errno
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import write_lesion_folders
from her2dlr.cli import app
from her2dlr.errors import InputError
from her2dlr.io import atomic
from her2dlr.io.atomic import check_writable, write_csv_atomic

runner = CliRunner()


def test_disk_full_names_the_file_and_leaves_nothing(tmp_path: Path, monkeypatch):
    target = tmp_path / "out" / "table.csv"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(InputError, match=r"Cannot write .*table.csv: the disk is full"):
        write_csv_atomic(pd.DataFrame({"a": [1]}), target)
    assert list((tmp_path / "out").iterdir()) == []


def test_other_os_errors_are_not_disguised(tmp_path: Path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="Input/output error"):
        write_csv_atomic(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")


def test_a_run_folder_under_a_file_is_refused(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    with pytest.raises((InputError, OSError)):
        check_writable(tmp_path / "file" / "run")


def test_read_only_run_folder_is_refused_before_any_work(tmp_path: Path, monkeypatch):
    """The stage checks the run folder first: the cohort is never built when nothing can be written."""
    write_lesion_folders(tmp_path / "cohort", 3)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({
        "name": "ro", "cohort": {"sources": [{"kind": "folders", "path": str(tmp_path / "cohort")}]},
        "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]}}))

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    res = runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"])
    assert res.exit_code == 2, res.output
    assert "the file system is read-only" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "runs" / "ro" / "cohort").exists()
