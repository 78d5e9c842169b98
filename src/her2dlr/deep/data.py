"""ROI arrays for the networks: from manifest rows or from image files, and the training dataset.

Every case becomes one ``(C, size, size)`` float32 array, or ``(C, size, size, size)`` for
volumes (``RoiSpec.spatial_dims=3``), made by :func:`her2dlr.imaging.roi.prepare_roi`
(bounding box of the mask or box + margin, padded at the border, resized, z-scored). The arrays
of a cohort are made once and kept in memory (a few hundred 64 x 64 ROIs take a few MB, as many
32^3 cubes a few tens of MB), so every fold and epoch reuses them.

Images are read by :func:`her2dlr.io.images.read_image`: 2D files (modality ``US``) or, for a 3D
or 2.5D ROI spec, volumes (modality ``MR``: NIfTI, NRRD, MHA or a DICOM series folder). A 2.5D
spec (``RoiSpec.slices=k``, the study's ``deep.slices``) makes ``(k, size, size)`` arrays of
volumes: ``k`` slices around the lesion's centre slice as the channels of a 2D network.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from her2dlr.errors import InputError
from her2dlr.imaging.roi import RoiSpec, load_roi, prepare_roi
from her2dlr.imaging.torchutil import torch_threads
from her2dlr.io.cells import is_missing, parse_bbox

__all__ = [
    "MODALITY_OF_DIMS",
    "AugmentCollate",
    "RoiDataset",
    "RoiInput",
    "load_rois",
    "manifest_clinical",
    "manifest_rois",
    "roi_of_row",
    "torch_threads",
]

PathLike = str | os.PathLike[str]
RoiInput = PathLike | np.ndarray | tuple[float, ...] | None
"""A lesion given as a mask file, a mask array, a box ``(x, y, w, h)`` (``(x, y, z, w, h, d)`` for a
volume), or None (whole image)."""
#: Manifest modality that each number of spatial dimensions reads.
MODALITY_OF_DIMS = {2: "US", 3: "MR"}


def roi_of_row(row: pd.Series | dict[str, Any]) -> RoiInput:
    """The lesion of one manifest row: its ``mask`` file, else its ``bbox``, else None."""
    mask = row.get("mask")
    if not is_missing(mask):
        return str(mask)
    return parse_bbox(row.get("bbox"), where=f"bbox of case {row.get('case_id')}")


def _one(image: PathLike | np.ndarray, roi: RoiInput, spec: RoiSpec) -> np.ndarray:
    mask: PathLike | np.ndarray | None = None
    bbox = None
    if isinstance(roi, np.ndarray):
        mask = roi
    elif isinstance(roi, (tuple, list)):
        bbox = parse_bbox(list(roi)) if len(roi) == 4 else tuple(roi)  # a 3D box is checked by roi_box
    elif roi is not None:
        mask = roi
    if isinstance(image, np.ndarray):
        if mask is not None and not isinstance(mask, np.ndarray):
            from her2dlr.io.images import read_mask_array

            mask = read_mask_array(mask)
        return prepare_roi(image, mask=mask, bbox=bbox, spec=spec)
    return load_roi(image, mask=mask, bbox=bbox, spec=spec)


def load_rois(images: Sequence[PathLike | np.ndarray], rois: Sequence[RoiInput] | None = None, *,
              spec: RoiSpec | None = None, n_jobs: int = 1, progress: bool = False) -> np.ndarray:
    """Prepare the network input of every image.

    Parameters
    ----------
    images : sequence of path or ndarray
        Image files, or arrays ``(H, W)`` / ``(H, W, 3)``; volume files or arrays ``(D, H, W)``
        with a 3D or 2.5D ``spec``.
    rois : sequence, optional
        Per image: mask file, mask array, box ``(x, y, w, h)`` (``(x, y, z, w, h, d)``) or None
        (whole image).
    spec : RoiSpec, default=RoiSpec()
    n_jobs : int, default=1
        Threads reading files.
    progress : bool, default=False

    Returns
    -------
    ndarray of shape (n_images, *spec.shape), float32
        ``(n_images, C, size, size)``, ``(n_images, C, size, size, size)`` for volumes, or
        ``(n_images, slices, size, size)`` for 2.5D inputs.

    Raises
    ------
    InputError
        Unreadable image, a mask of another size, an empty mask; the message names the image.
    """
    spec = spec or RoiSpec()
    rois = list(rois) if rois is not None else [None] * len(images)
    if len(rois) != len(images):
        raise InputError(f"Got {len(images)} images but {len(rois)} ROIs: give one ROI (or None) per image.")

    def job(i: int) -> np.ndarray:
        try:
            return _one(images[i], rois[i], spec)
        except InputError as exc:
            name = images[i] if not isinstance(images[i], np.ndarray) else f"image #{i}"
            raise InputError(f"{name}: {exc}") from None

    if n_jobs == 1 or len(images) < 8:
        it: Any = range(len(images))
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="ROIs", leave=False)
        out = [job(i) for i in it]
    else:
        from joblib import Parallel, delayed

        out = Parallel(n_jobs=n_jobs, prefer="threads")(delayed(job)(i) for i in range(len(images)))
    if not out:
        return np.zeros((0, *spec.shape), dtype=np.float32)
    return np.stack(out).astype(np.float32, copy=False)


def manifest_rois(table: pd.DataFrame, spec: RoiSpec | None = None, *, n_jobs: int = 1,
                  progress: bool = False) -> np.ndarray:
    """ROI arrays of manifest rows (``image`` plus ``mask`` or ``bbox``), in row order.

    A 2D ``spec`` takes 2D images (``modality`` US), a 3D or 2.5D one (``slices``) volumes
    (``modality`` MR); the message names the first row of another modality. A missing modality
    is the spec's.
    """
    spec = spec or RoiSpec()
    if "image" not in table.columns:
        raise InputError("The manifest has no 'image' column.")
    if "modality" in table.columns:
        want = MODALITY_OF_DIMS[spec.image_dims]
        other = table[~table["modality"].fillna(want).astype(str).isin([want])]
        if len(other):
            row = other.iloc[0]
            if spec.slices is not None:
                raise InputError(f"Case {row.get('case_id')} has modality {row['modality']!r}: deep.slices stacks "
                                 f"{spec.slices} slices of an MR volume (modality 'MR') as channels; drop deep.slices "
                                 "for 2D images.")
            if spec.spatial_dims == 2:
                raise InputError(f"Case {row.get('case_id')} has modality {row['modality']!r}: the deep stage takes "
                                 "2D ultrasound images (modality 'US') for now; set spatial_dims: 3 for MR volumes.")
            raise InputError(f"Case {row.get('case_id')} has modality {row['modality']!r}: spatial_dims 3 takes "
                             "MR volumes (modality 'MR').")
    rois = [roi_of_row(row) for _, row in table.iterrows()]
    return load_rois(table["image"].astype(str).tolist(), rois, spec=spec, n_jobs=n_jobs, progress=progress)


def manifest_clinical(table: pd.DataFrame, columns: Sequence[str], *, key: str = "clinical_columns") -> np.ndarray:
    """Clinical-pathological values of manifest rows as numbers, for a network that fuses them.

    Parameters
    ----------
    table : DataFrame
        Manifest rows (e.g. :func:`her2dlr.deep.cv.deep_table`).
    columns : sequence of str
        Numeric (or yes/no) columns; a boolean column gives 0/1.
    key : str
        The setting that named the columns (in messages).

    Returns
    -------
    ndarray of shape (n_rows, len(columns)), float64
        NaN where a value is missing (the network fills it with its training median).

    Raises
    ------
    InputError
        A column absent from the manifest (lists those present), or one with text values (names
        the column and the first case).
    """
    missing = [c for c in columns if c not in table.columns]
    if missing:
        extra = [c for c in table.columns if c not in ("case_id", "patient_id", "image", "mask", "bbox", "modality",
                                                       "split", "label") and not str(c).startswith(("fold_", "_"))]
        raise InputError(f"{key}: the manifest has no column(s) {missing}. Its other columns: {extra[:15]}.")
    out = np.empty((len(table), len(columns)), dtype=np.float64)
    for j, col in enumerate(columns):
        cells = table[col]
        if cells.dtype == bool:
            cells = cells.astype(float)
        number = pd.to_numeric(cells.where(~cells.map(is_missing), np.nan), errors="coerce")
        bad = number.isna() & ~cells.map(is_missing)
        if bad.any():
            row = table.loc[bad].iloc[0]
            raise InputError(f"{key}: column '{col}' holds text (case {row.get('case_id')}: {row[col]!r}); the network "
                             "fuses numbers. Code it as numbers (e.g. 0/1) in the clinical table.")
        out[:, j] = number.to_numpy(dtype=np.float64)
    return out


class RoiDataset(Dataset):
    """ROI arrays and labels (and clinical values) as a PyTorch dataset of ``(roi, label[, clinical])``.

    Parameters
    ----------
    rois : ndarray of shape (n_cases, C, H, W) or (n_cases, C, D, H, W)
    labels : ndarray of shape (n_cases,), optional
        Integer classes (``-1`` when absent).
    clinical : ndarray of shape (n_cases, n_clinical), optional
        Raw clinical values of a network with clinical fusion (NaN where missing).
    """

    def __init__(self, rois: np.ndarray, labels: np.ndarray | None = None, clinical: np.ndarray | None = None) -> None:
        self.rois = np.ascontiguousarray(rois, dtype=np.float32)
        self.labels = (np.full(len(rois), -1, dtype=np.int64) if labels is None
                       else np.asarray(labels, dtype=np.int64))
        if len(self.labels) != len(self.rois):
            raise InputError(f"{len(self.rois)} ROIs but {len(self.labels)} labels.")
        self.clinical = None if clinical is None else np.asarray(clinical, dtype=np.float32)
        if self.clinical is not None and len(self.clinical) != len(self.rois):
            raise InputError(f"{len(self.rois)} ROIs but {len(self.clinical)} rows of clinical values.")

    def __len__(self) -> int:
        return len(self.rois)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        if self.clinical is None:
            return self.rois[index], int(self.labels[index])
        return self.rois[index], int(self.labels[index]), self.clinical[index]


class AugmentCollate:
    """Batch maker: augments each ROI (single-threaded: small ops are fastest so) and stacks them.

    Parameters
    ----------
    augment : callable, optional
        ``(C, H, W)`` (or ``(C, D, H, W)``) ``array -> tensor`` (e.g. :class:`her2dlr.deep.transforms.Augment`);
        None: no augmentation.
    jigsaw : int, default=0
        After augmenting, shuffle each ROI as a jigsaw of ``jigsaw`` blocks per side (2D) or
        slabs of slices (3D), see :func:`her2dlr.deep.deeptepp.jigsaw_roi`; 0: off. Training
        batches only: the trainer's validation and test predictions never pass through here.
    spatial_dims : {2, 3}, default=2
    seed : int, default=0
        Seeds the jigsaw's generator (reseeded by :meth:`set_random_state`).

    Returns
    -------
    Batches ``(x, labels)``, or ``(x, labels, clinical)`` from a dataset with clinical values.
    """

    def __init__(self, augment: Callable[[np.ndarray], torch.Tensor] | None = None, *, jigsaw: int = 0,
                 spatial_dims: int = 2, seed: int = 0) -> None:
        self.augment = augment
        self.jigsaw = int(jigsaw)
        self.spatial_dims = spatial_dims
        self.rng = np.random.default_rng(seed)

    def set_random_state(self, seed: int) -> None:
        """Reseed the jigsaw's generator (the trainer does so every epoch)."""
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch: list[tuple[Any, ...]]) -> tuple[torch.Tensor, ...]:
        labels = torch.as_tensor([b[1] for b in batch], dtype=torch.long)
        if self.augment is None:
            x = torch.from_numpy(np.stack([b[0] for b in batch]))
        else:
            with torch_threads(1):
                x = torch.stack([self.augment(b[0]) for b in batch])
        if self.jigsaw > 1:
            from her2dlr.deep.deeptepp import jigsaw_roi

            x = torch.from_numpy(np.stack([jigsaw_roi(r, self.jigsaw, self.rng, self.spatial_dims)
                                           for r in x.numpy()]))
        if len(batch[0]) > 2:
            return x, labels, torch.from_numpy(np.stack([b[2] for b in batch]))
        return x, labels
