"""Checks of a new case against what its model was trained on: refuse, or warn in the result.

A probability computed on an input unlike the training inputs looks exactly like a valid one,
so every mismatch that changes the answer is either refused (when no honest answer exists) or
written into the result's warnings (when the answer exists but deserves doubt):

=====================================  ==============================================================
Mismatch                               What happens
=====================================  ==============================================================
other bit depth than training          refused: features on another grey-level range are meaningless
                                       (a 16-bit PNG gives a first-order mean 250 times larger)
no pixel spacing, model works in mm    refused unless the user says which spacing to assume
                                       (``--spacing``, a ``spacing`` column)
spacing given, model trained in        the spacing is not used (features in pixels, as in training),
pixel units                            and the result says so
spacing / size / intensity far from    warning (outside the training range by more than
training                               :data:`TOLERANCE`)
training facts not recorded            warning (artefacts written before the card held them)
clinical level never seen in training  warning, with how it was encoded (``<other>``, all zeros,
                                       the training median)
clinical value outside training range  warning (extrapolation)
missing clinical value                 warning, with the training value used instead
clinical column the model does not     warning, with the columns the model reads
read
missing / infinite feature value       warning, naming the features (they get the training median)
=====================================  ==============================================================

The model's radiomics features depend on pixel spacing when its parameters resample, filter
in mm (LoG sigma) or compute shape features (:func:`spacing_dependent`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError, nearest
from her2dlr.learn.artefact import ModelArtefact

__all__ = ["TOLERANCE", "clinical_warnings", "feature_warnings", "image_spacing", "spacing_dependent"]

#: How far outside the training range (as a factor) a spacing, size or intensity may be before a warning.
TOLERANCE = 1.5


def spacing_dependent(params: Mapping[str, Any] | None) -> bool:
    """Whether radiomics features extracted with ``params`` change with the pixel spacing."""
    if not params:
        return False
    setting = dict(params.get("setting") or {})
    classes = dict(params.get("featureClass") or {})
    image_types = dict(params.get("imageType") or {})
    return bool(setting.get("resampledPixelSpacing")) or any(c.startswith("shape") for c in classes) or "LoG" in image_types


def _training_images(artefact: ModelArtefact) -> dict[str, Any] | None:
    for table in artefact.feature_tables:
        if isinstance(table.get("images"), dict):
            return table["images"]
    return None


def _outside(value: float, low: float, high: float) -> bool:
    return value < low / TOLERANCE or value > high * TOLERANCE


def _check_bits(artefact: ModelArtefact, image: Path, head: Any, profile: Mapping[str, Any]) -> None:
    bits = {int(b) for b in profile.get("bits", {})}
    if bits and head.bits not in bits:
        trained = ", ".join(f"{b}-bit" for b in sorted(bits))
        lo, hi = profile.get("intensity", [math.nan, math.nan])
        raise InputError(
            f"Image {image} is {head.bits}-bit (values {head.minimum:g} to {head.maximum:g}), but model "
            f"'{artefact.name}' was trained on {trained} images (values {lo:g} to {hi:g}). Its grey levels would be "
            "read on another scale and the features would be wrong. Export the image the way the training images "
            "were exported (same bit depth), then predict again.")


def image_spacing(artefact: ModelArtefact, image: str | Path, spacing: float | None,
                  record: dict[str, Any]) -> tuple[float | None, list[str]]:
    """Check an image against the model's training images; return the spacing to extract with, and warnings.

    ``record`` receives ``spacing_mm`` and ``spacing_source`` (``given``, ``file``,
    ``pixel units as in training`` or ``unknown``) for the result's provenance.

    Raises
    ------
    InputError
        Another bit depth than training; no spacing where the model computes in mm.
    """
    from her2dlr.io.profile import image_header

    path = Path(image)
    head = image_header(path)
    profile = _training_images(artefact)
    needs_spacing = spacing_dependent(artefact.radiomics_params())
    source = "given" if spacing is not None else ("file" if head.spacing is not None else "unknown")
    used = spacing if spacing is not None else (min(head.spacing) if head.spacing else None)
    warnings: list[str] = []
    if profile is None:
        warnings.append(f"The card of model '{artefact.name}' does not record the bit depth, spacing and size of its "
                        "training images (written by an older version): this image could not be checked against them.")
        record.update(spacing_mm=used, spacing_source=source)
        return spacing, warnings
    _check_bits(artefact, path, head, profile)
    sp = profile.get("spacing", {})
    known, unknown = int(sp.get("known", 0)), int(sp.get("unknown", 0))
    result = spacing
    if needs_spacing and known and not unknown:
        if used is None:
            raise InputError(
                f"Model '{artefact.name}' computes features in millimetres (trained on pixel spacings "
                f"{sp['min']:g} to {sp['max']:g} mm, median {sp['median']:g}), but image {path} carries no pixel "
                "spacing. Say which spacing to assume: --spacing MM (or a 'spacing' column in the cases table).")
        if _outside(used, sp["min"], sp["max"]):
            warnings.append(f"Pixel spacing {used:g} mm ({source}) is outside the training range {sp['min']:g} to "
                            f"{sp['max']:g} mm: features that depend on size are extrapolated.")
    elif needs_spacing and unknown and not known:
        if used is not None:
            warnings.append(f"Model '{artefact.name}' was trained on images without pixel spacing (features in "
                            f"pixels); the {source} spacing {used:g} mm was not used, so that the features are computed "
                            "in pixels as in training.")
            source, used, result = "pixel units as in training", 1.0, 1.0
    elif needs_spacing and known and unknown:
        warnings.append(f"Model '{artefact.name}' was trained on a mix of images with ({known}) and without ({unknown}) "
                        "pixel spacing; its size features mix millimetres and pixels.")
    size = profile.get("size")
    if size and any(_outside(s, lo, hi) for s, lo, hi in zip(head.size, size["min"], size["max"])):
        warnings.append(f"Image size {list(head.size)} is far outside the training sizes {size['min']} to {size['max']}.")
    lo, hi = profile.get("intensity", [math.nan, math.nan])
    span = hi - lo
    if np.isfinite(span) and span > 0 and (head.maximum > hi + (TOLERANCE - 1) * span
                                           or head.minimum < lo - (TOLERANCE - 1) * span):
        warnings.append(f"Intensities {head.minimum:g} to {head.maximum:g} are far outside the training range "
                        f"{lo:g} to {hi:g}.")
    record.update(spacing_mm=used, spacing_source=source)
    return result, warnings


def _encoders(artefact: ModelArtefact) -> Iterator[Any]:
    from her2dlr.learn.clinical import ClinicalEncoder

    def walk(est: Any) -> Iterator[Any]:
        if isinstance(est, ClinicalEncoder):
            yield est
        for attr in ("steps", "transformers_"):
            for item in getattr(est, attr, None) or []:
                yield from walk(item[1])

    if artefact.pipeline is not None:
        yield from walk(artefact.pipeline)
    for comp in artefact.components:
        yield from _encoders(comp)


def clinical_warnings(artefact: ModelArtefact, case_id: str, values: Mapping[str, Any]) -> list[str]:
    """What the model will do with a case's clinical values that training did not prepare it for."""
    from her2dlr.learn.clinical import MISSING

    reads = artefact.clinical_types
    out = []
    unused = [k for k in values if k not in reads]
    if unused and reads:
        hint = nearest(unused[0], list(reads))
        out.append(f"Clinical column(s) {unused} are not read by model '{artefact.name}' and were ignored "
                   f"(it reads {sorted(reads)}).{hint}")
    seen: set[tuple[str, str]] = set()
    for enc in _encoders(artefact):
        cols = [c for c in enc.types_ if c in values]
        if not cols:
            continue
        row = pd.DataFrame([{c: values.get(c) for c in enc.types_}])
        enc.transform(row)
        for rec in enc.unseen_.to_dict(orient="records"):
            key = (rec["column"], str(rec["value"]))
            if key not in seen:
                seen.add(key)
                out.append(f"Case '{case_id}': {rec['column']}={rec['value']!r} was never seen in training; it was "
                           f"encoded as {rec['encoded_as']}.")
        for col in cols:
            value = values[col]
            if enc.is_missing(value) and (col, MISSING) not in seen:
                seen.add((col, MISSING))
                filled = (f"the training median {enc.medians_[col]:g}" if col in enc.medians_
                          else "the missing-value coding")
                out.append(f"Case '{case_id}': {col} is missing; {filled} was used.")
                continue
            rng = getattr(enc, "ranges_", {}).get(col)
            number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
            if rng and pd.notna(number) and not rng[0] <= number <= rng[1] and (col, "range") not in seen:
                seen.add((col, "range"))
                out.append(f"Case '{case_id}': {col}={number:g} is outside the training range {rng[0]:g} to "
                           f"{rng[1]:g} (extrapolation).")
    return out


def feature_warnings(artefact: ModelArtefact, frame: pd.DataFrame) -> dict[str, list[str]]:
    """Per case id: the model's feature values that are missing or infinite (they get the training median)."""
    cols = [c for c in artefact.feature_columns if c in frame.columns]
    if not cols:
        return {}
    values = frame[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    out: dict[str, list[str]] = {}
    for i in np.flatnonzero(bad.any(axis=1)):
        names = [cols[j] for j in np.flatnonzero(bad[i])]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        out[str(frame.index[i])] = [f"Case '{frame.index[i]}': {len(names)} feature value(s) are missing or infinite "
                                    f"and were replaced by the training median: {shown}."]
    return out
