"""``her2dlr run`` chains seed 003's DSFR steps: segmentation fold networks -> DSFR features -> DSFR, radiomics and
DLR models, on a tiny synthetic 3D study (14 volumes of 16^3, a 3-level U-Net)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from her2dlr.config import study_from_dict
from her2dlr.errors import InputError
from her2dlr.pipeline import PipelineResult, run_study
from volume_helpers import write_sphere_folders

N_PER_CLASS = 7
TABLE = "radiomics_params_mask"
#: Radiomics kept small: first-order features of the original image.
PARAMS = {"imageType": {"Original": {}}, "featureClass": {"firstorder": []}, "setting": {"binWidth": 25, "label": 1}}
MODELS = {"dsfr": "dsfr_unet-lr", "radiomics": f"{TABLE}-lr", "dlr": f"dlr(dsfr_unet,{TABLE})-lr"}
#: The stages the tests run: the learning stage and the report (seed 003's template test draws it) left out.
CHAIN = ("cohort", "segment", "radiomics", "dsfr")


def _raw(root: Path, out: Path) -> dict[str, Any]:
    return {
        "name": "dsfrstage",
        "output_dir": str(out),
        "cohort": {"sources": [{"kind": "folders", "path": str(root / "cohort"), "extensions": [".nrrd"],
                                "modality": "MR"}]},
        "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]},
        "split": {"seed": 5, "holdout": None, "kfold": {"n_splits": 2, "n_repeats": 1}},
        "radiomics": {"params": str(root / "params.yaml"), "roi": "mask", "n_jobs": 1, "backend": "sequential"},
        # layer 1: a 3-level U-Net has 9 activation layers, seed 003's index 9 is past its end
        "segment": {"spatial_dims": 3, "image_size": 16, "features": [4, 8, 16], "epochs": 1, "batch_size": 4,
                    "patience": 0, "final": False, "device": "cpu",
                    # seed 003's LASSO (5-fold) after the channel clusters needs more than these 7 training cases
                    "dsfr": {"layer": 1, "n_clusters": 2, "models": True, "heatmaps": 1,
                             "selection": [{"name": "zscore"}]}},
        # the radiomics table of the DSFR stage: the first radiomics table of learn.features
        "learn": {"features": [TABLE], "selection": [{"name": "zscore"}], "models": ["lr"], "schemes": ["kfold"],
                  "search": {"inner_splits": 2}, "save_models": False},
    }


def _run(raw: dict[str, Any], root: Path, only: tuple[str, ...] = CHAIN, **kwargs: Any) -> PipelineResult:
    return run_study(study_from_dict(raw, base_dir=root), pdf=False, progress=False, n_jobs=1, only=only, **kwargs)


def _statuses(result: PipelineResult) -> dict[str, str]:
    return {o.stage: o.status for o in result.stages if o.status not in ("skipped", "not selected")}


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PipelineResult]:
    import torch

    root = tmp_path_factory.mktemp("dsfrstage")
    write_sphere_folders(root / "cohort", N_PER_CLASS)
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return root, _run(_raw(root, root / "run"), root)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def study(first: tuple[Path, PipelineResult], tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """The first run's study on a copy of its run folder (mtimes kept), at ``tmp_path/run``."""
    shutil.copytree(first[0] / "run", tmp_path / "run")
    return _raw(first[0], tmp_path / "run"), tmp_path


def test_run_fits_the_dsfr_radiomics_and_dlr_models_out_of_fold(first: tuple[Path, PipelineResult]) -> None:
    root, result = first
    run = root / "run"
    assert _statuses(result) == dict.fromkeys(CHAIN, "ran")
    assert result["learn"].status == "not selected" and result["survival"].status == "skipped"
    assert result["dsfr"].output == run / "learn" / "dsfr_unet"
    stamp = json.loads((run / "stages.json").read_text())["stages"]["dsfr"]
    assert stamp["upstream"].keys() == {"cohort", "segment", "radiomics"}
    assert {"cohort/manifest.parquet", "segment/unet/r0f0/best.pt", "segment/unet/r0f1/best.pt",
            f"features/{TABLE}.parquet"} <= stamp["inputs"].keys()

    pred = pd.read_parquet(run / "learn" / "dsfr_unet" / "predictions.parquet")
    assert set(pred["model"]) == set(MODELS.values())
    manifest = pd.read_parquet(run / "cohort" / "manifest.parquet").set_index("case_id")
    test = pred[pred["split"] == "test"]
    for model, rows in test.groupby("model"):
        # every case scored once, by the fold whose test part holds it
        assert sorted(rows["case_id"]) == sorted(manifest.index), model
        folds = rows.set_index("case_id")["fold"]
        assert all(folds[c] == f"r0f{int(manifest.loc[c, 'fold_r0'])}" for c in folds.index), model
    # the network of each fold trained on the cases of the other fold only (every case has a mask), and the
    # DSFR tables' provenance agrees: no case is scored from a network that saw it
    provenance = pd.read_csv(run / "features" / "dsfr_unet" / "provenance.csv", dtype={"case_id": str})
    for fold in ("r0f0", "r0f1"):
        scored = set(test.loc[test["fold"] == fold, "case_id"])
        trained_on = set(manifest.index[manifest["fold_r0"] != int(fold[-1])])
        assert scored and not scored & trained_on
        seen = provenance[(provenance["fold"] == fold) & provenance["seen_in_training"]]
        assert set(seen["case_id"]) == trained_on
    info = json.loads((run / "features" / "dsfr_unet.json").read_text())
    assert info["layer_asked"] == 1 and len(list((run / "features" / "dsfr_unet" / "heatmaps").glob("*.png"))) == 1

    # seed 003's DLR model: the mean of the DSFR and radiomics probabilities, case by case
    wide = test.pivot_table(index="case_id", columns="model", values="prob")
    for case in wide.index[:3]:
        by_hand = (wide.loc[case, MODELS["dsfr"]] + wide.loc[case, MODELS["radiomics"]]) / 2
        assert wide.loc[case, MODELS["dlr"]] == pytest.approx(by_hand, abs=1e-12)
    np.testing.assert_allclose(wide[MODELS["dlr"]], (wide[MODELS["dsfr"]] + wide[MODELS["radiomics"]]) / 2,
                               rtol=0, atol=1e-12)
    metrics = pd.read_csv(run / "learn" / "dsfr_unet" / "metrics.csv")
    assert set(metrics["model"]) == set(MODELS.values()) and metrics["auc"].notna().all()


def test_second_run_reuses_the_stage_and_new_clusters_rerun_it(study: tuple[dict[str, Any], Path]) -> None:
    raw, root = study
    again = _run(raw, root)
    assert _statuses(again) == dict.fromkeys(CHAIN, "reused")
    raw = copy.deepcopy(raw)
    raw["segment"]["dsfr"]["n_clusters"] = 3
    changed = _run(raw, root)
    assert _statuses(changed)["segment"] == "reused"  # the networks are not trained again for a DSFR setting
    assert _statuses(changed)["dsfr"] == "ran" and changed["dsfr"].reason == "settings changed (segment.dsfr)"
    assert json.loads((root / "run" / "learn" / "dsfr_unet" / "settings.json").read_text())["n_clusters"] == 3


def test_no_dsfr_stage_without_models_true(study: tuple[dict[str, Any], Path]) -> None:
    raw, root = study
    raw = copy.deepcopy(raw)
    del raw["segment"]["dsfr"]["models"]
    result = _run(raw, root)
    assert result["dsfr"].status == "skipped" and result["dsfr"].reason == "not configured"
    assert result["segment"].status == "reused"


def test_a_study_without_a_radiomics_table_is_refused_before_any_stage(tmp_path: Path) -> None:
    raw = _raw(tmp_path, tmp_path / "run")
    del raw["learn"]
    with pytest.raises(InputError, match=r"segment\.dsfr\.radiomics: .*no learn\.features"):
        _run(raw, tmp_path)
    assert not (tmp_path / "run" / "cohort").exists()
    raw["learn"] = {"features": ["clinical"]}
    with pytest.raises(InputError, match=r"segment\.dsfr\.radiomics: .*learn\.features is \['clinical'\]"):
        _run(raw, tmp_path)


def test_a_named_table_that_is_not_there_is_refused_naming_the_key(study: tuple[dict[str, Any], Path]) -> None:
    raw, root = study
    raw = copy.deepcopy(raw)
    raw["segment"]["dsfr"]["radiomics"] = "radiomics_nosuch"
    with pytest.raises(InputError, match=r"stage 'dsfr'.*segment\.dsfr\.radiomics: No feature table 'radiomics_nosuch'"):
        _run(raw, root, only=("dsfr",))


def test_a_layer_past_the_networks_end_names_the_key_and_the_highest_index(study: tuple[dict[str, Any], Path]) -> None:
    from her2dlr.deep.dsfr_features import extract_dsfr_features

    raw, root = study
    raw = copy.deepcopy(raw)
    del raw["segment"]["dsfr"]["layer"]  # the default, seed 003's 10th activation layer
    with pytest.raises(InputError, match=r"segment\.dsfr\.layer .*has 9 activation layers .*highest valid index is "
                                         r"8 \(module 'net\.model\.2\.0\.adn\.A'\)"):
        extract_dsfr_features(study_from_dict(raw, base_dir=root), progress=False)


def test_seed003_selection_on_too_few_cases_names_what_to_change(first: tuple[Path, PipelineResult]) -> None:
    from her2dlr.cohort.manifest import Manifest
    from her2dlr.deep.dsfr import fit_dsfr_models
    from her2dlr.deep.features import read_fold_features

    root, _ = first
    study = study_from_dict(_raw(root, root / "run"), base_dir=root)
    radiomics = pd.read_parquet(study.paths.feature_table(TABLE))
    # seed 003's LASSO takes 5 folds of each inner training part, here 3-4 cases: its inner predictions fail
    with pytest.raises(InputError, match=r"dsfr_unet-lr: .* no inner out-of-fold probability.*segment\.dsfr\.selection"):
        fit_dsfr_models(read_fold_features(study.paths.dsfr_features("unet")), radiomics, TABLE,
                        Manifest.load(study.paths.manifest), arch="unet", settings=study.learn, selection=None)
