"""One entry point: a model artefact and new cases in, one result object per case out.

The command line (``her2dlr predict``) and the server call :func:`predict` and nothing else;
what a case may hold and what is checked is decided here once:

* a :class:`Case` is an image with its lesion (mask file or box), a clinical row, or a row of
  precomputed features (:mod:`her2dlr.predict.inputs` turns it into the model's input row and
  refuses what does not match the model card);
* every case gets a :class:`PredictionResult`: probability, class at the stored threshold, the
  threshold, the model's name and kind, the toolkit version that wrote it, where each input came
  from (provenance), warnings raised while computing it, and, for models with a network and
  when asked, the heat map (:func:`her2dlr.predict.network.case_heat_map`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from her2dlr.errors import InputError
from her2dlr.learn.artefact import ModelArtefact, artefact_slug, load_artefact
from her2dlr.predict.cases import Case
from her2dlr.predict.network import HeatMapResult

__all__ = ["Case", "PredictionResult", "predict", "results_frame"]


@dataclass
class PredictionResult:
    """What a model says about one case, with where it came from."""

    case_id: str
    model: str
    kind: str
    probability: float
    predicted_class: int
    threshold: float
    version: str | None
    provenance: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    heat_map: HeatMapResult | None = None
    #: Multi-class models: the predicted class's name and every class's probability (name -> value);
    #: ``probability`` is then the predicted class's probability and ``threshold`` NaN.
    class_name: str | None = None
    class_probabilities: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the heat map as its path and scores)."""
        out = {k: v for k, v in self.__dict__.items() if k != "heat_map"}
        if self.heat_map is not None:
            h = self.heat_map
            out["heat_map"] = {"path": str(h.path), "method": h.method, "explained_class": h.explained_class,
                               "lesion_share": h.lesion_share}
        return out


def _input_row(artefact: ModelArtefact, case: Case, record: dict[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """The model's input row of a case, and what the checks against training found."""
    from her2dlr.predict.checks import clinical_warnings, feature_warnings, image_spacing
    from her2dlr.predict.inputs import case_inputs

    notes = clinical_warnings(artefact, case.case_id, case.clinical)
    if case.features is not None:
        row = {**dict(case.features), **case.clinical}
        frame = pd.DataFrame([row], index=pd.Index([case.case_id], name="case_id"))
        artefact.check_inputs(frame, where=f"case '{case.case_id}'")
    else:
        spacing = case.spacing
        if case.image is not None and artefact.radiomics_params() is not None:
            spacing, found = image_spacing(artefact, case.image, case.spacing, record)
            notes += found
        clinical = {k: case.clinical[k] for k in artefact.clinical_types if k in case.clinical}
        frame = case_inputs(artefact, case_id=case.case_id, image=case.image, mask=case.mask, box=case.box,
                            spacing=spacing, clinical=clinical, record=record)
    notes += feature_warnings(artefact, frame).get(case.case_id, [])
    return frame, notes


def _provenance(artefact: ModelArtefact, case: Case, record: dict[str, Any]) -> dict[str, Any]:
    card = artefact.card
    tables = artefact.feature_tables
    out: dict[str, Any] = {"artefact": str(artefact.path), "config_hash": card.get("config_hash"),
                           "training_cohort": card.get("training") or card.get("cohort")}
    if case.features is not None:
        out["inputs"] = "feature row"
    elif case.image is not None:
        out["inputs"] = "image"
        out["lesion"] = "mask" if case.mask is not None else ("box" if case.box is not None else None)
        if "segmentation" in record:
            out["lesion"] = "automatic"
            out["segmentation"] = record["segmentation"]
        out["spacing_mm"] = record.get("spacing_mm", case.spacing)
        if "spacing_source" in record:
            out["spacing_source"] = record["spacing_source"]
        if tables:
            out["radiomics"] = {k: tables[0].get(k) for k in ("params", "roi", "params_hash")}
    nets = artefact.with_networks()
    if nets and nets[0].network_path is not None:
        from her2dlr.predict.network import network_digest

        out["network_sha256"] = network_digest(nets[0].network_path)
    return out


def predict(model: ModelArtefact | str | os.PathLike[str], cases: Case | Sequence[Case], *,
            heat_maps: str | os.PathLike[str] | None = None, method: str = "gradcam",
            progress: bool = True) -> list[PredictionResult]:
    """Apply a model artefact to new cases.

    Parameters
    ----------
    model : ModelArtefact or path
        A model artefact (``RUN/models/<name>``).
    cases : Case or sequence of Case
    heat_maps : path, optional
        Deep and DLR models: write each case's heat map here: a PNG file for one case (given
        alone, or a one-case list and a ``.png`` path), else a folder of ``<case>.png``.
    method : {"cam", "gradcam", "gradcampp"}
        How the heat map is computed.
    progress : bool
        A progress bar over the cases (when there are several).

    Returns
    -------
    list of PredictionResult
        One per case, in order.

    Raises
    ------
    InputError
        An input the model cannot read (missing column, other radiomics settings, a box for a
        mask model, unreadable file); the message names the case (and its table row).
    """
    from tqdm.auto import tqdm

    artefact = model if isinstance(model, ModelArtefact) else load_artefact(model)
    batch = [cases] if isinstance(cases, Case) else list(cases)
    if not batch:
        raise InputError("No cases to predict.")
    if heat_maps is not None:
        _check_heat_maps(artefact, batch)
    frames, caught, records = [], [], []
    for case in tqdm(batch, desc="cases", disable=not progress or len(batch) < 2, leave=False):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            records.append({})
            try:
                frame, notes = _input_row(artefact, case, records[-1])
            except InputError as exc:
                where = f"{case.where} (case '{case.case_id}'): " if case.where else ""
                raise InputError(f"{where}{exc}") from None
            frames.append(frame)
        caught.append(notes + [str(w.message) for w in seen])
    frame = pd.concat(frames)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        table = artefact.predict(frame)
    common = list(artefact.notes) + [str(w.message) for w in seen]
    version = artefact.card.get("versions", {}).get("her2dlr") if isinstance(artefact.card.get("versions"), dict) else None
    results = []
    for i, (case, row) in enumerate(zip(batch, table.to_dict(orient="records"))):
        heat = None
        if heat_maps is not None:
            one_file = isinstance(cases, Case) or (len(batch) == 1 and Path(heat_maps).suffix.lower() == ".png")
            path = Path(heat_maps) if one_file else Path(heat_maps) / f"{artefact_slug(case.case_id)}.png"
            from her2dlr.predict.network import case_heat_map

            heat = case_heat_map(artefact, case.image, path, mask=case.mask, box=case.box,  # type: ignore[arg-type]
                                 method=method,
                                 # the model's answer, for the heat map's caption
                                 probability=float(row["prob"]), predicted_class=int(row["class"]),
                                 threshold=float(row["threshold"]), case_id=case.case_id,
                                 clinical=case.clinical)
        results.append(PredictionResult(
            case_id=case.case_id, model=artefact.name, kind=artefact.kind, probability=float(row["prob"]),
            predicted_class=int(row["class"]), threshold=float(row["threshold"]), version=version,
            provenance=_provenance(artefact, case, records[i]), warnings=list(dict.fromkeys(caught[i] + common)), heat_map=heat,
            **_class_fields(artefact, row)))
    return results


def _class_fields(artefact: ModelArtefact, row: dict[str, Any]) -> dict[str, Any]:
    """``class_name`` and ``class_probabilities`` of a multi-class model's row (nothing for a binary model)."""
    names = artefact.classes
    if names is None:
        return {}
    return {"class_name": str(row["class_name"]),
            "class_probabilities": {n: float(row[f"prob_{k}"]) for k, n in enumerate(names)}}


def _check_heat_maps(artefact: ModelArtefact, batch: list[Case]) -> None:
    if not artefact.with_networks():
        raise InputError(f"Model '{artefact.name}' has no network: heat maps are for deep and DLR models.")
    for case in batch:
        if case.image is None or (case.mask is None and case.box is None):
            raise InputError(f"A heat map needs the image with its mask or box (case '{case.case_id}').")


def results_frame(results: Sequence[PredictionResult]) -> pd.DataFrame:
    """``case_id, model, prob, class, threshold`` (the predictions contract), one row per result.

    Multi-class results add ``class_name`` and ``prob_<k>`` (the probability of class k, k = 0 ..).
    """
    frame = pd.DataFrame({"case_id": [r.case_id for r in results], "model": [r.model for r in results],
                          "prob": [r.probability for r in results], "class": [r.predicted_class for r in results],
                          "threshold": [r.threshold for r in results]})
    if results and results[0].class_probabilities:
        frame["class_name"] = [r.class_name for r in results]
        for k in range(len(results[0].class_probabilities)):
            frame[f"prob_{k}"] = [list(r.class_probabilities.values())[k] for r in results]
    return frame
