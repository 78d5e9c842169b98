"""The input rows of a model artefact for new cases: feature rows, or an image with its mask or box plus a clinical row.

Inputs are checked against the model card before anything is computed:

* a feature table whose extraction settings (params hash, ROI kind, read from its JSON sidecar)
  differ from the model's is refused;
* an image is extracted with the parameters stored in the artefact, which must still hash to
  the card's value; a model trained on bounding boxes gets the box of a given mask, a model
  trained on delineated masks refuses a box;
* a missing clinical column is refused by name; a clinical value never seen in training is
  encoded as the encoder's ``<other>`` level (or missing) and reported by the encoder;
* a deep or DLR model (one with a network) gets its ``deep_prob`` / ``deep_<j>`` columns from
  its own network, the ROI prepared with the settings stored in the checkpoint
  (:func:`her2dlr.predict.network.network_columns`); a mask or a box gives the same crop.
  A network that fuses clinical-pathological factors at its head also reads the case's clinical
  values; a column it fuses and the case lacks is refused by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from her2dlr.errors import InputError
from her2dlr.learn.artefact import ModelArtefact

__all__ = ["case_inputs", "case_rows", "cases_inputs", "cases_table", "clinical_row", "feature_rows", "image_features", "parse_box",
           "parse_clinical"]


def parse_clinical(items: list[str] | None) -> dict[str, str]:
    """``["Age=52", "Shape=irregular"]`` -> ``{"Age": "52", "Shape": "irregular"}``."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"Clinical value '{item}' must be written COLUMN=VALUE (e.g. Age=52).")
        out[key.strip()] = value.strip()
    return out


def parse_box(text: str | None) -> tuple[float, ...] | None:
    """``"x,y,w,h"`` (or ``"[x, y, w, h]"``) in pixels, ``"x,y,z,w,h,d"`` in voxels on a volume -> a box; None stays None."""
    from her2dlr.io.cells import parse_bbox

    if text is None:
        return None
    body = text.strip()
    return parse_bbox(body if body.startswith("[") else f"[{body}]", where="--box")


def clinical_row(table: str | os.PathLike[str], case: str, *, id_column: str | None = None) -> dict[str, Any]:
    """The row of case ``case`` in a clinical table (CSV/TSV/XLSX/Parquet), as column -> value."""
    from her2dlr.io.tables import read_table

    df = read_table(table)
    col = id_column or next((c for c in ("case_id", "CaseID", "Case_ID", "id", "ID") if c in df.columns), df.columns[0])
    if col not in df.columns:
        raise InputError(f"Clinical table {table} has no column '{col}'. Columns: {list(df.columns)[:10]}.")
    rows = df[df[col].astype(str) == str(case)]
    if rows.empty:
        raise InputError(f"Clinical table {table} has no row with {col} = '{case}'.")
    if len(rows) > 1:
        raise InputError(f"Clinical table {table} has {len(rows)} rows with {col} = '{case}'.")
    return rows.iloc[0].to_dict()


def _check_provenance(artefact: ModelArtefact, meta: Mapping[str, Any], source: str) -> None:
    tables = [t for t in artefact.feature_tables if t.get("params_hash")]
    if not tables or not meta.get("params_hash"):
        return
    want = tables[0]
    if meta["params_hash"] != want["params_hash"]:
        raise InputError(
            f"{source} was extracted with other radiomics parameters (params hash {meta['params_hash']}, "
            f"'{meta.get('params')}') than model '{artefact.name}' (hash {want['params_hash']}, "
            f"'{want.get('params')}'). Extract the features again with the model's parameters.")
    if meta.get("roi") and want.get("roi") and meta["roi"] != want["roi"]:
        raise InputError(f"{source} has ROI '{meta['roi']}' but model '{artefact.name}' was trained on "
                         f"ROI '{want['roi']}'.")


def feature_rows(artefact: ModelArtefact, path: str | os.PathLike[str]) -> pd.DataFrame:
    """Rows of a feature table (Parquet/CSV, indexed or with ``case_id``), checked against the model's settings."""
    from her2dlr.io.tables import read_table

    p = Path(path)
    sidecar = p.with_suffix(".json")
    if sidecar.exists():
        _check_provenance(artefact, json.loads(sidecar.read_text()), str(p))
    df = pd.read_parquet(p) if p.suffix == ".parquet" else read_table(p)
    if df.index.name != "case_id":
        if "case_id" not in df.columns:
            raise InputError(f"Feature table {p} has no case_id index or column.")
        df = df.set_index("case_id")
    df.index = df.index.astype(str)
    dup = df.index[df.index.duplicated()].unique().tolist()
    if dup:
        raise InputError(f"Feature table {p} has {len(dup)} case id(s) on more than one row: {dup[:5]}. Give one row per "
                         "case.")
    return df


def image_features(artefact: ModelArtefact, image: str | os.PathLike[str], *, mask: str | os.PathLike[str] | None = None,
                   box: Any = None, spacing: float | None = None,
                   record: dict[str, Any] | None = None) -> dict[str, float]:
    """Radiomics features of one image, extracted exactly as the model's training table was.

    A model trained on automatic masks (``roi: auto``) finds the lesion itself with the
    segmentation network it carries (:func:`her2dlr.predict.segmenter.automatic_mask`); what it
    found (network, confidence) goes into ``record`` when one is given.
    """
    from her2dlr.io.images import mask_to_bbox, read_mask_array
    from her2dlr.radiomics.parameters import params_hash

    params = artefact.radiomics_params()
    tables = [t for t in artefact.feature_tables if t.get("params_hash")]
    if params is None or not tables:
        raise InputError(f"Model '{artefact.name}' does not read radiomics features extracted by her2dlr; "
                         "give its feature row with --features instead of an image.")
    if params_hash(params) != tables[0]["params_hash"]:
        raise InputError(f"The radiomics parameters stored with model '{artefact.name}' hash to "
                         f"{params_hash(params)}, not to the card's {tables[0]['params_hash']}: the artefact was altered.")
    roi = tables[0].get("roi", "mask")
    if roi == "auto":
        return _auto_features(artefact, image, mask=mask, box=box, spacing=spacing, params=params, record=record)
    if mask is None and box is None:
        raise InputError("Give the lesion as --mask FILE or --box x,y,w,h.")
    if roi == "mask" and mask is None:
        raise InputError(f"Model '{artefact.name}' was trained on delineated masks (roi: mask); a box is not the "
                         "same input. Give --mask.")
    if roi == "bbox" and mask is not None:
        box, mask = mask_to_bbox(read_mask_array(mask)), None
    return _extract_on_training_grid(tables[0], image, mask=mask, box=box, spacing=spacing, params=params,
                                     record=record)


def _extract_on_training_grid(table: Mapping[str, Any], image: str | os.PathLike[str], *, mask: Any, box: Any,
                              spacing: float | None, params: Any, record: dict[str, Any] | None) -> dict[str, float]:
    """Features of one 2D image on the training images' pixel grid, as the training extraction had them.

    The training table's radiomics stage brought every image to the training pixel size
    (:mod:`her2dlr.radiomics.pixel_size`); its target is in the table's provenance. A new image whose
    pixel size is known and differs is resampled (image, mask, box) the same way before extraction;
    one without a known pixel size is taken to have the training one, as in training.
    """
    import tempfile

    from her2dlr.io.profile import image_header
    from her2dlr.radiomics.extract import extract_case
    from her2dlr.radiomics.pixel_size import PixelSizePlan, apply_pixel_size

    target = (table.get("pixel_size") or {}).get("target_mm")
    if target is None:
        return extract_case(image, mask_path=mask, bbox=box, params=params, spacing=spacing)
    head = image_header(Path(image))
    own = spacing if spacing is not None else (min(head.spacing) if head.spacing else None)
    if head.spacing is not None and len(head.spacing) > 2 and min(head.size) > 1:
        return extract_case(image, mask_path=mask, bbox=box, params=params, spacing=spacing)  # volumes: as given
    row = pd.DataFrame([{"case_id": "case", "image": str(image), "mask": None if mask is None else str(mask),
                         "bbox": None if box is None else json.dumps([float(v) for v in box]), "spacing": own}])
    with tempfile.TemporaryDirectory() as tmp:
        done = apply_pixel_size(row, PixelSizePlan(float(target), 0, 0, None), Path(tmp), warn=False).iloc[0]
        if record is not None:
            record["pixel_size_mm"] = float(target)
            record["resampled"] = done["image"] != str(image)
        bbox = None if done["bbox"] is None else json.loads(done["bbox"])
        return extract_case(done["image"], mask_path=done["mask"], bbox=bbox, params=params, spacing=float(target))


def _auto_features(artefact: ModelArtefact, image: str | os.PathLike[str], *, mask: Any, box: Any,
                   spacing: float | None, params: Any, record: dict[str, Any] | None) -> dict[str, float]:
    import tempfile
    import warnings

    from her2dlr.predict.segmenter import automatic_mask
    from her2dlr.radiomics.extract import extract_case
    from her2dlr.segment.data import write_mask

    auto, info = automatic_mask(artefact, image, box=box, mask=mask)
    if mask is not None and not info["box_prompt"]:
        warnings.warn(f"Model '{artefact.name}' reads automatic masks: the given mask was not used.", stacklevel=3)
    if record is not None:
        record["segmentation"] = info
    with tempfile.TemporaryDirectory() as tmp:
        path = write_mask(auto, image, Path(tmp) / ("mask.png" if auto.ndim == 2 else "mask.nrrd"))
        if auto.ndim != 2:
            return extract_case(image, mask_path=path, params=params, spacing=spacing)
        tables = [t for t in artefact.feature_tables if t.get("params_hash")]
        return _extract_on_training_grid(tables[0], image, mask=path, box=None, spacing=spacing, params=params,
                                         record=record)


def case_inputs(artefact: ModelArtefact, *, case_id: str = "case", image: str | os.PathLike[str] | None = None,
                mask: str | os.PathLike[str] | None = None, box: Any = None, spacing: float | None = None,
                clinical: Mapping[str, Any] | None = None, record: dict[str, Any] | None = None) -> pd.DataFrame:
    """One input row for ``artefact`` from an image (+ mask or box) and a clinical row.

    ``record``, when given, receives what was found on the way (the automatic mask's network).
    """
    row: dict[str, Any] = {}
    if artefact.feature_columns:
        if image is None:
            raise InputError(f"Model '{artefact.name}' needs imaging features: give --image with --mask/--box, "
                             "or --features.")
        has_network = bool(artefact.with_networks())
        if not has_network or any(t.get("params_hash") for t in artefact.feature_tables):
            row.update(image_features(artefact, image, mask=mask, box=box, spacing=spacing, record=record))
        if has_network:
            from her2dlr.predict.network import network_columns

            lesion = mask if mask is not None else (tuple(box) if box is not None else None)
            if artefact.segmenter_path is not None:  # trained on automatic masks: find the lesion the same way
                from her2dlr.predict.segmenter import automatic_mask

                lesion, info = automatic_mask(artefact, image, box=box, mask=mask)
                if record is not None:
                    record["segmentation"] = info
            row.update(network_columns(artefact, [image], [lesion], [dict(clinical or {})]).iloc[0].to_dict())
    row.update(dict(clinical or {}))
    frame = pd.DataFrame([row], index=pd.Index([case_id], name="case_id"))
    artefact.check_inputs(frame, where=f"case '{case_id}'")
    return frame


def _cell(row: Mapping[str, Any], *names: str) -> Any:
    from her2dlr.io.cells import is_missing

    for name in names:
        if name in row and not is_missing(row[name]):
            return row[name]
    return None


def cases_table(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The new cases of a table: one dict per row with ``case_id``, ``image``, ``mask``, ``box``, ``spacing``, ``row``.

    The table (CSV/TSV/XLSX/Parquet) has an ``image`` column and, per row, a ``mask`` file or a
    ``box`` (``x,y,w,h`` in pixels, or ``[x, y, w, h]``); optional ``case_id`` and ``spacing``
    (mm) columns; any other column is passed on (clinical values). Relative paths are read
    against the table's folder.

    Raises
    ------
    InputError
        No ``image`` column, a row without image, a malformed box (names the row).
    """
    from her2dlr.io.tables import read_table

    table_path = Path(path)
    return case_rows(read_table(table_path), base=table_path.resolve().parent, source=str(table_path))


def case_rows(df: pd.DataFrame, *, base: Path | None = None, source: str = "the cases table") -> list[dict[str, Any]]:
    """The rows of a cases table already read (see :func:`cases_table`); relative paths are read against ``base``
    (the working folder when None); ``source`` names the table in messages."""
    if "image" not in df.columns:
        raise InputError(f"Cases table {source} has no 'image' column. Columns: {list(df.columns)[:10]}.")
    out = []
    for i, rec in enumerate(df.to_dict(orient="records")):
        where = f"{source} row {i + 2}"  # row 1 is the header
        image = _cell(rec, "image")
        if image is None:
            raise InputError(f"{where}: no image.")
        mask = _cell(rec, "mask")
        box_text = _cell(rec, "box", "bbox")
        try:
            box = parse_box(str(box_text)) if box_text is not None else None
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        spacing = _cell(rec, "spacing")
        try:
            spacing = float(spacing) if spacing is not None else None
        except ValueError:
            raise InputError(f"{where}: spacing {spacing!r} is not a number (pixel size in mm).") from None
        case_id = _cell(rec, "case_id", "case")
        folder = base if base is not None else Path()
        out.append({**{k: v for k, v in rec.items() if k not in ("image", "mask", "box", "bbox", "spacing")},
                    "case_id": str(case_id) if case_id is not None else f"row{i + 2}", "row": where,
                    "image": folder / str(image), "mask": folder / str(mask) if mask is not None else None,
                    "box": box, "spacing": spacing})
    return out


def cases_inputs(artefact: ModelArtefact, cases: list[dict[str, Any]], *, progress: bool = True) -> pd.DataFrame:
    """Input rows of ``artefact`` for the cases of :func:`cases_table` (an error names the row and case)."""
    from tqdm.auto import tqdm

    frames = []
    for case in tqdm(cases, desc="cases", disable=not progress or len(cases) < 2, leave=False):
        clinical = {k: case[k] for k in artefact.clinical_types if k in case}
        try:
            frames.append(case_inputs(artefact, case_id=case["case_id"], image=case["image"], mask=case["mask"],
                                      box=case["box"], spacing=case["spacing"], clinical=clinical))
        except InputError as exc:
            raise InputError(f"{case['row']} (case '{case['case_id']}'): {exc}") from None
    if not frames:
        raise InputError("The cases table has no rows.")
    return pd.concat(frames)
