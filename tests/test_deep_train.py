"""Training: the seed-000 network learns two textures; seeds reproduce; resume; devices; few positives."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from her2dlr.deep.train import (
    FewCasesWarning,
    TrainSettings,
    class_weights,
    load_checkpoint,
    model_from_checkpoint,
    predict_proba,
    resolve_device,
    train_network,
)
from her2dlr.errors import InputError
from test_deep_synthetic import two_texture_rois

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"growth_rate": 4, "block_layers": (1, 1, 2)}  # a small dense net: fast, still the real code path


def tiny(**kw) -> TrainSettings:
    base = {"image_size": 32, "arch_options": TINY, "epochs": 3, "batch_size": 16, "progress": False, "num_threads": 1,
                "min_class_cases": 5}
    base.update(kw)
    return TrainSettings(**base)


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_seed000_network_learns_two_textures():
    x, y = two_texture_rois(60, seed=0)
    x_test, y_test = two_texture_rois(40, seed=1)
    res = train_network(x, y, settings=TrainSettings(image_size=32, epochs=6, batch_size=16, progress=False,
                                                     num_threads=1, patience=0))
    auc = roc_auc_score(y_test, predict_proba(res.model, x_test)[:, 1])
    assert auc > 0.9, res.history
    assert len(res.val_index) > 0 and res.val_prob.shape == (len(res.val_index), 2)
    assert list(res.history.columns) == ["epoch", "train_loss", "val_loss", "val_auc", "lr", "seconds"]
    assert not res.model.training and next(res.model.parameters()).device.type == "cpu"


def test_same_seed_same_weights_other_seed_differs():
    x, y = two_texture_rois(40)
    a = train_network(x, y, settings=tiny(epochs=2))
    b = train_network(x, y, settings=tiny(epochs=2))
    c = train_network(x, y, settings=tiny(epochs=2, seed=1))
    assert _state_equal(a.model, b.model)
    np.testing.assert_array_equal(a.history["train_loss"], b.history["train_loss"])
    assert not _state_equal(a.model, c.model)


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_gives_the_uninterrupted_run(tmp_path, ema):
    x, y = two_texture_rois(40)
    settings = tiny(epochs=3, patience=0, ema=ema)
    full = train_network(x, y, settings=settings, out_dir=tmp_path / "full")
    stop_after_one = lambda row: row["epoch"] == 1  # noqa: E731 - an interruption after epoch 1
    part = train_network(x, y, settings=settings, out_dir=tmp_path / "part", callback=stop_after_one)
    assert part.epochs_run == 1
    last = load_checkpoint(tmp_path / "part" / "last.pt")
    assert last["epoch"] == 1 and last["optimizer_state"] is not None and last["arch"] == "densenet3block"
    assert (last["image_size"], last["in_channels"], last["seed"]) == (32, 1, 0)
    resumed = train_network(x, y, settings=settings, out_dir=tmp_path / "part", resume=True)
    assert resumed.epochs_run == 3
    assert _state_equal(full.model, resumed.model)
    np.testing.assert_allclose(full.history["val_auc"], resumed.history["val_auc"])
    again = train_network(x, y, settings=settings, out_dir=tmp_path / "part", resume=True)  # finished: reloads
    assert again.epochs_run == 3 and _state_equal(again.model, full.model)
    with pytest.raises(InputError, match="seed=0"):
        train_network(x, y, settings=tiny(epochs=3, patience=0, seed=5, ema=ema), out_dir=tmp_path / "part",
                      resume=True)
    best = model_from_checkpoint(tmp_path / "full" / "best.pt")
    assert _state_equal(best, full.model)


def test_keep_last_trains_the_whole_schedule_and_returns_its_last_weights(tmp_path):
    x, y = two_texture_rois(40)
    flat = tiny(epochs=4, patience=1, min_epochs=0, scheduler="none", lr=1e-6)  # nothing improves: stops early
    early = train_network(x, y, settings=flat)
    assert early.epochs_run < 4 and early.stopped_early
    res = train_network(x, y, settings=tiny(epochs=4, patience=1, min_epochs=0, scheduler="none", lr=1e-6,
                                            keep="last"), out_dir=tmp_path)
    assert res.epochs_run == 4 and res.best_epoch == 4 and not res.stopped_early
    assert res.history["val_auc"].notna().all()  # validation still monitored
    assert _state_equal(model_from_checkpoint(tmp_path / "best.pt"), res.model)
    with pytest.raises(InputError, match="keep"):
        tiny(keep="median")


def test_few_positives_warn_and_train_without_validation():
    x, y = two_texture_rois(40)
    y = np.zeros(40, dtype=int)
    y[:3] = 1  # three positive cases in the training fold
    with pytest.warns(FewCasesWarning, match="only 3 case"):
        res = train_network(x, y, settings=tiny(epochs=2, min_class_cases=10))
    assert len(res.val_index) == 0 and res.best_epoch == 2
    assert res.history["val_auc"].isna().all()
    assert any("no inner validation" in n for n in res.notes)
    assert res.class_weights[1] > 5 * res.class_weights[0]


def test_one_class_or_bad_labels_are_refused():
    x, _ = two_texture_rois(10)
    with pytest.raises(InputError, match="no case of class 1"):
        train_network(x, np.zeros(10), settings=tiny())
    with pytest.raises(InputError, match="0 .. 1"):
        train_network(x, np.arange(10) % 3, settings=tiny())
    with pytest.raises(InputError, match="shape"):
        train_network(x[:, :, :16, :16], np.arange(10) % 2, settings=tiny())


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_absent_gpu_is_a_clear_error_unless_fallback():
    with pytest.raises(InputError, match="no CUDA GPU is visible.*--device cpu"):
        resolve_device("cuda")
    x, y = two_texture_rois(20)
    with pytest.raises(InputError, match="allow_cpu_fallback"):
        train_network(x, y, settings=tiny(device="cuda"))
    with pytest.warns(UserWarning, match="training on the CPU"):
        res = train_network(x, y, settings=tiny(device="cuda:0", allow_cpu_fallback=True, epochs=1))
    assert res.device == "cpu"


def test_device_names():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(InputError, match="Did you mean 'cuda'"):
        resolve_device("cdua")


@pytest.mark.parametrize("loss,scheduler", [("focal", "plateau"), ("ce", "none")])
def test_other_losses_and_schedules(loss, scheduler):
    x, y = two_texture_rois(24)
    res = train_network(x, y, settings=tiny(epochs=1, loss=loss, scheduler=scheduler))
    assert np.isfinite(res.history["train_loss"]).all()


def test_distributed_one_process_gloo():
    import torch.distributed as dist

    x, y = two_texture_rois(24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train_network(x, y, settings=tiny(epochs=1, distributed=True, device="cpu"))
    assert res.epochs_run == 1 and not dist.is_initialized()  # the group it made is closed again


def test_settings_are_checked():
    with pytest.raises(InputError, match="Did you mean 'densenet121'"):
        TrainSettings(arch="densenet12")
    with pytest.raises(InputError, match="'loss'.*Did you mean 'focal'"):
        TrainSettings(loss="focl")
    with pytest.raises(InputError, match="val_fraction"):
        TrainSettings(val_fraction=1.5)
    with pytest.raises(InputError, match="'ema'"):
        TrainSettings(ema=1.0)
    with pytest.raises(InputError, match="Unknown training setting"):
        TrainSettings.from_dict({"epoch": 3})
    s = tiny()
    assert TrainSettings.from_dict(s.to_dict()).to_dict() == s.to_dict()


def test_class_weights_balance_the_classes():
    w = class_weights(np.array([0, 0, 0, 1]), 2)
    np.testing.assert_allclose(w, [4 / 6, 2.0])


def test_augmentation_is_seeded_and_its_steps_independent():
    from her2dlr.deep.transforms import Augment, AugmentSettings, test_transform

    roi = np.random.default_rng(0).normal(size=(1, 32, 32)).astype(np.float32)
    aug = Augment(32, seed=3)
    first = [aug(roi) for _ in range(4)]
    aug.set_random_state(3)
    assert all(torch.equal(a, b) for a, b in zip(first, [aug(roi) for _ in range(4)]))
    assert first[0].shape == (1, 32, 32) and first[0].dtype == torch.float32
    steps = [t for t in aug.compose.transforms if hasattr(t, "R")]
    draws = {float(t.R.rand()) for t in steps}
    assert len(draws) == len(steps)  # each step has its own generator state
    flip_only = Augment(32, AugmentSettings(crop_prob=0, affine_prob=0, intensity_prob=0, hflip_prob=1.0))
    torch.testing.assert_close(flip_only(roi), torch.as_tensor(roi[:, :, ::-1].copy()))
    torch.testing.assert_close(test_transform(roi), torch.as_tensor(roi))
    with pytest.raises(InputError, match="hflip_prob"):
        AugmentSettings(hflip_prob=2)
