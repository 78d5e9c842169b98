"""Reading a study's run folder for the report.

The layout is :mod:`her2dlr.runfolder` (the contract between the stages). :class:`RunFolder`
finds its parts, loads them once, and says which are absent. Only a folder with neither ``cohort/manifest.parquet`` nor any ``learn/<set>/predictions.parquet``
is refused; every other part is optional and its report section says when it is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from her2dlr.errors import InputError
from her2dlr.runfolder import (
    CLINICAL_VARIABLES,
    FEATURE_FREQUENCY,
    FUNNEL,
    LABEL_PROXIES,
    METRICS,
    MODEL_CARD,
    PARAMS,
    PREDICTIONS,
    PREDICTIONS_CSV,
    SETTINGS,
    RunPaths,
)

__all__ = ["PREDICTION_REQUIRED", "LearnSet", "RunFolder", "file_sha256"]

#: Columns every prediction table must have (DESIGN contract plus the label).
PREDICTION_REQUIRED = ("case_id", "model", "split", "prob")


def file_sha256(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from None


def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


@dataclass
class LearnSet:
    """One ``learn/<set>/`` (or ``deep/<name>/``) folder of stage outputs."""

    name: str
    path: Path
    origin: str = "learn"

    def file(self, name: str) -> Path:
        """Path of a file of this set (may not exist)."""
        return self.path / name

    @cached_property
    def predictions(self) -> pd.DataFrame | None:
        """``predictions.parquet`` (or ``.csv``), or None."""
        for name in (PREDICTIONS, PREDICTIONS_CSV):
            p = self.path / name
            if p.exists():
                df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p, dtype={"case_id": str})
                missing = [c for c in PREDICTION_REQUIRED if c not in df.columns]
                if missing:
                    raise InputError(f"{p} lacks prediction column(s) {missing}; expected at least {list(PREDICTION_REQUIRED)}.")
                return df
        return None

    @cached_property
    def metrics(self) -> pd.DataFrame | None:
        """``metrics.csv`` or None."""
        return _read_csv(self.path / METRICS)

    @cached_property
    def funnel(self) -> pd.DataFrame | None:
        """``funnel.csv`` or None."""
        return _read_csv(self.path / FUNNEL)

    @cached_property
    def feature_frequency(self) -> pd.DataFrame | None:
        """``feature_frequency.csv`` or None."""
        return _read_csv(self.path / FEATURE_FREQUENCY)

    @cached_property
    def params(self) -> pd.DataFrame | None:
        """``params.csv`` or None."""
        return _read_csv(self.path / PARAMS)

    @cached_property
    def clinical_variables(self) -> pd.DataFrame | None:
        """``clinical_variables.csv`` or None."""
        return _read_csv(self.path / CLINICAL_VARIABLES)

    @cached_property
    def label_proxies(self) -> pd.DataFrame | None:
        """``label_proxies.csv`` (clinical columns that may stand in for the label) or None."""
        return _read_csv(self.path / LABEL_PROXIES)

    @cached_property
    def settings(self) -> dict[str, Any]:
        """``settings.json`` (empty dict when absent)."""
        p = self.path / SETTINGS
        return _read_json(p) if p.exists() else {}


@dataclass
class RunFolder:
    """The parts of a run folder, loaded lazily.

    Parameters
    ----------
    root : path
        The study's run folder (``output_dir`` of the study file, ``runs/<name>`` by default).

    Raises
    ------
    InputError
        The folder does not exist, or it holds neither ``cohort/manifest.parquet`` nor any
        ``learn/<set>/predictions.parquet``.
    """

    root: Path
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser().resolve()
        self.paths = RunPaths(self.root)
        if not self.root.exists():
            raise InputError(f"Run folder {self.root} does not exist.")
        if self.root.is_file():
            hint = (" It looks like a study file: give its run folder (output_dir, runs/<name> by default)."
                    if self.root.suffix.lower() in (".yaml", ".yml") else "")
            raise InputError(f"{self.root} is a file, not a run folder.{hint}")
        if not self.has_manifest and not self.learn_sets:
            have = sorted(p.name for p in self.root.iterdir())[:12]
            raise InputError(
                f"{self.root} is not a run folder: it has neither cohort/manifest.parquet (written by "
                f"`her2dlr cohort build`) nor any learn/<set>/predictions.parquet (written by `her2dlr learn run`). "
                f"It holds: {', '.join(have) or 'nothing'}."
            )

    # ------------------------------------------------------------------ paths
    def rel(self, path: str | os.PathLike[str]) -> str:
        """``path`` relative to the run folder (as shown in captions)."""
        p = Path(path)
        try:
            return p.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return p.as_posix()

    @property
    def cohort_dir(self) -> Path:
        return self.paths.cohort

    @property
    def manifest_path(self) -> Path:
        return self.paths.manifest

    @property
    def has_manifest(self) -> bool:
        return self.manifest_path.exists()

    @property
    def deep_dir(self) -> Path:
        return self.paths.deep

    @property
    def survival_dir(self) -> Path:
        return self.paths.survival

    # ------------------------------------------------------------------ cohort
    @cached_property
    def manifest(self) -> Any:
        """The :class:`her2dlr.cohort.manifest.Manifest`, or None when the run has no cohort."""
        if not self.has_manifest:
            return None
        from her2dlr.cohort.manifest import Manifest

        return Manifest.load(self.manifest_path)

    def cohort_json(self, name: str) -> dict[str, Any] | None:
        """A JSON file of ``cohort/`` (e.g. ``qc_summary.json``), or None."""
        p = self.cohort_dir / name
        return _read_json(p) if p.exists() else None

    def cohort_csv(self, name: str) -> pd.DataFrame | None:
        """A CSV file of ``cohort/`` (e.g. ``splits.csv``), or None."""
        return _read_csv(self.cohort_dir / name)

    # ------------------------------------------------------------------ learning
    @cached_property
    def learn_sets(self) -> list[LearnSet]:
        """Every ``learn/<set>/`` with predictions, then every ``deep/**/`` folder with predictions."""
        sets: list[LearnSet] = []
        learn = self.paths.learn
        if learn.is_dir():
            for p in sorted(learn.iterdir()):
                if p.is_dir() and any((p / n).exists() for n in (PREDICTIONS, PREDICTIONS_CSV)):
                    sets.append(LearnSet(p.name, p, "learn"))
        if self.deep_dir.is_dir():
            for pred in sorted(self.deep_dir.rglob("predictions.*")):
                if pred.suffix in (".parquet", ".csv") and pred.parent not in {s.path for s in sets}:
                    name = self.rel(pred.parent).replace("/", ":")
                    sets.append(LearnSet(name, pred.parent, "deep"))
        return sets

    @cached_property
    def predictions(self) -> pd.DataFrame:
        """All prediction tables, concatenated (``label`` filled from the manifest when absent)."""
        parts = []
        for s in self.learn_sets:
            df = s.predictions
            if df is None or df.empty:
                continue
            df = df.assign(learn_set=s.name)
            df["case_id"] = df["case_id"].astype(str)
            parts.append(df)
        if not parts:
            return pd.DataFrame(columns=[*PREDICTION_REQUIRED, "label", "fold", "learn_set"])
        out = pd.concat(parts, ignore_index=True)
        if ("label" not in out.columns or out["label"].isna().any()) and self.manifest is not None:
            labels = self.manifest.table.set_index(self.manifest.table["case_id"].astype(str))["label"]
            filled = out["case_id"].map(labels)
            out["label"] = out["label"].fillna(filled) if "label" in out.columns else filled
        if "fold" not in out.columns:
            out["fold"] = "holdout"
        out["fold"] = out["fold"].astype(str)
        return out

    @cached_property
    def metrics(self) -> pd.DataFrame:
        """All ``metrics.csv`` tables, concatenated, with a ``learn_set`` column."""
        parts = [s.metrics.assign(learn_set=s.name) for s in self.learn_sets if s.metrics is not None and len(s.metrics)]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def concat(self, attr: str) -> pd.DataFrame:
        """Concatenate one per-set table (``funnel``, ``feature_frequency``, ...) over the sets."""
        parts = []
        for s in self.learn_sets:
            df = getattr(s, attr)
            if df is not None and len(df):
                parts.append(df.assign(learn_set=s.name))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    # ------------------------------------------------------------------ features, models
    @cached_property
    def feature_tables(self) -> dict[str, Path]:
        """Name -> path of every ``features/*.parquet``."""
        folder = self.paths.features
        return {p.stem: p for p in sorted(folder.glob("*.parquet"))} if folder.is_dir() else {}

    def feature_record(self, name: str) -> dict[str, Any] | None:
        """The extraction record ``features/<name>.json``, or None."""
        p = self.paths.feature_record(name)
        return _read_json(p) if p.exists() else None

    @cached_property
    def model_cards(self) -> list[tuple[Path, dict[str, Any]]]:
        """``(path, card)`` of every ``models/*/model_card.json``."""
        folder = self.paths.models
        if not folder.is_dir():
            return []
        return [(p, _read_json(p)) for p in sorted(folder.glob(f"*/{MODEL_CARD}"))]

    # ------------------------------------------------------------------ deep, survival
    @cached_property
    def gradcam_images(self) -> list[Path]:
        """Grad-CAM montages and explanation figures (PNG) under ``deep/``.

        The files of every ``deep/<name>/explain/`` folder (``montage.png``, ``embedding.png``)
        and any PNG named like a class-activation map (``*cam*``, ``*montage*``, ``*saliency*``,
        ``*heatmap*``); per-case overlays (``explain/cases/``) are left out.
        """
        if not self.deep_dir.is_dir():
            return []
        keys = ("cam", "montage", "saliency", "heatmap")
        out = []
        for p in sorted(self.deep_dir.rglob("*.png")):
            if p.parent.name == "cases":
                continue
            if p.parent.name == "explain" or any(k in p.name.lower() for k in keys):
                out.append(p)
        montages = [p for p in out if "montage" in p.name.lower()]
        return montages + [p for p in out if p not in montages]

    @property
    def has_survival(self) -> bool:
        return self.survival_dir.is_dir()
