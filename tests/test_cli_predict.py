"""`her2dlr learn run` writes model artefacts; `her2dlr predict` applies them to new images and rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import lesion_image, lesion_mask, write_lesion_folders, write_png
from her2dlr.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A synthetic folder cohort (smooth benign vs rough malignant), radiomics, an LR model."""
    tmp = tmp_path_factory.mktemp("predict")
    root = tmp / "cohort"
    write_lesion_folders(root, 15)
    raw = {
        "name": "synthetic",
        "cohort": {"sources": [{"kind": "folders", "path": str(root)}]},
        "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]},
        "split": {"seed": 1, "holdout": {"test_size": 0.3}, "kfold": {"n_splits": 3, "n_repeats": 1}},
        "radiomics": {"params": "video", "n_jobs": 1, "backend": "sequential"},
        "learn": {"features": ["radiomics_video_mask"], "models": [{"name": "lr", "grid": {}}],
                  "selection": [{"name": "variance"}, {"name": "zscore"}, {"name": "pearson", "threshold": 0.9}],
                  "schemes": ["holdout"], "search": {"inner_splits": 3}},
    }
    study = tmp / "study.yaml"
    study.write_text(yaml.safe_dump(raw))
    for args in (["cohort", "build", str(study), "--n-jobs", "1"], ["extract", "radiomics", str(study)],
                 ["learn", "run", str(study)]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
    return tmp


def test_learn_run_writes_artefact_and_predict_classifies_new_images(trained: Path):
    model = trained / "runs" / "synthetic" / "models" / "radiomics_video_mask-lr"
    card = json.loads((model / "model_card.json").read_text())
    assert card["inputs"]["feature_tables"][0]["params"] == "video"
    assert (model / "radiomics_params.json").exists()
    probs = {}
    for cls, texture, seed in (("benign", "smooth", 500), ("malignant", "rough", 600)):
        img = write_png(trained / "new" / f"{cls}.png", lesion_image(seed, texture=texture))
        mask = write_png(trained / "new" / f"{cls}_mask.png", lesion_mask())
        out = trained / "new" / f"{cls}.csv"
        res = runner.invoke(app, ["predict", str(model), "--image", str(img), "--mask", str(mask), "--case", cls,
                                  "--out", str(out)])
        assert res.exit_code == 0, res.output
        probs[cls] = pd.read_csv(out).iloc[0]
    assert probs["malignant"]["prob"] > probs["benign"]["prob"]
    assert probs["malignant"]["class"] == 1 and probs["benign"]["class"] == 0


def test_predict_refuses_box_for_mask_model_and_other_params(trained: Path):
    model = trained / "runs" / "synthetic" / "models" / "radiomics_video_mask-lr"
    img = write_png(trained / "new" / "x.png", lesion_image(7))
    res = runner.invoke(app, ["predict", str(model), "--image", str(img), "--box", "10,10,40,40"])
    assert res.exit_code == 2 and "delineated masks" in res.output
    feats = trained / "runs" / "synthetic" / "features" / "radiomics_video_mask.parquet"
    res = runner.invoke(app, ["predict", str(model), "--features", str(feats)])
    assert res.exit_code == 0, res.output
    other = trained / "other.parquet"
    pd.read_parquet(feats).to_parquet(other)
    meta = json.loads(feats.with_suffix(".json").read_text())
    other.with_suffix(".json").write_text(json.dumps({**meta, "params_hash": "0000000000000000", "params": "custom"}))
    res = runner.invoke(app, ["predict", str(model), "--features", str(other)])
    assert res.exit_code == 2 and "other radiomics parameters" in res.output
    res = runner.invoke(app, ["predict", str(trained)])
    assert res.exit_code == 2 and "not a model artefact" in res.output


def test_predict_entry_point_gives_result_objects_matching_the_artefact(trained: Path):
    """`her2dlr.predict.predict` is what the command line calls: same numbers, plus provenance."""
    from her2dlr.learn.artefact import load_artefact
    from her2dlr.predict import Case, predict, results_frame
    from her2dlr.predict.inputs import image_features

    model = trained / "runs" / "synthetic" / "models" / "radiomics_video_mask-lr"
    art = load_artefact(model)
    mask = write_png(trained / "api" / "mask.png", lesion_mask())
    cases = [Case(case_id=f"c{seed}", image=write_png(trained / "api" / f"{seed}.png", lesion_image(seed, texture=t)),
                  mask=mask) for seed, t in ((700, "smooth"), (701, "rough"))]
    results = predict(art, cases, progress=False)
    assert [r.case_id for r in results] == ["c700", "c701"]
    assert results[1].probability > results[0].probability
    for r in results:
        assert r.model == art.name and r.kind == "pipeline" and r.threshold == pytest.approx(art.threshold)
        assert r.predicted_class == int(r.probability >= r.threshold)
        assert r.provenance["inputs"] == "image" and r.provenance["lesion"] == "mask"
        assert r.provenance["radiomics"]["params"] == "video"
        assert r.version and json.dumps(r.to_dict())
    # the same case given as its feature row gives the same probability, to the last digit
    row = image_features(art, cases[1].image, mask=mask)
    by_row = predict(art, Case(case_id="row", features=row))[0]
    assert by_row.probability == results[1].probability
    assert by_row.provenance["inputs"] == "feature row"
    frame = results_frame(results)
    assert list(frame.columns) == ["case_id", "model", "prob", "class", "threshold"]


def test_predict_entry_point_names_the_table_row_of_a_bad_case(trained: Path):
    from her2dlr.errors import InputError
    from her2dlr.predict import Case, predict

    model = trained / "runs" / "synthetic" / "models" / "radiomics_video_mask-lr"
    bad = Case(case_id="x", image=trained / "api" / "missing.png", mask=trained / "api" / "mask.png",
               where="cases.csv row 7")
    with pytest.raises(InputError, match=r"cases.csv row 7 \(case 'x'\)"):
        predict(model, [bad])
    with pytest.raises(InputError, match="No cases"):
        predict(model, [])
