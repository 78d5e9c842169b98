"""Model artefacts: a folder per deployable model, with ``model_card.json`` and what ``predict`` needs.

Layout of ``<run>/models/<slug>/``::

    model_card.json          name, kind, task, inputs, threshold, chosen hyper-parameters, kept
                             features, training cohort, metrics, versions, config hash
    model.joblib             the fitted scikit-learn pipeline (kinds "pipeline" and "combined")
    radiomics_params.json    the resolved PyRadiomics parameters (when the inputs are radiomics
                             features), so a new image is extracted exactly as in training
    network.pt               the trained network (deep and DLR models): it turns the image's
                             ROI into the ``deep_prob`` / ``deep_<j>`` input columns
    components/<slug>/       component artefacts (kinds "late", "stack", "combined")
    checksums.sha256         SHA-256 of every other file of the folder (``sha256sum -c`` reads it)

Kinds:

``pipeline``  one fitted pipeline (selection + classifier) on feature and/or raw clinical columns;
``late``      weighted mean of the components' probabilities (seed 003);
``stack``     logistic regression on the components' logits (``card["meta"]``);
``combined``  seed 002: the imaging component's logit (``rad_score``) + clinical columns through
              ``model.joblib``; ``card["logistic"]`` holds its coefficients for a nomogram;
``deep``      the network's own probability (seed 002's deep-learning signature): the
              ``deep_prob`` column that :mod:`her2dlr.deep.deploy` computes from ``network.pt``
              (a multi-class network: ``deep_prob_0 ..``, one per class of the card's ``classes``).

A ``pipeline`` artefact with a ``network.pt`` is a DLR model: its deep-feature columns come from
the network's penultimate layer (PCA, selection and classifier are in ``model.joblib``).

Artefacts are written to a temporary folder and renamed into place, so a folder that exists is
complete. On load the card's ``format`` and fields are checked, and every file is checked
against ``checksums.sha256``: an artefact edited after it was written (a threshold changed in
the card, a replaced pipeline, a file added or removed) is refused with the file that changed.
Artefacts written before checksums existed load with a note saying they could not be verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.learn.thresholds import Threshold, apply_threshold
from her2dlr.provenance import package_versions
from her2dlr.runfolder import MODEL_CARD

__all__ = ["CARD", "CHECKSUMS", "FORMAT", "NETWORK", "SEGMENTER", "ModelArtefact", "artefact_slug", "list_artefacts",
           "load_artefact", "save_artefact", "write_checksums"]

FORMAT = "her2dlr-model/1"
CARD = MODEL_CARD
PIPELINE = "model.joblib"
RADIOMICS_PARAMS = "radiomics_params.json"
NETWORK = "network.pt"
SEGMENTER = "segmenter.pt"
CHECKSUMS = "checksums.sha256"
KINDS = ("pipeline", "late", "stack", "combined", "deep")


def artefact_slug(name: str) -> str:
    """Folder name of a model: ``late(radiomics,clinical)-lr`` -> ``late_radiomics_clinical_-lr``."""
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_.")
    return slug or "model"


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


@dataclass
class ModelArtefact:
    """A loaded model artefact.

    Attributes
    ----------
    path : Path
    card : dict
        The model card.
    pipeline : Pipeline or None
    components : list of ModelArtefact
    notes : list of str
        What loading found worth telling the user (e.g. an artefact written before checksums).
    """

    path: Path
    card: dict[str, Any]
    pipeline: Any = None
    components: list[ModelArtefact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.card["name"])

    @property
    def kind(self) -> str:
        return str(self.card["kind"])

    @property
    def threshold(self) -> float:
        return float(self.card["threshold"]["value"])

    @property
    def classes(self) -> list[str] | None:
        """Class names of a multi-class model (card ``classes``, class order), None for a binary one."""
        names = self.card.get("classes")
        return [str(n) for n in names] if isinstance(names, list) and len(names) > 2 else None

    def class_probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of every class, shape (n_rows, n_classes), of a multi-class model.

        A ``pipeline`` model's own probabilities; a ``deep`` model's network probabilities (its
        ``deep_prob_<k>`` input columns); a ``late`` fusion's weighted mean of its components'; a
        ``stack``'s multinomial regression on its components' log-probability ratios
        (:func:`her2dlr.learn.multiclass_fusion.stack_probabilities`).
        """
        if self.classes is None or self.kind not in ("pipeline", "deep", "late", "stack"):
            raise InputError(f"Model '{self.name}' is not a multi-class model: use predict_proba.")
        self.check_inputs(frame)
        if self.kind == "deep":
            return self._own_inputs(frame).to_numpy(dtype=np.float64)
        if self.kind == "pipeline":
            proba = np.zeros((len(frame), len(self.classes)))
            proba[:, np.asarray(self.pipeline.classes_, dtype=int)] = self.pipeline.predict_proba(
                self._own_inputs(frame))
            return proba
        probs = [c.class_probabilities(frame) for c in self.components]
        if self.kind == "late":
            w = np.asarray(self.card["weights"], dtype=float)
            return np.sum([wi * p for wi, p in zip(w / w.sum(), probs)], axis=0)
        from her2dlr.learn.multiclass_fusion import stack_probabilities

        return stack_probabilities(self.card["meta"], probs)

    @property
    def clinical_types(self) -> dict[str, str]:
        """Raw clinical columns this model (or a component) reads, with their types."""
        out = dict(self.card["inputs"].get("clinical", {}))
        for c in self.components:
            out.update(c.clinical_types)
        return out

    @property
    def feature_columns(self) -> list[str]:
        """Numeric feature columns (radiomics, deep, user table) this model (or a component) reads."""
        cols = list(self.card["inputs"].get("features", []))
        for c in self.components:
            cols += [f for f in c.feature_columns if f not in cols]
        return cols

    @property
    def feature_tables(self) -> list[dict[str, Any]]:
        """Provenance of the feature tables (name, params, roi, params hash) of the model and its components."""
        out = list(self.card["inputs"].get("feature_tables", []))
        for c in self.components:
            out += [t for t in c.feature_tables if t not in out]
        return out

    @property
    def network_path(self) -> Path | None:
        """This artefact's own trained network (``network.pt``), if it has one."""
        path = self.path / NETWORK
        return path if path.is_file() else None

    @property
    def segmenter_path(self) -> Path | None:
        """The segmentation network that gives new cases their automatic mask (``roi: auto``), if any."""
        path = self.path / SEGMENTER
        if path.is_file():
            return path
        return next((c.segmenter_path for c in self.components if c.segmenter_path is not None), None)

    def with_networks(self) -> list[ModelArtefact]:
        """This artefact and its components (depth first) that carry a network."""
        own = [self] if self.network_path is not None else []
        return own + [n for c in self.components for n in c.with_networks()]

    def radiomics_params(self) -> dict[str, Any] | None:
        """The resolved PyRadiomics parameters stored with the model (or a component), if any."""
        path = self.path / RADIOMICS_PARAMS
        if path.exists():
            return json.loads(path.read_text())
        for c in self.components:
            found = c.radiomics_params()
            if found is not None:
                return found
        return None

    def check_inputs(self, frame: pd.DataFrame, *, where: str = "the input") -> None:
        """Refuse inputs that lack a column the model needs (names the missing columns)."""
        missing_feats = [c for c in self.feature_columns if c not in frame.columns]
        missing_clin = [c for c in self.clinical_types if c not in frame.columns]
        if missing_feats:
            raise InputError(
                f"Model '{self.name}' needs {len(self.feature_columns)} feature column(s); {where} lacks "
                f"{len(missing_feats)}: {missing_feats[:5]}{' ...' if len(missing_feats) > 5 else ''}. "
                f"Give features extracted with the model's settings ({self.feature_tables or 'see model_card.json'})."
            )
        if missing_clin:
            raise InputError(
                f"Model '{self.name}' needs clinical column(s) {missing_clin}; {where} lacks them. "
                f"Needed: {sorted(self.clinical_types)}."
            )

    def _own_inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        cols = list(self.card["inputs"].get("columns", []))
        x = frame[cols].copy()
        clinical = set(self.card["inputs"].get("clinical", {}))
        for c in cols:
            if c not in clinical:
                x[c] = pd.to_numeric(x[c], errors="coerce").astype(np.float64)
        return x

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of the positive class for every row of ``frame`` (one column per input).

        Raises
        ------
        InputError
            A needed column is missing (see :meth:`check_inputs`).
        """
        if self.classes is not None:
            raise InputError(f"Model '{self.name}' has {len(self.classes)} classes ({', '.join(self.classes)}): it has "
                             "no single positive-class probability; use class_probabilities or predict.")
        self.check_inputs(frame)
        kind = self.kind
        if kind == "pipeline":
            return self.pipeline.predict_proba(self._own_inputs(frame))[:, 1]
        if kind == "deep":
            return self._own_inputs(frame).iloc[:, 0].to_numpy(dtype=np.float64)
        probs = [c.predict_proba(frame) for c in self.components]
        if kind == "late":
            w = np.asarray(self.card["weights"], dtype=float)
            return np.sum([wi * p for wi, p in zip(w / w.sum(), probs)], axis=0)
        from her2dlr.learn.integration import SIGNATURE, logit

        if kind == "stack":
            meta = self.card["meta"]
            lin = meta["intercept"] + sum(meta["coefficients"][c.name] * logit(p) for c, p in zip(self.components, probs))
            return 1.0 / (1.0 + np.exp(-lin))
        if kind == "combined":
            x = frame[list(self.card["inputs"]["clinical"])].copy()
            x[SIGNATURE] = logit(probs[0])
            return self.pipeline.predict_proba(x)[:, 1]
        raise InputError(f"Model card of {self.path} has unknown kind '{kind}'. Known: {', '.join(KINDS)}.")

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``case_id, model, prob, class, threshold`` for every row (index of ``frame`` = case id).

        A multi-class model also gives ``class_name`` and ``prob_<k>`` for every class; its
        ``class`` is the most probable one, ``prob`` that class's probability, ``threshold`` NaN.
        """
        if self.classes is not None:
            proba = self.class_probabilities(frame)
            cls = proba.argmax(axis=1)
            out = pd.DataFrame({"case_id": [str(i) for i in frame.index], "model": self.name,
                                "prob": proba[np.arange(len(cls)), cls], "class": cls,
                                "class_name": [self.classes[c] for c in cls], "threshold": float("nan")})
            for k in range(proba.shape[1]):
                out[f"prob_{k}"] = proba[:, k]
            return out
        prob = self.predict_proba(frame)
        thr = Threshold(**self.card["threshold"])
        return pd.DataFrame({"case_id": [str(i) for i in frame.index], "model": self.name, "prob": prob,
                             "class": apply_threshold(prob, thr), "threshold": thr.value})


def save_artefact(out_dir: str | os.PathLike[str], *, name: str, kind: str, threshold: Threshold,
                  inputs: Mapping[str, Any], pipeline: Any = None, components: Sequence[str | os.PathLike[str]] = (),
                  radiomics_params: Mapping[str, Any] | None = None, network: str | os.PathLike[str] | None = None,
                  segmenter: str | os.PathLike[str] | None = None, **card: Any) -> Path:
    """Write a model artefact folder atomically and return its path.

    Parameters
    ----------
    out_dir : path
        The artefact folder (replaced if it exists).
    name : str
        Model name (as in the predictions' ``model`` column).
    kind : {"pipeline", "late", "stack", "combined", "deep"}
    threshold : Threshold
        Operating threshold chosen on training predictions.
    inputs : dict
        ``columns`` (the pipeline's input columns, in order), ``features`` (numeric ones),
        ``clinical`` (raw clinical column -> type), ``feature_tables`` (provenance list).
    pipeline : fitted Pipeline, optional
    components : list of path
        Artefact folders copied under ``components/``.
    radiomics_params : dict, optional
        Resolved PyRadiomics parameters of the feature table.
    network : path, optional
        A network checkpoint, copied as ``network.pt`` (kind ``"deep"`` and DLR pipelines).
    segmenter : path, optional
        The segmentation network of a model trained on automatic masks (``roi: auto``), copied as
        ``segmenter.pt``: it gives new cases their mask.
    **card
        More card fields (``task``, ``training``, ``metrics``, ``params``, ``selected_features``,
        ``config_hash``, ``weights``, ``meta``, ``logistic`` ...).
    """
    if kind not in KINDS:
        raise InputError(f"Unknown artefact kind '{kind}'. Known: {', '.join(KINDS)}.")
    if kind in ("pipeline", "combined") and pipeline is None:
        raise InputError(f"An artefact of kind '{kind}' needs its fitted pipeline.")
    if kind not in ("pipeline", "deep") and not components:
        raise InputError(f"An artefact of kind '{kind}' needs component artefacts.")
    if kind == "deep" and network is None:
        raise InputError("An artefact of kind 'deep' needs its network checkpoint.")
    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        comp_names = []
        for comp in components:
            src = Path(comp)
            comp_card = json.loads((src / CARD).read_text())
            shutil.copytree(src, tmp / "components" / src.name)
            comp_names.append(comp_card["name"])
        if pipeline is not None:
            joblib.dump(pipeline, tmp / PIPELINE)
        if network is not None:
            shutil.copyfile(network, tmp / NETWORK)
        if segmenter is not None:
            shutil.copyfile(segmenter, tmp / SEGMENTER)
        if radiomics_params is not None:
            (tmp / RADIOMICS_PARAMS).write_text(json.dumps(dict(radiomics_params), indent=2, default=_json_default))
        body = {
            "format": FORMAT, "name": name, "kind": kind,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "inputs": {"columns": [], "features": [], "clinical": {}, "feature_tables": [], **dict(inputs)},
            "threshold": asdict(threshold), "components": comp_names, **card,
            "versions": package_versions(),
        }
        (tmp / CARD).write_text(json.dumps(body, indent=2, default=_json_default))
        write_checksums(tmp)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        tmp.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _artefact_files(folder: Path) -> list[str]:
    """Relative paths (POSIX) of every file of an artefact folder but the checksum file, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.relative_to(folder).as_posix() != CHECKSUMS)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: str | os.PathLike[str]) -> Path:
    """Write ``checksums.sha256`` (``sha256sum`` format) for every file of an artefact folder.

    :func:`save_artefact` calls it; code that edits a card on purpose must call it again.
    """
    root = Path(folder)
    lines = [f"{_sha256(root / rel)}  {rel}" for rel in _artefact_files(root)]
    path = root / CHECKSUMS
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _verify_checksums(folder: Path) -> str | None:
    """Refuse a folder whose files differ from its checksums; a note when it has none (older artefacts)."""
    listing = folder / CHECKSUMS
    if not listing.is_file():
        return (f"Model artefact {folder} has no {CHECKSUMS} (written by an older version): its files could "
                "not be checked for changes since training.")
    want: dict[str, str] = {}
    for n, line in enumerate(listing.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        digest, sep, rel = line.partition("  ")
        if not line.strip():
            continue
        if not sep or len(digest) != 64:
            raise InputError(f"{listing} line {n} is not '<sha256>  <file>': the artefact was altered.")
        want[rel] = digest
    have = _artefact_files(folder)
    changed = [rel for rel in have if rel in want and _sha256(folder / rel) != want[rel]]
    missing = sorted(set(want) - set(have))
    added = [rel for rel in have if rel not in want and not Path(rel).name.startswith(".")]
    if changed or missing or added:
        what = "; ".join(f"{label}: {', '.join(files[:5])}" for label, files in
                         (("changed", changed), ("missing", missing), ("added", added)) if files)
        raise InputError(f"Model artefact {folder} was modified after it was written ({what}). A changed "
                         "threshold, card or pipeline would give other answers than the model that was validated, "
                         "so it is refused: export the model again (`her2dlr learn run`, `her2dlr train deep`).")
    return None


def _check_card(card: Any, card_path: Path) -> dict[str, Any]:
    """The card's required fields, each with a message naming the key."""
    if not isinstance(card, dict):
        raise InputError(f"{card_path} must hold a JSON object (the model card); it holds a {type(card).__name__}.")
    if card.get("format") != FORMAT:
        raise InputError(f"{card_path} has format {card.get('format')!r}; this version reads {FORMAT!r}.")
    for key in ("name", "kind", "threshold", "inputs"):
        if key not in card:
            raise InputError(f"{card_path} lacks the key '{key}': the card is incomplete or was edited.")
    if card["kind"] not in KINDS:
        raise InputError(f"{card_path}: kind {card['kind']!r} is not one of {', '.join(KINDS)}.")
    thr = card["threshold"]
    if not isinstance(thr, dict) or not isinstance(thr.get("value"), (int, float)) or isinstance(thr.get("value"), bool):
        raise InputError(f"{card_path}: 'threshold' must be an object with a numeric 'value'; got {thr!r}.")
    inputs = card["inputs"]
    if not isinstance(inputs, dict):
        raise InputError(f"{card_path}: 'inputs' must be an object (columns, features, clinical); got {inputs!r}.")
    known = set(inputs.get("features", [])) | set(inputs.get("clinical", {}))
    untyped = [c for c in inputs.get("columns", []) if c not in known]
    if untyped:
        raise InputError(f"{card_path}: input column(s) {untyped[:5]} are neither features nor typed clinical columns "
                         "(inputs.features / inputs.clinical): the card is incomplete or was edited.")
    return card


def _check_pipeline(pipeline: Any, card: dict[str, Any], path: Path) -> None:
    """The pipeline must read exactly the card's input columns (a card edited by hand may not)."""
    names = getattr(pipeline, "feature_names_in_", None)
    if names is None or card["kind"] != "pipeline":
        return
    want = set(card["inputs"].get("columns", []))
    have = set(map(str, names))
    if have != want:
        raise InputError(f"{path} reads columns {sorted(have - want)[:5]} that its card does not list, and the card lists "
                         f"{sorted(want - have)[:5]} that it does not read: the card and the pipeline do not belong "
                         "together.")


def _load_pipeline(path: Path) -> Any:
    try:
        return joblib.load(path)
    except Exception as exc:  # unpickling runs arbitrary code paths; any failure means an unusable file
        raise InputError(f"{path} cannot be read as a fitted pipeline ({type(exc).__name__}: {exc}). The file is "
                         "damaged or not a her2dlr model: export the model again.") from None


def load_artefact(path: str | os.PathLike[str], *, verify: bool = True) -> ModelArtefact:
    """Load a model artefact folder (or its ``model_card.json``).

    Parameters
    ----------
    path : path
        The artefact folder or its card.
    verify : bool
        Check every file against ``checksums.sha256`` (components are covered by the top folder's).

    Raises
    ------
    InputError
        No card, another format, a card without its required fields, missing files, files
        changed since the artefact was written, an unreadable pipeline (names the folder and
        what is wrong).
    """
    folder = Path(path)
    if folder.name == CARD:
        folder = folder.parent
    card_path = folder / CARD
    if not card_path.exists():
        raise InputError(f"{folder} is not a model artefact: it has no {CARD}. "
                         f"Models of a study are under <run>/models/ (`her2dlr learn run` writes them).")
    note = _verify_checksums(folder) if verify else None
    try:
        card = _check_card(json.loads(card_path.read_text(encoding="utf-8")), card_path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{card_path} is not valid JSON: {exc}.") from None
    pipeline = None
    if card["kind"] in ("pipeline", "combined"):
        if not (folder / PIPELINE).exists():
            raise InputError(f"Model artefact {folder} lacks {PIPELINE}.")
        pipeline = _load_pipeline(folder / PIPELINE)
        _check_pipeline(pipeline, card, folder / PIPELINE)
    if card["kind"] == "deep" and not (folder / NETWORK).is_file():
        raise InputError(f"Model artefact {folder} lacks {NETWORK}.")
    comps = [load_artefact(p, verify=False) for p in sorted((folder / "components").glob("*")) if (p / CARD).exists()]
    order = {n: i for i, n in enumerate(card.get("components", []))}
    comps.sort(key=lambda c: order.get(c.name, len(order)))
    if len(comps) != len(card.get("components", [])):
        raise InputError(f"Model artefact {folder} lists components {card.get('components')} but holds "
                         f"{[c.name for c in comps]}.")
    return ModelArtefact(folder, card, pipeline, comps, notes=[note] if note else [])


def list_artefacts(models_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per artefact under ``models_dir``: name, kind, folder, threshold, test AUC when known."""
    rows = []
    for card_path in sorted(Path(models_dir).glob(f"*/{CARD}")):
        try:
            card = _check_card(json.loads(card_path.read_text(encoding="utf-8")), card_path)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{card_path} is not valid JSON: {exc}.") from None
        rows.append({"model": card["name"], "kind": card["kind"], "folder": card_path.parent.name,
                     "threshold": card["threshold"]["value"], "test_auc": card.get("metrics", {}).get("test_auc")})
    return pd.DataFrame(rows, columns=["model", "kind", "folder", "threshold", "test_auc"])
