"""Deep and DLR model artefacts: `train deep` / `learn dlr` write them, `predict` applies them to an image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import lesion_image, lesion_mask, write_lesion_folders, write_png
from her2dlr.cli import app
from her2dlr.learn.artefact import artefact_slug

runner = CliRunner()
ARCH = "densenet3block"
LATE = f"late(deep_{ARCH}-signature,radiomics_video_mask-lr)"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """Synthetic cohort (smooth benign vs rough malignant) with radiomics, k-fold + hold-out networks, DLR models."""
    tmp = tmp_path_factory.mktemp("deploy")
    root = tmp / "cohort"
    write_lesion_folders(root, 12)
    raw = {
        "name": "synthetic",
        "cohort": {"sources": [{"kind": "folders", "path": str(root)}]},
        "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]},
        "split": {"seed": 1, "holdout": {"test_size": 0.25}, "kfold": {"n_splits": 2, "n_repeats": 1}},
        "radiomics": {"params": "video", "n_jobs": 1, "backend": "sequential"},
        "learn": {"selection": [{"name": "variance"}, {"name": "zscore"}], "models": [{"name": "lr", "grid": {}}],
                  "search": {"inner_splits": 2}},
    }
    study = tmp / "study.yaml"
    study.write_text(yaml.safe_dump(raw))
    steps = [["cohort", "build", str(study), "--n-jobs", "1"], ["extract", "radiomics", str(study)],
             ["train", "deep", str(study), "--epochs", "2", "--image-size", "32", "--threads", "1", "--batch-size", "8",
              "--n-jobs", "1", "--scheme", "kfold", "--scheme", "holdout", "--patience", "0"],
             ["extract", "deep", str(study), "--pca", "4"],
             ["learn", "dlr", str(study), "--radiomics", "radiomics_video_mask", "--n-components", "4"]]
    for args in steps:
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
    out = tmp / "runs" / "synthetic"
    (out / "new").mkdir()
    write_png(out / "new" / "case.png", lesion_image(777, texture="rough"))
    write_png(out / "new" / "case_mask.png", lesion_mask())
    return out


def _box_of_mask(path: Path) -> tuple[int, int, int, int]:
    from her2dlr.io.images import mask_to_bbox, read_mask_array

    return mask_to_bbox(read_mask_array(path) > 0)


def test_train_deep_writes_the_holdout_network_as_a_deep_artefact(run: Path):
    from her2dlr.learn.artefact import load_artefact

    art = load_artefact(run / "models" / f"deep_{ARCH}-signature")
    assert art.kind == "deep" and art.network_path is not None
    assert art.card["inputs"]["image"]["arch"] == ARCH and art.card["inputs"]["image"]["fold"] == "holdout"
    assert art.card["metrics"]["test_n"] == 6  # the hold-out's 6 test cases scored its network


def test_predict_deep_artefact_matches_the_checkpoint_and_draws_a_heat_map(run: Path):
    from PIL import Image

    from her2dlr.deep.cv import predict_images

    model = run / "models" / f"deep_{ARCH}-signature"
    image, mask = run / "new" / "case.png", run / "new" / "case_mask.png"
    x, y, w, h = _box_of_mask(mask)
    res = runner.invoke(app, ["predict", str(model), "--image", str(image), "--box", f"{x},{y},{w},{h}",
                              "--out", str(run / "new" / "deep.csv"), "--heatmap", str(run / "new" / "heat.png")])
    assert res.exit_code == 0, res.output
    got = pd.read_csv(run / "new" / "deep.csv").iloc[0]
    # independent path: the trained hold-out checkpoint applied to the same image and lesion
    want = predict_images(run / "deep" / ARCH / "holdout" / "best.pt", [str(image)], [str(mask)])[0]
    assert got["prob"] == pytest.approx(want, abs=1e-6)
    assert got["class"] == int(got["prob"] >= got["threshold"])
    width, height = Image.open(run / "new" / "heat.png").size  # the 80 x 96 image, framed by caption and colour bar
    assert width >= 80 and height > 96
    assert "inside the lesion" in res.output
    by_mask = runner.invoke(app, ["predict", str(model), "--image", str(image), "--mask", str(mask),
                                  "--out", str(run / "new" / "deep_mask.csv")])
    assert by_mask.exit_code == 0, by_mask.output
    assert pd.read_csv(run / "new" / "deep_mask.csv").iloc[0]["prob"] == pytest.approx(got["prob"], abs=1e-9)
    no_roi = runner.invoke(app, ["predict", str(model), "--image", str(image)])
    assert no_roi.exit_code == 2 and "--mask or --box" in no_roi.output
    radiomics_model = run / "models" / "radiomics_video_mask-lr"
    no_net = runner.invoke(app, ["predict", str(radiomics_model), "--image", str(image), "--mask", str(mask),
                                 "--heatmap", str(run / "new" / "none.png")])
    assert no_net.exit_code == 2 and "has no network" in no_net.output


def test_dlr_and_late_artefacts_predict_from_an_image_as_from_their_feature_rows(run: Path):
    from her2dlr.deep.cv import load_deep_model
    from her2dlr.deep.data import load_rois
    from her2dlr.deep.features import embed_arrays
    from her2dlr.learn.artefact import load_artefact
    from her2dlr.predict.inputs import case_inputs
    from her2dlr.radiomics.extract import extract_case

    image, mask = run / "new" / "case.png", run / "new" / "case_mask.png"
    dlr = load_artefact(run / "models" / f"deep_{ARCH}+radiomics_video_mask-lr")
    assert dlr.kind == "pipeline" and dlr.network_path is not None
    card = dlr.card
    assert any(c.startswith("deep_") for c in card["inputs"]["features"])
    assert card["training"]["scheme"] == "holdout" and card["metrics"]["test_n"] == 6
    frame = case_inputs(dlr, case_id="new", image=image, mask=mask)
    # the same row built by hand: PyRadiomics on the image, the network's penultimate features
    network, spec, _ = load_deep_model(run / "deep" / ARCH / "holdout" / "best.pt")
    emb, prob = embed_arrays(network, load_rois([str(image)], [str(mask)], spec=spec))
    rad = extract_case(image, mask_path=mask, params=dlr.radiomics_params())
    by_hand = pd.DataFrame([{**rad, **{f"deep_{j}": v for j, v in enumerate(emb[0])}}], index=["new"])
    assert dlr.predict_proba(frame)[0] == pytest.approx(dlr.predict_proba(by_hand)[0], abs=1e-9)
    late = load_artefact(run / "models" / artefact_slug(LATE))
    assert late.kind == "late" and [c.kind for c in late.components] == ["deep", "pipeline"]
    frame = case_inputs(late, case_id="new", image=image, mask=mask)
    rad_prob = late.components[1].predict_proba(by_hand)[0]
    assert late.predict_proba(frame)[0] == pytest.approx((prob[0] + rad_prob) / 2, abs=1e-9)
    metrics = pd.read_csv(run / "learn" / f"dlr_{ARCH}" / "metrics.csv")
    assert {f"deep_{ARCH}+radiomics_video_mask-lr", f"deep_{ARCH}-signature"} <= set(metrics["model"])


def test_a_model_with_two_networks_is_refused(run: Path, tmp_path: Path):
    import shutil

    import torch

    from her2dlr.errors import InputError
    from her2dlr.learn.artefact import load_artefact, write_checksums
    from her2dlr.predict.network import network_columns

    late = run / "models" / artefact_slug(LATE)
    copy = tmp_path / "late"
    shutil.copytree(late, copy)
    other = copy / "components" / "radiomics_video_mask-lr" / "network.pt"
    ckpt = torch.load(run / "deep" / ARCH / "r0f0" / "best.pt", weights_only=False)
    torch.save(ckpt, other)
    with pytest.raises(InputError, match="added: components/radiomics_video_mask-lr/network.pt"):
        load_artefact(copy)
    write_checksums(copy)  # as if the two networks had been put together on purpose
    with pytest.raises(InputError, match="2 different networks"):
        network_columns(load_artefact(copy), [str(run / "new" / "case.png")], [str(run / "new" / "case_mask.png")])
    card = json.loads((run / "models" / f"deep_{ARCH}-signature" / "model_card.json").read_text())
    assert card["threshold"]["source"] in ("inner_val", "train_fit")
    assert np.isfinite(card["threshold"]["value"])


def test_kfold_only_study_deploys_the_final_network(tmp_path: Path, folder_cohort: Path):
    from her2dlr.learn.artefact import load_artefact

    raw = {"name": "kf", "cohort": {"sources": [{"kind": "folders", "path": str(folder_cohort)}]},
           "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]},
           "split": {"seed": 1, "kfold": {"n_splits": 2, "n_repeats": 1}},
           "radiomics": {"params": "video", "n_jobs": 1, "backend": "sequential"},
           "learn": {"selection": [{"name": "variance"}, {"name": "zscore"}], "models": [{"name": "lr", "grid": {}}],
                     "search": {"inner_splits": 2}}}
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(raw))
    train = ["train", "deep", str(study), "--epochs", "1", "--image-size", "32", "--threads", "1", "--batch-size", "8",
             "--n-jobs", "1"]
    for args in (["cohort", "build", str(study), "--n-jobs", "1"], ["extract", "radiomics", str(study)], train):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
    assert "No deployable model" in res.output  # k-fold networks only: none to deploy
    res = runner.invoke(app, [*train, "--final", "--resume"])
    assert res.exit_code == 0 and "Deployable model" in res.output, res.output
    for args in (["extract", "deep", str(study), "--pca", "4"],
                 ["learn", "dlr", str(study), "--radiomics", "radiomics_video_mask", "--n-components", "4"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
    from her2dlr.cohort.manifest import Manifest

    manifest = Manifest.load(tmp_path / "runs" / "kf" / "cohort" / "manifest.parquet").table
    n_train = int((manifest["split"] == "train").sum())  # the final network: the hold-out's training rows
    n_positive = int(manifest.loc[manifest["split"] == "train", "label"].sum())
    models = tmp_path / "runs" / "kf" / "models"
    dlr = load_artefact(models / f"deep_{ARCH}+radiomics_video_mask-lr")
    assert dlr.card["training"]["scheme"] == "final" and dlr.card["training"]["n_cases"] == n_train
    assert dlr.card["inputs"]["feature_tables"][-1]["fold"] == "final"
    sig = load_artefact(models / f"deep_{ARCH}-signature")
    assert sig.card["inputs"]["image"]["fold"] == "final" and sig.card["training"]["n_cases"] == n_train
    assert sig.card["training"]["n_positive"] == n_positive  # counted from the manifest, as the serving page shows


def test_predict_a_table_of_new_cases_with_heat_maps(run: Path):
    model = run / "models" / f"deep_{ARCH}+radiomics_video_mask-lr"
    x, y, w, h = _box_of_mask(run / "new" / "case_mask.png")
    table = run / "new" / "cases.csv"
    pd.DataFrame({"case_id": ["a", "b"], "image": ["case.png", "case.png"], "mask": ["case_mask.png", None],
                  "box": [None, f"{x},{y},{w},{h}"]}).to_csv(table, index=False)
    refused = runner.invoke(app, ["predict", str(model), "--cases", str(table)])  # radiomics on masks: no box
    assert refused.exit_code == 2 and "row 3 (case 'b')" in refused.output and "Give --mask" in refused.output
    pd.DataFrame({"case_id": ["a", "b"], "image": ["case.png", "case.png"],
                  "mask": ["case_mask.png", "case_mask.png"]}).to_csv(table, index=False)
    out = run / "new" / "cases_pred.csv"
    res = runner.invoke(app, ["predict", str(model), "--cases", str(table), "--out", str(out),
                              "--heatmap", str(run / "new" / "heat")])
    assert res.exit_code == 0, res.output
    got = pd.read_csv(out)
    assert got["case_id"].tolist() == ["a", "b"]
    single = runner.invoke(app, ["predict", str(model), "--image", str(run / "new" / "case.png"), "--mask",
                                 str(run / "new" / "case_mask.png"), "--out", str(run / "new" / "one.csv")])
    assert single.exit_code == 0, single.output
    assert got.loc[0, "prob"] == pytest.approx(pd.read_csv(run / "new" / "one.csv").loc[0, "prob"], abs=1e-9)
    assert sorted(p.name for p in (run / "new" / "heat").glob("*.png")) == ["a.png", "b.png"]
    pd.DataFrame({"image": ["case.png", None], "mask": ["case_mask.png", "case_mask.png"]}).to_csv(table, index=False)
    bad = runner.invoke(app, ["predict", str(model), "--cases", str(table)])
    assert bad.exit_code == 2 and "row 3: no image" in bad.output


def test_heat_map_shows_the_models_answer_and_a_colour_bar(run: Path):
    """The heat map PNG carries a caption (case, model, probability, class, threshold) and the overlay's colour bar."""
    from matplotlib import colormaps
    from PIL import Image

    from her2dlr.predict import Case, predict

    model = run / "models" / f"deep_{ARCH}-signature"
    path = run / "new" / "captioned.png"
    res = predict(model, Case(case_id="new-1", image=run / "new" / "case.png", mask=run / "new" / "case_mask.png"),
                  heat_maps=path)[0]
    png = Image.open(path)
    caption = png.text["Caption"]
    words = "positive (malignant)" if res.predicted_class == 1 else "negative (benign)"
    assert "Case new-1" in caption and model.name in caption
    assert f"P(positive) = {res.probability:.3f} -> class {res.predicted_class}, {words}" in caption
    assert f"threshold {res.threshold:.3f}" in caption and "Grad-CAM" in caption
    # the colour bar: jet blended over mid-grey with opacity 0.5 * heat, computed here from matplotlib alone
    rgb = np.asarray(png.convert("RGB")).astype(int)
    bar_w = int(rgb.shape[1] * 0.7)
    x0 = (rgb.shape[1] - bar_w) // 2
    t = np.linspace(0.0, 1.0, bar_w)[:, None]
    want = np.clip((128 / 255) * (1 - 0.5 * t) + colormaps["jet"](t[:, 0])[:, :3] * 0.5 * t, 0, 1) * 255
    errors = [np.abs(rgb[r, x0:x0 + bar_w] - want.astype(np.uint8)).max() for r in range(rgb.shape[0])]
    assert min(errors) <= 1
    assert int(np.argmin(errors)) > rgb.shape[0] // 2  # under the picture



@pytest.mark.usefixtures("one_torch_thread")
def test_a_network_trained_with_test_time_flips_is_deployed_with_them(run: Path, tmp_path: Path):
    import torch

    from her2dlr.deep.cv import load_deep_model
    from her2dlr.deep.data import load_rois
    from her2dlr.deep.deploy import save_deep_artefact
    from her2dlr.deep.train import predict_proba
    from her2dlr.learn.artefact import load_artefact
    from her2dlr.predict.inputs import case_inputs

    folder = tmp_path / "deep"
    (folder / "holdout").mkdir(parents=True)
    ckpt = torch.load(run / "deep" / ARCH / "holdout" / "best.pt", weights_only=False)
    ckpt["settings"]["tta_flips"] = True
    torch.save(ckpt, folder / "holdout" / "best.pt")
    path = save_deep_artefact(tmp_path / "models", folder, name="flipped", metrics=None, task={}, config_hash="x")
    image, mask = run / "new" / "case.png", run / "new" / "case_mask.png"
    art = load_artefact(path)
    got = art.predict_proba(case_inputs(art, case_id="new", image=image, mask=mask))[0]
    network, spec, _ = load_deep_model(folder / "holdout" / "best.pt")
    x = load_rois([str(image)], [str(mask)], spec=spec)
    flipped, plain = predict_proba(network, x, flips=True)[0, 1], predict_proba(network, x)[0, 1]
    assert got == pytest.approx(flipped, abs=1e-6) and abs(flipped - plain) > 1e-6


@pytest.mark.usefixtures("one_torch_thread")
def test_heat_map_of_a_network_with_test_time_flips_gives_the_probability_predict_gives(run: Path, tmp_path: Path):
    """A network trained with tta_flips predicts the mean over the ROI and its mirror; its heat map's probability
    (returned, and in a caption drawn without the model's answer) is that one, not one unflipped forward pass."""
    import torch
    from PIL import Image

    from her2dlr.deep.cv import load_deep_model
    from her2dlr.deep.data import load_rois
    from her2dlr.deep.deploy import save_deep_artefact
    from her2dlr.deep.train import predict_proba
    from her2dlr.learn.artefact import load_artefact
    from her2dlr.predict import Case, predict
    from her2dlr.predict.network import case_heat_map

    folder = tmp_path / "deep"
    (folder / "holdout").mkdir(parents=True)
    ckpt = torch.load(run / "deep" / ARCH / "holdout" / "best.pt", weights_only=False)
    ckpt["settings"]["tta_flips"] = True  # what `train deep` records for deep.tta_flips: true
    torch.save(ckpt, folder / "holdout" / "best.pt")
    path = save_deep_artefact(tmp_path / "models", folder, name="flipped", metrics=None, task={}, config_hash="x")
    image, mask = run / "new" / "case.png", run / "new" / "case_mask.png"
    res = runner.invoke(app, ["predict", str(path), "--image", str(image), "--mask", str(mask),
                              "--out", str(tmp_path / "pred.csv")])
    assert res.exit_code == 0, res.output
    answer = float(pd.read_csv(tmp_path / "pred.csv").iloc[0]["prob"])
    network, spec, _ = load_deep_model(folder / "holdout" / "best.pt")
    plain = predict_proba(network, load_rois([str(image)], [str(mask)], spec=spec))[0]
    assert abs(answer - plain[1]) > 1e-6  # the flips change this case's probability: the check below can fail
    heat = case_heat_map(load_artefact(path), image, tmp_path / "network.png", mask=mask, case_id="new")
    assert heat.prob == pytest.approx(answer, abs=1e-6)
    assert f"network's P(positive) = {answer:.3f}" in Image.open(tmp_path / "network.png").text["Caption"]
    shown = predict(path, Case(case_id="new", image=image, mask=mask), heat_maps=tmp_path / "answer.png",
                    progress=False)[0]
    assert shown.heat_map.prob == pytest.approx(shown.probability, abs=1e-6)
    assert shown.probability == pytest.approx(answer, abs=1e-9)
