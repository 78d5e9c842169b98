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



def video_clip(seed: int, label: int):
    """A simulated 10-frame sweep (one blank frame) of a lesion that is darker in class 1."""
    from her2dlr.bench.serve_benches import simulated_clip

    return simulated_clip(seed, label)


@pytest.fixture(scope="session")
def video_model(tmp_path_factory) -> tuple[Path, Path]:
    """A video_tf logistic model learnt from 12 simulated sweeps (tracker from the key-frame box): its artefact
    folder and the folder of its training clips."""
    from her2dlr.bench.serve_benches import write_video_artefact

    tmp = tmp_path_factory.mktemp("videomodel")
    return write_video_artefact(tmp / "models", tmp), tmp
