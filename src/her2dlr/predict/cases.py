"""New cases as :func:`her2dlr.predict.predict` takes them, from what a user gives on the command line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from her2dlr.learn.artefact import ModelArtefact

__all__ = ["Case", "cases_from_frame", "cases_from_options"]


@dataclass
class Case:
    """One new case: an image with its lesion, and/or clinical values, or a row of features.

    Parameters
    ----------
    case_id : str
    image : path, optional
        The image (PNG / JPEG / DICOM / NIfTI / NRRD).
    mask : path, optional
        The lesion mask of ``image``.
    box : (x, y, w, h), optional
        The lesion box in pixels, when nobody delineated it.
    spacing : float, optional
        Pixel size in mm when the file does not carry it.
    clinical : mapping
        Clinical values by column name.
    features : mapping, optional
        Precomputed feature values by column name (instead of an image).
    where : str, optional
        Where the case came from (a table row), named in error messages.
    """

    case_id: str = "case"
    image: Path | None = None
    mask: Path | None = None
    box: tuple[float, ...] | None = None
    spacing: float | None = None
    clinical: dict[str, Any] = field(default_factory=dict)
    features: Mapping[str, Any] | None = None
    where: str | None = None


def cases_from_options(artefact: ModelArtefact, *, cases: str | os.PathLike[str] | None = None,
                       features: str | os.PathLike[str] | None = None, image: str | os.PathLike[str] | None = None,
                       mask: str | os.PathLike[str] | None = None, box: str | None = None,
                       spacing: float | None = None, clinical: list[str] | None = None,
                       clinical_table: str | os.PathLike[str] | None = None, case: str = "case") -> list[Case]:
    """The cases of ``her2dlr predict``'s options: a cases table, a feature table, or one image.

    ``clinical`` (``COLUMN=VALUE`` items) is added to every case; ``clinical_table`` gives the row
    of case ``case`` for one image.
    """
    from her2dlr.predict.inputs import cases_table, clinical_row, feature_rows, parse_box, parse_clinical

    extra = parse_clinical(clinical)
    if cases is not None:
        return [_image_case(c, extra) for c in cases_table(cases)]
    if features is not None:
        frame = feature_rows(artefact, features)
        return [Case(case_id=str(cid), features=row, clinical=dict(extra))
                for cid, row in zip(frame.index, frame.to_dict(orient="records"))]
    values = clinical_row(clinical_table, case) if clinical_table else {}
    values.update(extra)
    return [Case(case_id=case, image=Path(image) if image is not None else None,
                 mask=Path(mask) if mask is not None else None, box=parse_box(box), spacing=spacing,
                 clinical=values)]


_CASE_KEYS = ("case_id", "image", "mask", "box", "spacing", "row")


def _image_case(row: Mapping[str, Any], extra: Mapping[str, Any]) -> Case:
    """A case of a cases-table row (:func:`her2dlr.predict.inputs.case_rows`): other columns are clinical values."""
    return Case(case_id=row["case_id"], image=row["image"], mask=row["mask"], box=row["box"], spacing=row["spacing"],
                clinical={**{k: v for k, v in row.items() if k not in _CASE_KEYS}, **extra}, where=row["row"])


def cases_from_frame(frame: pd.DataFrame, *, source: str = "the input table") -> list[Case]:
    """The cases of a table in memory: image rows, or rows of feature (and clinical) values.

    Parameters
    ----------
    frame : DataFrame of shape (n_cases, n_columns)
        With an ``image`` column: a cases table as ``her2dlr predict --cases`` reads it (``mask`` or
        ``box``, optional ``case_id`` and ``spacing``, other columns clinical; relative paths read
        against the working folder). Without one: a feature row per case (the model's feature and
        clinical columns), the case id from a ``case_id`` column or else the index.
    source : str
        Names the table in error messages.

    Raises
    ------
    InputError
        No rows, a case id on several rows, or a bad image row (see :func:`her2dlr.predict.inputs.case_rows`).
    """
    from her2dlr.errors import InputError
    from her2dlr.predict.inputs import case_rows

    if len(frame) == 0:
        raise InputError(f"{source} has no rows.")
    if "image" in frame.columns:
        return [_image_case(row, {}) for row in case_rows(frame, source=source)]
    rows = frame.set_index("case_id") if "case_id" in frame.columns else frame
    ids = rows.index.astype(str)
    dup = ids[ids.duplicated()].unique().tolist()
    if dup:
        raise InputError(f"{source} has case id(s) {dup[:5]} on more than one row. Give one row per case.")
    return [Case(case_id=cid, features=values, where=f"{source} row {i + 1}")
            for i, (cid, values) in enumerate(zip(ids, rows.to_dict(orient="records")))]
