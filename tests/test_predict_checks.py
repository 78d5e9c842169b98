"""No silent wrong answers: a new case that does not match the model's training is refused, or the result says so.

Each test is an input that gave a plausible-looking but wrong probability (or a crash) before the
checks existed: an image without the pixel spacing the model computes in, a 16-bit image for an
8-bit model, an artefact edited after training, clinical values and feature rows the model never saw.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import random_lesion, write_png, write_random_lesion_folders
from her2dlr.cli import app
from her2dlr.errors import InputError
from her2dlr.learn.artefact import load_artefact, write_checksums
from her2dlr.predict import Case, predict

runner = CliRunner()
FIXTURES = Path(__file__).parent / "fixtures" / "artefacts_v0.1"

#: First-order and 2D shape features: shape is in millimetres, so the model depends on the spacing.
PARAMS = {"setting": {"binWidth": 5.0, "label": 1}, "imageType": {"Original": {}},
          "featureClass": {"firstorder": None, "shape2D": None}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A radiomics model trained on 0.1 mm images (the folders source's spacing), through the real stages."""
    tmp = tmp_path_factory.mktemp("checks")
    write_random_lesion_folders(tmp / "cohort", 12)
    (tmp / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    raw = {
        "name": "spacing",
        "cohort": {"sources": [{"kind": "folders", "path": str(tmp / "cohort"), "spacing_mm": 0.1}]},
        "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]},
        "split": {"seed": 1, "holdout": {"test_size": 0.3}, "kfold": {"n_splits": 3, "n_repeats": 1}},
        "radiomics": {"params": str(tmp / "params.yaml"), "n_jobs": 1, "backend": "sequential"},
        "learn": {"features": ["radiomics_params_mask"], "models": [{"name": "lr", "grid": {}}],
                  "selection": [{"name": "variance"}, {"name": "zscore"}], "schemes": ["holdout"],
                  "search": {"inner_splits": 3}},
    }
    (tmp / "study.yaml").write_text(yaml.safe_dump(raw))
    for args in (["cohort", "build", str(tmp / "study.yaml"), "--n-jobs", "1"],
                 ["extract", "radiomics", str(tmp / "study.yaml")], ["learn", "run", str(tmp / "study.yaml")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
    return tmp


def _model(trained: Path) -> Path:
    return trained / "runs" / "spacing" / "models" / "radiomics_params_mask-lr"


def _case(trained: Path, seed: int = 900, bits: int = 8) -> tuple[Path, Path]:
    img, mask = random_lesion(seed, rough=True)
    if bits == 16:
        img = img.astype(np.uint16) * 257  # the same picture, stored on the 16-bit scale
    return write_png(trained / "new" / f"c{seed}_{bits}.png", img), write_png(trained / "new" / f"m{seed}.png", mask)


def test_card_records_the_training_images(trained: Path):
    card = json.loads((_model(trained) / "model_card.json").read_text())
    images = card["inputs"]["feature_tables"][0]["images"]
    assert images["bits"] == {"8": 24} and images["spacing"] == {"known": 24, "unknown": 0, "min": 0.1,
                                                                  "median": 0.1, "max": 0.1}
    assert images["size"] == {"min": [64, 64], "max": [64, 64]}


def test_unknown_spacing_is_refused_unless_the_user_says_which_to_assume(trained: Path):
    image, mask = _case(trained)
    with pytest.raises(InputError, match=r"carries no pixel spacing.*--spacing"):
        predict(_model(trained), Case(image=image, mask=mask), progress=False)
    res = runner.invoke(app, ["predict", str(_model(trained)), "--image", str(image), "--mask", str(mask)])
    assert res.exit_code == 2 and "--spacing" in res.output and "Traceback" not in res.output
    [given] = predict(_model(trained), Case(image=image, mask=mask, spacing=0.1), progress=False)
    assert given.provenance["spacing_mm"] == 0.1 and given.provenance["spacing_source"] == "given"
    assert not [w for w in given.warnings if "spacing" in w]
    [far] = predict(_model(trained), Case(image=image, mask=mask, spacing=1.0), progress=False)
    assert any("outside the training range" in w for w in far.warnings)
    assert far.probability != pytest.approx(given.probability)  # shape in mm: the spacing changes the answer


def test_pixel_unit_model_ignores_a_given_spacing_and_says_so(trained: Path, tmp_path: Path):
    """A model trained without spacing computes in pixels; a spacing given for a new case is not mixed in."""
    model = tmp_path / "pixels"
    shutil.copytree(_model(trained), model)
    card = json.loads((model / "model_card.json").read_text())
    card["inputs"]["feature_tables"][0]["images"]["spacing"] = {"known": 0, "unknown": 24}
    card["inputs"]["feature_tables"][0].pop("pixel_size", None)  # no training pixel size to resample to
    (model / "model_card.json").write_text(json.dumps(card))
    write_checksums(model)  # re-exported on purpose
    image, mask = _case(trained)
    [plain] = predict(model, Case(image=image, mask=mask), progress=False)
    [given] = predict(model, Case(image=image, mask=mask, spacing=0.1), progress=False)
    assert given.probability == pytest.approx(plain.probability)
    assert given.provenance["spacing_source"] == "pixel units as in training"
    assert any("was not used" in w for w in given.warnings)


def test_16_bit_image_is_refused_by_predict_and_by_extraction(trained: Path):
    from her2dlr.radiomics.extract import extract_case

    image, mask = _case(trained, bits=16)
    with pytest.raises(InputError, match=r"is 16-bit.*trained on 8-bit"):
        predict(_model(trained), Case(image=image, mask=mask, spacing=0.1), progress=False)
    with pytest.raises(InputError, match=r"bins of width 5.*16-bit"):
        extract_case(image, mask_path=mask, params=PARAMS)


def test_an_edited_artefact_is_refused_naming_the_file(trained: Path, tmp_path: Path):
    model = tmp_path / "edited"
    shutil.copytree(_model(trained), model)
    assert load_artefact(model).notes == []
    card = json.loads((model / "model_card.json").read_text())
    card["threshold"]["value"] = 0.999
    (model / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match=r"modified after it was written \(changed: model_card.json\)"):
        load_artefact(model)
    res = runner.invoke(app, ["predict", str(model), "--features", str(trained / "runs/spacing/features/"
                                                                      "radiomics_params_mask.parquet")])
    assert res.exit_code == 2 and "model_card.json" in res.output
    (model / "network.pt").write_bytes(b"x")
    with pytest.raises(InputError, match=r"added: network.pt"):
        load_artefact(model)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda card: card.pop("kind"), "lacks the key 'kind'"),
    (lambda card: [card], "must hold a JSON object"),
    (lambda card: card["inputs"]["clinical"].update({}) or card["inputs"]["columns"].append("Age"),
     r"neither features nor typed clinical"),
])
def test_broken_cards_get_a_message_not_a_traceback(trained: Path, tmp_path: Path, edit, message):
    model = tmp_path / "broken"
    shutil.copytree(_model(trained), model)
    card = json.loads((model / "model_card.json").read_text())
    out = edit(card)
    (model / "model_card.json").write_text(json.dumps(out if isinstance(out, list) else card))
    write_checksums(model)
    with pytest.raises(InputError, match=message):
        load_artefact(model)


def test_garbage_pipeline_file_is_refused(trained: Path, tmp_path: Path):
    model = tmp_path / "garbage"
    shutil.copytree(_model(trained), model)
    (model / "model.joblib").write_bytes(os.urandom(256))
    write_checksums(model)
    with pytest.raises(InputError, match=r"model.joblib cannot be read as a fitted pipeline"):
        load_artefact(model)


def test_old_artefacts_load_with_a_note_that_they_were_not_verified():
    art = load_artefact(FIXTURES / "clinical-lr")
    assert art.notes and "could not be checked" in art.notes[0]


def test_unseen_level_unknown_column_and_missing_value_are_reported():
    art = load_artefact(FIXTURES / "clinical-lr")
    row = pd.read_csv(FIXTURES / "clinical_cases.csv").iloc[0].to_dict()
    values = {k: row[k] for k in art.clinical_types}
    [known] = predict(art, Case(case_id="a", clinical=values), progress=False)
    assert not [w for w in known.warnings if "Case 'a'" in w]
    odd = {**values, "Shape": "hexagonal", "Age": None, "Menopause": "yes"}
    [result] = predict(art, Case(case_id="a", clinical=odd), progress=False)
    text = "\n".join(result.warnings)
    assert "Shape='hexagonal' was never seen in training" in text
    assert "Age is missing; the training median" in text
    assert "['Menopause'] are not read by model" in text


def test_clinical_value_outside_the_training_range_is_extrapolation(tmp_path: Path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from her2dlr.learn.artefact import save_artefact
    from her2dlr.learn.clinical import ClinicalEncoder
    from her2dlr.learn.thresholds import Threshold

    rng = np.random.default_rng(0)
    x = pd.DataFrame({"Age": rng.integers(30, 80, 60), "Shape": rng.choice(["oval", "irregular"], 60)})
    y = (x["Age"] > 55).astype(int)
    pipe = Pipeline([("encode", ClinicalEncoder({"Age": "numeric", "Shape": "categorical"}, min_frequency=None)),
                     ("classify", LogisticRegression())]).fit(x, y)
    types = {"Age": "numeric", "Shape": "categorical"}
    model = save_artefact(tmp_path / "m", name="clinical-lr", kind="pipeline", pipeline=pipe,
                          threshold=Threshold(value=0.5, method="fixed", target=0.5, sensitivity=1.0, specificity=1.0, n=60,
                                              source="given"),
                          inputs={"columns": ["Age", "Shape"], "clinical": types})
    lo, hi = int(x["Age"].min()), int(x["Age"].max())
    [inside] = predict(model, Case(clinical={"Age": 50, "Shape": "oval"}), progress=False)
    assert inside.warnings == []
    [old] = predict(model, Case(clinical={"Age": 130, "Shape": "oval"}), progress=False)
    assert old.warnings == [f"Case 'case': Age=130 is outside the training range {lo} to {hi} (extrapolation)."]


def test_missing_and_infinite_feature_values_are_named(trained: Path, tmp_path: Path):
    feats = pd.read_parquet(trained / "runs/spacing/features/radiomics_params_mask.parquet").head(3).copy()
    col_nan, col_inf = feats.columns[0], feats.columns[1]
    feats.iloc[1, 0] = np.nan
    feats.iloc[1, 1] = np.inf
    path = tmp_path / "rows.csv"
    feats.reset_index().to_csv(path, index=False)
    res = runner.invoke(app, ["predict", str(_model(trained)), "--features", str(path)])
    assert res.exit_code == 0, res.output
    case = str(feats.index[1])
    assert f"Case '{case}': 2 feature value(s) are missing or infinite" in res.output.replace("\n", " ")
    assert col_nan in res.output and col_inf in res.output


def test_non_utf8_file_name_is_a_message_not_an_abort(trained: Path, tmp_path: Path):
    image, mask = _case(trained)
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.png"))
    shutil.copyfile(image, odd)
    res = runner.invoke(app, ["predict", str(_model(trained)), "--image", str(odd), "--mask", str(mask),
                              "--spacing", "0.1"])
    assert res.exit_code == 2 and "not valid UTF-8" in res.output


def test_messages_keep_their_brackets_and_os_errors_name_the_path(trained: Path, tmp_path: Path):
    res = runner.invoke(app, ["predict", str(_model(trained)), "--image", str(tmp_path / "x.png"), "--box", "1,2,x"])
    assert res.exit_code == 2 and '"[x, y, w, h]"' in res.output  # not eaten as console markup
    folder = tmp_path / "rows.csv"
    folder.mkdir()
    res = runner.invoke(app, ["predict", str(_model(trained)), "--features", str(folder)])
    assert res.exit_code == 2 and "Traceback" not in res.output and "rows.csv" in res.output
