"""The box-prompted segmentation network as video-sim's localiser (``--localiser network``).

One small box-prompted U-Net per outer fold is trained on the source stills (BUSI image + mask) of
that fold's training videos only, then localises every frame of the fold's test videos, prompted from
the previous frame's box (the first one: the key frame's true box, as with the tracker). The folds
are those of the AUC models (5 stratified folds grouped by source image, same seed), so no network
ever sees the source image of a video it localises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["NETWORK_SETTINGS", "fold_indices", "shift_mask", "train_fold_network"]

#: A tiny budget: 64 px inputs, narrow levels, few epochs, no early stopping (every still trains).
NETWORK_SETTINGS = {"image_size": 64, "features": (8, 16, 32, 64, 128), "batch_size": 16, "lr": 3e-3}


def fold_indices(labels: np.ndarray, groups: np.ndarray, seed: int, n_splits: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train and test rows of each outer fold: stratified, grouped by source image (the AUC models' folds)."""
    from sklearn.model_selection import StratifiedGroupKFold

    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros((len(labels), 1)), labels, groups))


def train_fold_network(stills: list[tuple[Path, Path]], *, seed: int, epochs: int, threads: int) -> tuple[Any, Any]:
    """A box-prompted U-Net trained on ``stills`` (image, mask paths) only; returns ``(model, spec)``."""
    from her2dlr.imaging.torchutil import torch_threads
    from her2dlr.segment.data import SegSpec, load_seg_pairs
    from her2dlr.segment.train import SegTrainSettings, train_segmenter

    spec = SegSpec(size=int(NETWORK_SETTINGS["image_size"]), box_prompt=True)  # type: ignore[call-overload]
    X, Y, _ = load_seg_pairs([img for img, _ in stills], [msk for _, msk in stills], spec=spec, progress=False)
    settings = SegTrainSettings(box_prompt=True, epochs=epochs, patience=0, min_val_cases=len(stills) + 1,
                                seed=seed, device="cpu", num_threads=threads, progress=False, **NETWORK_SETTINGS)
    with torch_threads(threads):
        res = train_segmenter(X, Y, settings=settings, spec=spec)
    return res.model, spec


def shift_mask(entry: tuple[int, int, np.ndarray], dy: int, dx: int,
               shape: tuple[int, int]) -> tuple[int, int, np.ndarray] | None:
    """A cropped mask ``(y0, x0, crop)`` moved by ``(dy, dx)`` and clipped to the frame (None when it leaves it)."""
    y0, x0, crop = entry
    full = np.zeros(shape, bool)
    ys, xs = np.nonzero(crop)
    ys, xs = ys + y0 + dy, xs + x0 + dx
    inside = (ys >= 0) & (ys < shape[0]) & (xs >= 0) & (xs < shape[1])
    if not inside.any():
        return None
    full[ys[inside], xs[inside]] = True
    ys, xs = np.nonzero(full)
    return int(ys.min()), int(xs.min()), full[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
