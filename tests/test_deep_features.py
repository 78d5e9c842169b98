"""Deep features per outer fold: shapes, out-of-fold bookkeeping, in-fold PCA, DLR fusion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from deep_helpers import TinyCNN, synthetic_lesions, train_tiny
from her2dlr.deep.features import (
    DeepPCA,
    FoldFeatures,
    check_out_of_fold,
    deep_frame,
    embed_arrays,
    fold_features,
    in_fold_pca,
    read_fold_features,
    write_fold_features,
)
from her2dlr.errors import InputError

N_CASES = 60


@pytest.fixture(scope="module")
def cohort() -> tuple[np.ndarray, pd.DataFrame]:
    """60 synthetic lesions (two per patient), repeated group 5-fold (2 repetitions)."""
    from her2dlr.cohort.splits import repeated_group_kfold

    images, labels, _, _ = synthetic_lesions(N_CASES, size=24, seed=3)
    ids = [f"case{i:03d}" for i in range(N_CASES)]
    patients = [f"p{i // 2:03d}" for i in range(N_CASES)]
    manifest = pd.DataFrame({"case_id": ids, "patient_id": patients, "label": labels})
    folds = repeated_group_kfold(labels, np.asarray(patients), 5, 2, 0)
    for r in range(2):
        manifest[f"fold_r{r}"] = folds[r]
    return images, manifest


@pytest.fixture(scope="module")
def fold_nets(cohort) -> dict[str, FoldFeatures]:
    """One tiny CNN per outer fold, trained on that fold's training cases only."""
    from her2dlr.deep.data import torch_threads
    from her2dlr.learn.cv import outer_folds

    images, manifest = cohort
    nets = []
    with torch.random.fork_rng(), torch_threads(1):
        for fold, _, train, _ in outer_folds(manifest, "kfold"):
            model = train_tiny(images[train], manifest["label"].to_numpy()[train], epochs=12, seed=len(nets))
            nets.append((fold, model, manifest["case_id"][train].tolist(), f"ckpt/{fold}.pt"))
    return fold_features(nets, images, manifest["case_id"].tolist(), batch_size=16)


def test_embed_shape_and_table(cohort):
    images, manifest = cohort
    model = TinyCNN(width=5)
    emb, prob = embed_arrays(model, images[:7], batch_size=3)
    assert emb.shape == (7, 10) and prob.shape == (7,)
    assert ((prob > 0) & (prob < 1)).all()
    frame = deep_frame(emb, manifest["case_id"][:7])
    assert list(frame.columns) == [f"deep_{j}" for j in range(10)]
    assert frame.index.name == "case_id" and frame.index[0] == "case000"
    with torch.no_grad():
        np.testing.assert_allclose(emb, model.embed(torch.as_tensor(images[:7])).numpy(), rtol=1e-5, atol=1e-6)
    assert model.training  # left in the mode it was in
    with pytest.raises(InputError, match="case ids"):
        deep_frame(emb, ["a"])


def test_every_fold_embeds_every_case(fold_nets, cohort):
    _, manifest = cohort
    assert sorted(fold_nets) == sorted(f"r{r}f{k}" for r in range(2) for k in range(5))
    for ff in fold_nets.values():
        assert ff.features.shape == (N_CASES, 24)
        assert ff.features.index.tolist() == manifest["case_id"].tolist()
        assert ff.prob.between(0, 1).all()


def test_test_cases_never_come_from_a_network_that_saw_them(fold_nets, cohort):
    _, manifest = cohort
    book = check_out_of_fold(fold_nets, manifest)
    assert len(book) == len(fold_nets) * N_CASES
    test_rows = book[book["role"] == "test"]
    assert len(test_rows) == 2 * N_CASES  # every case is tested once per repetition
    assert not test_rows["seen_in_training"].any()
    assert book.loc[book["role"] == "train", "seen_in_training"].all()
    # provenance written with the features says the same
    prov = pd.concat([ff.provenance() for ff in fold_nets.values()])
    merged = book.merge(prov, on=["fold", "case_id"])
    assert (merged["seen_in_training_x"] == merged["seen_in_training_y"]).all()
    # a checkpoint put on the wrong fold is refused
    swapped = dict(fold_nets)
    swapped["r0f0"], swapped["r0f1"] = fold_nets["r0f1"], fold_nets["r0f0"]
    swapped["r0f0"] = FoldFeatures("r0f0", fold_nets["r0f1"].features, fold_nets["r0f1"].prob,
                                   fold_nets["r0f1"].train_cases)
    with pytest.raises(InputError, match="r0f0.*trained on"):
        check_out_of_fold(swapped, manifest)


def test_round_trip_on_disk(fold_nets, tmp_path):
    folder = write_fold_features(fold_nets, tmp_path / "features", "tiny")
    assert folder.name == "deep_tiny" and (tmp_path / "features" / "deep_tiny.json").is_file()
    back = read_fold_features(folder)
    assert sorted(back) == sorted(fold_nets)
    for fold, ff in fold_nets.items():
        pd.testing.assert_frame_equal(back[fold].features, ff.features)
        assert back[fold].train_cases == ff.train_cases
        np.testing.assert_allclose(back[fold].prob.loc[ff.prob.index], ff.prob)
    with pytest.raises(InputError, match="extract deep"):
        read_fold_features(tmp_path / "nowhere")


def test_pca_is_fitted_on_training_rows_only(fold_nets, cohort):
    from her2dlr.learn.cv import outer_folds

    _, manifest = cohort
    report = in_fold_pca(fold_nets, manifest, n_components=64)
    assert len(report.table) == 10
    assert (report.table["n_components"] == 24).all()  # lowered to the 24 deep features
    assert report.table["explained_variance"].between(0.999, 1.0 + 1e-9).all()
    small = in_fold_pca(fold_nets, manifest, n_components=3)
    assert small.table["explained_variance"].lt(1.0).all()
    for fold, _, train, test in outer_folds(manifest, "kfold"):
        scores = small.transformed[fold]
        train_ids = manifest["case_id"][train]
        test_ids = manifest["case_id"][test]
        # centred by the training rows: their scores average 0, the test rows' do not
        np.testing.assert_allclose(scores.loc[train_ids].mean().to_numpy(), 0.0, atol=1e-6)
        assert np.abs(scores.loc[test_ids].mean().to_numpy()).max() > 1e-3


def test_deep_pca_is_a_transformer():
    from sklearn.base import clone

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(12, 30)), columns=[f"deep_{j}" for j in range(30)])
    pca = DeepPCA(n_components=64).fit(X)
    assert pca.n_components_ == 11
    assert list(pca.get_feature_names_out())[:2] == ["deep_pc1", "deep_pc2"]
    assert clone(pca).get_params() == {"n_components": 64, "scale": True, "random_state": 0}
    with pytest.raises(InputError, match="n_components"):
        DeepPCA(n_components=0).fit(X)
    with pytest.raises(InputError, match="columns differ"):
        pca.transform(X.rename(columns={"deep_0": "other"}))


def test_dlr_fusion_on_the_same_folds(fold_nets, cohort):
    from her2dlr.deep.dlr import deep_signature, late_dlr, run_dlr_cv
    from her2dlr.learn.cv import run_outer_cv
    from her2dlr.learn.tuning import SearchSettings

    _, manifest = cohort
    manifest = manifest.drop(columns="fold_r1")  # one repetition keeps the test fast
    fold_nets = {k: v for k, v in fold_nets.items() if k.startswith("r0")}
    rng = np.random.default_rng(1)
    y = manifest["label"].to_numpy()
    radiomics = pd.DataFrame({"original_firstorder_Mean": y + rng.normal(0, 0.8, N_CASES),
                              "noise (T=1)": rng.normal(size=N_CASES), "noise 2": rng.normal(size=N_CASES)},
                             index=pd.Index(manifest["case_id"], name="case_id"))
    selection = [{"name": "variance"}, {"name": "zscore"}]
    common = {"model": "lr", "grid": {}, "selection": selection, "search": SearchSettings(inner_splits=3)}
    dlr = run_dlr_cv(fold_nets, radiomics, manifest, n_components=8, **common)
    deep = run_dlr_cv(fold_nets, None, manifest, n_components=8, **common)
    rad = run_outer_cv(radiomics, manifest, **common, model_name="radiomics-lr")
    sig = deep_signature(fold_nets, manifest)
    late = late_dlr(sig, rad)
    for res, name in ((dlr, "dlr-lr"), (deep, "deep-lr"), (sig, "deep_signature"),
                      (late, "late(deep_signature,radiomics-lr)")):
        test = res.predictions[res.predictions["split"] == "test"]
        assert res.model == name
        assert len(test) == N_CASES and test["case_id"].is_unique
        assert test["prob"].between(0, 1).all()
    # same folds, same test cases for every model
    key = ["fold", "case_id"]
    a = dlr.predictions.query("split == 'test'")[key].sort_values(key).reset_index(drop=True)
    b = rad.predictions.query("split == 'test'")[key].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    # the fold pipeline's PCA saw exactly the fold's training rows of that fold's network
    fit = dlr.fits[3]
    pca = fit.pipeline.named_steps["deep_pca"].named_transformers_["deep"]
    train_feats = fold_nets[fit.fold].features.loc[fit.train_cases]
    np.testing.assert_allclose(pca.mean_, train_feats.to_numpy(dtype=float).mean(axis=0), rtol=1e-5, atol=1e-6)
    assert not set(fit.test_cases) & set(fit.train_cases)
    assert any(f.startswith("deep__deep_pc") for f in fit.features)
    assert any(f.startswith("radiomics__") for f in fit.features)
    # the busi-dlr benchmark's lines from these results
    from her2dlr.bench.dlr_benches import dlr_lines

    lines = dlr_lines({"dlr": dlr, "radiomics_box": rad, "deep_features": deep, "deep_signature": sig, "late": late},
                      saved_predictions=sig.predictions, pca=in_fold_pca(fold_nets, manifest, n_components=8),
                      info={"n": N_CASES})
    by_metric = {line["metric"]: line for line in lines}
    assert set(by_metric) == {"auc", "auc_radiomics_box", "auc_deep_features", "auc_deep_signature", "auc_late",
                              "delong_p_vs_radiomics", "pca_explained_variance"}
    assert by_metric["auc_deep_signature"]["max_abs_diff_vs_busi_deep"] == 0.0
    assert 0 <= by_metric["delong_p_vs_radiomics"]["value"] <= 1
    assert by_metric["auc"]["ci_low"] <= by_metric["auc"]["value"] <= by_metric["auc"]["ci_high"]
    # with the fusion chosen per fold on the networks' inner validation cases, that is the headline
    from dataclasses import replace

    from her2dlr.deep.dlr_fusion import choose_fusion

    nets = {k: replace(v, val_cases=frozenset(sorted(v.train_cases)[::3])) for k, v in fold_nets.items()}
    chosen = choose_fusion(dlr, rad, nets)
    lines = dlr_lines({"dlr": dlr, "radiomics_box": rad, "deep_features": deep, "deep_signature": sig, "late": late,
                       "chosen": chosen}, saved_predictions=None, pca=in_fold_pca(fold_nets, manifest, n_components=8),
                      info={"n": N_CASES})
    by_metric = {line["metric"]: line for line in lines}
    assert {"auc", "auc_early", "fusion_choice"} <= set(by_metric) and by_metric["auc"]["model"] == "dlr-chosen"
    assert sum(by_metric["fusion_choice"]["value"].values()) == 5
    assert set(by_metric["fusion_choice"]["by_fold"]) == {f"r0f{k}" for k in range(5)}
    # a missing fold is named
    with pytest.raises(InputError, match="r0f4"):
        run_dlr_cv({k: v for k, v in fold_nets.items() if k != "r0f4"}, radiomics, manifest, **common)


@pytest.mark.parametrize("flips", [False, True])
def test_a_folds_features_take_what_its_checkpoint_records(cohort, flips):
    from her2dlr.deep.features import apply_checkpoint_record
    from her2dlr.deep.train import predict_proba

    images, manifest = cohort
    torch.manual_seed(0)
    model = TinyCNN(width=4).eval()
    ids = manifest["case_id"].tolist()
    got = fold_features([("final", model, ids[:40], "best.pt")], images, ids)["final"]
    assert not got.val_cases
    meta = {"settings": {"tta_flips": flips}, "extra": {"val_cases": ids[30:40]}}
    apply_checkpoint_record(got, meta, lambda: model, images)
    assert got.val_cases == frozenset(ids[30:40])
    expected = predict_proba(model, images, flips=flips)[:, 1]
    assert got.prob.to_numpy() == pytest.approx(expected, abs=1e-6)
    if flips:  # the mirror moves the probability: the flips were applied, not skipped
        assert not np.allclose(expected, embed_arrays(model, images)[1], atol=1e-6)
