"""The paper templates (`her2dlr init --template seedNNN`): each validates as written, and each runs end to end
with `her2dlr run` on data of its modality.

Every template keeps its protocol; a test changes only what belongs to the user (the cohort section and,
where the data has no IHC/ISH, the label rule) and what sets the size of the computation (epochs, folds,
inner splits, image sizes, hyper-parameter grids, the radiomics params set), each listed in the test's ``shrink``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import random_lesion, write_png
from her2dlr.cli import app
from her2dlr.config import load_study
from her2dlr.pipeline import STAGES, run_study
from her2dlr.study_template import PAPER_TEMPLATES, template_text

runner = CliRunner()
LABEL = {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]}


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _study(name: str, root: Path, cohort: dict[str, Any], shrink: dict[str, Any], **user: Any) -> Path:
    """The template with the user's cohort (and label) and the test's smaller computation."""
    raw = yaml.safe_load(template_text(name))
    raw = _merge(raw, {"cohort": cohort, **user, **shrink, "output_dir": str(root / "run")})
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _run(study: Path, *, report: bool = True) -> tuple[Any, float]:
    """``her2dlr run`` (the report's HTML only; ``report=False`` leaves the report out, it has its own tests)."""
    start = time.perf_counter()
    only = None if report else [s for s in STAGES if s != "report"]
    result = run_study(study, pdf=False, progress=False, n_jobs=1, only=only)
    print({o.stage: round(o.seconds, 1) for o in result.stages if o.status == "ran"})
    return result, time.perf_counter() - start


def _ran(result: Any) -> set[str]:
    return {o.stage for o in result.stages if o.status == "ran"}


def _auc(run: Path, learn_set: str, model: str) -> float:
    """The k-fold out-of-fold test AUC of ``model`` (mean over repetitions)."""
    metrics = pd.read_csv(run / "learn" / learn_set / "metrics.csv")
    row = metrics[(metrics["model"] == model) & (metrics["split"] == "test") & (metrics["scope"] == "mean")]
    assert len(row) == 1, sorted(set(metrics["model"]))
    return float(row["auc"].iloc[0])


# ------------------------------------------------------------------------------------------ the files
def test_every_template_is_listed_validates_and_cites_the_paper(tmp_path: Path):
    listing = runner.invoke(app, ["init", "--list-templates"])
    assert listing.exit_code == 0
    for name in ("seed000", "seed001", "seed002", "seed003", "seed004"):
        assert name in listing.output
        path = tmp_path / f"{name}.yaml"
        res = runner.invoke(app, ["init", str(path), "--template", name])
        assert res.exit_code == 0, res.output
        study = load_study(path)  # the template as written is a valid study file
        assert study.name.startswith(name)
        cited = [line for line in path.read_text().splitlines() if "[" in line.split("#", 1)[-1]]
        assert len(cited) >= 5, f"{name}: settings should cite the paper's sections"
    assert set(PAPER_TEMPLATES) == {f"seed00{k}" for k in range(5)}
    res = runner.invoke(app, ["init", str(tmp_path / "x.yaml"), "--template", "seed04"])
    assert res.exit_code != 0 and "seed004" in res.output  # unknown name: the nearest is proposed
    res = runner.invoke(app, ["init", str(tmp_path / "seed000.yaml"), "--template", "seed000"])
    assert res.exit_code != 0 and "--force" in res.output


# ------------------------------------------------------------------------------------------ ultrasound
@pytest.fixture(scope="module")
def us_cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """30 ultrasound-like images: rough-textured lesions are 'malignant'; a table with boxes and clinical values."""
    root = tmp_path_factory.mktemp("us")
    rng = np.random.default_rng(0)
    rows = []
    for k in range(30):
        rough = k % 2 == 1
        img, mask = random_lesion(100 + k, rough=rough, size=72)
        write_png(root / f"img{k}.png", img)
        write_png(root / f"img{k}_mask.png", mask)
        ys, xs = np.nonzero(mask)
        rows.append({"case_id": f"c{k:02d}", "patient_id": f"p{k:02d}", "image": f"img{k}.png",
                     "mask": f"img{k}_mask.png", "x": int(xs.min()), "y": int(ys.min()),
                     "w": int(np.ptp(xs) + 1), "h": int(np.ptp(ys) + 1), "age": int(rng.integers(30, 80)),
                     "menopause": str(rng.choice(["pre", "post"])), "tumour_size": float(rng.normal(20, 5)),
                     "class": "malignant" if rough else "benign"})
    pd.DataFrame(rows).to_csv(root / "cohort.csv", index=False)
    return {"sources": [{"kind": "table", "path": str(root / "cohort.csv"), "image_column": "image",
                         "case_id_column": "case_id", "patient_id_column": "patient_id",
                         "clinical_columns": ["age", "menopause", "tumour_size"], "label_columns": ["class"]}]}


def test_seed000_runs_end_to_end(us_cohort: dict[str, Any], tmp_path: Path, one_torch_thread: None):
    cohort = _merge(us_cohort, {})
    cohort["sources"] = [{**cohort["sources"][0], "bbox_columns": ["x", "y", "w", "h"]}]
    shrink = {"split": {"kfold": {"n_splits": 3}}, "radiomics": {"params": "us2d_original"},
              "learn": {"search": {"inner_splits": 2}, "features": ["radiomics_us2d_original_bbox", "clinical"],
                        "schemes": ["kfold"], "models": [{"name": "rf", "grid": {}}, "svm"]},
              "deep": {"epochs": 1, "patience": 0, "batch_size": 8}}
    study = _study("seed000", tmp_path, cohort, shrink, label=LABEL)
    result, seconds = _run(study, report=False)
    assert {"cohort", "radiomics", "learn", "deep"} <= _ran(result)
    run = tmp_path / "run"
    # the radiomics comparator on the drawn rectangle learns the texture difference
    assert _auc(run, "radiomics_us2d_original_bbox+clinical", "radiomics_us2d_original_bbox-rf") >= 0.8
    deep = pd.read_parquet(run / "deep" / "densenet3block" / "predictions.parquet")
    assert {"holdout"} <= set(deep["fold"]) and deep["prob"].between(0, 1).all()
    assert (run / "deep" / "densenet3block" / "final").is_dir()
    print(f"seed000 end to end: {seconds:.1f} s")


def test_seed002_runs_end_to_end(us_cohort: dict[str, Any], tmp_path: Path, one_torch_thread: None):
    shrink = {"split": {"kfold": {"n_splits": 3, "n_repeats": 1}}, "radiomics": {"params": "us2d_original"},
              "learn": {"search": {"inner_splits": 2}, "models": ["lr"], "schemes": ["kfold"],
                        "features": ["radiomics_us2d_original_mask", "clinical"]},
              "deep": {"arch": "densenet3block", "image_size": 32, "epochs": 1, "patience": 0, "batch_size": 8,
                       "schemes": ["kfold"],
                       "dlr": {"radiomics": "radiomics_us2d_original_mask", "n_components": 4}}}
    cohort = _merge(us_cohort, {})
    cohort["sources"] = [{**cohort["sources"][0], "mask_column": "mask"}]
    study = _study("seed002", tmp_path, cohort, shrink, label=LABEL)
    result, seconds = _run(study, report=False)
    assert {"cohort", "radiomics", "learn", "deep", "dlr"} <= _ran(result)
    run = tmp_path / "run"
    assert _auc(run, "radiomics_us2d_original_mask+clinical", "radiomics_us2d_original_mask-lr") >= 0.8
    models = set(pd.read_csv(run / "learn" / "radiomics_us2d_original_mask+clinical" / "metrics.csv")["model"])
    assert any(m.startswith("combined(") for m in models)  # the nomogram model of the paper
    print(f"seed002 end to end: {seconds:.1f} s")


# ------------------------------------------------------------------------------------------ video
def test_seed001_runs_end_to_end(tmp_path: Path):
    from her2dlr.video.simulate import SweepSettings, simulate_sweep, write_sweep

    rng = np.random.default_rng(1)
    rows = []
    for k in range(16):
        rough = k % 2 == 1
        still, mask = random_lesion(200 + k, rough=rough, size=96, radii=(14, 22))
        sweep = simulate_sweep(still, mask > 0, SweepSettings(n_frames=12, n_dropouts=0, n_freezes=0, seed=k,
                                                              frame_size=(96, 112)))
        clip = write_sweep(sweep, tmp_path / f"clip{k}.mp4")
        ys, xs = np.nonzero(sweep.masks[0])
        rows.append({"case_id": f"v{k:02d}", "patient_id": f"p{k:02d}", "video": clip.name,
                     "x": int(xs.min()), "y": int(ys.min()), "w": int(np.ptp(xs) + 1), "h": int(np.ptp(ys) + 1),
                     "menopause": str(rng.choice(["pre", "post"])), "age": int(rng.integers(30, 80)),
                     "class": "malignant" if rough else "benign"})
    pd.DataFrame(rows).to_csv(tmp_path / "videos.csv", index=False)
    cohort = {"sources": [{"kind": "table", "path": str(tmp_path / "videos.csv"), "modality": "US-video",
                           "image_column": "video", "bbox_columns": ["x", "y", "w", "h"], "case_id_column": "case_id",
                           "patient_id_column": "patient_id", "clinical_columns": ["menopause", "age"],
                           "label_columns": ["class"]}]}
    shrink = {"split": {"kfold": {"n_splits": 3}, "holdout": {"test_size": 0.25}},
              "qc": {"near_duplicate_distance": 0}, "video": {"n_jobs": 1},
              "learn": {"search": {"inner_splits": 2}, "models": ["lr"]}}
    study = _study("seed001", tmp_path, cohort, shrink, label=LABEL)
    result, seconds = _run(study)
    assert {"cohort", "video", "learn", "report"} <= _ran(result)
    run = tmp_path / "run"
    table = pd.read_parquet(run / "features" / "video_tf.parquet")
    assert len(table) == 16 and table.shape[1] > 24 * 10
    metrics = pd.read_csv(run / "learn" / "video_tf+clinical" / "metrics.csv")
    assert any(m.startswith("pair") or "," in m for m in metrics["model"])  # video x clinical classifier pairs
    assert _auc(run, "video_tf+clinical", "video_tf-lr") >= 0.7
    # a second run reuses every stage
    again = run_study(study, pdf=False, progress=False, n_jobs=1)
    assert _ran(again) == set()
    print(f"seed001 end to end: {seconds:.1f} s")


# ------------------------------------------------------------------------------------------ DCE-MRI
def _dce(root: Path, n_cases: int, classes: tuple[int, ...], seed: int) -> pd.DataFrame:
    from her2dlr.io.synthetic_dce import write_synthetic_cohort

    truth = write_synthetic_cohort(root, n_cases=n_cases, seed=seed, shape=(8, 28, 28), n_phases=4, classes=classes)
    return truth


def test_seed003_runs_end_to_end(tmp_path: Path):
    truth = _dce(tmp_path / "dce", 18, (0, 1), seed=3)
    rng = np.random.default_rng(3)
    table = pd.read_csv(tmp_path / "dce" / "clinical.csv")
    low = table["ihc"].astype(str).ne("0")
    table["dfs_months"] = np.round(rng.exponential(np.where(low, 40, 90)), 1) + 1
    table["dfs_event"] = (rng.random(len(table)) < np.where(low, 0.6, 0.3)).astype(int)
    table.to_csv(tmp_path / "dce" / "clinical.csv", index=False)
    cohort = {"sources": [{"kind": "dicom", "path": str(tmp_path / "dce"), "phase": "peak",
                           "table": str(tmp_path / "dce" / "clinical.csv"), "clinical_columns": ["age"],
                           "label_columns": ["ihc", "ish"], "time_column": "dfs_months", "event_column": "dfs_event",
                           "pseudonym_key": str(tmp_path / "secret.key")}]}
    # a 3-level U-Net on 16^3 inputs has 9 activation layers: the DSFR layer moves from the 10th to the 2nd
    shrink = {"split": {"kfold": {"n_splits": 3}}, "radiomics": {"n_jobs": 1},
              "learn": {"search": {"inner_splits": 2},
                        "selection": [{"name": "variance"}, {"name": "zscore"}, {"name": "lasso", "cv": 3},
                                      {"name": "chi2", "k": 5}]},
              "segment": {"image_size": 16, "features": [4, 8, 16], "epochs": 1, "patience": 0, "batch_size": 8,
                          "dsfr": {"layer": 1, "heatmaps": 1,
                                   "selection": [{"name": "zscore"}, {"name": "lasso", "cv": 3}]}},
              "survival": {"n_bootstrap": 50}}
    study = _study("seed003", tmp_path, cohort, shrink)
    result, seconds = _run(study)
    assert {"cohort", "segment", "radiomics", "learn", "dsfr", "survival", "report"} <= _ran(result)
    run = tmp_path / "run"
    assert _auc(run, "radiomics_mri3d_mask", "radiomics_mri3d_mask-lr") >= 0.7
    dlr = "dlr(dsfr_unet,radiomics_mri3d_mask)-lr"  # step three: the DSFR and radiomics models' average
    pred = pd.read_parquet(run / "learn" / "dsfr_unet" / "predictions.parquet")
    assert set(pred["model"]) == {"dsfr_unet-lr", "radiomics_mri3d_mask-lr", dlr}
    summary = (run / "survival" / "summary.txt").read_text()
    assert dlr in summary  # where the Cox model's score came from
    html = (run / "report" / "report.html").read_text(encoding="utf-8")
    assert "dsfr_unet-lr" in html and dlr in html  # the report lists the DSFR stage's models
    assert len(truth) == 18
    print(f"seed003 end to end: {seconds:.1f} s")


def test_seed004_runs_end_to_end(tmp_path: Path, one_torch_thread: None):
    _dce(tmp_path / "dce", 24, (0, 1, 2), seed=4)
    rng = np.random.default_rng(4)
    table = pd.read_csv(tmp_path / "dce" / "clinical.csv")
    risky = table["her2_class"].to_numpy() == 2
    table["recurrence"] = (rng.random(len(table)) < np.where(risky, 0.8, 0.2)).astype(int)
    table["rfs_months"] = np.round(np.where(table["recurrence"] == 1, rng.uniform(6, 50, len(table)),
                                            rng.uniform(50, 100, len(table))), 1)
    table["anti_her2"] = np.where(np.arange(len(table)) % 2 == 0, "trastuzumab", "untreated")
    table.to_csv(tmp_path / "dce" / "clinical.csv", index=False)
    cohort = {"sources": [{"kind": "dicom", "path": str(tmp_path / "dce"), "phase": "post3",
                           "table": str(tmp_path / "dce" / "clinical.csv"), "clinical_columns": ["age"],
                           "label_columns": ["recurrence"], "time_column": "rfs_months",
                           "event_column": "recurrence", "treatment_column": "anti_her2",
                           "pseudonym_key": str(tmp_path / "secret.key")}]}
    shrink = {"split": {"kfold": {"n_splits": 3}}, "deep": {"image_size": 16, "epochs": 2, "patience": 0,
                                                           "batch_size": 8},
              "survival": {"n_bootstrap": 50, "covariates": ["age"]}}
    study = _study("seed004", tmp_path, cohort, shrink)
    result, seconds = _run(study, report=False)
    assert {"cohort", "deep", "survival"} <= _ran(result)
    run = tmp_path / "run"
    oof = pd.read_parquet(run / "deep" / "mm_resnet" / "predictions.parquet")
    assert oof["fold"].str.fullmatch(r"r\d+f\d+").any()
    summary = (run / "survival" / "summary.txt").read_text()
    assert "deep-mm_resnet" in summary  # the network's out-of-fold score made the risk groups
    groups = pd.read_csv(run / "survival" / "tables" / "risk_groups.csv")
    assert len(groups) > 0
    assert (run / "survival" / "tables" / "treatment_benefit.csv").is_file()
    print(f"seed004 end to end: {seconds:.1f} s")
