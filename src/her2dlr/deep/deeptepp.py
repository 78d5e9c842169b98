"""DeepTEPP-style pieces (seed 004): tumour-centred patches, multi-view augmentation, jigsaw shuffle,
a multi-scale multi-stage ResNet with clinical-pathological fusion at the head.

Every part is a switch, so its effect can be measured on its own:

* :func:`tumour_patch` - a cube (3D) centred on the lesion's centroid, or the ``k`` slices around
  it (2.5D, slices as channels);
* :func:`multi_view` - axial, coronal and sagittal views of a cubic patch, each turned by 0, 90,
  180 and 270 degrees in plane; :func:`balance_with_views` adds views of the minority class's
  patches until the classes are balanced (DeepTEPP's use of multi-view augmentation);
* :func:`slice_mosaic` and :func:`jigsaw_shuffle` - the patch's slices spliced into one 2D mosaic,
  and an image cut into ``grid`` x ``grid`` (x ``grid``) blocks put back in a random order (the
  jigsaw of Du et al. 2020, which the seed uses to make the network look at fine-grained and
  between-slice detail);
* :class:`MMResNet` - residual stages of MONAI's ``ResNetBlock``; with ``multi_stage`` the
  globally pooled features of every stage are projected and concatenated, with ``multi_scale`` the
  last stage is also pooled on a 2 x 2 (x 2) grid; with ``n_clinical > 0`` the clinical-pathological
  factors pass through a small layer and join the image features before the classifier. Every
  branch is a linear projection with batch normalisation, so that neither the image nor the
  clinical factors dominate the fused vector by scale alone.

In the study's deep stage (``deep:`` settings ``multi_view``, ``jigsaw``, ``clinical_columns``,
see :mod:`her2dlr.deep.train`) the switches act on the network inputs of the inner training part
only: :func:`roi_views` and :func:`balance_with_views` balance it once, :func:`jigsaw_roi`
shuffles its inputs in every epoch, and :func:`clinical_scaling` fits the imputation and
standardisation that the network stores (:meth:`MMResNet.set_clinical_scaling`).

The seed's exact layer counts are in its supplement, which we do not have: the widths and depths
here are our choices (small by default: cohorts are a few hundred patients). The network's
softmax score of the positive class is the DeepTEPP score that ``survival`` stratifies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from monai.networks.layers.factories import Conv, Norm, Pool
from monai.networks.nets.resnet import ResNetBlock
from torch import Tensor, nn

from her2dlr.errors import InputError

__all__ = ["MMResNet", "balance_with_views", "clinical_scaling", "jigsaw_roi", "jigsaw_shuffle", "multi_view",
           "roi_views", "slice_mosaic", "tumour_patch"]


# --------------------------------------------------------------------------- patches and views
def tumour_patch(volume: np.ndarray, mask: np.ndarray, size: int, *, mode: str = "3d") -> np.ndarray:
    """A patch centred on the lesion: a ``size``-cube (``mode="3d"``) or ``size`` x ``size`` x ``size`` slices as
    channels (``mode="2.5d"``, the same array; the caller treats the first axis as channels).

    Parameters
    ----------
    volume, mask : ndarray of shape (depth, height, width)
    size : int
        Side of the patch in voxels; the volume is padded with its minimum where the patch
        passes its edge.

    Raises
    ------
    InputError
        Shapes differ, the mask is empty, or ``mode`` is unknown.
    """
    if mode not in ("3d", "2.5d"):
        raise InputError(f"The 'mode' parameter of tumour_patch must be '3d' or '2.5d'. Got {mode!r} instead.")
    if volume.shape != mask.shape or volume.ndim != 3:
        raise InputError(f"tumour_patch needs a 3D volume and a mask of its shape; got {volume.shape} and {mask.shape}.")
    points = np.argwhere(mask > 0)
    if not len(points):
        raise InputError("tumour_patch: the mask is empty; there is no tumour to centre on.")
    centre = np.round(points.mean(axis=0)).astype(int)
    half = size // 2
    padded = np.pad(volume, half + 1, mode="constant", constant_values=float(volume.min()))
    start = centre + 1  # + pad - half
    return padded[tuple(slice(s, s + size) for s in start)].copy()


def multi_view(patch: np.ndarray, *, rotations: bool = True) -> list[np.ndarray]:
    """Axial, coronal and sagittal views of a cubic patch (d, h, w), each also turned in plane by 90, 180, 270 degrees.

    Returns 12 arrays (3 without ``rotations``); the first is the patch itself.
    """
    if patch.ndim != 3 or len(set(patch.shape)) != 1:
        raise InputError(f"multi_view needs a cubic 3D patch; got shape {patch.shape}.")
    views = [patch, np.transpose(patch, (1, 0, 2)), np.transpose(patch, (2, 1, 0))]
    if not rotations:
        return [v.copy() for v in views]
    return [np.rot90(v, k, axes=(1, 2)).copy() for v in views for k in range(4)]


def roi_views(roi: np.ndarray, spatial_dims: int) -> list[np.ndarray]:
    """The other views of one network input ``(C, *spatial)``, every channel turned alike.

    3D (a cube ``(C, S, S, S)``): the 11 views of :func:`multi_view` after the patch itself
    (axial, coronal, sagittal, each turned in plane); 2D (``(C, H, W)``): the 7 other quarter
    turns and mirror images of the square (the dihedral group; in-plane views only).
    """
    if roi.ndim != spatial_dims + 1:
        raise InputError(f"roi_views needs an array (C, {', '.join(['S'] * spatial_dims)}); got shape {roi.shape}.")
    if spatial_dims == 3:
        per_channel = [multi_view(channel)[1:] for channel in roi]
        return [np.stack([views[k] for views in per_channel]) for k in range(len(per_channel[0]))]
    if roi.shape[1] != roi.shape[2]:
        raise InputError(f"roi_views needs square 2D inputs; got shape {roi.shape}.")
    turns = [np.rot90(roi, k, axes=(1, 2)) for k in range(4)]
    mirrored = [np.flip(t, axis=2) for t in turns]
    return [v.copy() for v in turns[1:] + mirrored]


def balance_with_views(patches: list[np.ndarray], labels: list[int], *, seed: int = 0,
                       views: Callable[[np.ndarray], list[np.ndarray]] | None = None
                       ) -> tuple[list[np.ndarray], list[int], list[int]]:
    """Add views of the smaller classes' patches until every class has as many as the largest.

    Views are drawn in turn per patch (a patch gets its second view before any gets its third),
    the patch order shuffled by ``seed``. Apply to training patches only.

    Parameters
    ----------
    patches : list of ndarray
    labels : list of int
    seed : int, default 0
    views : callable, optional
        ``patch -> list of its other views``; default: the 11 other views of :func:`multi_view`
        (cubic ``(d, h, w)`` patches). :func:`roi_views` gives them for network inputs with a
        channel axis.

    Returns
    -------
    patches, labels : list
        The originals followed by the added views.
    source : list of int
        Index of the original patch of each output (keeps the patient of every view, for grouping).
    """
    if len(patches) != len(labels):
        raise InputError(f"balance_with_views: {len(patches)} patches but {len(labels)} labels.")
    make_views = views or (lambda p: multi_view(p)[1:])
    rng = np.random.default_rng(seed)
    counts = {c: labels.count(c) for c in sorted(set(labels))}
    target = max(counts.values())
    out_p, out_y, source = list(patches), list(labels), list(range(len(patches)))
    for c, n in counts.items():
        members = [i for i, y in enumerate(labels) if y == c]
        order = list(rng.permutation(members))  # drawn for every class: the same seed gives the same views
        if n == target:
            continue
        extra = {i: make_views(patches[i]) for i in members}
        most = min(len(v) for v in extra.values())
        needed, round_ = target - n, 0
        while needed > 0:
            if round_ >= most:
                raise InputError(f"balance_with_views: class {c} has {n} patch(es), too few to reach {target} with "
                                 f"{most} extra views each.")
            for i in order[:needed]:
                out_p.append(extra[i][round_])
                out_y.append(c)
                source.append(int(i))
            needed -= min(needed, len(order))
            round_ += 1
    return out_p, out_y, source


def slice_mosaic(patch: np.ndarray, grid: int) -> np.ndarray:
    """Splice ``grid * grid`` slices of a patch (d, h, w) into one 2D image (grid * h, grid * w), row by row.

    The ``grid * grid`` slices are taken evenly around the middle of the patch.
    """
    d, h, w = patch.shape
    n = grid * grid
    if n > d:
        raise InputError(f"slice_mosaic: a {grid}x{grid} mosaic needs {n} slices; the patch has {d}.")
    first = (d - n) // 2
    tiles = patch[first:first + n].reshape(grid, grid, h, w)
    return tiles.transpose(0, 2, 1, 3).reshape(grid * h, grid * w)


def jigsaw_shuffle(image: np.ndarray, grid: int, rng: np.random.Generator) -> np.ndarray:
    """Cut a 2D or 3D image into ``grid`` blocks per axis and put them back in a random order.

    Each side must divide by ``grid``; ``grid=1`` returns a copy.
    """
    if any(s % grid for s in image.shape):
        raise InputError(f"jigsaw_shuffle: every side of the image {image.shape} must divide by grid={grid}.")
    return _shuffle_blocks(image, grid, rng.permutation(grid**image.ndim))


def _shuffle_blocks(image: np.ndarray, grid: int, order: np.ndarray) -> np.ndarray:
    """The ``grid``-per-axis blocks of ``image`` put back in ``order`` (row-major block numbers)."""
    sides = [s // grid for s in image.shape]
    nd = image.ndim
    # (g, s0, g, s1, ...) -> blocks (g**nd, s0, s1, ...)
    blocks = image.reshape([v for s in sides for v in (grid, s)])
    blocks = blocks.transpose([2 * k for k in range(nd)] + [2 * k + 1 for k in range(nd)]).reshape(-1, *sides)
    blocks = blocks[order]
    grid_shape = blocks.reshape([grid] * nd + sides)
    axes = [v for k in range(nd) for v in (k, nd + k)]
    return grid_shape.transpose(axes).reshape(image.shape).copy()


def jigsaw_roi(roi: np.ndarray, grid: int, rng: np.random.Generator, spatial_dims: int) -> np.ndarray:
    """The jigsaw shuffle of one network input ``(C, *spatial)``, every channel shuffled alike.

    2D: the ``grid`` x ``grid`` blocks of the image in a random order; 3D: the slices cut into
    ``grid`` slabs along the first spatial axis, the slabs in a random order (DeepTEPP's jigsaw
    of slices; each slab keeps its slices in order). Every shuffled side must divide by ``grid``.
    """
    if roi.ndim != spatial_dims + 1:
        raise InputError(f"jigsaw_roi needs an array (C, {', '.join(['S'] * spatial_dims)}); got shape {roi.shape}.")
    sides = roi.shape[1:] if spatial_dims == 2 else roi.shape[1:2]
    if grid < 1 or any(s % grid for s in sides):
        raise InputError(f"jigsaw: the input side(s) {tuple(sides)} must divide by grid={grid}.")
    if spatial_dims == 3:
        slabs = np.split(roi, grid, axis=1)
        return np.concatenate([slabs[k] for k in rng.permutation(grid)], axis=1)
    order = rng.permutation(grid * grid)
    return np.stack([_shuffle_blocks(channel, grid, order) for channel in roi])


def clinical_scaling(values: np.ndarray) -> dict[str, list[float]]:
    """Median imputation, then standardisation, fitted on training rows (as scikit-learn's
    ``SimpleImputer(strategy="median")`` followed by ``StandardScaler``).

    Parameters
    ----------
    values : ndarray of shape (n_cases, n_clinical)
        Clinical values of the training rows, NaN where missing.

    Returns
    -------
    dict
        ``median``, ``mean`` and ``scale`` (population standard deviation of the imputed
        column; 1 where it is 0), one list entry per column.

    Raises
    ------
    InputError
        A column without any value in the training rows.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or not len(values):
        raise InputError(f"clinical_scaling needs a table (n_cases, n_clinical) of training values; got {values.shape}.")
    empty = np.flatnonzero(np.isnan(values).all(axis=0))
    if len(empty):
        raise InputError(f"clinical_scaling: clinical column(s) {empty.tolist()} have no value in the training rows.")
    median = np.nanmedian(values, axis=0)
    filled = np.where(np.isnan(values), median, values)
    scale = filled.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return {"median": median.tolist(), "mean": filled.mean(axis=0).tolist(), "scale": scale.tolist()}


# --------------------------------------------------------------------------- network
class MMResNet(nn.Module):
    """Multi-scale multi-stage residual network with optional clinical-pathological fusion (2D or 3D).

    Parameters
    ----------
    in_channels, n_classes : int
    spatial_dims : {2, 3}, default 3
    widths : tuple of int, default (16, 32, 64, 128)
        Channels of the stages; each stage after the first halves the resolution.
    blocks : int, default 1
        Residual blocks (MONAI ``ResNetBlock``) per stage.
    multi_stage : bool, default True
        Fuse the pooled features of every stage (else only the last stage's).
    multi_scale : bool, default True
        Also pool the last stage on a 2-per-axis grid.
    proj_dim : int, default 32
        Width each stage's pooled features are projected to before fusion.
    n_clinical : int, default 0
        Clinical-pathological inputs fused at the head; ``forward`` then needs them. The raw
        values go in: the network fills a missing value (NaN) with its stored training median
        and standardises with its stored training mean and scale (buffers, so checkpoints carry
        them; set by :meth:`set_clinical_scaling`, identity until then).
    dropout : float, default 0.2

    Examples
    --------
    >>> net = MMResNet(1, 2, spatial_dims=3, widths=(4, 8, 8, 16), n_clinical=3).eval()
    >>> net(torch.zeros(2, 1, 16, 16, 16), torch.zeros(2, 3)).shape
    torch.Size([2, 2])
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, *, spatial_dims: int = 3,
                 widths: tuple[int, ...] = (16, 32, 64, 128), blocks: int = 1, multi_stage: bool = True,
                 multi_scale: bool = True, proj_dim: int = 32, n_clinical: int = 0, dropout: float = 0.2) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise InputError(f"The 'spatial_dims' parameter of MMResNet must be 2 or 3. Got {spatial_dims!r} instead.")
        conv, norm = Conv[Conv.CONV, spatial_dims], Norm[Norm.BATCH, spatial_dims]
        self.spatial_dims, self.multi_stage, self.multi_scale, self.n_clinical = spatial_dims, multi_stage, multi_scale, n_clinical
        self.stem = nn.Sequential(conv(in_channels, widths[0], 3, padding=1, bias=False), norm(widths[0]), nn.ReLU(inplace=True))
        stages, previous = [], widths[0]
        for k, width in enumerate(widths):
            stride = 1 if k == 0 else 2
            down = None
            if stride != 1 or previous != width:
                down = nn.Sequential(conv(previous, width, 1, stride=stride, bias=False), norm(width))
            layers = [ResNetBlock(previous, width, spatial_dims, stride, down)]
            layers += [ResNetBlock(width, width, spatial_dims) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            previous = width
        self.stages = nn.ModuleList(stages)
        pool = Pool[Pool.ADAPTIVEAVG, spatial_dims]
        self.pool1, self.pool2 = pool(1), pool(2)
        used = widths if multi_stage else widths[-1:]

        def branch(width: int) -> nn.Module:  # each branch normalised, so no input dominates the fusion by scale
            return nn.Sequential(nn.Linear(width, proj_dim), nn.BatchNorm1d(proj_dim), nn.ReLU())

        self.projections = nn.ModuleList(branch(w) for w in used)
        self.scale_projection = branch(widths[-1] * 2**spatial_dims) if multi_scale else None
        self.clinical = branch(n_clinical) if n_clinical else None
        if n_clinical:
            self.register_buffer("clinical_median", torch.zeros(n_clinical))
            self.register_buffer("clinical_mean", torch.zeros(n_clinical))
            self.register_buffer("clinical_scale", torch.ones(n_clinical))
        self.embed_dim = proj_dim * (len(used) + int(multi_scale) + int(n_clinical > 0))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.embed_dim, n_classes))
        self.target_layer = f"stages.{len(widths) - 1}"
        self.config: dict[str, Any] = {"widths": list(widths), "multi_stage": multi_stage, "multi_scale": multi_scale,
                                       "n_clinical": n_clinical, "spatial_dims": spatial_dims}

    def embed(self, x: Tensor, clinical: Tensor | None = None) -> Tensor:
        """Fused features before the classifier, shape (N, embed_dim)."""
        if self.n_clinical and (clinical is None or clinical.shape[-1] != self.n_clinical):
            got = None if clinical is None else tuple(clinical.shape)
            raise InputError(f"MMResNet was built for {self.n_clinical} clinical inputs; got {got}.")
        h = self.stem(x)
        pooled = []
        for stage in self.stages:
            h = stage(h)
            pooled.append(torch.flatten(self.pool1(h), 1))
        used = pooled if self.multi_stage else pooled[-1:]
        parts = [proj(p) for proj, p in zip(self.projections, used)]
        if self.scale_projection is not None:
            parts.append(self.scale_projection(torch.flatten(self.pool2(h), 1)))
        if self.clinical is not None:
            parts.append(self.clinical(self.scaled_clinical(clinical)))
        return torch.cat(parts, dim=1)

    def scaled_clinical(self, clinical: Tensor) -> Tensor:
        """Raw clinical values (N, n_clinical), NaN where missing -> imputed and standardised values."""
        filled = torch.where(torch.isnan(clinical), self.clinical_median.to(clinical.dtype), clinical)
        return (filled - self.clinical_mean.to(clinical.dtype)) / self.clinical_scale.to(clinical.dtype)

    def set_clinical_scaling(self, scaling: Mapping[str, Any]) -> None:
        """Store the training rows' ``median``, ``mean`` and ``scale`` (:func:`clinical_scaling`) in the network."""
        if not self.n_clinical:
            raise InputError("MMResNet was built without clinical inputs (n_clinical=0): nothing to scale.")
        for key in ("median", "mean", "scale"):
            value = torch.as_tensor(np.asarray(scaling[key], dtype=np.float32))
            if value.shape != (self.n_clinical,):
                raise InputError(f"set_clinical_scaling: '{key}' has shape {tuple(value.shape)}, the network takes "
                                 f"{self.n_clinical} clinical inputs.")
            getattr(self, f"clinical_{key}").copy_(value)

    def forward(self, x: Tensor, clinical: Tensor | None = None) -> Tensor:
        """Logits, shape (N, n_classes); ``x`` of shape (N, C, D, H, W) in 3D, (N, C, H, W) in 2D."""
        return self.head(self.embed(x, clinical))
