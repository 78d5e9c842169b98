"""One pixel size for every 2D image of a radiomics extraction: the training images' own.

Texture features are computed on the pixel grid (a GLCM offset is one pixel, a run is counted in
pixels) and shape features take the pixel size as their unit, so a model trained on images of
one pixel size and applied to images of another compares different physical scales. When the
pixel sizes are known (the manifest's ``spacing``, mm), every image whose pixel size differs from
the **training** images' (the median over the rows that are not in the test split) is resampled
to it before extraction. The target comes from the training rows only, so a test image's
features never depend on the other test images (no test-set statistic).

When a side does not know its pixel size nothing can be resampled, and an assumption is made
and said (a warning, and :attr:`PixelSizePlan.note` in the run's feature record and report):

- training rows without a pixel size, other rows with one: every pixel is taken as a training
  pixel (the known sizes are set aside, so shape features are in pixels on both sides);
- training rows with a pixel size, some other rows without: those rows are taken to have the
  training pixel size.

Resampling (:func:`resample_image`): a Gaussian anti-aliasing filter when shrinking (SD half the
shrink factor minus one, in input pixels, as in scikit-image's ``rescale``), then linear
interpolation onto a grid covering the same field of view; masks are interpolated linearly and
thresholded at 0.5, so a lesion keeps its physical size.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from her2dlr.io.cells import is_missing, parse_bbox

__all__ = ["PixelSizePlan", "apply_pixel_size", "plan_pixel_size", "resample_image", "resample_mask",
           "training_rows"]

#: Relative difference of pixel sizes below which an image is left on its own grid.
TOLERANCE = 0.01


@dataclass(frozen=True)
class PixelSizePlan:
    """How the pixel sizes of one extraction are made equal (see the module docstring).

    Attributes
    ----------
    target_mm : float or None
        The training pixel size every row is brought to; None when the training rows give none.
    n_resampled : int
        Rows resampled to ``target_mm``.
    n_assumed : int
        Rows whose pixel size was assumed (see ``assumption``).
    assumption : str or None
        What was assumed, or None when every row's pixel size was known (or none was, on any side).
    """

    target_mm: float | None
    n_resampled: int
    n_assumed: int
    assumption: str | None

    @property
    def note(self) -> str:
        """One line for the run's output and the report."""
        if self.target_mm is None and self.assumption is None:
            return "No pixel size known on any side: features in pixel units, pixels taken as equal in size."
        head = (f"Images resampled to the training pixel size {self.target_mm:g} mm ({self.n_resampled} resampled)."
                if self.target_mm is not None else "Images not resampled.")
        return head + (f" Assumed: {self.assumption}" if self.assumption else "")

    def as_dict(self) -> dict[str, object]:
        """The plan as a JSON-ready dict, with its note."""
        return {**asdict(self), "note": self.note}


def training_rows(table: pd.DataFrame) -> pd.Series:
    """Rows whose pixel size sets the target: those not in the test split (all rows without a ``split``)."""
    if "split" not in table.columns:
        return pd.Series(True, index=table.index)
    return table["split"].astype("string").fillna("") != "test"


def _spacings(table: pd.DataFrame) -> pd.Series:
    if "spacing" not in table.columns:
        return pd.Series(np.nan, index=table.index, dtype=float)
    return pd.to_numeric(table["spacing"], errors="coerce")


def plan_pixel_size(table: pd.DataFrame, train: pd.Series | None = None) -> PixelSizePlan:
    """Decide the target pixel size of the rows and what is assumed (no file is read or written).

    Parameters
    ----------
    table : DataFrame
        Rows with ``spacing`` (mm, missing when unknown).
    train : Series of bool, optional
        Which rows are training rows (default :func:`training_rows`).

    Returns
    -------
    PixelSizePlan
    """
    train = training_rows(table) if train is None else train.reindex(table.index).fillna(False).astype(bool)
    spacing = _spacings(table)
    known = spacing.notna() & (spacing > 0)
    if not known.any():
        return PixelSizePlan(None, 0, 0, None)
    train_known = known & train
    if not train_known.any():
        n = int(known.sum())
        return PixelSizePlan(None, 0, n, f"the training images give no pixel size, so the {n} image(s) that give one "
                                         "are not resampled and each of their pixels is taken as a training pixel "
                                         "(shape features in pixels on both sides). Give the training source's "
                                         "spacing_mm to resample them.")
    target = round(float(np.median(spacing[train_known])), 6)
    differs = known & ((spacing / target - 1.0).abs() > TOLERANCE)
    unknown = int((~known).sum())
    assumption = (f"{unknown} image(s) without a pixel size are taken to have the training pixel size {target:g} mm."
                  if unknown else None)
    return PixelSizePlan(target, int(differs.sum()), unknown, assumption)


def _grid(image: sitk.Image, target_mm: float) -> tuple[list[int], tuple[float, ...]]:
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    size = [max(1, round(float(n))) for n in np.asarray(image.GetSize()) * spacing / target_mm]
    # the new grid covers the same field of view: its first pixel centre is half a new pixel in
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(image.GetDimension(), -1)
    shift = direction @ ((target_mm - spacing) / 2.0)
    origin = tuple(float(v) for v in np.asarray(image.GetOrigin()) + shift)
    return size, origin


def resample_image(image: sitk.Image, target_mm: float) -> sitk.Image:
    """Resample a grey image to pixels of ``target_mm`` (float32, same field of view; see the module docstring)."""
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    src = sitk.Cast(image, sitk.sitkFloat32)
    shrink = target_mm / spacing
    if np.any(shrink > 1.0):
        sigma_mm = [float(max(0.0, (k - 1.0) / 2.0) * s) for k, s in zip(shrink, spacing, strict=True)]
        arr = sitk.GetArrayFromImage(src)
        from scipy.ndimage import gaussian_filter

        smooth = gaussian_filter(arr, sigma=[s / sp for s, sp in zip(sigma_mm, spacing, strict=True)][::-1],
                                 mode="nearest")
        out = sitk.GetImageFromArray(smooth.astype(np.float32))
        out.CopyInformation(src)
        src = out
    size, origin = _grid(image, target_mm)
    return sitk.Resample(src, size, sitk.Transform(), sitk.sitkLinear, origin, (target_mm,) * image.GetDimension(),
                         image.GetDirection(), 0.0, sitk.sitkFloat32)


def resample_mask(mask: sitk.Image, target_mm: float) -> sitk.Image:
    """Resample a 0/1 mask to pixels of ``target_mm``: linear interpolation, then >= 0.5 (uint8)."""
    binary = sitk.Cast(mask > 0, sitk.sitkFloat32)
    size, origin = _grid(mask, target_mm)
    out = sitk.Resample(binary, size, sitk.Transform(), sitk.sitkLinear, origin, (target_mm,) * mask.GetDimension(),
                        mask.GetDirection(), 0.0, sitk.sitkFloat32)
    return sitk.Cast(out >= 0.5, sitk.sitkUInt8)


def _write(image: sitk.Image, path: Path) -> None:
    from her2dlr.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        writer = sitk.ImageFileWriter()
        writer.SetImageIO("NrrdImageIO")  # the temporary name has no .nrrd suffix to infer it from
        writer.SetFileName(str(tmp))
        writer.UseCompressionOn()
        writer.Execute(image)


def _resampled_files(row: pd.Series, spacing: float, target_mm: float, out_dir: Path) -> tuple[str, str | None]:
    from her2dlr.io.images import read_image, read_mask
    from her2dlr.radiomics.cache import file_fingerprint

    has_mask = not is_missing(row.get("mask"))
    text = f"{file_fingerprint(row['image'])}|{file_fingerprint(row['mask']) if has_mask else ''}|{spacing}|{target_mm}"
    stem = f"{row['case_id']}-{hashlib.blake2b(text.encode(), digest_size=6).hexdigest()}"
    out_image, out_mask = out_dir / f"{stem}.nrrd", out_dir / f"{stem}_mask.nrrd"
    image = None
    if not out_image.is_file():
        image = read_image(row["image"], spacing=spacing)
        _write(resample_image(image, target_mm), out_image)
    if has_mask and not out_mask.is_file():
        image = image if image is not None else read_image(row["image"], spacing=spacing)
        _write(resample_mask(read_mask(row["mask"], image), target_mm), out_mask)
    return str(out_image), (str(out_mask) if has_mask else None)


def apply_pixel_size(rows: pd.DataFrame, plan: PixelSizePlan, out_dir: Path, *, warn: bool = True) -> pd.DataFrame:
    """The rows with the plan applied: resampled copies of images and masks, boxes scaled, spacings set.

    Parameters
    ----------
    rows : DataFrame
        ``case_id``, ``image``, ``mask`` (or missing), ``bbox`` (JSON ``[x, y, w, h]`` or missing),
        ``spacing`` (mm or missing): 2D images.
    plan : PixelSizePlan
        From :func:`plan_pixel_size` on the same rows.
    out_dir : Path
        Where resampled files are written (NRRD, named by a hash of the source files and the
        sizes, so a second run reuses them).
    warn : bool, default True
        Warn with :attr:`PixelSizePlan.note` when something was assumed.

    Returns
    -------
    DataFrame
        A copy of ``rows``; resampled rows point at the new files and have ``spacing`` = the target.
    """
    out = rows.copy()
    spacing = _spacings(out)
    if "spacing" not in out.columns:
        out["spacing"] = np.nan
    out["spacing"] = out["spacing"].astype(object)
    if plan.target_mm is None:
        out["spacing"] = np.nan  # pixels as pixels on both sides
    else:
        target = plan.target_mm
        out_dir.mkdir(parents=True, exist_ok=True)
        for idx, row in out.iterrows():
            s = spacing.get(idx)
            if pd.isna(s) or s <= 0 or abs(s / target - 1.0) <= TOLERANCE:
                out.at[idx, "spacing"] = target
                continue
            image, mask = _resampled_files(row, float(s), target, out_dir)
            out.at[idx, "image"] = image
            if mask is not None:
                out.at[idx, "mask"] = mask
            box = parse_bbox(row.get("bbox")) if not is_missing(row.get("bbox")) else None
            if box is not None:
                k = float(s) / target
                out.at[idx, "bbox"] = json.dumps([round(v * k, 3) for v in box])
            out.at[idx, "spacing"] = target
    out["spacing"] = pd.to_numeric(out["spacing"], errors="coerce")
    if warn and plan.assumption:
        warnings.warn(f"Pixel size: {plan.note}", UserWarning, stacklevel=2)
    return out
