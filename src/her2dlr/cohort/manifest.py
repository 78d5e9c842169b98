"""The cohort manifest: one row per image / video / volume, the single source of truth about cases.

Columns (DESIGN data contract):

``case_id``      unique id of the row (str)
``patient_id``   patient the row belongs to; every split is by patient (str)
``modality``     ``"US"`` (2D ultrasound), ``"US-video"`` or ``"MR"`` (3D volume)
``image``        absolute path of the image file (or DICOM folder)
``mask``         absolute path of the lesion mask, or missing when a box is given
``masks``        JSON list of all mask files found for the image (QC resolves them into ``mask``)
``bbox``         JSON ``[x, y, w, h]`` in pixels (``[x, y, z, w, h, d]`` in voxels on a volume), or missing
``spacing``      pixel spacing in mm when known and not stored in the file, else missing
``centre``       acquiring centre (external validation splits by it)
``source``       name of the cohort source the row was imported from
``group``        near-duplicate group (filled by QC); a group never straddles a split
``include``      whether the row enters analyses (QC or the label rule may exclude it)
``exclude_reason`` why not
``label``        target derived by the study's label rule (0/1, or 0/1/2), missing when excluded
``split``        ``"train"`` / ``"test"`` for the hold-out (or by centre)
``fold_r<k>``    outer fold of repetition k of the repeated group k-fold
clinical, label, ``time``/``event``/``treatment`` columns keep their names.

The parquet file carries a JSON metadata block (key ``her2dlr``) naming the clinical columns,
their types, the label rule and the split settings, so later stages need no side files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from her2dlr.errors import InputError
from her2dlr.io.atomic import atomic_path

__all__ = ["AUTO_MASK", "CORE_COLUMNS", "MODALITIES", "Manifest", "automatic_lesion", "use_auto_masks",
           "with_auto_masks"]

CORE_COLUMNS = [
    "case_id",
    "patient_id",
    "modality",
    "image",
    "mask",
    "masks",
    "bbox",
    "spacing",
    "centre",
    "source",
]
MODALITIES = ("US", "US-video", "MR")
META_KEY = b"her2dlr"


#: Column of the automatic lesion mask of a case (out of fold: from a network that never saw the case).
AUTO_MASK = "mask_auto"


def with_auto_masks(table: pd.DataFrame, path: str | os.PathLike[str]) -> pd.DataFrame:
    """``table`` with the ``mask_auto`` column (and ``mask_auto_empty``, ``mask_auto_network``) of ``path``.

    ``path`` is the segmentation stage's ``auto_masks.csv`` (case_id, mask_auto, empty,
    network). A case it does not list gets no automatic mask; an empty prediction stays
    empty (never replaced by the whole image).

    Raises
    ------
    InputError
        ``path`` does not exist (names the command that writes it) or lacks its columns.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"The study uses roi: auto but {p} does not exist: train the segmentation networks first "
                         "(`her2dlr train seg STUDY`).")
    masks = pd.read_csv(p, dtype={"case_id": str})
    missing = [c for c in ("case_id", AUTO_MASK, "empty", "network") if c not in masks.columns]
    if missing:
        raise InputError(f"{p} lacks column(s) {missing}; expected case_id, {AUTO_MASK}, empty, network.")
    masks = masks.set_index("case_id")
    out = table.copy()
    ids = out["case_id"].astype(str)
    out[AUTO_MASK] = ids.map(masks[AUTO_MASK]).astype(object)
    out[f"{AUTO_MASK}_empty"] = ids.map(masks["empty"]).astype("boolean")
    out[f"{AUTO_MASK}_network"] = ids.map(masks["network"]).astype(object)
    return out


def automatic_lesion(table: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The automatic mask of each row of a :func:`with_auto_masks` table (None where empty or absent), and ``empty``."""
    if AUTO_MASK not in table.columns:
        raise InputError("roi: auto needs the automatic masks: load them with with_auto_masks first.")
    flag = f"{AUTO_MASK}_empty"
    empty = table[flag].fillna(True).astype(bool) if flag in table.columns else pd.Series(False, index=table.index)
    empty = empty | table[AUTO_MASK].isna()
    return table[AUTO_MASK].where(~empty, None), empty


def use_auto_masks(table: pd.DataFrame, path: str | os.PathLike[str]) -> pd.DataFrame:
    """``table`` whose lesion is the automatic mask: ``mask`` <- ``mask_auto``, no box.

    A case whose automatic mask is empty or absent is excluded (``include`` false,
    ``exclude_reason`` "no automatic ROI"): it has no lesion to read, and is never given the
    whole image.
    """
    out = with_auto_masks(table, path)
    out["mask"], empty = automatic_lesion(out)
    if "bbox" in out.columns:
        out["bbox"] = None
    include = out["include"].fillna(True).astype(bool) if "include" in out.columns else pd.Series(True, index=out.index)
    out["include"] = include & ~empty
    reason = out["exclude_reason"] if "exclude_reason" in out.columns else pd.Series(None, index=out.index, dtype=object)
    out["exclude_reason"] = reason.where(~(include & empty), "no automatic ROI")
    return out


@dataclass
class Manifest:
    """A cohort table plus what later stages need to know about its columns.

    Attributes
    ----------
    table : DataFrame of shape (n_rows, n_columns)
        One row per image/video/volume, columns as in the module docstring.
    clinical_columns : list of str
        Columns holding clinical variables (names kept as given).
    clinical_types : dict
        ``column -> "numeric" | "categorical" | "multi"`` (multi: several values per cell).
    meta : dict
        Anything else worth keeping: label rule, label classes, split settings, QC settings.
    """

    table: pd.DataFrame
    clinical_columns: list[str] = field(default_factory=list)
    clinical_types: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in ("case_id", "patient_id", "image") if c not in self.table.columns]
        if missing:
            raise InputError(f"Manifest lacks required column(s) {missing}.")
        dup = self.table["case_id"][self.table["case_id"].duplicated(keep=False)]
        if len(dup):
            raise InputError(
                f"Duplicate case_id in the manifest: {sorted(set(dup.astype(str)))[:10]} "
                f"(rows {list(dup.index[:10])}). Every image needs its own case_id."
            )

    # ------------------------------------------------------------------ views
    @property
    def included(self) -> pd.DataFrame:
        """Rows that enter analyses (``include`` true or not yet decided; all rows when QC has not run)."""
        if "include" not in self.table.columns:
            return self.table
        return self.table[self.table["include"].fillna(True).astype(bool)]

    @property
    def fold_columns(self) -> list[str]:
        """Names of the repeated k-fold columns, ``fold_r0``, ``fold_r1``, ..."""
        return sorted(
            (c for c in self.table.columns if c.startswith("fold_r")), key=lambda c: int(c[6:])
        )

    # ------------------------------------------------------------------ I/O
    def _metadata(self) -> dict[str, Any]:
        return {
            "clinical_columns": self.clinical_columns,
            "clinical_types": self.clinical_types,
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike[str], *, csv: bool = True) -> Path:
        """Write ``manifest.parquet`` (and a CSV twin) atomically; return the parquet path."""
        path = Path(path)
        table = pa.Table.from_pandas(_parquet_safe(self.table), preserve_index=False)
        schema_meta = dict(table.schema.metadata or {})
        schema_meta[META_KEY] = json.dumps(self._metadata(), default=str).encode()
        table = table.replace_schema_metadata(schema_meta)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        if csv:
            with atomic_path(path.with_suffix(".csv")) as tmp:
                self.table.to_csv(tmp, index=False)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Manifest:
        """Read a manifest written by :meth:`save` (Parquet), or a plain CSV manifest."""
        path = Path(path)
        if not path.exists():
            raise InputError(f"Manifest not found: {path}. Build the cohort first: `her2dlr cohort qc STUDY` "
                             "(or `her2dlr cohort build STUDY`, the same build with a shorter summary).")
        if path.suffix.lower() == ".csv":
            return cls(pd.read_csv(path, dtype={"case_id": str, "patient_id": str}))
        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(META_KEY)
        info = json.loads(raw) if raw else {}
        return cls(
            table.to_pandas(),
            clinical_columns=list(info.get("clinical_columns", [])),
            clinical_types=dict(info.get("clinical_types", {})),
            meta=dict(info.get("meta", {})),
        )

    def copy(self, table: pd.DataFrame | None = None) -> Manifest:
        """A new manifest with the same column metadata and ``table`` (default: a copy of this one's)."""
        return Manifest(
            self.table.copy() if table is None else table,
            clinical_columns=list(self.clinical_columns),
            clinical_types=dict(self.clinical_types),
            meta=json.loads(json.dumps(self.meta, default=str)),
        )

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        n_inc = len(self.included)
        return (
            f"Manifest({len(self)} rows, {n_inc} included, "
            f"{self.table['patient_id'].nunique()} patients, clinical={self.clinical_columns})"
        )


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Columns of mixed Python types (e.g. BI-RADS 2, 3, '4a') become text so Parquet accepts them."""
    out = df.reset_index(drop=True).copy()
    for col in out.columns:
        if out[col].dtype == object:
            kinds = {type(v) for v in out[col].dropna()}
            if len(kinds) > 1:
                out[col] = out[col].map(lambda v: v if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v))
    return out
