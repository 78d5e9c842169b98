"""The DLR fusion (early, late, stacking) chosen per outer fold on the network's inner validation cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from her2dlr.deep.dlr_fusion import choose_fusion, stacking_features
from her2dlr.deep.features import FoldFeatures
from her2dlr.errors import InputError
from her2dlr.learn.cv import PREDICTION_COLUMNS, CVResult

N_TRAIN, N_TEST, N_VAL = 160, 60, 80
FOLDS = ("r0f0", "r0f1")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _world(kind: str, seed: int = 0):
    """Two outer folds; the probabilities of each model on every case, built so that ``kind`` wins.

    ``early``: only the early-fusion model is informative. ``stacking``: the network is informative
    but squeezed near 0.5 while the radiomics model is confident noise, so averaging the
    probabilities drowns the network and a logistic regression on the logits does not.
    """
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_TEST
    frames = {"early": [], "radiomics": []}
    networks = {}
    for fold in FOLDS:
        y = rng.permutation(np.arange(n) % 2)
        ids = np.array([f"{fold}-c{i}" for i in range(n)])  # each fold its own cases: enough for the test
        signal = 2 * y - 1

        def noise(sd: float = 1.0) -> np.ndarray:
            return rng.normal(0, sd, n)

        if kind == "early":
            p = {"early": _sigmoid(2.5 * signal + noise()), "radiomics": _sigmoid(noise(3)), "net": _sigmoid(noise())}
        else:
            p = {"early": _sigmoid(noise()), "radiomics": _sigmoid(noise(3)),
                 "net": _sigmoid(0.02 * (2.5 * signal + noise()))}
        train, test = np.arange(n) < N_TRAIN, np.arange(n) >= N_TRAIN
        for model in ("early", "radiomics"):
            for split, rows in (("train_oof", train), ("test", test)):
                frames[model].append(pd.DataFrame({
                    "case_id": ids[rows], "patient_id": ids[rows], "model": model, "fold": fold, "split": split,
                    "prob": p[model][rows], "class": 0, "label": y[rows], "threshold": 0.5}))
        feats = pd.DataFrame({"deep_0": np.zeros(n)}, index=pd.Index(ids, name="case_id"))
        networks[fold] = FoldFeatures(fold, feats, pd.Series(p["net"], index=ids, name="prob"),
                                      frozenset(ids[train]), val_cases=frozenset(ids[:N_VAL]))
    results = {m: CVResult(m, "kfold", pd.concat(f, ignore_index=True)[PREDICTION_COLUMNS], []) for m, f in
               frames.items()}
    return results["early"], results["radiomics"], networks


@pytest.mark.parametrize("kind", ["early", "stacking"])
def test_the_fusion_that_is_better_by_construction_is_chosen(kind):
    early, rad, nets = _world(kind)
    chosen = choose_fusion(early, rad, nets, name="fused")
    table = chosen.choice_table()
    assert list(table["fold"]) == list(FOLDS) and (table["chosen"] == kind).all(), table
    assert (table["n_inner"] == N_VAL).all()
    assert (table[f"auc_{kind}"] > 0.85).all()
    pred = chosen.result.predictions
    assert set(pred["split"]) == {"test", "train_oof"} and set(pred["model"]) == {"fused"}
    for fold in FOLDS:
        test = pred[(pred["fold"] == fold) & (pred["split"] == "test")].set_index("case_id")
        assert len(test) == N_TEST
        if kind == "early":
            src = early.predictions.query("fold == @fold and split == 'test'").set_index("case_id")
            np.testing.assert_allclose(test["prob"], src.loc[test.index, "prob"])
        else:  # the stacker fitted on the inner validation cases, applied to the test rows
            inner = sorted(nets[fold].val_cases)
            r_oof = rad.predictions.query("fold == @fold and split == 'train_oof'").set_index("case_id")
            r_test = rad.predictions.query("fold == @fold and split == 'test'").set_index("case_id")
            X = stacking_features(nets[fold].prob[inner].to_numpy(), r_oof.loc[inner, "prob"].to_numpy())
            mean, sd = X.mean(axis=0), X.std(axis=0)  # the stacker z-scores the logits first
            lr = LogisticRegression(C=1.0).fit((X - mean) / sd, r_oof.loc[inner, "label"].to_numpy())
            X_test = stacking_features(nets[fold].prob[test.index].to_numpy(), r_test.loc[test.index, "prob"].to_numpy())
            np.testing.assert_allclose(test["prob"], lr.predict_proba((X_test - mean) / sd)[:, 1], rtol=1e-5)


def test_the_choice_never_reads_the_outer_test_rows():
    early, rad, nets = _world("stacking", seed=4)
    first = choose_fusion(early, rad, nets)
    rng = np.random.default_rng(9)
    for res in (early, rad):
        test = res.predictions["split"] == "test"
        res.predictions.loc[test, "prob"] = rng.uniform(size=int(test.sum()))
    for ff in nets.values():
        outside = ~ff.prob.index.isin(list(ff.train_cases))
        ff.prob[outside] = rng.uniform(size=int(outside.sum()))
    second = choose_fusion(early, rad, nets)
    pd.testing.assert_frame_equal(first.choice_table(), second.choice_table())
    a, b = (c.result.predictions.query("split == 'test'")["prob"].to_numpy() for c in (first, second))
    assert not np.allclose(a, b)


def test_a_network_without_inner_validation_cases_is_refused():
    early, rad, nets = _world("early")
    nets["r0f1"].val_cases = frozenset()
    with pytest.raises(InputError, match="r0f1.*inner validation"):
        choose_fusion(early, rad, nets)
    labels = early.predictions.drop_duplicates("case_id").set_index("case_id")["label"]
    nets["r0f1"].val_cases = frozenset(c for c in nets["r0f1"].train_cases if labels[c] == 0)
    with pytest.raises(InputError, match="one class"):
        choose_fusion(early, rad, nets)


def test_the_stacker_on_raw_logits_reproduces_the_fitted_stacker():
    from her2dlr.deep.dlr_fusion import make_stacker, stacker_on_logits

    rng = np.random.default_rng(3)
    y = np.arange(80) % 2
    p = np.column_stack([_sigmoid(0.05 * (2 * y - 1) + rng.normal(0, 0.02, 80)), _sigmoid(rng.normal(0, 3, 80))])
    X = stacking_features(p[:, 0], p[:, 1])
    stacker = make_stacker().fit(X, y)
    intercept, coef = stacker_on_logits(stacker)
    assert _sigmoid(intercept + X @ coef) == pytest.approx(stacker.predict_proba(X)[:, 1], abs=1e-12)


@pytest.mark.parametrize("kind", ["early", "stacking"])
def test_the_deployed_fused_artefact_applies_the_fusion_the_deploy_network_chose(kind, tmp_path):
    from her2dlr.deep.deploy import DEEP_PROB, _save_fused_artefact
    from her2dlr.deep.dlr_fusion import choose_on_inner
    from her2dlr.learn.artefact import artefact_slug, load_artefact, save_artefact
    from her2dlr.learn.thresholds import Threshold

    early, rad, nets = _world(kind)
    fold = "r0f0"
    early = CVResult("dlr", "final", early.predictions.query("fold == @fold"), [])
    rad = CVResult("rad", "final", rad.predictions.query("fold == @fold"), [])
    thr = Threshold(0.5, "fixed", None, 1.0, 1.0, 40)
    network = tmp_path / "net.pt"
    network.write_bytes(b"checkpoint")
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"r": rng.normal(size=40)})
    pipes = {m: LogisticRegression().fit(x, np.arange(40) % 2) for m in ("dlr", "rad")}
    paths = {"sig": save_artefact(tmp_path / "sig", name="sig", kind="deep", threshold=thr,
                                  inputs={"columns": [DEEP_PROB], "features": [DEEP_PROB]}, network=network)}
    for m, pipe in pipes.items():
        paths[m] = save_artefact(tmp_path / m, name=m, kind="pipeline", threshold=thr,
                                 inputs={"columns": ["r"], "features": ["r"]}, pipeline=pipe)
    path = _save_fused_artefact(tmp_path, nets[fold], early, rad, "sig", paths, arch="a", radiomics_name="r",
                                rule=None, seed=0, metrics=pd.DataFrame(columns=["model", "split", "scope"]),
                                task={}, config_hash="x")
    fused = load_artefact(path)
    assert path.name == artefact_slug("deep_a+r-fused") and fused.card["fusion"]["chosen"] == kind
    frame = pd.DataFrame({DEEP_PROB: rng.uniform(0.01, 0.99, 5), "r": rng.normal(size=5)})
    inner = choose_on_inner(early, rad, nets[fold], fold)
    if kind == "early":
        expected = pipes["dlr"].predict_proba(frame[["r"]])[:, 1]
    else:
        p_rad = pipes["rad"].predict_proba(frame[["r"]])[:, 1]
        expected = inner.stacker.predict_proba(stacking_features(frame[DEEP_PROB].to_numpy(), p_rad))[:, 1]
    assert fused.predict_proba(frame) == pytest.approx(expected, abs=1e-9)
    assert fused.card["threshold"]["value"] == pytest.approx(inner.threshold.value)
