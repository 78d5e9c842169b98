"""``her2dlr run``: every configured stage in order; a stage is reused while its settings, inputs and outputs hold."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from her2dlr.cli import app
from her2dlr.config import study_from_dict
from her2dlr.demo import demo_data_dir
from her2dlr.errors import InputError
from her2dlr.pipeline import STAGES, PipelineResult, run_study

CONFIGURED = ("cohort", "radiomics", "learn", "report")
#: A fast PyRadiomics set: original image, first-order and shape features only.
PARAMS = {"imageType": {"Original": {}}, "featureClass": {"firstorder": None, "shape2D": None},
          "setting": {"binWidth": 5.0, "force2D": True, "force2Ddimension": 0, "label": 1, "minimumROIDimensions": 2,
                      "minimumROISize": 16, "additionalInfo": False}}
TABLE = "radiomics_tiny_mask"


def _write_inputs(root: Path, n_per_class: int = 8) -> None:
    """A small copy of the embedded BrEaST sample (table, images, masks) and the fast params file."""
    demo = demo_data_dir() / "breast"
    table = pd.read_csv(demo / "clinical.csv")
    table = pd.concat([part.head(n_per_class) for _, part in table.groupby("Classification")])
    (root / "images").mkdir(parents=True)
    for name in [*table["Image_filename"], *table["Mask_tumor_filename"]]:
        shutil.copy2(demo / "images" / name, root / "images" / name)
    table.to_csv(root / "clinical.csv", index=False)
    (root / "tiny.yaml").write_text(yaml.safe_dump(PARAMS))


def _raw(root: Path, out: Path) -> dict[str, Any]:
    return {
        "name": "tiny",
        "output_dir": str(out),
        "cohort": {"sources": [{
            "kind": "table", "path": str(root / "clinical.csv"), "image_root": str(root / "images"),
            "image_column": "Image_filename", "mask_column": "Mask_tumor_filename", "spacing_column": "Pixel_size",
            "spacing_unit": "cm", "clinical_columns": ["Age", "Shape"], "label_columns": ["Classification"],
        }]},
        "label": {"rule": "column", "column": "Classification", "positive": ["malignant"], "negative": ["benign"]},
        "split": {"seed": 3, "holdout": None, "kfold": {"n_splits": 3, "n_repeats": 1}},
        "radiomics": {"params": str(root / "tiny.yaml"), "roi": "mask", "n_jobs": 1},
        "learn": {"features": [TABLE], "selection": [{"name": "variance"}, {"name": "zscore"}], "models": ["lr"],
                  "schemes": ["kfold"], "search": {"inner_splits": 2}, "save_models": False},
    }


def _run(raw: dict[str, Any], root: Path, **kwargs: Any) -> PipelineResult:
    return run_study(study_from_dict(raw, base_dir=root), pdf=False, progress=False, n_jobs=1, **kwargs)


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PipelineResult]:
    root = tmp_path_factory.mktemp("pipeline")
    _write_inputs(root)
    return root, _run(_raw(root, root / "run"), root)


@pytest.fixture
def study(first: tuple[Path, PipelineResult], tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """The study of the first run (same inputs) on a copy of its run folder (mtimes kept): ``root/run``."""
    shutil.copytree(first[0] / "run", tmp_path / "run")
    return _raw(first[0], tmp_path / "run"), tmp_path


def _statuses(result: PipelineResult) -> dict[str, str]:
    return {o.stage: o.status for o in result.stages}


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _stamps(run: Path) -> dict[str, Any]:
    return json.loads((run / "stages.json").read_text())["stages"]


def test_first_run_runs_every_configured_stage(first: tuple[Path, PipelineResult]) -> None:
    root, result = first
    assert [o.stage for o in result.stages] == list(STAGES)
    assert _statuses(result) == {s: "ran" if s in CONFIGURED else "skipped" for s in STAGES}
    assert result["radiomics"].output == root / "run" / "features" / f"{TABLE}.parquet"
    assert result.report == root / "run" / "report" / "report.html" and result.report.is_file()
    stamps = _stamps(root / "run")
    assert set(stamps) == set(CONFIGURED)
    assert stamps["learn"]["upstream"].keys() == {"cohort", "radiomics"}
    # the cohort's inputs: the table and every image and mask it names, by size and mtime
    assert str(root / "clinical.csv") in stamps["cohort"]["inputs"]
    assert sum("/images/" in k for k in stamps["cohort"]["inputs"]) == 32
    assert stamps["learn"]["inputs"][f"features/{TABLE}.parquet"].startswith("sha256:")
    assert "cohort/manifest.parquet" in stamps["cohort"]["outputs"]


def test_second_run_reuses_every_stage_and_writes_nothing(study: tuple[dict[str, Any], Path]) -> None:
    raw, root = study
    before = _mtimes(root)
    result = _run(raw, root)
    assert _statuses(result) == {s: "reused" if s in CONFIGURED else "skipped" for s in STAGES}
    assert _mtimes(root) == before
    assert result.report == root / "run" / "report" / "report.html"


def test_changed_learn_settings_rerun_learning_and_report_only(study: tuple[dict[str, Any], Path]) -> None:
    raw, root = study
    stamps = _stamps(root / "run")
    before = _mtimes(root / "run")
    raw = copy.deepcopy(raw)
    raw["learn"]["threshold"] = {"method": "sensitivity", "target": 0.9}
    result = _run(raw, root)
    assert _statuses(result) == {"cohort": "reused", "segment": "skipped", "video": "skipped", "radiomics": "reused", "learn": "ran", "deep": "skipped",
                                 "dlr": "skipped", "dsfr": "skipped", "survival": "skipped", "report": "ran"}
    assert result["learn"].reason == "settings changed (learn)"
    assert result["report"].reason == "upstream re-ran: learn"
    after = _mtimes(root / "run")
    assert all(after[f] == before[f] for f in before if f.startswith(("cohort/", "features/")))
    new = _stamps(root / "run")
    assert new["radiomics"]["run_id"] == stamps["radiomics"]["run_id"]
    assert new["learn"]["run_id"] != stamps["learn"]["run_id"]
    assert _statuses(_run(raw, root))["learn"] == "reused"


def test_deleted_output_reruns_its_stage(study: tuple[dict[str, Any], Path]) -> None:
    raw, root = study
    (root / "run" / "features" / f"{TABLE}_failures.csv").unlink()
    result = _run(raw, root, only=["cohort", "radiomics"])
    assert _statuses(result) == {"cohort": "reused", "segment": "skipped", "video": "skipped", "radiomics": "ran", "learn": "not selected", "deep": "skipped",
                                 "dlr": "skipped", "dsfr": "skipped", "survival": "skipped", "report": "not selected"}
    assert result["radiomics"].reason == f"output missing: features/{TABLE}_failures.csv"
    assert (root / "run" / "features" / f"{TABLE}_failures.csv").is_file()
    # learning read a radiomics table that has been rewritten since: it is due, with its reason
    stale = _run(raw, root, only=["learn"])
    assert stale["learn"].status == "ran" and stale["learn"].reason == "upstream re-ran: radiomics"


def test_changed_image_reruns_the_cohort(first: tuple[Path, PipelineResult], study: tuple[dict[str, Any], Path]) -> None:
    raw, root = study
    image = next((first[0] / "images").glob("case*_tumor.png"))
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        result = _run(raw, root, only=["cohort"])
    finally:
        os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert result["cohort"].status == "ran"
    assert result["cohort"].reason == f"input changed: {image.name}"


def test_failing_stage_leaves_no_stamp_and_names_it(study: tuple[dict[str, Any], Path]) -> None:
    raw, root = study
    raw = copy.deepcopy(raw)
    raw["learn"]["features"] = [TABLE, "nosuchtable"]
    with pytest.raises(InputError, match=r"stage 'learn'.*'nosuchtable'"):
        _run(raw, root)
    stamps = _stamps(root / "run")
    assert "learn" not in stamps and {"cohort", "radiomics"} <= set(stamps)
    with pytest.raises(InputError, match="nosuchtable"):  # tried again, not reused
        _run(raw, root)


def test_unknown_stage_name_suggests_the_nearest(study: tuple[dict[str, Any], Path]) -> None:
    raw, root = study
    with pytest.raises(InputError, match="Did you mean 'learn'"):
        _run(raw, root, only=["lern"])


def test_cli_run_prints_the_summary(study: tuple[dict[str, Any], Path]) -> None:
    raw, root = study
    path = root / "study.yaml"  # absolute paths: the run folder stays where the fixture copied it
    path.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(app, ["run", str(path), "--no-pdf", "--from", "report"])
    assert res.exit_code == 0, res.output
    assert "reused" in res.output and "not selected" in res.output and "report.html" in res.output
    bad = CliRunner().invoke(app, ["run", str(path), "--only", "lern"])
    assert bad.exit_code == 2 and "Unknown stage 'lern'" in bad.output


def test_force_reruns_selected_stages(study: tuple[dict[str, Any], Path]) -> None:
    raw, root = study
    result = _run(raw, root, from_stage="report", force=True)
    assert _statuses(result) == {"cohort": "not selected", "segment": "skipped", "video": "skipped", "radiomics": "not selected", "learn": "not selected",
                                 "deep": "skipped", "dlr": "skipped", "dsfr": "skipped", "survival": "skipped", "report": "ran"}
    assert result["report"].reason == "forced"


def test_reuse_loads_no_heavy_library(study: tuple[dict[str, Any], Path]) -> None:
    raw, root = study
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    code = ("import sys; from her2dlr.pipeline import run_study; "
            f"r = run_study({str(path)!r}, pdf=False, progress=False); "
            "assert {o.status for o in r.stages} == {'reused', 'skipped'}, r.stages; "
            "print(sorted(m for m in ('torch', 'monai', 'lightgbm', 'xgboost', 'weasyprint', 'radiomics', "
            "'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
