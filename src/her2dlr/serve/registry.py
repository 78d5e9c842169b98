"""The models a server offers: artefacts loaded once, their cards summarised, their input fields described.

The page builds its form from :func:`model_summary`: which lesion input a model reads (a mask,
a mask or a box, or none when it finds the lesion itself), whether it draws a heat map, and
one field per clinical column, with the levels its encoder saw in training (categorical) or
the training range (numeric, when the card records it) and the unit (the study's
``learn.clinical.units``, kept in the card's inputs).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from her2dlr.errors import InputError, nearest
from her2dlr.learn.artefact import CARD, ModelArtefact, load_artefact

__all__ = ["ModelRegistry", "class_fields", "clinical_fields", "json_safe", "lesion_input", "model_summary",
           "reads_video", "training_counts"]


def json_safe(value: Any) -> Any:
    """``value`` with NaN / infinity as None and numpy scalars as Python numbers (JSON responses refuse NaN)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def class_fields(result: Any) -> dict[str, Any]:
    """``class_name`` and ``class_probabilities`` (class name -> probability) of a multi-class answer.

    Parameters
    ----------
    result : PredictionResult
        One answer of :func:`her2dlr.predict.predict`.

    Returns
    -------
    dict
        Empty for a binary model (its ``probability`` and ``predicted_class`` say it all); for a
        multi-class one its ``probability`` is that of the predicted class, named here, next to
        every class's probability (they sum to 1).
    """
    if not result.class_probabilities:
        return {}
    return {"class_name": result.class_name, "class_probabilities": dict(result.class_probabilities)}


def reads_video(artefact: ModelArtefact) -> bool:
    """Whether a model reads video features (``video_tf``): it predicts from a clip, not an image."""
    return any(t.get("roi") == "video" for t in artefact.feature_tables)


def lesion_input(artefact: ModelArtefact) -> str:
    """What a model reads of the lesion: ``"none"``, ``"mask"``, ``"mask or box"`` or ``"automatic"``."""
    if not artefact.feature_columns:
        return "none"
    tables = [t for t in artefact.feature_tables if t.get("params_hash")]
    roi = tables[0].get("roi", "mask") if tables else None
    if roi == "auto" or artefact.segmenter_path is not None:
        return "automatic"
    if roi == "mask":
        return "mask"
    return "mask or box"


def _encoders(obj: Any, depth: int = 0) -> Iterator[Any]:
    """ClinicalEncoders inside a fitted pipeline (through Pipeline, ColumnTransformer and wrapper steps)."""
    from her2dlr.learn.clinical import ClinicalEncoder

    if obj is None or depth > 6:
        return
    if isinstance(obj, ClinicalEncoder):
        yield obj
        return
    children: list[Any] = []
    for attr in ("steps", "transformers_", "transformer_list"):
        children += [step[1] for step in getattr(obj, attr, None) or [] if isinstance(step, tuple) and len(step) > 1]
    for attr in ("estimator", "estimator_", "encoder", "encoder_"):
        child = getattr(obj, attr, None)
        if child is not None and not isinstance(child, (str, int, float)):
            children.append(child)
    for child in children:
        yield from _encoders(child, depth + 1)


def _artefacts(artefact: ModelArtefact) -> Iterator[ModelArtefact]:
    yield artefact
    for c in artefact.components:
        yield from _artefacts(c)


def clinical_fields(artefact: ModelArtefact) -> list[dict[str, Any]]:
    """One form field per clinical column the model reads.

    Returns
    -------
    list of dict
        ``name``, ``type`` (numeric / ordinal / categorical / multi), ``levels`` (training levels,
        categorical, ordinal and multi columns, when the fitted encoder records them),
        ``range`` ([min, max] in training, when the card records it), ``median`` (numeric:
        the training median, used for a missing value), ``unit`` (when the card gives one).
    """
    levels: dict[str, list[str]] = {}
    medians: dict[str, float] = {}
    ranges: dict[str, list[float]] = {}
    units: dict[str, str] = {}
    for art in _artefacts(artefact):
        for enc in _encoders(art.pipeline):
            for col, kept in getattr(enc, "levels_", {}).items():
                extra = list(getattr(enc, "pooled_", {}).get(col, []))
                ref = getattr(enc, "reference_", {}).get(col)
                names = [str(v) for v in [*kept, *([ref] if ref is not None else []), *extra] if not str(v).startswith("<")]
                levels.setdefault(col, list(dict.fromkeys(names)))
            for col, med in getattr(enc, "medians_", {}).items():
                medians.setdefault(col, float(med))
        logistic = art.card.get("logistic") or {}
        for col, span in dict(logistic.get("ranges") or {}).items():
            ranges.setdefault(str(col), [float(v) for v in span])
        given = {**dict(art.card.get("units") or {}), **dict(art.card["inputs"].get("units") or {})}
        units.update({str(k): str(v) for k, v in given.items()})
    out = []
    for name, kind in artefact.clinical_types.items():
        field: dict[str, Any] = {"name": name, "type": kind}
        if name in levels:
            field["levels"] = levels[name]
        if name in ranges:
            field["range"] = ranges[name]
        if name in medians:
            field["median"] = medians[name]
        if name in units:
            field["unit"] = units[name]
        out.append(field)
    return json_safe(out)


def training_counts(training: dict[str, Any] | None) -> dict[str, int] | None:
    """Training cases per class from a card's ``training`` summary, in class order; None when it records none.

    A two-class model's card records ``n_positive`` (of ``n_cases``): ``{"negative": ..., "positive": ...}``;
    a model of more classes records ``class_counts`` (class name -> cases), returned as they are.
    """
    if not isinstance(training, dict):
        return None
    counts = training.get("class_counts")
    if isinstance(counts, dict) and counts:
        return {str(k): int(v) for k, v in counts.items()}
    n_pos, n = training.get("n_positive"), training.get("n_cases")
    if n_pos is None or n is None:
        return None
    return {"negative": int(n) - int(n_pos), "positive": int(n_pos)}


def model_summary(model_id: str, artefact: ModelArtefact) -> dict[str, Any]:
    """What the page and ``GET /api/models`` show of a model: card summary and input fields.

    ``training`` is the card's training summary with ``counts`` added (:func:`training_counts`):
    negatives / positives of a two-class model, one count per class of a multi-class one.
    """
    card = artefact.card
    training = card.get("training") or card.get("cohort")
    if isinstance(training, dict):
        training = {**training, "counts": training_counts(training)}
    versions = card.get("versions") if isinstance(card.get("versions"), dict) else {}
    metrics = dict(card.get("metrics") or {})
    metrics.pop("table", None)  # the full metric table stays in the card (GET /api/models/{id})
    return json_safe({
        "id": model_id, "name": artefact.name, "kind": artefact.kind, "task": card.get("task"),
        "classes": artefact.classes,
        "threshold": card.get("threshold"), "metrics": metrics, "training": training,
        "created": card.get("created"), "version": versions.get("her2dlr"),
        "inputs": {"image": bool(artefact.feature_columns) and not reads_video(artefact), "video": reads_video(artefact),
                   "lesion": lesion_input(artefact),
                   "clinical": clinical_fields(artefact), "image_spec": card.get("inputs", {}).get("image")},
        "heat_map": bool(artefact.with_networks()), "segmentation": artefact.segmenter_path is not None,
    })


@dataclass
class ModelRegistry:
    """The artefacts under a models folder (or one artefact folder), loaded once, by folder name."""

    models: dict[str, ModelArtefact]

    @classmethod
    def load(cls, models_dir: str | Path) -> ModelRegistry:
        """Load every artefact of ``models_dir`` (``<run>/models``) or the artefact folder itself.

        Raises
        ------
        InputError
            The folder does not exist or holds no model artefact.
        """
        folder = Path(models_dir)
        if not folder.is_dir():
            raise InputError(f"Models folder {folder} does not exist. Give a run folder's models/ "
                             "(`her2dlr learn run` or `her2dlr train deep` writes them) or one model folder.")
        if (folder / CARD).is_file():
            return cls({folder.name: load_artefact(folder)})
        found = {p.parent.name: load_artefact(p.parent) for p in sorted(folder.glob(f"*/{CARD}"))}
        if not found:
            raise InputError(f"{folder} holds no model artefact (no */{CARD}). Give a run folder's models/.")
        return cls(found)

    def get(self, model_id: str) -> ModelArtefact:
        """The artefact of ``model_id`` (its folder name); InputError naming the known ones otherwise."""
        if model_id not in self.models:
            raise InputError(f"No model '{model_id}'. Known: {', '.join(self.models)}.{nearest(model_id, self.models)}")
        return self.models[model_id]

    def summaries(self) -> list[dict[str, Any]]:
        """:func:`model_summary` of every model, in folder order."""
        return [model_summary(k, a) for k, a in self.models.items()]
