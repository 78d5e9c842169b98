"""Training with two processes launched by torchrun (gloo on the CPU), as a user launches it.

The seed-000 network (two lesion textures) and the segmentation network (bright ellipses) are
trained once with ``python -m torch.distributed.run --nproc_per_node 2`` running this file as
its worker, and once in one plain process with the same effective batch (two processes of
half the batch each). Both must learn; the two-process scores must equal the one-process ones
within the noise of a different shuffling and augmentation order; both ranks must end with the
same weights; and only rank 0 may write (each rank is given its own output folder: rank 1's must
stay absent). The same launch runs the segmentation stage of a small study (one network per
fold, out-of-fold masks written by rank 0 only). A last test runs ``torchrun -m her2dlr train deep
STUDY`` on a folder cohort.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

DEEP_TINY = {"growth_rate": 4, "block_layers": (1, 1, 2)}
DEEP = {"image_size": 32, "arch_options": DEEP_TINY, "epochs": 6, "patience": 0, "min_class_cases": 5,
        "progress": False, "num_threads": 1, "device": "cpu"}
DEEP_BATCH = 16  # one process; each of two processes takes half
SEG_SIZE = 32
SEG = {"image_size": SEG_SIZE, "epochs": 12, "features": (8, 16, 32), "lr": 3e-3, "patience": 0, "val_fraction": 0.2,
       "device": "cpu", "num_threads": 1, "progress": False}
SEG_BATCH = 8

pytestmark = pytest.mark.slow  # each launch starts two Python processes with torch (10-30 s)


def deep_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from test_deep_synthetic import two_texture_rois

    x, y = two_texture_rois(60, seed=0)
    x_test, y_test = two_texture_rois(40, seed=1)
    return x, y, x_test, y_test


def seg_data() -> tuple[np.ndarray, np.ndarray]:
    from her2dlr.segment.data import SegSpec, load_seg_pairs
    from test_segment_core import lesions

    images, masks, _ = lesions(48, seed=0)
    X, Y, _ = load_seg_pairs(images, masks, spec=SegSpec(size=SEG_SIZE), progress=False)
    return X, Y


def _worker(out: Path, study: Path) -> None:
    """One torchrun process: train both networks distributed, run a study's segmentation stage, record this rank."""
    from her2dlr.deep.train import TrainSettings, train_network
    from her2dlr.segment.train import SegTrainSettings, train_segmenter

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    x, y, _, _ = deep_data()
    deep = train_network(x, y, settings=TrainSettings(**DEEP, batch_size=DEEP_BATCH // world, distributed=True),
                         out_dir=out / f"deep_rank{rank}")
    X, Y = seg_data()
    seg = train_segmenter(X, Y, settings=SegTrainSettings(**SEG, batch_size=SEG_BATCH // world, distributed=True),
                          out_dir=out / f"seg_rank{rank}")
    from her2dlr.config import load_study
    from her2dlr.segment.stage import run_seg_stage

    stage = run_seg_stage(load_study(study), progress=False, distributed=True)
    # the test's own record of this rank (the library wrote only rank 0's checkpoints)
    record = out / "record"
    record.mkdir(exist_ok=True)
    torch.save({"deep": deep.model.state_dict(), "seg": seg.model.state_dict()}, record / f"weights{rank}.pt")
    (record / f"history{rank}.json").write_text(json.dumps({
        "deep_val_auc": deep.history["val_auc"].tolist(), "deep_train_loss": deep.history["train_loss"].tolist(),
        "deep_best_epoch": deep.best_epoch, "seg_val_dice": seg.history["val_dice"].tolist(),
        "seg_best": seg.val_dice, "world": world, "stage_masks": len(stage.masks)}))


def _torchrun(args: list[str], cwd: Path, timeout: int = 420) -> subprocess.CompletedProcess:
    import her2dlr

    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250",
           "PYTHONPATH": os.pathsep.join([str(Path(her2dlr.__file__).resolve().parents[1]), str(Path(__file__).parent),
                                          os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


N_STUDY_PER_CLASS = 6


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from conftest import write_folder_study, write_random_lesion_folders
    from her2dlr.cli import app

    out = tmp_path_factory.mktemp("ddp")
    study = write_folder_study(out / "study.yaml", write_random_lesion_folders(out / "cohort", N_STUDY_PER_CLASS),
                               output_dir=str(out / "run"), split={"kfold": {"n_splits": 2, "n_repeats": 1}},
                               segment={"image_size": 32, "epochs": 2, "batch_size": 4, "patience": 0})
    built = CliRunner().invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"])
    assert built.exit_code == 0, built.output
    _torchrun([__file__, str(out), str(study)], cwd=out)
    return out


@pytest.fixture(scope="module")
def one_process() -> dict:
    """The same training in this process, not distributed, with the full batch."""
    from her2dlr.deep.train import TrainSettings, train_network
    from her2dlr.segment.train import SegTrainSettings, train_segmenter

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y, _, _ = deep_data()
        deep = train_network(x, y, settings=TrainSettings(**DEEP, batch_size=DEEP_BATCH))
        X, Y = seg_data()
        seg = train_segmenter(X, Y, settings=SegTrainSettings(**SEG, batch_size=SEG_BATCH))
    finally:
        torch.set_num_threads(before)
    return {"deep": deep, "seg": seg}


def _record(out: Path, rank: int) -> tuple[dict, dict]:
    weights = torch.load(out / "record" / f"weights{rank}.pt", weights_only=True)
    return weights, json.loads((out / "record" / f"history{rank}.json").read_text())


def _test_auc(state: dict) -> float:
    from sklearn.metrics import roc_auc_score

    from her2dlr.deep.networks import build_network
    from her2dlr.deep.train import predict_proba

    _, _, x_test, y_test = deep_data()
    net = build_network("densenet3block", in_channels=1, n_classes=2, image_size=32, **DEEP_TINY)
    net.load_state_dict(state)
    return float(roc_auc_score(y_test, predict_proba(net, x_test)[:, 1]))


def test_both_ranks_end_with_the_same_weights_and_history(two_processes: Path) -> None:
    w0, h0 = _record(two_processes, 0)
    w1, h1 = _record(two_processes, 1)
    assert h0["world"] == h1["world"] == 2
    for net in ("deep", "seg"):
        assert w0[net].keys() == w1[net].keys()
        different = [k for k in w0[net] if not torch.equal(w0[net][k], w1[net][k])]
        assert not different, f"{net}: ranks differ in {different[:5]}"
    # scores gathered over the whole validation split and broadcast: the same on both ranks, epoch by epoch
    h0.pop("stage_masks"), h1.pop("stage_masks")  # rank 0 alone segments the study's cases
    assert h0 == h1


def test_only_rank_0_writes(two_processes: Path) -> None:
    written = {"deep": ["best.pt", "last.pt"], "seg": ["best.pt", "last.pt", "resume.pt"]}
    for net, names in written.items():
        assert sorted(p.name for p in (two_processes / f"{net}_rank0").iterdir()) == names
        assert not (two_processes / f"{net}_rank1").exists()
    from her2dlr.deep.train import load_checkpoint

    last = load_checkpoint(two_processes / "deep_rank0" / "last.pt")
    assert last["epoch"] == DEEP["epochs"] and last["settings"]["distributed"] is True


def test_seed000_network_two_processes_match_one(two_processes: Path, one_process: dict) -> None:
    weights, hist = _record(two_processes, 0)
    one = one_process["deep"]
    auc_2, auc_1 = _test_auc(weights["deep"]), _test_auc(one.model.state_dict())
    # both learn the textures (the single-process test asks the same AUC > 0.9)
    assert auc_1 > 0.9 and auc_2 > 0.9, (auc_1, auc_2)
    # Same cases per epoch and the same effective batch, but another shuffling and other augmentation draws:
    # the runs differ by the noise of that order. On 40 test cases one swapped pair moves the AUC by 1/400;
    # 0.05 allows 20 swapped pairs, far less than the gap between a trained network (> 0.9) and chance (0.5).
    assert abs(auc_2 - auc_1) <= 0.05, (auc_1, auc_2)
    final_val_1 = float(one.history["val_auc"].iloc[-1])
    assert hist["deep_val_auc"][-1] >= 0.9 and abs(hist["deep_val_auc"][-1] - final_val_1) <= 0.1, (
        hist["deep_val_auc"], one.history["val_auc"].tolist())  # 12 validation cases: 1/36 per swapped pair


def test_segmentation_two_processes_match_one(two_processes: Path, one_process: dict) -> None:
    _, hist = _record(two_processes, 0)
    dice_1, dice_2 = one_process["seg"].val_dice, hist["seg_best"]
    # the single-process segmentation test asks Dice > 0.8 after 12 epochs on the same images
    assert dice_1 > 0.8 and dice_2 > 0.8, (dice_1, dice_2)
    # mean Dice over 10 validation cases; a different batch order moves it by a few hundredths
    assert abs(dice_2 - dice_1) <= 0.05, (dice_1, dice_2)


def test_segmentation_stage_rank_0_segments_and_writes(two_processes: Path) -> None:
    _, h0 = _record(two_processes, 0)
    _, h1 = _record(two_processes, 1)
    assert h0["stage_masks"] == 2 * N_STUDY_PER_CLASS and h1["stage_masks"] == 0
    seg = two_processes / "run" / "segment" / "unet"
    written = sorted(str(p.relative_to(seg)) for p in seg.rglob("*") if p.is_file())
    for name in ("masks.csv", "metrics.csv", "summary.json", "montage.png", "r0f0/best.pt", "r0f1/best.pt"):
        assert name in written, written
    assert len([w for w in written if w.startswith("masks/")]) == 2 * N_STUDY_PER_CLASS
    assert not [w for w in written if w.endswith(".tmp")], written
    from her2dlr.segment.checkpoints import load_segmenter

    _, _, meta = load_segmenter(seg / "r0f0" / "best.pt")
    assert meta["settings"]["distributed"] is True


@pytest.mark.filterwarnings("ignore::her2dlr.deep.train.FewCasesWarning")
def test_torchrun_her2dlr_train_deep_writes_once(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from conftest import write_folder_study, write_lesion_folders
    from her2dlr.cli import app

    study = write_folder_study(tmp_path / "study.yaml", write_lesion_folders(tmp_path / "cohort", 8),
                               output_dir=str(tmp_path / "run"), split={"kfold": {"n_splits": 2, "n_repeats": 1}})
    built = CliRunner().invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"])
    assert built.exit_code == 0, built.output
    before = set((tmp_path / "run").rglob("*"))
    done = _torchrun(["-m", "her2dlr", "train", "deep", str(study), "--epochs", "2", "--image-size", "32",
                      "--batch-size", "4", "--threads", "1", "--n-jobs", "1", "--device", "cpu", "--final"], tmp_path)
    # one summary printed (rank 0), not one per process
    printed = done.stdout + done.stderr
    assert printed.count("Best model:") == 1 and printed.count("Deployable model:") == 1, printed[-3000:]
    written = sorted(str(p.relative_to(tmp_path / "run")) for p in set((tmp_path / "run").rglob("*")) - before
                     if p.is_file())
    arch = "deep/densenet3block"
    for name in ("predictions.parquet", "r0f0/best.pt", "r0f0/last.pt", "r0f1/best.pt", "final/best.pt"):
        assert f"{arch}/{name}" in written, written
    # nothing half-written or doubled (a temporary file of a second writer would be left or renamed over)
    assert not [w for w in written if ".tmp" in w or "write-test" in w or w.endswith("~")], written
    from her2dlr.deep.train import load_checkpoint

    assert load_checkpoint(tmp_path / "run" / arch / "r0f0" / "best.pt")["settings"]["distributed"] is True


if __name__ == "__main__":  # a torchrun worker (see _torchrun)
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
