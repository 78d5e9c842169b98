"""One voxel spacing for every volume of a radiomics extraction: given, or the training volumes' own.

Texture matrices count voxels and LoG sigmas are in mm, so volumes of different spacing (MRI:
0.6-0.9 mm in plane, 1-3 mm between slices, varying by scanner and protocol) must be brought to
one grid before their features can be compared. PyRadiomics does the resampling itself
(``setting.resampledPixelSpacing``; the image with the parameter set's ``interpolator``,
B-spline by default, the mask with nearest neighbour, both cropped around the ROI); this module
chooses the spacing, as the study's ``radiomics.voxel_size`` says:

- ``params``: what the parameter set says (``mri3d``: 1 mm isotropic; none: each volume on its
  own grid);
- ``training``: per axis, the median spacing of the **training** volumes (rows not in the test
  split), so a test volume never moves the target (no test-set statistic); the anisotropy of
  the usual acquisition is kept;
- a number or ``[x, y, z]`` in mm: that spacing.

The chosen spacing is written into the parameters of this extraction (their hash changes with
it, so cached features of another spacing are not reused, and a model artefact carries it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.radiomics.parameters import Params

__all__ = ["VoxelSizePlan", "plan_voxel_size", "volume_spacing", "with_voxel_size"]


@dataclass(frozen=True)
class VoxelSizePlan:
    """The voxel spacing of one extraction.

    Attributes
    ----------
    rule : str
        ``params``, ``training`` or ``given``.
    target_mm : tuple of float or None
        ``(x, y, z)`` spacing every volume is resampled to; None leaves the parameter set's.
    n_training : int
        Training volumes whose spacing gave the median (``training`` only).
    """

    rule: str
    target_mm: tuple[float, ...] | None
    n_training: int = 0

    @property
    def note(self) -> str:
        """One line for the run's feature record and the report."""
        if self.target_mm is None:
            return "Voxel spacing as the radiomics parameter set says (resampledPixelSpacing)."
        shown = " x ".join(f"{v:g}" for v in self.target_mm)
        if self.rule == "training":
            return (f"Volumes resampled (by PyRadiomics) to {shown} mm (x, y, z): the median spacing per axis of the "
                    f"{self.n_training} training volumes.")
        return f"Volumes resampled (by PyRadiomics) to the given spacing {shown} mm (x, y, z)."

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the note."""
        out = asdict(self)
        out["target_mm"] = list(self.target_mm) if self.target_mm is not None else None
        return {**out, "note": self.note}


def volume_spacing(path: str | Path) -> tuple[float, ...]:
    """Voxel spacing ``(x, y, z)`` in mm of a volume file (header only) or DICOM series folder.

    Raises
    ------
    InputError
        Unreadable file; the message names it.
    """
    import SimpleITK as sitk

    from her2dlr.io.images import read_image, sitk_file_name

    path = Path(path)
    if path.is_dir():
        return tuple(float(v) for v in read_image(path).GetSpacing())
    reader = sitk.ImageFileReader()
    reader.SetFileName(sitk_file_name(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"Cannot read the header of {path}: {str(exc).strip().splitlines()[-1]}") from None
    return tuple(float(v) for v in reader.GetSpacing())


def plan_voxel_size(rows: pd.DataFrame, train: pd.Series, setting: str | float | Sequence[float],
                    spacings: Sequence[tuple[float, ...]] | None = None) -> VoxelSizePlan:
    """Choose the voxel spacing of the rows' volumes (no image is resampled here).

    Parameters
    ----------
    rows : DataFrame
        Rows to extract, with ``case_id`` and ``image`` (volumes).
    train : Series of bool
        Which rows are training rows (same index).
    setting : "params", "training", float or [x, y, z]
        The study's ``radiomics.voxel_size``.
    spacings : sequence of (x, y, z), optional
        The rows' spacings when already known (default: read from the image headers).

    Returns
    -------
    VoxelSizePlan

    Raises
    ------
    InputError
        ``training`` without a training volume, a 2D image among the rows (its file named), a
        spacing of the wrong length.
    """
    given: tuple[float, ...] | None = None
    if isinstance(setting, str):
        if setting == "params":
            return VoxelSizePlan("params", None)
        if setting != "training":
            raise InputError(f"radiomics.voxel_size must be 'params', 'training', a spacing in mm or [x, y, z]; "
                             f"got {setting!r}.")
    else:
        values = [float(setting)] * 3 if np.isscalar(setting) else [float(v) for v in setting]  # type: ignore[arg-type]
        if len(values) != 3 or min(values) <= 0:
            raise InputError(f"radiomics.voxel_size {setting!r}: give one spacing in mm or three [x, y, z], all > 0.")
        given = tuple(values)
    if spacings is None:
        spacings = [volume_spacing(p) for p in rows["image"].astype(str)]
    flat = [img for img, s in zip(rows["image"], spacings) if len(s) != 3]
    if flat:
        raise InputError(f"radiomics.voxel_size resamples volumes, but {flat[0]} is a 2D image ({len(flat)} such "
                         "row(s)); 2D images follow radiomics.pixel_size (leave voxel_size: params).")
    if given is not None:
        return VoxelSizePlan("given", given)
    chosen = [s for s, t in zip(spacings, train.reindex(rows.index).fillna(False).astype(bool)) if t]
    if not chosen:
        raise InputError("radiomics.voxel_size: training needs training volumes (rows outside the test split); "
                         "none has an image.")
    target = tuple(round(float(v), 6) for v in np.median(np.asarray(chosen, dtype=float), axis=0))
    return VoxelSizePlan("training", target, len(chosen))


def with_voxel_size(params: Params, plan: VoxelSizePlan) -> Params:
    """The parameters with ``setting.resampledPixelSpacing`` set to the plan's target (unchanged without one)."""
    if plan.target_mm is None:
        return params
    out = dict(params)
    setting = dict(out.get("setting") or {})
    setting["resampledPixelSpacing"] = [float(v) for v in plan.target_mm]
    out["setting"] = setting
    return out
