"""Training options (mixup, label smoothing, EMA, test-time flips, context margin) and recipes chosen on inner validation."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score

from her2dlr.deep.recipes import Recipe, choose_recipe, recipes_from_dicts
from her2dlr.deep.train import (
    TrainSettings,
    load_checkpoint,
    loss_function,
    mixup_batch,
    predict_proba,
    train_network,
)
from her2dlr.errors import InputError
from her2dlr.imaging.roi import RoiSpec, prepare_roi
from test_deep_synthetic import two_texture_rois

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"growth_rate": 4, "block_layers": (1, 1, 2)}


def tiny(**kw) -> TrainSettings:
    base = {"image_size": 32, "arch_options": TINY, "epochs": 2, "batch_size": 16, "progress": False, "num_threads": 1,
            "min_class_cases": 5}
    base.update(kw)
    return TrainSettings(**base)


def test_mixup_mixes_pairs_with_beta_lambda():
    rng = np.random.default_rng(0)
    x = torch.arange(6 * 4, dtype=torch.float32).reshape(6, 1, 2, 2)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    mixed = mixup_batch(x, y, 0.4, rng)
    perm = mixed.perm
    assert sorted(perm.tolist()) == list(range(6))
    torch.testing.assert_close(mixed.x, mixed.lam * x + (1 - mixed.lam) * x[perm])
    assert torch.equal(mixed.y_a, y) and torch.equal(mixed.y_b, y[perm])
    lams = [mixup_batch(x, y, 0.4, rng).lam for _ in range(600)]
    assert stats.kstest(lams, stats.beta(0.4, 0.4).cdf).pvalue > 0.01
    assert stats.kstest(lams, stats.uniform().cdf).pvalue < 1e-6  # and not some other law
    with pytest.raises(InputError, match="alpha"):
        mixup_batch(x, y, 0.0, rng)


def test_label_smoothing_gives_the_hand_computed_weighted_loss():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.5]])
    y = torch.tensor([0, 1, 1])
    w = torch.tensor([2.0, 0.5])
    eps = 0.2
    loss = float(loss_function(tiny(label_smoothing=eps), w)(logits, y))
    logp = torch.log_softmax(logits, dim=1).numpy()
    wn, yn = w.numpy(), y.numpy()
    # target (1 - eps) * onehot + eps / 2; PyTorch weights each class term by its weight and
    # divides by the summed weights of the true classes
    num = sum(-(1 - eps) * wn[yn[i]] * logp[i, yn[i]] - eps / 2 * (wn * logp[i]).sum() for i in range(3))
    assert loss == pytest.approx(num / wn[yn].sum(), rel=1e-6)
    plain = float(loss_function(tiny(), w)(logits, y))
    assert plain == pytest.approx(sum(-wn[yn[i]] * logp[i, yn[i]] for i in range(3)) / wn[yn].sum(), rel=1e-6)
    with pytest.raises(InputError, match="focal"):
        tiny(loss="focal", label_smoothing=0.1)


def test_ema_weights_are_the_hand_computed_average(tmp_path):
    x, y = two_texture_rois(24, seed=3)
    decay = 0.6
    # one step per epoch (batch = all cases), no inner split, constant rate: stop after each step
    settings = tiny(epochs=3, batch_size=64, ema=decay, scheduler="none", patience=0, min_class_cases=100)
    raw = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for stop in (1, 2, 3):
            res = train_network(x, y, settings=settings, out_dir=tmp_path, resume=True,
                                callback=lambda row, stop=stop: row["epoch"] >= stop)
            raw.append(load_checkpoint(tmp_path / "last.pt")["model_state"])
    kept = res.model.state_dict()
    for key, value in kept.items():
        if not value.is_floating_point():
            continue
        w1, w2, w3 = (r[key].double() for r in raw)
        expected = decay**2 * w1 + decay * (1 - decay) * w2 + (1 - decay) * w3  # the first update copies w1
        torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6)
    floats = [k for k, v in kept.items() if v.is_floating_point()]
    assert any(not torch.equal(kept[k], raw[-1][k]) for k in floats)  # the average, not the last weights


def test_flip_tta_is_the_mean_of_the_flipped_predictions():
    model = __import__("her2dlr.deep.networks", fromlist=["build_network"]).build_network(
        "densenet3block", image_size=32, **TINY).eval()
    x = np.random.default_rng(0).normal(size=(5, 1, 32, 32)).astype(np.float32)
    both = predict_proba(model, x, flips=True)
    expected = (predict_proba(model, x) + predict_proba(model, x[..., ::-1].copy())) / 2
    np.testing.assert_allclose(both, expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(both, predict_proba(model, x))


def test_margin_fraction_adds_context_in_proportion_to_the_box():
    image = np.zeros((100, 100), np.float32)
    image[40:60, 30:70] = 1.0  # the lesion box: 40 wide, 20 high
    spec = RoiSpec(size=40, margin=0, margin_fraction=0.5, normalise=False)
    roi = prepare_roi(image, bbox=(30, 40, 40, 20), spec=spec)[0]
    # the crop is 80 x 40 px: the lesion fills the middle half along both axes
    assert roi[11:29, 11:29].min() > 0.99
    assert max(roi[:, :9].max(), roi[:, 31:].max(), roi[:9].max(), roi[31:].max()) < 0.01
    with pytest.raises(InputError, match="margin_fraction"):
        RoiSpec(margin_fraction=-0.1)


def test_network_with_all_options_still_learns_two_textures():
    x, y = two_texture_rois(60, seed=0)
    x_test, y_test = two_texture_rois(40, seed=1)
    settings = TrainSettings(image_size=32, epochs=6, batch_size=16, progress=False, num_threads=1, patience=0,
                             mixup=0.2, label_smoothing=0.1, ema=0.9, tta_flips=True)
    res = train_network(x, y, settings=settings)
    auc = roc_auc_score(y_test, predict_proba(res.model, x_test, flips=True)[:, 1])
    assert auc > 0.9, res.history


def test_recipes_are_validated_and_applied():
    base, roi = tiny(), RoiSpec(size=32)
    recipe = Recipe("ctx", {"image_size": 48, "margin_fraction": 0.25, "mixup": 0.2, "augment": {"vflip_prob": 0.5}})
    settings, spec = recipe.apply(base, roi)
    assert settings.image_size == 48 and spec.size == 48 and spec.margin_fraction == 0.25 and settings.mixup == 0.2
    assert settings.augment.vflip_prob == 0.5 and settings.augment.hflip_prob == base.augment.hflip_prob
    with pytest.raises(InputError, match="seed"):
        Recipe("x", {"seed": 3})  # every candidate must see the same inner split
    with pytest.raises(InputError, match="mixup"):
        Recipe("x", {"mixpu": 0.2})
    with pytest.raises(InputError, match="more than once"):
        recipes_from_dicts([{"name": "a"}, {"name": "a"}])


def test_choose_recipe_takes_the_best_inner_score_ties_to_the_first():
    assert choose_recipe({"a": 0.7, "b": 0.8, "c": 0.8}).name == "b"
    assert choose_recipe({"a": float("nan"), "b": 0.6}).name == "b"
    assert choose_recipe({"a": float("nan"), "b": float("nan")}).name == "a"


def test_recipe_choice_reads_only_the_inner_validation_split(tmp_path):
    from conftest import lesion_image, lesion_mask, write_png
    from her2dlr.cohort.splits import repeated_group_kfold
    from her2dlr.deep.cv import deep_table, run_deep_cv
    from her2dlr.deep.data import manifest_rois
    from test_deep_cv import _settings

    rows = []
    for i in range(36):
        img = write_png(tmp_path / "img" / f"c{i}.png", lesion_image(i, texture="rough" if i % 2 else "smooth"))
        mask = write_png(tmp_path / "img" / f"c{i}_mask.png", lesion_mask())
        rows.append({"case_id": f"c{i}", "patient_id": f"p{i}", "image": str(img), "mask": str(mask),
                     "label": i % 2, "modality": "US"})
    table = pd.DataFrame(rows)
    table["fold_r0"] = repeated_group_kfold(table["label"].to_numpy(), table["patient_id"].to_numpy(), 3, 1,
                                            seed=0)[0]
    recipes = recipes_from_dicts([{"name": "plain"}, {"name": "wide", "image_size": 40, "margin_fraction": 0.5,
                                                      "tta_flips": True, "mixup": 0.2}])
    settings = _settings(epochs=2)
    base = RoiSpec(size=32)
    wide = recipes[1].apply(settings, base)[1]
    rois = {spec: manifest_rois(deep_table(table), spec) for spec in (base, wide)}
    first = run_deep_cv(table, settings=settings, roi=base, rois=rois[base], recipe_rois=rois, recipes=recipes,
                        out_dir=tmp_path / "a", progress=False)
    fold0 = first.folds[0]
    assert fold0.recipe == max(fold0.recipe_scores, key=lambda k: (fold0.recipe_scores[k], -list(
        fold0.recipe_scores).index(k)))
    assert set(fold0.recipe_scores) == {"plain", "wide"}
    ckpt = load_checkpoint(tmp_path / "a" / "r0f0" / "best.pt")
    assert ckpt["extra"]["recipe"] == fold0.recipe and ckpt["image_size"] == (32 if fold0.recipe == "plain" else 40)
    assert (tmp_path / "a" / "r0f0" / "recipes" / "wide" / "best.pt").is_file()
    assert list(first.fold_table()["recipe"]) == [f.recipe for f in first.folds]

    # scramble the outer test images of fold r0f0: same choice, same inner scores, same weights
    test = (table["fold_r0"] == 0).to_numpy()
    noisy = {spec: arr.copy() for spec, arr in rois.items()}
    for arr in noisy.values():
        arr[test] = np.random.default_rng(1).normal(size=arr[test].shape)
    second = run_deep_cv(table, settings=settings, roi=base, rois=noisy[base], recipe_rois=noisy, recipes=recipes,
                         out_dir=tmp_path / "b", progress=False, repeats=[0])
    again = second.folds[0]
    assert again.recipe == fold0.recipe and again.recipe_scores == fold0.recipe_scores
    a = load_checkpoint(tmp_path / "a" / "r0f0" / "best.pt")["model_state"]
    b = load_checkpoint(tmp_path / "b" / "r0f0" / "best.pt")["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    p_a = first.predictions.query("fold == 'r0f0' and split == 'test'")["prob"].to_numpy()
    p_b = second.predictions.query("fold == 'r0f0' and split == 'test'")["prob"].to_numpy()
    assert not np.allclose(p_a, p_b)  # the test images did change


def test_study_deep_section_sets_the_options_and_recipes():
    from her2dlr.deep.settings import DeepSettings
    from her2dlr.deep.stage import training_settings

    deep = DeepSettings(image_size=64, margin_fraction=0.25, mixup=0.2, label_smoothing=0.1, ema=0.99, tta_flips=True,
                        recipes=[{"name": "base"}, {"name": "ctx", "image_size": 96, "margin": 0}])
    settings, roi = training_settings(deep)
    assert (settings.mixup, settings.label_smoothing, settings.ema, settings.tta_flips) == (0.2, 0.1, 0.99, True)
    assert roi.margin_fraction == 0.25 and roi.size == 64
    ctx = recipes_from_dicts(deep.recipes)[1].apply(settings, roi)
    assert ctx[0].image_size == 96 and ctx[1].size == 96 and ctx[1].margin == 0 and ctx[0].mixup == 0.2
    with pytest.raises(Exception, match="label_smoothing"):
        DeepSettings(label_smoothing=1.0)


def test_rotate_batch_turns_every_roi_four_ways():
    from her2dlr.deep.pretext import rotate_batch

    x = torch.arange(2 * 9, dtype=torch.float32).reshape(2, 1, 3, 3)
    rotated, turns = rotate_batch(x)
    assert rotated.shape == (8, 1, 3, 3) and turns.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for j in range(8):
        np.testing.assert_array_equal(rotated[j, 0].numpy(), np.rot90(x[j % 2, 0].numpy(), turns[j].item()))


def test_rotation_pretraining_learns_the_pretext_from_training_images_only():
    from her2dlr.deep.networks import build_network
    from her2dlr.deep.pretext import rotation_pretrain

    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.3, (24, 1, 32, 32)).astype(np.float32)
    x[:, :, :8, :] += 2.0  # a bright band at the top: which way is up is learnable
    model = build_network("densenet3block", image_size=32, **TINY)
    history = rotation_pretrain(model, x, epochs=6, batch_size=12, lr=3e-3)
    assert history["pretext_accuracy"].iloc[-1] > 0.6 > 0.25  # chance is 1/4

    # in train_network the pretext sees the inner training part only: other validation images, same weights
    xs, ys = two_texture_rois(40, seed=2)
    settings = tiny(epochs=1, patience=0, pretrain_epochs=2)
    a = train_network(xs, ys, settings=settings)
    changed = xs.copy()
    changed[a.val_index] = rng.normal(size=changed[a.val_index].shape)
    b = train_network(changed, ys, settings=settings)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = train_network(xs, ys, settings=tiny(epochs=1, patience=0))
    assert not all(torch.equal(sa[k], c.model.state_dict()[k]) for k in sa)
    assert any("rotation pre-training" in note for note in a.notes)
    with pytest.raises(InputError, match="2D"):
        tiny(pretrain_epochs=1, spatial_dims=3)
