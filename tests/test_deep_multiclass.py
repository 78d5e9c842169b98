"""The deep stage on a three-class label (HER2-zero / HER2-low / HER2-positive): training, metrics, deployment."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from sklearn.metrics import roc_auc_score
from sklearn.utils.class_weight import compute_class_weight
from typer.testing import CliRunner

from conftest import lesion_mask, write_png
from her2dlr.cli import app
from her2dlr.config import load_study
from her2dlr.deep.stage import run_deep_stage, training_settings
from her2dlr.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

runner = CliRunner()
ARCH = "densenet3block"
NAMES = ["HER2-zero", "HER2-low", "HER2-positive"]
SIZE = (40, 40)
#: Lesion mean and speckle per class (0, 1, 2): dark and smooth, grey, bright and rough.
LESION = {0: (30.0, 4.0), 1: (110.0, 15.0), 2: (200.0, 35.0)}


def three_class_image(seed: int, label: int) -> np.ndarray:
    """Speckle background and a central lesion whose brightness and texture give the class."""
    rng = np.random.default_rng(seed)
    img = rng.gamma(2.0, 30.0, size=SIZE)
    inside = lesion_mask(SIZE) > 0
    mean, sd = LESION[label]
    img[inside] = rng.normal(mean, sd, size=int(inside.sum()))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """`cohort build` + the deep stage with a final network on a 3-class study (IHC / ISH columns, 15 cases per
    class, 2 folds)."""
    tmp = tmp_path_factory.mktemp("deep3")
    rows = []
    for i in range(45):
        label = i % 3
        img = write_png(tmp / "img" / f"c{i}.png", three_class_image(i, label))
        mask = write_png(tmp / "img" / f"c{i}_mask.png", lesion_mask(SIZE))
        ihc, ish = [("0", ""), ("1+", ""), ("3+", "")][label]
        rows.append({"case": f"c{i:02d}", "patient": f"p{i:02d}", "image": str(img), "mask": str(mask), "ihc": ihc,
                     "ish": ish})
    pd.DataFrame(rows).to_csv(tmp / "cases.csv", index=False)
    study = {
        "name": "her2", "cohort": {"sources": [{"kind": "table", "path": "cases.csv", "case_id_column": "case",
                                                "patient_id_column": "patient", "image_column": "image",
                                                "mask_column": "mask", "label_columns": ["ihc", "ish"]}]},
        "label": {"rule": "her2_three_class", "ihc_column": "ihc", "ish_column": "ish"},
        "split": {"seed": 0, "kfold": {"n_splits": 2, "n_repeats": 1}},
        "deep": {"arch": ARCH, "image_size": 32, "epochs": 10, "batch_size": 8, "patience": 0, "lr": 1e-2,
                 "final": True, "seed": 0},
    }
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    res = runner.invoke(app, ["cohort", "build", str(path), "--n-jobs", "1"])
    assert res.exit_code == 0, res.output
    # what `her2dlr train deep` runs, with a tiny network (arch options are no study-file key)
    loaded = load_study(path)
    settings, roi = training_settings(loaded.deep, num_threads=1, progress=False)
    settings = replace(settings, min_class_cases=4, arch_options={"growth_rate": 4, "block_layers": (1, 1, 2)})
    run_deep_stage(loaded, settings=settings, roi=roi, final=True, progress=False)
    out = tmp / "runs" / "her2"
    write_png(out / "new.png", three_class_image(999, 2))
    write_png(out / "new_mask.png", lesion_mask(SIZE))
    return out


def _probs(frame: pd.DataFrame) -> np.ndarray:
    return frame[["prob_0", "prob_1", "prob_2"]].to_numpy()


def test_three_class_predictions_follow_the_multiclass_contract_and_learn(run: Path):
    from her2dlr.deep.train import load_checkpoint
    from her2dlr.learn.cv import PREDICTION_COLUMNS

    folder = run / "deep" / ARCH
    pred = pd.read_parquet(folder / "predictions.parquet")
    assert list(pred.columns) == [*PREDICTION_COLUMNS, "prob_0", "prob_1", "prob_2"]
    proba = _probs(pred)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert (pred["class"].to_numpy() == proba.argmax(axis=1)).all()
    np.testing.assert_allclose(pred["prob"], proba.max(axis=1))
    assert pred["threshold"].isna().all()
    test = pred[(pred["split"] == "test") & pred["fold"].str.fullmatch(r"r0f\d")]
    assert len(test) == 45 and set(test["label"]) == {0, 1, 2}  # every case once out of fold
    oof_auc = roc_auc_score(test["label"], _probs(test), multi_class="ovr", average="macro")
    assert oof_auc > 0.9  # brightness and texture separate the classes
    ckpt = load_checkpoint(folder / "r0f0" / "best.pt")
    assert ckpt["n_classes"] == 3 and ckpt["extra"]["threshold"]["method"] == "argmax"
    # weighted cross-entropy: scikit-learn's "balanced" weights of the inner training part's three classes
    inner = sorted(set(ckpt["extra"]["train_cases"]) - set(ckpt["extra"]["val_cases"]))
    labels = pred.drop_duplicates("case_id").set_index("case_id").loc[inner, "label"].astype(int)
    np.testing.assert_allclose(ckpt["state"]["class_weights"],
                               compute_class_weight("balanced", classes=np.arange(3), y=labels), rtol=1e-12)
    history = pd.read_csv(folder / "history.csv")  # the epochs were kept by the inner validation's macro AUC
    assert history["val_auc"].notna().all() and len(ckpt["extra"]["val_cases"]) >= 3


def test_three_class_metrics_equal_scikit_learn_on_the_saved_predictions(run: Path):
    folder = run / "deep" / ARCH
    pred = pd.read_parquet(folder / "predictions.parquet")
    metrics = pd.read_csv(folder / "metrics.csv")
    row = metrics[(metrics["split"] == "test") & (metrics["scope"] == "r0")].iloc[0]
    test = pred[(pred["split"] == "test") & pred["fold"].str.fullmatch(r"r0f\d")]
    want = roc_auc_score(test["label"], _probs(test), multi_class="ovr", average="macro")
    assert row["auc"] == pytest.approx(want, abs=1e-9)
    assert row["ci_low"] <= row["auc"] <= row["ci_high"] and str(row["ci_method"]).startswith("macro one-vs-rest")
    per_class = pd.read_csv(folder / "multiclass.csv")
    r0 = per_class[(per_class["split"] == "test") & (per_class["scope"] == "r0")].set_index("name")
    assert list(r0.index[:3]) == NAMES  # the label rule's class names
    for k, name in enumerate(NAMES):
        assert r0.loc[name, "auc"] == pytest.approx(roc_auc_score(test["label"] == k, test[f"prob_{k}"]), abs=1e-9)
    confusion = pd.read_csv(folder / "confusion.csv")
    conf = confusion[(confusion["split"] == "test") & (confusion["scope"] == "r0")]
    assert conf["n"].sum() == 45
    assert "final" not in set(metrics["scope"])


def test_predict_on_the_final_three_class_network_equals_the_network(run: Path):
    from her2dlr.deep.cv import load_deep_model, predict_images
    from her2dlr.deep.data import load_rois
    from her2dlr.deep.train import predict_proba
    from her2dlr.learn.artefact import load_artefact

    model_dir = run / "models" / f"deep_{ARCH}-signature"
    art = load_artefact(model_dir)
    assert art.kind == "deep" and art.classes == NAMES and art.card["inputs"]["image"]["fold"] == "final"
    # the final network trained on the hold-out's training rows: the card counts them per class
    from her2dlr.cohort.manifest import Manifest

    manifest = Manifest.load(run / "cohort" / "manifest.parquet").table
    train_labels = manifest.loc[manifest["split"] == "train", "label"].astype(int)
    assert art.card["training"]["class_counts"] == {name: int((train_labels == k).sum()) for k, name in enumerate(NAMES)}
    assert art.card["training"]["n_cases"] == art.card["training"]["n_patients"] == len(train_labels)
    image, mask = run / "new.png", run / "new_mask.png"
    res = runner.invoke(app, ["predict", str(model_dir), "--image", str(image), "--mask", str(mask),
                              "--out", str(run / "new.csv")])
    assert res.exit_code == 0, res.output
    got = pd.read_csv(run / "new.csv").iloc[0]
    # independent path: the final network in memory on the same lesion
    network, spec, _ = load_deep_model(run / "deep" / ARCH / "final" / "best.pt")
    want = predict_proba(network, load_rois([str(image)], [str(mask)], spec=spec))[0]
    np.testing.assert_allclose([got["prob_0"], got["prob_1"], got["prob_2"]], want, atol=1e-6)
    assert got["class"] == want.argmax() and got["class_name"] == NAMES[int(want.argmax())]
    assert got["prob"] == pytest.approx(want.max(), abs=1e-6) and np.isnan(got["threshold"])
    np.testing.assert_allclose(predict_images(run / "deep" / ARCH / "final" / "best.pt", [str(image)], [str(mask)])[0],
                               want, atol=1e-6)
    heat = runner.invoke(app, ["predict", str(model_dir), "--image", str(image), "--mask", str(mask),
                               "--heatmap", str(run / "heat.png")])
    assert heat.exit_code == 0, heat.output
    assert f"class {int(want.argmax())}" in heat.output  # the map explains the most probable class
    caption = Image.open(run / "heat.png").text["Caption"]
    name = NAMES[int(want.argmax())]
    assert f"P({name}) = {want.max():.3f}" in caption and "P(positive)" not in caption
    from her2dlr.predict import Case, predict

    shown = predict(model_dir, Case(case_id="new", image=image, mask=mask), heat_maps=run / "heat2.png",
                    progress=False)[0].heat_map
    assert shown.explained_class == want.argmax() and shown.prob == pytest.approx(want.max(), abs=1e-6)


def test_heat_map_of_a_three_class_network_with_test_time_flips_shows_the_predicted_probability(run: Path,
                                                                                                  tmp_path: Path):
    """With tta_flips recorded, predict gives the flip-averaged class probabilities; the heat map explains that
    most probable class and returns its probability, not that of one unflipped forward pass."""
    import torch

    from her2dlr.deep.cv import load_deep_model
    from her2dlr.deep.data import load_rois
    from her2dlr.deep.deploy import save_deep_artefact
    from her2dlr.deep.train import predict_proba
    from her2dlr.learn.artefact import load_artefact
    from her2dlr.predict import Case, predict

    trained = load_artefact(run / "models" / f"deep_{ARCH}-signature")
    (tmp_path / "deep" / "final").mkdir(parents=True)
    ckpt = torch.load(run / "deep" / ARCH / "final" / "best.pt", weights_only=False)
    ckpt["settings"]["tta_flips"] = True
    torch.save(ckpt, tmp_path / "deep" / "final" / "best.pt")
    path = save_deep_artefact(tmp_path / "models", tmp_path / "deep", name="flipped", task=trained.card["task"])
    image, mask = run / "new.png", run / "new_mask.png"
    result = predict(path, Case(case_id="new", image=image, mask=mask), heat_maps=tmp_path / "heat.png",
                     progress=False)[0]
    network, spec, _ = load_deep_model(tmp_path / "deep" / "final" / "best.pt")
    x = load_rois([str(image)], [str(mask)], spec=spec)
    flipped, plain = predict_proba(network, x, flips=True)[0], predict_proba(network, x)[0]
    k = int(flipped.argmax())
    assert result.predicted_class == k and result.probability == pytest.approx(flipped[k], abs=1e-6)
    assert abs(flipped[k] - plain[k]) > 1e-6  # the flips change the probability: the check below can fail
    assert result.heat_map.explained_class == k
    assert result.heat_map.prob == pytest.approx(result.probability, abs=1e-6)


def test_serve_answers_the_three_class_deep_model_as_predict(run: Path):
    pytest.importorskip("fastapi", reason="the server needs fastapi (pip install -e .)")
    from fastapi.testclient import TestClient

    from her2dlr.predict import Case, predict
    from her2dlr.serve import ServeSettings, create_app

    image, mask = run / "new.png", run / "new_mask.png"
    client = TestClient(create_app(ServeSettings(run / "models")))
    body = client.post(f"/api/models/deep_{ARCH}-signature/predict", data={"heat_map": "false"},
                       files={"image": ("a.png", image.read_bytes(), "image/png"),
                              "mask": ("m.png", mask.read_bytes(), "image/png")})
    assert body.status_code == 200, body.text
    got = body.json()
    want = predict(run / "models" / f"deep_{ARCH}-signature", Case(case_id="new", image=image, mask=mask),
                   progress=False)[0]
    assert list(got["class_probabilities"]) == NAMES and got["class_name"] == want.class_name
    np.testing.assert_allclose(list(got["class_probabilities"].values()), list(want.class_probabilities.values()),
                               atol=1e-9)


def test_what_stays_binary_refuses_a_three_class_model_by_key(run: Path):
    from her2dlr.cohort.manifest import Manifest
    from her2dlr.deep.checkpoints import find_fold_checkpoints
    from her2dlr.deep.dlr import refuse_multiclass_dlr
    from her2dlr.deep.explain_study import explain_cases
    from her2dlr.survival.stage import out_of_fold_scores

    manifest = Manifest.load(run / "cohort" / "manifest.parquet")
    with pytest.raises(InputError, match=r"deep\.dlr: label\.rule 'her2_three_class' has 3 classes"):
        refuse_multiclass_dlr(manifest)
    with pytest.raises(InputError, match=r"survival\.score_from: .* multi-class model"):
        out_of_fold_scores(run, f"deep-{ARCH}")
    checkpoints = find_fold_checkpoints(run / "deep" / ARCH, manifest=manifest)
    with pytest.raises(InputError, match=r"3 classes \(label\.rule her2_three_class\)"):
        explain_cases(checkpoints, manifest, run / "explain", progress=False)
    res = runner.invoke(app, ["learn", "dlr", str(run.parent.parent / "study.yaml")])
    assert res.exit_code != 0 and "deep.dlr" in res.output
