"""Shared fixtures: the real-data folder and small synthetic cohorts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


@pytest.fixture
def shared_data() -> Path:
    """The public datasets folder; skips the test with a message when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def lesion_image(seed: int, size: tuple[int, int] = (96, 80), texture: str = "smooth", rgb: bool = False) -> np.ndarray:
    """A synthetic ultrasound-like image: speckle background and an elliptic lesion of a given texture."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = rng.gamma(2.0, 30.0, size=(h, w))
    yy, xx = np.mgrid[:h, :w]
    cy, cx = h // 2 + rng.integers(-5, 6), w // 2 + rng.integers(-5, 6)
    inside = ((yy - cy) / (h / 4)) ** 2 + ((xx - cx) / (w / 4)) ** 2 <= 1
    lesion = rng.normal(40, 5, size=(h, w)) if texture == "smooth" else rng.normal(60, 35, size=(h, w))
    img[inside] = lesion[inside]
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rgb:
        img = np.stack([img, img, img], axis=-1)
    return img


def lesion_mask(size: tuple[int, int] = (96, 80)) -> np.ndarray:
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    return ((((yy - h // 2) / (h / 4)) ** 2 + ((xx - w // 2) / (w / 4)) ** 2) <= 1).astype(np.uint8) * 255


def random_lesion(seed: int, rough: bool, size: int = 64, *, radii: tuple[int, int] = (7, 14),
                  sd: tuple[float, float] = (5.0, 35.0)) -> tuple[np.ndarray, np.ndarray]:
    """Speckle background and an ellipse of random place and size, smooth or rough inside (``sd``); its exact mask."""
    rng = np.random.default_rng(seed)
    img = rng.gamma(2.0, 30.0, size=(size, size))
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(20, size - 20, size=2)
    ry, rx = rng.integers(*radii, size=2)
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    img[inside] = rng.normal(60, sd[1] if rough else sd[0], size=(size, size))[inside] - 30
    return np.clip(img, 0, 255).astype(np.uint8), inside.astype(np.uint8) * 255


def write_random_lesion_folders(root: Path, n_per_class: int, **lesion: Any) -> Path:
    """BUSI-like folders of :func:`random_lesion` images: smooth ``benign`` and rough ``malignant``, exact masks."""
    for cls, rough, offset in (("benign", False, 0), ("malignant", True, 100)):
        for i in range(n_per_class):
            img, mask = random_lesion(offset + i, rough, **lesion)
            write_png(root / cls / f"{cls} ({i + 1}).png", img)
            write_png(root / cls / f"{cls} ({i + 1})_mask.png", mask)
    return root


def write_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def write_lesion_folders(root: Path, n_per_class: int) -> Path:
    """BUSI-like folders under ``root``: ``n_per_class`` benign (smooth) and malignant (rough) lesions with masks."""
    for cls, texture, offset in (("benign", "smooth", 0), ("malignant", "rough", 100)):
        for i in range(n_per_class):
            write_png(root / cls / f"{cls} ({i + 1}).png", lesion_image(offset + i, texture=texture))
            write_png(root / cls / f"{cls} ({i + 1})_mask.png", lesion_mask())
    return root


@pytest.fixture
def folder_cohort(tmp_path: Path) -> Path:
    """A BUSI-like folder cohort: 12 benign (smooth) and 12 malignant (rough) lesions with masks."""
    return write_lesion_folders(tmp_path / "cohort", 12)


@pytest.fixture(scope="session")
def serve_models(tmp_path_factory) -> Path:
    """A models folder for the server tests: the seed-000 network (built, untrained), its copy with a small
    segmentation network (trained briefly), and a clinical logistic model (Age numeric, Shape categorical)."""
    from her2dlr.bench.serve_benches import train_tiny_network, write_clinical_artefact, write_segmenter_artefact

    root = tmp_path_factory.mktemp("serve")
    models = root / "models"
    net = train_tiny_network(models, epochs=0, n_per_class=8, work_dir=root / "work")
    write_segmenter_artefact(models, net, epochs=2, n_images=16)
    write_clinical_artefact(models)
    return models


def write_folder_study(path: Path, cohort: Path, **keys: Any) -> Path:
    """A study file for a BUSI-like folder cohort (benign vs malignant by folder); ``keys`` add top-level keys."""
    import yaml

    raw = {
        "name": "synthetic",
        "cohort": {"sources": [{"kind": "folders", "path": str(cohort)}]},
        "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]},
        **keys,
    }
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def one_torch_thread():
    """One torch thread: small networks on a shared CPU run fastest so, and bit-for-bit reproducibly."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



VIDEO_PARAMS = {"imageType": {"Original": {}}, "featureClass": {"firstorder": ["Mean", "Median", "10Percentile"]},
                "setting": {"binWidth": 5.0, "label": 1, "minimumROIDimensions": 2, "minimumROISize": 16}}
VIDEO_SWEEP = {"n_frames": 10, "n_dropouts": 1, "n_freezes": 0, "frame_size": (64, 80)}


def video_clip(seed: int, label: int):
    """A simulated 10-frame sweep (one blank frame) of a lesion that is darker in class 1."""
    from her2dlr.video.simulate import SweepSettings, simulate_sweep

    rng = np.random.default_rng(seed)
    img = rng.uniform(90, 150, (160, 200)).astype(np.float32)
    yy, xx = np.mgrid[:160, :200]
    mask = (yy - 80) ** 2 / 22**2 + (xx - 100) ** 2 / 30**2 < 1
    img[mask] *= 0.25 if label else 0.6
    return simulate_sweep(img, mask, SweepSettings(seed=seed, **VIDEO_SWEEP))


@pytest.fixture(scope="session")
def video_model(tmp_path_factory) -> tuple[Path, Path]:
    """A video_tf logistic model learnt from 12 simulated sweeps (tracker from the key-frame box): its artefact
    folder and the folder of its training clips."""
    import json
    import warnings

    import pandas as pd
    import yaml

    from her2dlr.cohort.manifest import Manifest
    from her2dlr.cohort.splits import repeated_group_kfold
    from her2dlr.learn.settings import LearnSettings
    from her2dlr.learn.stage import run_learn_stage
    from her2dlr.radiomics.parameters import load_params, params_hash
    from her2dlr.segment.data import mask_box
    from her2dlr.video.simulate import write_sweep
    from her2dlr.video.stage import extract_video_table

    tmp = tmp_path_factory.mktemp("videomodel")
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump(VIDEO_PARAMS))
    rows = []
    for i in range(12):
        sweep = video_clip(i, i % 2)
        path = write_sweep(sweep, tmp / f"v{i}.mp4")
        rows.append({"case_id": f"v{i}", "image": str(path), "modality": "US-video", "key_frame": sweep.key_frame,
                     "bbox": json.dumps(list(mask_box(sweep.masks[sweep.key_frame]))), "label": i % 2})
    table, failures = extract_video_table(pd.DataFrame(rows), tmp / "features", params=str(params), progress=False)
    assert failures.empty and len(table) == 12
    ids = np.array([r["case_id"] for r in rows])
    y = np.array([r["label"] for r in rows])
    manifest = Manifest(pd.DataFrame({"case_id": ids, "patient_id": ids, "image": "x", "label": y,
                                      "fold_r0": repeated_group_kfold(y, ids, 3, 1, 0)[0]}))
    settings = LearnSettings(features=["video_tf"], models=[{"name": "lr", "grid": {}}], schemes=["kfold"],
                             selection=[{"name": "variance"}], search={"inner_splits": 2})
    provenance = [{"name": "video_tf", "params": str(params), "roi": "video",
                   "params_hash": params_hash(load_params(params))}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_learn_stage(table, manifest, settings, tmp / "learn", feature_set="video_tf", models_dir=tmp / "models",
                        feature_tables=provenance, progress=False)
    return tmp / "models" / "video_tf-lr", tmp
