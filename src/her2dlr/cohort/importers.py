"""Importers that turn a cohort source of the study file into manifest rows.

``folders``  one subfolder per class, ``X.png`` + ``X_mask.png`` / ``X_mask_1.png`` ... (BUSI)
``files``    a flat folder of images or volumes with masks found by a name template (NRRD, NIfTI, DICOM)
``table``    a CSV / XLSX / Parquet table listing image, mask or box, and clinical columns (BrEaST-Lesions-USG)
``dicom``    DCE-MRI studies as DICOM files, de-identified on read (:mod:`her2dlr.cohort.dicom_source`)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from her2dlr.cohort.clinical import clean_missing, infer_clinical_types
from her2dlr.cohort.dicom_source import import_dicom
from her2dlr.cohort.manifest import CORE_COLUMNS, Manifest
from her2dlr.cohort.settings import DicomSource, FilesSource, FolderSource, TableSource
from her2dlr.cohort.video import video_cells, video_row_problems
from her2dlr.errors import InputError, nearest
from her2dlr.io.cells import parse_bbox
from her2dlr.io.tables import numbers_where_numeric, read_table

if TYPE_CHECKING:  # the study model composes every stage; a stage only reads it
    from her2dlr.config import Study

__all__ = ["import_files", "import_folders", "import_sources", "import_table", "missing_cells"]

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def _full_suffix(p: Path) -> str:
    name = p.name.lower()
    for s in VOLUME_SUFFIXES:
        if name.endswith(s):
            return s
    return p.suffix.lower()


def _stem(p: Path) -> str:
    return p.name[: len(p.name) - len(_full_suffix(p))]


def _natural_key(text: str) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _row(case_id: str, image: Path | None, masks: list[Path], src, **extra: object) -> dict[str, object]:
    return {
        "case_id": case_id,
        "patient_id": extra.pop("patient_id", None) or case_id,
        "modality": src.modality,
        "image": str(image.resolve()) if image is not None else None,
        "mask": pd.NA,
        "masks": json.dumps([str(m.resolve()) for m in masks]),
        "bbox": extra.pop("bbox", pd.NA),
        "spacing": extra.pop("spacing", src.spacing_mm if src.spacing_mm else np.nan),
        "centre": extra.pop("centre", None) or src.centre or "centre-1",
        "source": src.name or src.path.name,
        **extra,
    }


def import_folders(src: FolderSource, root: Path) -> pd.DataFrame:
    """Rows of a folder-per-class layout; the subfolder name goes to ``src.label_column``."""
    base = _existing_dir(root / src.path if not src.path.is_absolute() else src.path, "cohort folder")
    classes = src.classes or sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise InputError(f"Folder {base} has no class subfolders (expected e.g. benign/, malignant/).")
    mask_re = re.compile(re.escape(src.mask_suffix) + r"(_\d+)?$")
    rows = []
    for cls in classes:
        folder = base / cls
        if not folder.is_dir():
            raise InputError(f"Class folder {folder} does not exist.{nearest(cls, [p.name for p in base.iterdir()])}")
        files = [p for p in folder.iterdir() if p.is_file() and _full_suffix(p) in src.extensions]
        masks_by_stem: dict[str, list[Path]] = {}
        images = []
        for p in files:
            stem = _stem(p)
            m = mask_re.search(stem)
            if m:
                masks_by_stem.setdefault(stem[: m.start()], []).append(p)
            else:
                images.append(p)
        for img in sorted(images, key=lambda p: _natural_key(p.name)):
            masks = sorted(masks_by_stem.get(_stem(img), []), key=lambda p: _natural_key(p.name))
            rows.append(_row(_stem(img), img, masks, src, **{src.label_column: cls}))
    df = pd.DataFrame(rows)
    if df.empty:
        raise InputError(f"No images with extensions {src.extensions} under {base}/{{{','.join(classes)}}}.")
    dup = df["case_id"].duplicated(keep=False)
    if dup.any():  # same file name in two class folders: keep both, name them by folder
        df.loc[dup, "case_id"] = df.loc[dup, src.label_column] + "/" + df.loc[dup, "case_id"]
        df.loc[dup, "patient_id"] = df.loc[dup, "case_id"]
    return df


def import_files(src: FilesSource, root: Path) -> pd.DataFrame:
    """Rows of a flat folder of images/volumes; masks found by ``src.mask_template``."""
    base = _existing_dir(root / src.path if not src.path.is_absolute() else src.path, "image folder")
    images = sorted((p for p in base.glob(src.image_glob) if p.is_file() or p.is_dir()), key=lambda p: _natural_key(p.name))
    if not images:
        raise InputError(f"No file in {base} matches image_glob '{src.image_glob}'.")
    rows = []
    for img in images:
        stem = _stem(img)
        stem_base = stem.replace(src.strip_from_stem, "") if src.strip_from_stem else stem
        masks = []
        if src.mask_template:
            mask = base / src.mask_template.format(stem=stem, stem_base=stem_base, ext=_full_suffix(img))
            if mask == img:
                continue
            masks = [mask] if mask.exists() else []
        rows.append(_row(stem_base, img, masks, src))
    mask_paths = {json.loads(r["masks"])[0] for r in rows if json.loads(r["masks"])}
    return pd.DataFrame([r for r in rows if r["image"] not in mask_paths])


def _existing_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"The {what} {path} does not exist.")
    if not path.is_dir():
        raise InputError(f"The {what} {path} is not a folder.")
    return path.resolve()


def _split_multi(cell: object, sep: str) -> list[str]:
    if cell is None or cell is pd.NA or (isinstance(cell, float) and np.isnan(cell)):
        return []
    return [part.strip() for part in str(cell).split(sep) if part.strip()]


def _parse_bbox(value: object, where: str, ndim: int | None = None) -> str | None:
    box = parse_bbox(value, where=f"{where}: bounding box", ndim=ndim)
    if box is None:
        return None
    n = len(box) // 2
    if min(box[n:]) <= 0 or min(box[:n]) < 0:
        form = "[x, y, w, h] with x, y >= 0 and w, h > 0" if n == 2 else \
            "[x, y, z, w, h, d] with x, y, z >= 0 and w, h, d > 0"
        raise InputError(f"{where}: bounding box {value!r} must be {form}.")
    return json.dumps(list(box))


def _from_template(template: str, rec: pd.Series, where: str, what: str) -> str:
    """A path made from ``template`` and the row's cells (``{column}`` -> value)."""
    values = {str(k): ("" if pd.isna(v) else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)))
              for k, v in rec.items()}
    try:
        path = template.format_map(values)
    except KeyError as exc:
        raise InputError(f"{what} '{template}' names column {exc.args[0]!r}, which is not in the table. "
                         f"Columns: {list(values)}.{nearest(str(exc.args[0]), values)}") from None
    except (ValueError, IndexError) as exc:
        raise InputError(f"{what} '{template}' is not a valid template ({exc}); write columns as {{Column}}.") from None
    fields = list(re.findall(r"{([^{}]+)}", template))
    empty = [f for f in fields if not values.get(f)]
    if empty:
        raise InputError(f"{where}: {what} '{template}' needs column(s) {empty}, which are empty in this row.")
    return path


def _image_and_masks(src: TableSource, rec: pd.Series, where: str, image_root: Path) -> tuple[Path | None, list[Path]]:
    if src.image_template:
        image: Path | None = image_root / _from_template(src.image_template, rec, where, "image_template")
    elif src.image_column:
        images = _split_multi(rec[src.image_column], src.multi_value_separator)
        if len(images) != 1:
            raise InputError(f"{where}: column '{src.image_column}' must name one image, got {rec[src.image_column]!r}.")
        image = image_root / images[0]
    else:
        image = None
    if src.mask_template:
        masks = [image_root / _from_template(src.mask_template, rec, where, "mask_template")]
    elif src.mask_column:
        masks = [image_root / m for m in _split_multi(rec[src.mask_column], src.multi_value_separator)]
    else:
        masks = []
    return image, masks


def missing_cells(raw: pd.DataFrame, cleaned: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per column, the cell texts read as missing and how often (blank cells are not listed)."""
    out: dict[str, dict[str, int]] = {}
    for col in raw.columns:
        was = raw[col]
        now_missing = cleaned[col].isna() & was.notna() & was.astype(str).str.strip().ne("")
        if now_missing.any():
            counts = was[now_missing].astype(str).str.strip().value_counts()
            out[str(col)] = {str(k): int(v) for k, v in counts.items()}
    return out


def _refuse_missing_files(missing_files: list[str], table_path: Path, src: TableSource, raw: pd.DataFrame) -> None:
    hint = ""
    if src.image_column and raw[src.image_column].astype(str).str.fullmatch(r"[\w-]+").all():
        hint = (f"\nColumn '{src.image_column}' holds ids, not file names: build the paths with image_template "
                f"(e.g. 'images/{{{src.image_column}}}.png'), or leave image_column out for a feature-only cohort.")
    raise InputError(f"{len(missing_files)} file(s) named in {table_path} do not exist:\n  "
                     + "\n  ".join(missing_files[:20]) + hint)


def _row_bbox(src: TableSource, rec: pd.Series, where: str) -> str | None:
    """The row's box as JSON ``[x, y, w, h]`` (``[x, y, z, w, h, d]``) from ``bbox_columns`` or ``bbox_column``
    (None when empty)."""
    ndim = 2 if src.modality == "US-video" else None  # a clip's key-frame box is 2D
    if src.bbox_columns:
        vals = [rec[c] for c in src.bbox_columns]
        if any(pd.isna(v) for v in vals):
            return None
        where = f"{where}, columns {src.bbox_columns}"
        try:
            numbers = [float(v) for v in vals]
        except (TypeError, ValueError):
            raise InputError(f"{where}: bounding box {vals} must be numbers "
                             f"{'x, y, w, h' if len(vals) == 4 else 'x, y, z, w, h, d'}.") from None
        return _parse_bbox(json.dumps(numbers), where, ndim)
    if src.bbox_column:
        return _parse_bbox(rec[src.bbox_column], f"{where}, column '{src.bbox_column}'", ndim)
    return None


def _video_columns(src: TableSource, rec: pd.Series, where: str, root: Path, image: Path | None, bbox: str | None,
                   missing_files: list[str], problems: list[str]) -> dict[str, object]:
    """A video row's ``annotations``, ``key_frame`` and ``fps``; a missing annotations file goes to
    ``missing_files``, what its clip contradicts (key frame, box, annotations) to ``problems``."""
    cells = video_cells(rec, where=where, root=root, annotations_column=src.annotations_column,
                        key_frame_column=src.key_frame_column, fps_column=src.fps_column)
    ann = cells.get("annotations")
    if isinstance(ann, str) and not Path(ann).exists():
        missing_files.append(f"{where}, column '{src.annotations_column}': {ann}")
    elif image is not None and image.exists():
        columns = {"key_frame": src.key_frame_column, "annotations": src.annotations_column,
                   "bbox": ", ".join(f"'{c}'" for c in src.bbox_columns) if src.bbox_columns else f"'{src.bbox_column}'"}
        problems += video_row_problems(image, {**cells, "bbox": bbox}, where=where, columns=columns)
    return cells


def import_table(src: TableSource, root: Path, missing_values: list[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows of a manifest table, plus the types of its clinical columns.

    The cell texts read as missing are in ``df.attrs["missing_cells"]`` (column -> text -> count).
    """
    table_path = (root / src.path) if not src.path.is_absolute() else src.path
    raw = read_table(table_path, sheet=src.sheet, keep_missing_text=True)
    name = f"table {table_path.name}"
    needed = [src.image_column, src.mask_column, src.bbox_column, src.case_id_column, src.patient_id_column,
              src.centre_column, src.spacing_column, src.time_column, src.event_column, src.treatment_column,
              src.annotations_column, src.key_frame_column, src.fps_column,
              *(src.bbox_columns or []), *src.clinical_columns, *src.label_columns]
    for col in [c for c in needed if c]:
        if col not in raw.columns:
            raise InputError(
                f"Column '{col}' is not in {table_path}. Columns: {list(map(str, raw.columns))}."
                f"{nearest(col, map(str, raw.columns))}"
            )
    if raw.empty:
        raise InputError(f"{table_path} has a header but no rows: every case needs one row.")
    image_root = (table_path.parent if src.image_root is None
                  else (src.image_root if src.image_root.is_absolute() else root / src.image_root)).resolve()
    cleaned = raw.copy()
    for col in cleaned.columns:
        if cleaned[col].dtype == object or str(cleaned[col].dtype).startswith(("str", "string")):
            cleaned[col] = clean_missing(cleaned[col], missing_values)
    cleaned = numbers_where_numeric(cleaned)
    typed, types = infer_clinical_types(
        cleaned, src.clinical_columns, declared=src.clinical_types, separator=src.multi_value_separator,
        source=str(table_path), row_offset=2,
    )
    rows, missing_files, video_problems = [], [], []
    for i, rec in typed.iterrows():
        row_no = i + 2  # 1-based, plus the header line, as a spreadsheet shows it
        where = f"{name} row {row_no}"
        image, masks = _image_and_masks(src, cleaned.loc[i] if src.image_template or src.mask_template else rec,
                                        where, image_root)
        for p in [image, *masks]:
            if p is not None and not p.exists():
                missing_files.append(f"{where}: {p}")
        bbox = _row_bbox(src, rec, where)
        video = _video_columns(src, rec, where, image_root, image, bbox, missing_files, video_problems) \
            if src.modality == "US-video" else {}
        spacing = np.nan
        if src.spacing_column and not pd.isna(rec[src.spacing_column]):
            try:
                spacing = float(rec[src.spacing_column]) * (10.0 if src.spacing_unit == "cm" else 1.0)
            except (TypeError, ValueError):
                raise InputError(f"{where}: spacing {rec[src.spacing_column]!r} in '{src.spacing_column}' is not a number.") from None
        elif src.spacing_mm:
            spacing = src.spacing_mm
        if src.case_id_column:
            if pd.isna(rec[src.case_id_column]):
                raise InputError(f"{where}: the case id column '{src.case_id_column}' is empty.")
            case_id = str(rec[src.case_id_column])
        else:
            case_id = _stem(image)  # type: ignore[arg-type]  # the settings require an id without images
        extra = {c: rec[c] for c in dict.fromkeys([*src.clinical_columns, *src.label_columns])}
        for key, col in (("time", src.time_column), ("event", src.event_column), ("treatment", src.treatment_column)):
            if col:
                extra[key] = rec[col]
        rows.append(_row(
            case_id, image, masks, src,
            patient_id=str(rec[src.patient_id_column]) if src.patient_id_column and not pd.isna(rec[src.patient_id_column]) else None,
            centre=str(rec[src.centre_column]) if src.centre_column and not pd.isna(rec[src.centre_column]) else None,
            bbox=bbox if bbox is not None else pd.NA,
            spacing=spacing,
            **video,
            **extra,
        ))
    if missing_files:
        _refuse_missing_files(missing_files, table_path, src, raw)
    if video_problems:
        raise InputError(f"{len(video_problems)} problem(s) with the video rows of {table_path}:\n  "
                         + "\n  ".join(video_problems[:20]))
    df = pd.DataFrame(rows)
    dup = df["case_id"][df["case_id"].duplicated(keep=False)]
    if len(dup):
        raise InputError(
            f"Duplicate case id(s) in {table_path}: {sorted(set(dup))[:10]} at rows {[int(i) + 2 for i in dup.index[:10]]}."
        )
    df.attrs["missing_cells"] = missing_cells(raw, cleaned)
    return df, types


def import_sources(study: Study) -> Manifest:
    """Import every cohort source of the study into one manifest (no QC, no labels, no splits yet)."""
    frames, clinical, types, missing, renamed = [], [], {}, {}, {}
    for src in study.cohort.sources:
        if isinstance(src, FolderSource):
            df = import_folders(src, study.base_dir)
        elif isinstance(src, FilesSource):
            df = import_files(src, study.base_dir)
        elif isinstance(src, DicomSource):
            df, t = import_dicom(src, study.base_dir, study.paths, study.cohort.missing_values)
            clinical += [c for c in src.clinical_columns if c not in clinical]
            types.update(t)
            renamed.update({col: key for key, col in (("time", src.time_column), ("event", src.event_column),
                                                      ("treatment", src.treatment_column)) if col and col != key})
        else:
            df, t = import_table(src, study.base_dir, study.cohort.missing_tokens)
            clinical += [c for c in src.clinical_columns if c not in clinical]
            types.update(t)
            renamed.update({col: key for key, col in (("time", src.time_column), ("event", src.event_column),
                                                      ("treatment", src.treatment_column)) if col and col != key})
            if df.attrs.get("missing_cells"):
                missing[str(src.name or src.path.name)] = df.attrs["missing_cells"]
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    dup = table["case_id"][table["case_id"].duplicated(keep=False)]
    if len(dup):
        sources = table.loc[dup.index, "source"].unique().tolist()
        raise InputError(
            f"Case id(s) {sorted(set(dup))[:10]} appear in more than one source ({sources}); "
            "give the sources distinct case ids (case_id_column) or names."
        )
    ordered = CORE_COLUMNS + [c for c in table.columns if c not in CORE_COLUMNS]
    meta: dict[str, object] = {"source_columns": renamed} if renamed else {}
    if missing:
        meta["missing_cells"] = missing
    return Manifest(table[ordered], clinical_columns=clinical, clinical_types=types, meta=meta)
