"""A tiny GAP + linear CNN with the toolkit's network interface, and synthetic lesion images.

The network exposes what :mod:`her2dlr.deep.networks` promises of every network:
``target_layer`` (name of the last conv feature map), ``embed(x)`` (pooled penultimate
features) and ``forward(x)`` (logits). Images: a disc lesion in speckle noise whose texture
carries the label, and (in half of the images of both classes) a bright block of "text" in
a corner that carries no label information.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["TinyCNN", "synthetic_lesions", "train_tiny"]


class TinyCNN(nn.Module):
    """conv-relu-conv-relu-conv-relu -> global average pooling -> linear."""

    target_layer = "features.relu3"

    def __init__(self, in_channels: int = 1, n_classes: int = 2, width: int = 12) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv1", nn.Conv2d(in_channels, width, 3, padding=1))
        self.features.add_module("relu1", nn.ReLU())
        self.features.add_module("conv2", nn.Conv2d(width, width, 3, padding=1))
        self.features.add_module("relu2", nn.ReLU())
        self.features.add_module("conv3", nn.Conv2d(width, 2 * width, 3, padding=1))
        self.features.add_module("relu3", nn.ReLU())
        self.fc = nn.Linear(2 * width, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features, shape (N, 2 * width)."""
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape (N, n_classes)."""
        return self.fc(self.embed(x))


def synthetic_lesions(n: int, *, size: int = 32, seed: int = 0, text: bool = True
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images, labels, lesion masks and "text" masks.

    Returns
    -------
    images : ndarray of shape (n, 1, size, size), float32 in [0, 1]
    labels : ndarray of shape (n,)
        Alternating 0/1: positives have a rough (speckled) bright lesion, negatives a smooth one.
    lesions : bool ndarray of shape (n, size, size)
    texts : bool ndarray of shape (n, size, size)
        The corner block (empty where the image has none); present in every other pair of
        images, so it appears equally often in both classes.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.empty((n, 1, size, size), np.float32)
    labels = np.arange(n) % 2
    lesions = np.zeros((n, size, size), bool)
    texts = np.zeros((n, size, size), bool)
    for i in range(n):
        img = rng.normal(0.2, 0.05, (size, size))
        cy, cx = rng.uniform(size * 0.4, size * 0.6, 2)
        r = rng.uniform(size * 0.16, size * 0.22)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        lesions[i] = disc
        if labels[i]:
            img[disc] = rng.choice([0.3, 1.0], size=int(disc.sum()))
        else:
            img[disc] = 0.65 + rng.normal(0, 0.03, int(disc.sum()))
        if text and (i // 2) % 2 == 0:
            corner = rng.integers(0, 4)
            y0 = 1 if corner < 2 else size - 7
            x0 = 1 if corner % 2 == 0 else size - 9
            block = np.zeros((size, size), bool)
            block[y0:y0 + 6, x0:x0 + 8] = True
            texts[i] = block
            img[block] = 1.0
        images[i, 0] = np.clip(img, 0, 1)
    return images, labels, lesions, texts


def train_tiny(images: np.ndarray, labels: np.ndarray, *, epochs: int = 30, seed: int = 0) -> TinyCNN:
    """Fit a :class:`TinyCNN` with Adam (full batch); a few seconds on a CPU."""
    torch.manual_seed(seed)
    model = TinyCNN()
    x = torch.as_tensor(images)
    y = torch.as_tensor(labels, dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    return model


def write_lesion_cohort(root, n: int = 20, *, size: int = 64, seed: int = 0, n_folds: int = 5):
    """PNG images + masks of :func:`synthetic_lesions` and a manifest with one k-fold repetition.

    Returns
    -------
    DataFrame
        ``case_id, patient_id, image, mask, bbox, label, fold_r0``.
    """
    from pathlib import Path

    import pandas as pd
    from PIL import Image

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    images, labels, lesions, _ = synthetic_lesions(n, size=size, seed=seed)
    rows = []
    for i in range(n):
        img = root / f"case {i:02d}.png"
        msk = root / f"case {i:02d}_mask.png"
        Image.fromarray((images[i, 0] * 255).astype(np.uint8)).save(img)
        Image.fromarray(lesions[i].astype(np.uint8) * 255).save(msk)
        rows.append({"case_id": f"case {i:02d}", "patient_id": f"p{i:02d}", "image": str(img), "mask": str(msk),
                     "bbox": None, "label": int(labels[i]), "fold_r0": (i // 2) % n_folds})
    return pd.DataFrame(rows)


def save_fold_checkpoints(folder, manifest, *, image_size: int = 32, margin: int = 4) -> None:
    """A small untrained ``densenet3block`` per fold of ``fold_r0``, saved as ``<folder>/<fold>/best.pt``."""
    from pathlib import Path

    from her2dlr.deep.networks import CHECKPOINT_FORMAT, build_network
    from her2dlr.deep.train import save_checkpoint
    from her2dlr.imaging.roi import RoiSpec

    options = {"block_layers": (1, 1, 2), "growth_rate": 4}
    roi = RoiSpec(size=image_size, margin=margin).to_dict()
    for k in sorted(set(manifest["fold_r0"])):
        torch.manual_seed(k)
        net = build_network("densenet3block", image_size=image_size, **options)
        payload = {"format": CHECKPOINT_FORMAT, "version": 1, "kind": "best", "arch": "densenet3block",
                   "image_size": image_size, "in_channels": 1, "n_classes": 2,
                   "arch_options": {"block_layers": [1, 1, 2], "growth_rate": 4}, "seed": k, "epoch": 1,
                   "model_state": net.state_dict(),
                   "extra": {"roi": roi, "fold": f"r0f{k}", "threshold": {"value": 0.5}}}
        save_checkpoint(payload, Path(folder) / f"r0f{k}" / "best.pt")
