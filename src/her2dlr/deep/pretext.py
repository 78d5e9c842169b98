"""Self-supervised pre-training on the training fold's own ROIs: predicting the rotation (Gidaris et al. 2018).

Each ROI is shown rotated by 0, 90, 180 or 270 degrees and a 4-way linear head on the
network's pooled features (``embed``) learns which; the head is then dropped and supervised
training starts from the pre-trained layers. Only the images handed in are used: the trainer
passes the inner training part of the fold (never its inner validation cases, never the
outer test fold), so no held-out image shapes the features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from her2dlr.errors import InputError

__all__ = ["ROTATIONS", "rotate_batch", "rotation_pretrain"]

#: Quarter turns the pretext task tells apart.
ROTATIONS = 4


def rotate_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ROI in all four quarter turns (in the last two axes) and the turn of each.

    Parameters
    ----------
    x : Tensor of shape (n, C, S, S)

    Returns
    -------
    (rotated, turns)
        ``rotated`` of shape (4 n, C, S, S): the batch turned 0, 1, 2, 3 quarter turns, in
        that order; ``turns`` of shape (4 n,).
    """
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise InputError(f"Rotation pre-training takes square 2D ROIs (n, C, S, S); got shape {tuple(x.shape)}.")
    rotated = torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(ROTATIONS)])
    turns = torch.arange(ROTATIONS, device=x.device).repeat_interleave(len(x))
    return rotated, turns


def rotation_pretrain(model: nn.Module, rois: np.ndarray, *, epochs: int, batch_size: int = 32, lr: float = 1e-3,
                      weight_decay: float = 1e-4, seed: int = 0, device: torch.device | str = "cpu"
                      ) -> pd.DataFrame:
    """Pre-train ``model``'s layers in place on the rotation pretext task; the per-epoch loss and accuracy.

    Parameters
    ----------
    model : nn.Module
        A toolkit network (with ``embed`` and ``embed_dim``); its classifier is not trained here.
    rois : ndarray of shape (n, C, S, S)
        The training images only.
    epochs : int
    batch_size : int, default=32
        ROIs per step (each seen in its four turns).
    lr, weight_decay : float
        AdamW.
    seed : int, default=0
        The head's initial weights and the shuffling.
    device : torch.device or str, default="cpu"

    Returns
    -------
    DataFrame
        ``epoch, pretext_loss, pretext_accuracy`` (on the training images, rotated).
    """
    if not hasattr(model, "embed") or not hasattr(model, "embed_dim"):
        raise InputError(f"{type(model).__name__} has no embed(x): rotation pre-training needs a toolkit network.")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(int(seed))
    head = nn.Linear(int(model.embed_dim), ROTATIONS)
    with torch.no_grad():  # seeded head, independent of the global generator
        bound = 1 / np.sqrt(head.in_features)
        head.weight.copy_(torch.rand(head.weight.shape, generator=gen) * 2 * bound - bound)
        head.bias.zero_()
    head.to(device)
    params = list(model.parameters()) + list(head.parameters())  # the classifier gets no gradient here
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    x_all = torch.as_tensor(np.asarray(rois, dtype=np.float32))
    rows = []
    model.train()
    for epoch in range(1, int(epochs) + 1):
        order = torch.randperm(len(x_all), generator=gen)
        total, correct, count = 0.0, 0, 0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:  # batch norm needs two cases
                continue
            xb, turns = rotate_batch(x_all[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            logits = head(model.embed(xb))
            loss = loss_fn(logits, turns)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(turns)
            correct += int((logits.argmax(1) == turns).sum())
            count += len(turns)
        rows.append({"epoch": epoch, "pretext_loss": total / max(count, 1), "pretext_accuracy": correct / max(count, 1)})
    return pd.DataFrame(rows, columns=["epoch", "pretext_loss", "pretext_accuracy"])

