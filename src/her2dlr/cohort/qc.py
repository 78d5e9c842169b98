"""Cohort quality control: readable images and masks, lesion policy, duplicates, groups.

:func:`run_qc` reads every image and mask once (in parallel with joblib when ``n_jobs > 1``)
and checks, per manifest row:

* the image can be read; colour images (RGB, RGBA) are converted to grey and recorded;
* each mask can be read, has the image's size, holds only 0/1/255 and is not empty; a volume's
  mask must lie on its image's grid (spacing, origin, direction too), or is resampled onto it
  when ``resample_mask`` is set;
* a box (``[x, y, w, h]`` on an image, ``[x, y, z, w, h, d]`` on a volume) must have the
  image's form and reach into it;
* how many lesions the masks hold (connected components of their union, 8-connected,
  ignoring specks smaller than ``min_lesion_pixels``), resolved by the lesion policy:
  ``largest`` keeps the largest lesion, ``union`` keeps them all, ``each`` makes one row per
  lesion (``case_id`` ``<case>#<k>``, largest first);
* exact and near duplicates (:mod:`her2dlr.cohort.duplicates`), joined with the rows of each
  patient into ``group``, so splitting by group also splits by patient.

Rows without an image (a feature-only cohort, whose features come from tables the study
brings) are not read; given those tables (``features``), rows with identical feature vectors
are exact duplicates (method ``identical features``) and a row missing from a table is
excluded.

Problems never raise: the row gets ``include=False`` and an ``exclude_reason`` naming the
file and what was expected. Rows already excluded (``include`` False) stay excluded.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import SimpleITK as sitk
from joblib import Parallel, delayed
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from her2dlr.cohort.duplicates import (
    DEFAULT_CANDIDATE_DISTANCE,
    DEFAULT_NEAR_DISTANCE,
    DEFAULT_OVERLAP_NCC,
    PAIR_DTYPES,
    Fingerprint,
    connected_groups,
    find_duplicate_pairs,
    fingerprint,
)
from her2dlr.cohort.manifest import Manifest
from her2dlr.cohort.video import VIDEO_MODALITIES
from her2dlr.errors import InputError, nearest
from her2dlr.io.atomic import atomic_path, write_csv_atomic, write_text_atomic
from her2dlr.io.cells import is_missing, parse_bbox
from her2dlr.io.images import (
    bbox_mask,
    check_mask,
    mask_geometry_differences,
    read_image_and_channels,
    read_mask_array,
    resample_mask_onto,
    sitk_file_name,
)
from her2dlr.io.profile import pixel_bits
from her2dlr.runfolder import QC_PAIRS, QC_SUMMARY_JSON, QC_SUMMARY_TEXT, QC_TABLE

__all__ = ["LESION_POLICIES", "MIN_LESION_PIXELS", "QCResult", "run_qc"]

LesionPolicy = Literal["largest", "union", "each"]
LESION_POLICIES: tuple[str, ...] = ("largest", "union", "each")
MIN_LESION_PIXELS = 10
"""Connected components smaller than this (pixels or voxels) are specks, not lesions."""

QC_TABLE_COLUMNS = [
    "case_id", "patient_id", "image", "readable", "channels", "bits", "size", "n_masks", "n_lesions",
    "mask_problems", "mask", "phash", "exact_dup_group", "near_dup_group", "group", "group_size",
    "include", "exclude_reason",
]


# --------------------------------------------------------------------------- one row
@dataclass
class _RowReport:
    """What the worker found for one manifest row."""

    readable: bool = False
    channels: int | None = None
    bits: int | None = None
    shape: tuple[int, ...] | None = None
    fingerprint: Fingerprint | None = None
    n_masks: int = 0
    n_lesions: int | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)
    # (case_id suffix number or None, resolved mask path or None) for each output row
    outputs: list[tuple[int | None, str | None]] = field(default_factory=lambda: [(None, None)])
    derived: int = 0  # masks written under derived_mask_dir


def _derived_path(case_id: str, directory: Path, ndim: int) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", case_id).strip("_") or "case"
    digest = hashlib.sha1(case_id.encode()).hexdigest()[:8]
    return directory / f"{slug}-{digest}_mask{'.png' if ndim == 2 else '.nrrd'}"


def _write_mask(mask: np.ndarray, target: Path, reference: sitk.Image) -> str:
    """Write a binary mask atomically: PNG 0/255 for 2D, compressed NRRD 0/1 for 3D."""
    with atomic_path(target) as tmp:
        if mask.ndim == 2:
            Image.fromarray(mask.astype(np.uint8) * 255).save(tmp, format="PNG")
        else:
            out = sitk.GetImageFromArray(mask.astype(np.uint8))
            out.CopyInformation(reference)
            sitk.WriteImage(out, str(tmp), True, imageIO="NrrdImageIO")
    return str(target)


def _resolve_lesions(
    report: _RowReport, union: np.ndarray, masks: list[str], case_id: str, image: sitk.Image,
    policy: str, min_pixels: int, derived_dir: Path, rewrite: bool = False,
) -> None:
    structure = ndimage.generate_binary_structure(union.ndim, union.ndim)
    labels, n_components = ndimage.label(union, structure=structure)
    sizes = np.bincount(labels.ravel(), minlength=n_components + 1)[1:]
    lesions = [int(k) + 1 for k in np.argsort(-sizes, kind="stable") if sizes[k] >= min_pixels]
    report.n_lesions = len(lesions)
    if not lesions:
        report.problems.append((
            "mask_specks",
            f"mask(s) {', '.join(masks)} hold only specks smaller than {min_pixels} pixels "
            f"(largest {int(sizes.max())}); expected a lesion",
        ))
        return
    if policy == "each" and len(lesions) > 1:
        keep_sets = [[k] for k in lesions]
    elif policy == "largest":
        keep_sets = [lesions[:1]]
    else:
        keep_sets = [lesions]
    unchanged = not rewrite and len(masks) == 1 and len(keep_sets) == 1 and len(keep_sets[0]) == n_components
    if unchanged:
        report.outputs = [(None, masks[0])]
        return
    report.outputs = []
    for n, keep in enumerate(keep_sets, start=1):
        suffix = n if len(keep_sets) > 1 else None
        out_id = case_id if suffix is None else f"{case_id}#{suffix}"
        target = _derived_path(out_id, derived_dir, union.ndim)
        report.outputs.append((suffix, _write_mask(np.isin(labels, keep), target, image)))
        report.derived += 1


def _inspect_video(image_path: str) -> _RowReport:
    """A video row: the clip must open and give a first frame, which stands for it in the duplicate search."""
    from her2dlr.io.video import frame_grey, open_video

    report = _RowReport()
    try:
        reader = open_video(image_path)
        first = next(iter(reader))
    except Exception as exc:  # any decoder failure is a property of the file, not a crash
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        report.problems.append(("image_unreadable", detail if image_path in detail else
                                f"video {image_path} cannot be read: {detail}"))
        return report
    grey = frame_grey(first)
    report.readable = True
    report.channels = 1 if first.ndim == 2 else int(first.shape[-1])
    report.shape = tuple(int(v) for v in grey.shape)
    report.fingerprint = fingerprint(grey)
    return report


def _inspect_row(
    case_id: str, image_path: str, masks: list[str], bbox: Any, *, policy: str,
    min_pixels: int, derived_dir: Path, video: bool = False, resample_mask: bool = False,
) -> _RowReport:
    """Read one row's image and masks once and report what is wrong (never raises)."""
    if video:
        return _inspect_video(image_path)
    report = _RowReport(n_masks=len(masks))
    try:
        image, report.channels = read_image_and_channels(image_path)
        grey = sitk.GetArrayFromImage(image)
    except Exception as exc:  # any decoder failure is a property of the file, not a crash
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if image_path not in detail:
            detail = f"image {image_path} cannot be read: {detail}"
        report.problems.append(("image_unreadable", detail))
        return report
    report.readable = True
    report.bits = pixel_bits(image_path)
    report.shape = tuple(int(s) for s in grey.shape)
    if grey.ndim not in (2, 3):
        report.problems.append(("image_shape", f"image {image_path} has shape {grey.shape}; expected 2D or 3D"))
        return report
    report.fingerprint = fingerprint(grey)

    union = np.zeros(grey.shape, dtype=bool)
    resampled = False
    for mask_path in masks:
        try:
            arr, moved = _mask_on_grid(mask_path, image, image_path, resample_mask)
        except _OffGrid as exc:
            report.problems.append(("mask_geometry", str(exc)))
            continue
        except Exception as exc:
            message = f"mask {mask_path} of image {image_path} cannot be read: {exc}"
            report.problems.append(("mask_unreadable", message))
            continue
        resampled |= moved
        found = check_mask(arr, grey.shape, mask_path)
        report.problems.extend(found)
        if not found:
            union |= arr > 0
    if masks and not report.problems:
        _resolve_lesions(report, union, masks, case_id, image, policy, min_pixels, derived_dir, rewrite=resampled)
    if bbox is not None:
        try:
            bbox_mask(image, bbox)
        except InputError as exc:
            report.problems.append(("bbox_invalid", f"bbox of image {image_path}: {exc}"))
    return report


class _OffGrid(InputError):
    """A volume's mask on another grid than its image."""


def _mask_on_grid(mask_path: str, image: sitk.Image, image_path: str, resample: bool) -> tuple[np.ndarray, bool]:
    """A mask file as an array on its image's grid, and whether it had to be resampled onto it.

    A volume's mask that lies on another grid (size, spacing, origin or direction) is refused
    (:class:`_OffGrid` naming both files) unless ``resample``: then it is taken onto the
    image's grid by physical position (nearest neighbour).
    """
    differences = mask_geometry_differences(mask_path, image)
    if not differences:
        return read_mask_array(mask_path), False
    if not resample:
        raise _OffGrid(f"mask {mask_path} does not lie on the grid of its image {image_path} "
                         f"({'; '.join(differences)}). Write the mask with the image's geometry, or set "
                         "qc.resample_mask: true to resample it onto the image by physical position.")
    mask = sitk.ReadImage(sitk_file_name(mask_path))
    if mask.GetNumberOfComponentsPerPixel() > 1:
        raise InputError(f"mask {mask_path} has {mask.GetNumberOfComponentsPerPixel()} channels; a volume mask has one.")
    return sitk.GetArrayFromImage(resample_mask_onto(mask, image)), True


# --------------------------------------------------------------------------- manifest cells
def _mask_list(row: pd.Series) -> tuple[list[str], str | None]:
    """The row's mask files from ``masks`` (JSON list), else from ``mask``; plus a problem."""
    cell = row.get("masks")
    if isinstance(cell, (list, tuple, np.ndarray)):
        return [str(m) for m in cell], None
    if not is_missing(cell):
        try:
            value = json.loads(str(cell))
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return [], f"masks cell {cell!r} is not a JSON list of file paths"
        return value, None
    single = row.get("mask")
    return ([] if is_missing(single) else [str(single)]), None


def _bbox(row: pd.Series) -> tuple[list[float] | None, str | None]:
    """The row's box ``[x, y, w, h]`` (or None), plus a problem when the cell is malformed."""
    try:
        box = parse_bbox(row.get("bbox"), where="bbox cell")
    except InputError as exc:
        return None, str(exc)
    return (None if box is None else list(box)), None


def _was_included(table: pd.DataFrame) -> pd.Series:
    """``include`` as given; missing values (QC has not decided yet) count as included."""
    if "include" not in table.columns:
        return pd.Series(True, index=table.index)
    return table["include"].map(lambda v: True if pd.isna(v) else bool(v)).astype(bool)


def _nonsingleton(labels: np.ndarray) -> pd.Series:
    """Renumber groups of two or more 0, 1, ...; singletons get <NA>."""
    counts = np.bincount(labels)
    out = pd.Series(pd.NA, index=range(len(labels)), dtype="Int64")
    multi = counts[labels] >= 2
    if multi.any():
        _, first, inverse = np.unique(labels[multi], return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first))
        out[multi] = rank[inverse]
    return out


def _patient_pairs(patient_ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Pairs chaining the rows of each patient (rows without a patient id stay alone)."""
    codes = pd.factorize(patient_ids, use_na_sentinel=True)[0]
    order = np.argsort(codes, kind="stable")
    same = (codes[order][1:] == codes[order][:-1]) & (codes[order][1:] >= 0)
    return order[:-1][same], order[1:][same]


def _feature_row_reports(table: pd.DataFrame, has_image: pd.Series,
                         features: dict[str, pd.DataFrame] | None) -> dict[int, _RowReport]:
    """Reports of the rows without an image: fine, or excluded when a feature table lacks the case
    (the tables are joined by case id, so such a case would have no features)."""
    out: dict[int, _RowReport] = {}
    ids = {name: set(t.index.astype(str)) for name, t in (features or {}).items()}
    for k in np.flatnonzero(~has_image.to_numpy()):
        report = _RowReport(readable=False)
        case = str(table.at[k, "case_id"])
        lacking = sorted(name for name, known in ids.items() if case not in known)
        if lacking:
            report.problems.append(("no_features", f"case {case} has no row in the feature table(s) {lacking}"))
        out[int(k)] = report
    return out


def _identical_feature_pairs(table: pd.DataFrame, has_image: pd.Series,
                             features: dict[str, pd.DataFrame] | None) -> pd.DataFrame:
    """Pairs of image-less rows whose feature vectors (all tables joined) are identical."""
    empty = pd.DataFrame([], columns=list(PAIR_DTYPES)).astype(PAIR_DTYPES)
    if not features or has_image.all():
        return empty
    joined = pd.concat([t.add_prefix(f"{name}:") for name, t in features.items()], axis=1, join="inner")
    rows = pd.Series(np.flatnonzero(~has_image.to_numpy()))
    ids = table["case_id"].astype(str).to_numpy()[rows]
    present = pd.Series(ids).isin(joined.index.astype(str)).to_numpy()
    rows, ids = rows[present].to_numpy(), ids[present]
    if not len(rows):
        return empty
    values = joined.loc[ids].round(10)
    keys = pd.util.hash_pandas_object(values, index=False).to_numpy()
    found = []
    for key in pd.unique(keys[pd.Series(keys).duplicated(keep=False).to_numpy()]):
        same = rows[keys == key]
        found += [(int(same[0]), int(other)) for other in same[1:]]
    if not found:
        return empty
    i, j = zip(*found)
    return pd.DataFrame({"i": i, "j": j, "exact": True, "distance": 0, "dhash_distance": 0,
                         "overlap_ncc": np.nan, "method": "identical features"}).astype(PAIR_DTYPES)


# --------------------------------------------------------------------------- result
@dataclass
class QCResult:
    """Outcome of :func:`run_qc`.

    Attributes
    ----------
    manifest : Manifest
        New manifest with ``mask, group, include, exclude_reason, n_lesions, channels, width,
        height, phash, pixel_sha1`` filled (one row per lesion under policy ``each``).
    table : DataFrame of shape (n_input_rows, n_columns)
        One row per input row: what was read and found (``QC_TABLE_COLUMNS``).
    duplicate_pairs : DataFrame of shape (n_pairs, 10)
        ``case_a, case_b, distance, dhash_distance, overlap_ncc, exact, method, label_a,
        label_b, cross_label``.
    summary : dict
        Counts: ``n_rows``, ``n_output_rows``, ``n_included``, ``n_excluded``,
        ``excluded_by_reason`` (rows per problem code; a row may have several),
        ``exact_duplicate_groups``, ``near_duplicate_groups`` (groups of two or more images),
        ``rows_in_duplicate_groups``, ``duplicate_pairs``, ``pairs_by_method``,
        ``cross_label_pairs``, ``rgb_converted``, ``multi_lesion_rows``, ``n_groups``,
        ``label_balance`` (included rows per label), plus ``settings`` and ``seconds``.
    """

    manifest: Manifest
    table: pd.DataFrame
    duplicate_pairs: pd.DataFrame
    summary: dict[str, Any]

    def summary_text(self) -> str:
        """A short human-readable account of the QC."""
        s = self.summary
        reasons = ", ".join(f"{k} {v}" for k, v in s["excluded_by_reason"].items()) or "none"
        methods = ", ".join(f"{v} {k}" for k, v in s["pairs_by_method"].items()) or "none"
        labels = ", ".join(f"{k} {v}" for k, v in s["label_balance"].items()) or "no label column"
        lines = [
            f"QC of {s['n_rows']} rows (lesion policy '{s['settings']['lesion_policy']}', "
            f"near-duplicate distance {s['settings']['near_duplicate_distance']} bits): "
            f"{s['n_output_rows']} manifest rows",
            f"  included {s['n_included']}, excluded {s['n_excluded']} ({reasons})",
            f"  colour images converted to grey: {s['rgb_converted']}; multi-lesion rows: "
            f"{s['multi_lesion_rows']}; included rows with neither mask nor box: {s['rows_without_roi']}",
            f"  duplicates: {s['exact_duplicate_groups']} exact groups, {s['near_duplicate_groups']} "
            f"near-duplicate groups (size >= 2) holding {s['rows_in_duplicate_groups']} rows; "
            f"{s['duplicate_pairs']} pairs ({methods})",
            f"  cross-label pairs: {s['cross_label_pairs']}",
            f"  groups (duplicates and patients joined): {s['n_groups']} for {s['n_patients']} patients",
            f"  labels of included rows: {labels}",
        ]
        if s.get("rows_without_image"):
            lines.append(f"  rows without an image (features from the study's tables): {s['rows_without_image']}")
        for source, columns in (s.get("missing_cells") or {}).items():
            read = "; ".join(f"{col}: " + ", ".join(f"{tok!r} x{n}" for tok, n in toks.items())
                             for col, toks in columns.items())
            lines.append(f"  cells read as missing in {source}: {read}")
        across = s.get("cross_centre_pairs") or []
        if across:
            lines.append(f"  WARNING: {len(across)} duplicate pair(s) across centres; a split by centre cannot move "
                         "images between centres, so check they are different lesions:")
            lines += [f"    {p['image_a']} ({p['centre_a']}) ~ {p['image_b']} ({p['centre_b']}), {p['method']} "
                      f"distance {p['distance']}" for p in across[:20]]
        excluded = self.excluded_cases()
        if len(excluded):
            lines.append(f"  excluded cases ({len(excluded)}; all in qc.csv):")
            lines += [f"    {r.case_id}: {r.exclude_reason}" for r in excluded.head(20).itertuples()]
            if len(excluded) > 20:
                lines.append(f"    ... and {len(excluded) - 20} more")
        lines.append(f"  {s['seconds']:.1f} s")
        return "\n".join(lines) + "\n"

    def excluded_cases(self) -> pd.DataFrame:
        """``case_id, exclude_reason`` of every manifest row left out (by the label rule or QC)."""
        t = self.manifest.table
        out = t.loc[~t["include"].astype(bool), ["case_id", "exclude_reason"]]
        return out.reset_index(drop=True)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``qc.csv``, ``qc_pairs.csv``, ``qc_summary.txt`` and ``qc_summary.json`` atomically.

        Returns
        -------
        dict
            File name -> path written.
        """
        out_dir = Path(out_dir)
        return {
            QC_TABLE: write_csv_atomic(self.table, out_dir / QC_TABLE),
            QC_PAIRS: write_csv_atomic(self.duplicate_pairs, out_dir / QC_PAIRS),
            QC_SUMMARY_TEXT: write_text_atomic(out_dir / QC_SUMMARY_TEXT, self.summary_text()),
            QC_SUMMARY_JSON: write_text_atomic(
                out_dir / QC_SUMMARY_JSON, json.dumps(self.summary, indent=2, default=str)
            ),
        }

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"QCResult({s['n_rows']} rows, {s['n_included']} included, "
            f"{s['near_duplicate_groups']} duplicate groups, {s['cross_label_pairs']} cross-label pairs)"
        )


# --------------------------------------------------------------------------- run
def _check_arguments(manifest: Manifest, lesion_policy: str, near_duplicate_distance: int,
                     overlap_ncc: float | None, min_lesion_pixels: int, label_column: str | None) -> str | None:
    """Refuse bad arguments (naming the parameter and what is allowed); return the label column."""
    if lesion_policy not in LESION_POLICIES:
        raise InputError(
            f"The 'lesion_policy' parameter of run_qc must be one of {list(LESION_POLICIES)}. "
            f"Got {lesion_policy!r} instead.{nearest(lesion_policy, LESION_POLICIES)}"
        )
    distance = near_duplicate_distance
    if isinstance(distance, bool) or not isinstance(distance, (int, np.integer)) or not 0 <= distance <= 64:
        raise InputError(
            "The 'near_duplicate_distance' parameter of run_qc must be an int from 0 to 64 "
            f"(bits of the 64-bit perceptual hash). Got {near_duplicate_distance!r} instead."
        )
    if overlap_ncc is not None and not (isinstance(overlap_ncc, (int, float)) and 0 < overlap_ncc <= 1):
        raise InputError(
            "The 'overlap_ncc' parameter of run_qc must be a correlation in (0, 1] or None. "
            f"Got {overlap_ncc!r} instead."
        )
    if isinstance(min_lesion_pixels, bool) or not isinstance(min_lesion_pixels, (int, np.integer)) \
            or min_lesion_pixels < 1:
        raise InputError(
            f"The 'min_lesion_pixels' parameter of run_qc must be an int >= 1. Got {min_lesion_pixels!r} instead."
        )
    columns = list(manifest.table.columns)
    if label_column is None:
        return "label" if "label" in columns else None
    if label_column not in columns:
        raise InputError(
            f"label_column {label_column!r} is not a manifest column; columns are {columns}."
            f"{nearest(label_column, columns)}"
        )
    return label_column


def run_qc(
    manifest: Manifest,
    *,
    lesion_policy: LesionPolicy = "largest",
    derived_mask_dir: str | Path,
    near_duplicate_distance: int = DEFAULT_NEAR_DISTANCE,
    overlap_ncc: float | None = DEFAULT_OVERLAP_NCC,
    label_column: str | None = None,
    min_lesion_pixels: int = MIN_LESION_PIXELS,
    n_jobs: int = 1,
    progress: bool = True,
    features: dict[str, pd.DataFrame] | None = None,
    resample_mask: bool = False,
) -> QCResult:
    """Check every row of a manifest, resolve lesions and find duplicate groups.

    Parameters
    ----------
    manifest : Manifest
        Rows with at least ``case_id, patient_id, image``; mask files in ``masks`` (JSON list,
        may be ``"[]"``) or ``mask``; optional ``bbox`` (JSON ``[x, y, w, h]``) and ``include``.
    lesion_policy : {"largest", "union", "each"}
        What to keep when the masks hold several lesions.
    derived_mask_dir : path-like
        Where resolved masks are written (PNG 0/255, NRRD for volumes) when they differ from
        the single given file.
    near_duplicate_distance : int, default 10
        Largest perceptual-hash Hamming distance (bits of 64) of a near duplicate; tuned on
        BUSI (see :mod:`her2dlr.cohort.duplicates`).
    overlap_ncc : float or None, default 0.9
        Smallest overlap correlation for a shifted crop of the same scan; None turns the
        crop check off.
    label_column : str, optional
        Column compared across duplicate pairs (default ``label`` when present).
    min_lesion_pixels : int, default 10
        Components smaller than this are ignored when counting lesions.
    n_jobs : int, default 1
        Parallel workers for reading (joblib; -1: all cores).
    progress : bool, default True
        Show a progress bar.
    features : dict of str to DataFrame, optional
        Feature tables (name -> table indexed by case id) of rows without images: identical
        feature rows are exact duplicates; a row missing from one of them is excluded.
    resample_mask : bool, default False
        A volume's mask on another grid than its image (size, spacing, origin, direction) is
        resampled onto the image by physical position (nearest neighbour; written under
        ``derived_mask_dir``) instead of excluding the row.

    Returns
    -------
    QCResult

    Raises
    ------
    InputError
        Only for bad arguments (unknown policy, distance, label column); problems with the
        data exclude the row instead.
    """
    start = time.perf_counter()
    label_column = _check_arguments(
        manifest, lesion_policy, near_duplicate_distance, overlap_ncc, min_lesion_pixels, label_column
    )
    table = manifest.table.reset_index(drop=True)
    derived_dir = Path(derived_mask_dir)
    cells = [(_mask_list(row), _bbox(row)) for _, row in table.iterrows()]
    has_image = ~table["image"].map(is_missing)
    is_video = (table["modality"].astype(str).isin(VIDEO_MODALITIES) if "modality" in table
                else pd.Series(False, index=table.index))
    inspect = delayed(_inspect_row)
    jobs = [
        inspect(str(row["case_id"]), str(row["image"]), masks, bbox, policy=lesion_policy,
                min_pixels=min_lesion_pixels, derived_dir=derived_dir, video=bool(video), resample_mask=resample_mask)
        for (_, row), ((masks, _), (bbox, _)), image, video in zip(table.iterrows(), cells, has_image, is_video)
        if image
    ]
    bar = tqdm(total=len(jobs), desc="QC", unit="image", disable=not progress or not jobs)
    read: list[_RowReport] = []
    if n_jobs == 1:
        for fn, args, kwargs in jobs:
            read.append(fn(*args, **kwargs))
            bar.update()
    elif jobs:
        for report in Parallel(n_jobs=n_jobs, return_as="generator")(jobs):
            read.append(report)
            bar.update()
    bar.close()
    feature_rows = _feature_row_reports(table, has_image, features)
    read_iter = iter(read)
    reports = [next(read_iter) if image else feature_rows[k] for k, image in enumerate(has_image)]
    for report, case_id, ((_, mask_err), (_, bbox_err)) in zip(reports, table["case_id"], cells):
        for code, err in (("masks_cell", mask_err), ("bbox_invalid", bbox_err)):
            if err:
                report.problems.append((code, f"row {case_id}: {err}"))

    _flag_bit_depths(reports, table["image"])
    pairs = find_duplicate_pairs(
        [r.fingerprint for r in reports], near_distance=near_duplicate_distance,
        overlap_ncc=overlap_ncc, candidate_distance=DEFAULT_CANDIDATE_DISTANCE,
    )
    feature_pairs = _identical_feature_pairs(table, has_image, features)
    if len(feature_pairs):
        pairs = pd.concat([pairs, feature_pairs], ignore_index=True).astype(PAIR_DTYPES)
    n = len(table)
    exact = pairs.loc[pairs["exact"].to_numpy(bool)]
    exact_groups = connected_groups(n, exact["i"], exact["j"])
    near_groups = connected_groups(n, pairs["i"], pairs["j"])
    pi, pj = _patient_pairs(table["patient_id"])
    groups = connected_groups(
        n, np.concatenate([pairs["i"].to_numpy(int), pi]), np.concatenate([pairs["j"].to_numpy(int), pj])
    )

    qc_table = _qc_table(table, reports, exact_groups, near_groups, groups)
    pair_table = _pair_table(table, pairs, label_column)
    out_manifest = _output_manifest(manifest, table, reports, qc_table)
    summary = _summary(qc_table, pair_table, out_manifest, reports, near_groups, exact_groups,
                       label_column, _was_included(table))
    summary["settings"] = {
        "lesion_policy": lesion_policy, "near_duplicate_distance": int(near_duplicate_distance),
        "overlap_ncc": overlap_ncc, "candidate_dhash_distance": DEFAULT_CANDIDATE_DISTANCE,
        "min_lesion_pixels": int(min_lesion_pixels), "label_column": label_column, "resample_mask": resample_mask,
        "hash": "imagehash.phash 64-bit on the grey image (middle slice of volumes)",
    }
    summary["seconds"] = round(time.perf_counter() - start, 2)
    out_manifest.meta["qc_result"] = {
        k: summary[k] for k in ("settings", "n_rows", "n_included", "n_groups", "cross_label_pairs")
    }
    return QCResult(manifest=out_manifest, table=qc_table, duplicate_pairs=pair_table, summary=summary)


def _flag_bit_depths(reports: list[_RowReport], images: pd.Series) -> None:
    """Exclude images stored with another bit depth than most of the cohort: their grey levels are on another scale.

    A 16-bit export among 8-bit images gives first-order and texture features hundreds of times
    larger; no rule can tell which of the 65,536 levels match which of the 256, so the image is
    excluded with the reason rather than rescaled by a guess.
    """
    depths = Counter(r.bits for r in reports if r.bits is not None)
    if len(depths) < 2:
        return
    usual, count = depths.most_common(1)[0]
    for report, image in zip(reports, images):
        if report.bits is not None and report.bits != usual:
            report.problems.append(("bit_depth", f"image {image} is {report.bits}-bit while {count} of the cohort's "
                                    f"{sum(depths.values())} images are {usual}-bit: its grey levels are on another "
                                    "scale. Export it like the others."))


def _qc_table(table: pd.DataFrame, reports: list[_RowReport], exact_groups: np.ndarray,
              near_groups: np.ndarray, groups: np.ndarray) -> pd.DataFrame:
    before = _was_included(table)
    old_reason = table.get("exclude_reason", pd.Series(pd.NA, index=table.index))
    include, reasons = [], []
    for k, r in enumerate(reports):
        parts = [] if before[k] or pd.isna(old_reason[k]) else [str(old_reason[k])]
        parts += [message for _, message in r.problems]
        include.append(bool(before[k]) and not r.problems)
        reasons.append("; ".join(parts) if parts else pd.NA)
    group_size = np.bincount(groups)[groups]
    return pd.DataFrame({
        "case_id": table["case_id"].to_numpy(),
        "patient_id": table["patient_id"].to_numpy(),
        "image": table["image"].to_numpy(),
        "readable": [r.readable for r in reports],
        "channels": pd.array([r.channels for r in reports], dtype="Int64"),
        "bits": pd.array([r.bits for r in reports], dtype="Int64"),
        "size": ["x".join(str(s) for s in r.shape[::-1]) if r.shape else pd.NA for r in reports],
        "n_masks": [r.n_masks for r in reports],
        "n_lesions": pd.array([r.n_lesions for r in reports], dtype="Int64"),
        "mask_problems": [
            "; ".join(m for c, m in r.problems if c.startswith("mask")) or pd.NA for r in reports
        ],
        "mask": ["; ".join(p for _, p in r.outputs if p) or pd.NA for r in reports],
        "phash": [r.fingerprint.phash_hex if r.fingerprint else pd.NA for r in reports],
        "exact_dup_group": _nonsingleton(exact_groups).to_numpy(),
        "near_dup_group": _nonsingleton(near_groups).to_numpy(),
        "group": groups,
        "group_size": group_size,
        "include": include,
        "exclude_reason": reasons,
    }, columns=QC_TABLE_COLUMNS)


def _pair_table(table: pd.DataFrame, pairs: pd.DataFrame, label_column: str | None) -> pd.DataFrame:
    i, j = pairs["i"].to_numpy(int), pairs["j"].to_numpy(int)
    case = table["case_id"].to_numpy()
    if label_column is not None:
        label_a = table[label_column].to_numpy()[i]
        label_b = table[label_column].to_numpy()[j]
        cross = [not (pd.isna(a) or pd.isna(b)) and str(a) != str(b) for a, b in zip(label_a, label_b)]
    else:
        label_a = label_b = np.full(len(i), pd.NA, dtype=object)
        cross = [False] * len(i)
    return pd.DataFrame({
        "case_a": case[i], "case_b": case[j], "distance": pairs["distance"].to_numpy(int),
        "dhash_distance": pairs["dhash_distance"].to_numpy(int),
        "overlap_ncc": pairs["overlap_ncc"].to_numpy(float).round(4),
        "exact": pairs["exact"].to_numpy(bool), "method": pairs["method"].to_numpy(),
        "label_a": label_a, "label_b": label_b, "cross_label": np.asarray(cross, dtype=bool),
    })


def _output_manifest(manifest: Manifest, table: pd.DataFrame, reports: list[_RowReport],
                     qc_table: pd.DataFrame) -> Manifest:
    out = table.copy()
    out["group"] = qc_table["group"].to_numpy()
    out["include"] = qc_table["include"].to_numpy()
    out["exclude_reason"] = qc_table["exclude_reason"].astype(object).to_numpy()
    out["n_lesions"] = qc_table["n_lesions"].to_numpy()
    out["channels"] = qc_table["channels"].to_numpy()
    out["width"] = pd.array([r.shape[-1] if r.shape else None for r in reports], dtype="Int64")
    out["height"] = pd.array([r.shape[-2] if r.shape else None for r in reports], dtype="Int64")
    if any(r.shape and len(r.shape) == 3 for r in reports):
        depth = [r.shape[0] if r.shape and len(r.shape) == 3 else None for r in reports]
        out["depth"] = pd.array(depth, dtype="Int64")
    out["phash"] = qc_table["phash"].astype(object).to_numpy()
    out["pixel_sha1"] = [r.fingerprint.sha1 if r.fingerprint else None for r in reports]
    out["mask"] = pd.Series([pd.NA] * len(out), dtype=object)
    rows = []
    for k, r in enumerate(reports):
        base = out.iloc[k]
        for suffix, mask_path in r.outputs:
            row = base.copy()
            row["mask"] = mask_path if mask_path else pd.NA
            if suffix is not None:
                row["case_id"] = f"{base['case_id']}#{suffix}"
            rows.append(row)
    expanded = pd.DataFrame(rows, columns=out.columns).reset_index(drop=True).astype(out.dtypes.to_dict())
    return manifest.copy(expanded)


def _summary(qc_table: pd.DataFrame, pairs: pd.DataFrame, out: Manifest, reports: list[_RowReport],
             near_groups: np.ndarray, exact_groups: np.ndarray, label_column: str | None,
             was_included: pd.Series) -> dict[str, Any]:
    by_reason: Counter[str] = Counter()
    for r, before in zip(reports, was_included):
        codes = {c for c, _ in r.problems}
        by_reason.update(codes)
        if not before:
            by_reason["excluded_before_qc"] += 1
    near_sizes = np.bincount(near_groups)
    exact_sizes = np.bincount(exact_groups)
    included = out.table[out.table["include"].astype(bool)]
    balance: dict[str, int] = {}
    if label_column is not None:
        counts = included[label_column].value_counts(dropna=False)
        balance = {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: str(kv[0]))}
    return {
        "n_rows": len(qc_table),
        "n_output_rows": len(out.table),
        "n_included": int(included.shape[0]),
        "n_excluded": int((~out.table["include"].astype(bool)).sum()),
        "n_input_rows_excluded": int((~qc_table["include"]).sum()),
        "excluded_by_reason": dict(sorted(by_reason.items())),
        "unreadable_images": int((~qc_table["readable"] & qc_table["image"].notna()).sum()),
        "rows_without_image": int(qc_table["image"].isna().sum()),
        "rgb_converted": int((qc_table["channels"].fillna(1) > 1).sum()),
        "multi_lesion_rows": int((qc_table["n_lesions"].fillna(0) > 1).sum()),
        "rows_without_roi": _rows_without_roi(out.table),
        "derived_masks": int(sum(r.derived for r in reports)),
        "exact_duplicate_groups": int((exact_sizes >= 2).sum()),
        "rows_in_exact_duplicate_groups": int(exact_sizes[exact_sizes >= 2].sum()),
        "near_duplicate_groups": int((near_sizes >= 2).sum()),
        "rows_in_duplicate_groups": int(near_sizes[near_sizes >= 2].sum()),
        "largest_duplicate_group": int(near_sizes.max()) if len(near_sizes) else 0,
        "duplicate_pairs": len(pairs),
        "pairs_by_method": {str(k): int(v) for k, v in pairs["method"].value_counts().sort_index().items()},
        "cross_label_pairs": int(pairs["cross_label"].sum()),
        "n_groups": int(qc_table["group"].nunique()),
        "n_patients": int(qc_table["patient_id"].nunique()),
        "label_balance": balance,
    }


def _rows_without_roi(table: pd.DataFrame) -> int:
    """Included rows with neither a mask nor a box (whole-image models only)."""
    has_box = table["bbox"].map(lambda c: not is_missing(c)) if "bbox" in table.columns else False
    has_image = ~table["image"].map(is_missing)
    still = ~table["modality"].astype(str).isin(VIDEO_MODALITIES) if "modality" in table else True
    return int((table["include"].astype(bool) & has_image & still & table["mask"].isna() & ~has_box).sum())
