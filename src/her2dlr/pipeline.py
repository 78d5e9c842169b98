"""``her2dlr run STUDY``: every stage the study file configures, in order, re-running only what changed.

Stages, in order, each run only when the study configures it (what it reads, besides its settings):

- ``cohort``: always; build, QC, splits (the sources' files).
- ``segment``: a ``segment:`` section; the segmentation networks and out-of-fold masks (the manifest).
- ``video``: a ``video:`` section; per-frame localisation and the ``video_tf`` table (the manifest,
  ``video.network``).
- ``radiomics``: a ``radiomics:`` section, or a radiomics table named in ``learn.features``,
  ``deep.dlr.radiomics`` or ``segment.dsfr.radiomics`` (the manifest).
- ``learn``: a ``learn:`` section (the manifest, the feature tables it names).
- ``deep``: a ``deep:`` section; the networks on the outer folds (the manifest, ``deep.weights``).
- ``dlr``: ``deep.dlr`` given; deep features, DLR models and their artefacts (the manifest, the
  radiomics table).
- ``dsfr``: ``segment.dsfr.models: true``; seed 003's DSFR features of the segmentation fold networks,
  then the DSFR, radiomics and DLR (probability average) models in ``learn/dsfr_<arch>/`` (the manifest,
  the fold networks, ``segment/auto_masks.csv`` with ``radiomics.roi: auto``, the radiomics table:
  ``segment.dsfr.radiomics``, else the first radiomics table of ``learn.features``). Before ``survival``,
  so ``survival.score_from`` may name one of its models.
- ``survival``: a ``survival:`` section (the manifest).
- ``report``: always, last (what the stages above wrote).

Each stage calls the same function as its own command (``her2dlr cohort build``, ``train seg``,
``extract radiomics``, ``learn run``, ``train deep``, ``extract deep`` + ``learn dlr``, ``extract
dsfr`` + ``learn dsfr``, ``survival run``, ``report``); their modules are imported only when the
stage runs, so a run that reuses every stage loads neither torch, MONAI nor WeasyPrint.

Reuse. ``RUN/stages.json`` keeps, per stage that finished, a *fingerprint*: SHA-256 of its
settings (its study-file section as JSON, without the keys that only set parallelism; the
segmentation stage's without ``segment.dsfr``, which only the ``dsfr`` stage reads), the
package version and the fingerprints of its input files; plus the size and mtime of every file
it wrote (every run-folder file it created or changed, the radiomics cache excepted) and the
run id of each upstream stage it read. A stage re-runs when its fingerprint
differs, when a file it wrote is missing or changed, when an upstream stage re-ran since (its
run id differs), or with ``force``. Input files are fingerprinted by:

- cohort: path + size + mtime (ns) of every file of every source (the tables, every file under
  a folder source, every image and mask the manifest names; the check uses the list of names
  the last run recorded, and a changed table re-runs the cohort anyway): no file is read, so a
  1,000-image cohort (2,000 files) is checked in about 20 ms; an edit that keeps both size and
  mtime goes unseen (use ``force``).
- later stages: the SHA-256 of the bytes of the run-folder tables they read (the manifest,
  feature tables and their JSON records; files over 64 MiB by size + mtime).

A stage that fails records nothing (its stamp is removed before it starts, so the next run
tries it again), and its error propagates, its message prefixed by the stage's name.

Tracking. With the study's ``tracking.mlflow`` on, a run is one MLflow parent run (the study's
settings, each stage's status and seconds) and every segmentation, learning, deep, DLR and DSFR
stage that ran logs a child run after it finished (:func:`track_finished_stage`, which ``learn run``,
``train deep`` and ``train seg`` call too); the store (``RUN/mlruns``) is never a stage output.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from her2dlr import __version__
from her2dlr.config import Study, load_study
from her2dlr.errors import Her2dlrError, InputError, nearest
from her2dlr.io.atomic import check_writable
from her2dlr.runfolder import BEST_CHECKPOINT, MODEL_CARD, RunPaths
from her2dlr.tracking import check_tracking, tracked_pipeline

__all__ = ["STAGES", "PipelineResult", "StageOutcome", "file_fingerprint", "print_summary", "run_study",
           "track_finished_stage"]

#: Stage names, in the order they run.
STAGES = ("cohort", "segment", "video", "radiomics", "learn", "deep", "dlr", "dsfr", "survival", "report")
#: Files larger than this are fingerprinted by size + mtime instead of their bytes.
HASH_LIMIT = 64 * 2**20
#: Keys of a settings section that change how fast a stage runs, not what it writes.
_EXECUTION_KEYS = ("n_jobs", "backend", "scheduler")


# ---------------------------------------------------------------------------- fingerprints of files
def file_fingerprint(path: str | os.PathLike[str], *, content: bool = False) -> str:
    """Fingerprint of one file: ``size:mtime_ns``, or with ``content`` the SHA-256 of its bytes.

    ``"missing"`` when there is no such file; a file over :data:`HASH_LIMIT` is never read.
    """
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    if not content or st.st_size > HASH_LIMIT:
        return f"{st.st_size}:{st.st_mtime_ns}"
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _tree(folder: Path, skip: Sequence[str] = ()) -> dict[str, os.stat_result]:
    """Every file under ``folder`` (relative POSIX path -> stat), without write-in-progress temporaries."""
    out: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        rel_dir = Path(dirpath).relative_to(folder).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if f"{rel_dir}{d}" not in skip and not _temporary(d)]
        for name in filenames:
            if f"{rel_dir}{name}" in skip or _temporary(name):
                continue
            try:
                out[f"{rel_dir}{name}"] = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
    return out


def _temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _stat_all(paths: Iterable[str]) -> dict[str, str]:
    """``size:mtime_ns`` of each path; a folder (frames, a DICOM series) stands for every file in it."""
    out: dict[str, str] = {}
    for p in paths:
        if os.path.isdir(p):
            out.update({f"{p}/{rel}": f"{st.st_size}:{st.st_mtime_ns}" for rel, st in _tree(Path(p)).items()})
        else:
            out[p] = file_fingerprint(p)
    return out


def _hash_text(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------- what each stage reads
def _radiomics_names(study: Study) -> list[str]:
    """Radiomics table names the study's learning and DLR stages read (not a user's own table file)."""
    names = list(study.learn.features) if study.learn is not None else []
    if _dlr_configured(study):
        names.append(study.deep.dlr.radiomics)
    dsfr_table = _dsfr_radiomics(study) if _dsfr_configured(study) else None
    if dsfr_table:
        names.append(dsfr_table)
    return [n for n in names if n.startswith("radiomics") and not study.resolve(n).is_file()]


def _dlr_configured(study: Study) -> bool:
    return study.deep is not None and "dlr" in study.deep.model_fields_set


def _dsfr_configured(study: Study) -> bool:
    return study.segment is not None and study.segment.dsfr.models


def _dsfr_radiomics(study: Study, *, required: bool = False) -> str | None:
    """The radiomics table of the DSFR stage's radiomics and DLR models (None: the study names none).

    ``required``: an :class:`InputError` naming ``segment.dsfr.radiomics`` instead of None.
    """
    dsfr, features = study.segment.dsfr, study.learn.features if study.learn is not None else ()
    return dsfr.require_radiomics_table(features) if required else dsfr.radiomics_table(features)


def _section(model: Any, drop: Sequence[str] = _EXECUTION_KEYS) -> Any:
    if model is None:
        return None
    return {k: v for k, v in model.model_dump(mode="json").items() if k not in drop}


def _feature_inputs(study: Study, names: Iterable[str]) -> dict[str, str]:
    """Content fingerprints of the tables a feature name can refer to: every ``features/<name>*.parquet``
    with its JSON record, else a file of that name beside the study file (a user's table)."""
    out: dict[str, str] = {}
    folder = study.paths.features
    for name in names:
        found = sorted(folder.glob(f"{name}*.parquet")) if folder.is_dir() else []
        for path in found:
            for p in (path, path.with_suffix(".json")):
                out[f"features/{p.name}"] = file_fingerprint(p, content=True)
        if not found and study.resolve(name).is_file():
            out[str(study.resolve(name))] = file_fingerprint(study.resolve(name), content=True)
    return out


def _manifest_input(study: Study) -> dict[str, str]:
    return {"cohort/manifest.parquet": file_fingerprint(study.paths.manifest, content=True)}


def _auto_masks_input(study: Study, roi: str) -> dict[str, str]:
    """The automatic masks' table (its content) when a stage reads ``roi: auto`` lesions; else nothing."""
    if roi != "auto":
        return {}
    return {"segment/auto_masks.csv": file_fingerprint(study.paths.auto_masks, content=True)}


def _radiomics_inputs(study: Study) -> dict[str, str]:
    out = {**_manifest_input(study), **_auto_masks_input(study, study.radiomics.roi)}
    params = study.radiomics.params
    if params.endswith((".yaml", ".yml")):  # a PyRadiomics params file of the user's
        out[str(study.resolve(params))] = file_fingerprint(study.resolve(params), content=True)
    return out


def _deep_inputs(study: Study) -> dict[str, str]:
    out = {**_manifest_input(study), **_auto_masks_input(study, study.deep.roi)}
    if study.deep.weights is not None:  # starting weights: large, by size + mtime
        out[str(study.resolve(study.deep.weights))] = file_fingerprint(study.resolve(study.deep.weights))
    return out


def _dsfr_settings(study: Study) -> dict[str, Any]:
    """What the DSFR stage's results depend on besides its input files: ``segment.dsfr``, the network, the
    radiomics table's name, which lesion masks (given or automatic) and the ``learn:`` settings it fits with."""
    return {"arch": study.segment.arch, "dsfr": _section(study.segment.dsfr), "radiomics": _dsfr_radiomics(study),
            "lesion": "auto" if study.radiomics.roi == "auto" else "mask", "learn": _section(study.learn)}


def _dsfr_inputs(study: Study) -> dict[str, str]:
    """The manifest, the segmentation fold networks (size + mtime), the automatic masks' table when the
    lesions are the automatic masks, and the radiomics table."""
    out = {**_manifest_input(study), **_auto_masks_input(study, study.radiomics.roi)}
    folder = study.paths.segment_arch(study.segment.arch)
    for path in sorted(folder.glob(f"r*f*/{BEST_CHECKPOINT}")) if folder.is_dir() else ():
        out[path.relative_to(study.run_dir).as_posix()] = file_fingerprint(path)
    table = _dsfr_radiomics(study)
    return {**out, **_feature_inputs(study, [table] if table else [])}


def _cohort_inputs(study: Study, previous: dict[str, str] | None, *, after_run: bool = False) -> dict[str, str]:
    """Size + mtime of the sources' files: the tables, every file of a folder source, and the images and
    masks the manifest names (read from the new manifest after a run, else the previous stamp's list)."""
    out: dict[str, str] = {}
    for src in study.cohort.sources:
        path = study.resolve(src.path)
        out.update(_stat_all([str(path)]))
        table = getattr(src, "table", None)  # a DICOM source's clinical table may live outside its folder
        if table is not None:
            out.update(_stat_all([str(study.resolve(table))]))
    # a feature-only cohort's QC reads the feature tables the study brings (duplicates, missing cases)
    user_tables = [n for n in (study.learn.features if study.learn is not None else []) if study.resolve(n).is_file()]
    out.update(_stat_all([str(study.resolve(n)) for n in user_tables]))
    named = _manifest_files(study) if after_run else list(previous or {})
    out.update(_stat_all([p for p in named if p not in out]))
    return out


def _manifest_files(study: Study) -> list[str]:
    """Every image, mask and annotations path the manifest names, outside the run folder (derived masks are outputs)."""
    import pandas as pd

    table = pd.read_parquet(study.paths.manifest)
    run = str(study.run_dir) + os.sep
    files: set[str] = set()
    for col in ("image", "mask", "annotations"):  # a video row's per-frame annotations are an input too
        if col in table.columns:
            files.update(str(v) for v in table[col].dropna() if str(v))
    for cell in table["masks"].dropna() if "masks" in table.columns else ():
        cell = str(cell)
        files.update(str(v) for v in (json.loads(cell) if cell.startswith("[") else [cell]))
    return sorted(f for f in files if not f.startswith(run))


# ---------------------------------------------------------------------------- what each stage does
@dataclass(frozen=True)
class _Options:
    n_jobs: int | None
    progress: bool
    pdf: bool

    def workers(self, default: int = 1) -> int:
        if self.n_jobs is None:
            return default
        return (os.cpu_count() or 1) if self.n_jobs == -1 else max(self.n_jobs, 1)


def _run_cohort(study: Study, opts: _Options) -> Path:
    from her2dlr.cohort.build import build_cohort

    build_cohort(study, n_jobs=opts.n_jobs if opts.n_jobs is not None else -1, progress=opts.progress)
    return study.paths.manifest


def _run_segment(study: Study, opts: _Options) -> Path:
    from her2dlr.segment.stage import run_seg_stage

    return run_seg_stage(study, progress=opts.progress).out_dir


def _run_video(study: Study, opts: _Options) -> Path:
    from her2dlr.video.stage import run_video_stage

    settings = study.video
    if opts.n_jobs is not None:
        settings = settings.model_copy(update={"n_jobs": opts.n_jobs})
    run_video_stage(study, settings, progress=opts.progress)
    return study.paths.feature_table("video_tf")


def _video_inputs(study: Study) -> dict[str, str]:
    out = _manifest_input(study)
    params = study.video.params  # a shipped set by name, or the user's own params file
    files = [study.video.network, params if params.endswith((".yaml", ".yml")) else None]
    for path in filter(None, files):
        out[str(study.resolve(path))] = file_fingerprint(study.resolve(path), content=True)
    return out


def _run_radiomics(study: Study, opts: _Options) -> Path:
    from her2dlr.radiomics.stage import run_radiomics_stage

    settings = study.radiomics
    if opts.n_jobs is not None:
        settings = settings.model_copy(update={"n_jobs": opts.n_jobs})
    return run_radiomics_stage(study, settings, progress=opts.progress).path


def _run_learn(study: Study, opts: _Options) -> Path:
    from her2dlr.learn.study import run_study_learning

    results = run_study_learning(study, n_jobs=opts.n_jobs, progress=opts.progress)
    return results[0].out_dir


def _run_deep(study: Study, opts: _Options) -> Path:
    from her2dlr.deep.stage import deep_dir, run_deep_stage, training_settings

    d = study.deep
    settings, roi = training_settings(d, weights_dir=study.base_dir, progress=opts.progress)
    run_deep_stage(study, settings=settings, roi=roi, schemes=d.schemes, final=d.final,
                   n_jobs=opts.workers(default=2), progress=opts.progress, lesion=d.roi)
    return deep_dir(study, d.arch)


def _run_dlr(study: Study, opts: _Options) -> Path:
    from her2dlr.deep.features import extract_deep_features
    from her2dlr.deep.stage import run_dlr_stage

    d = study.deep
    extract_deep_features(study, arch=d.arch, n_components=d.dlr.n_components, n_jobs=opts.workers(),
                          progress=opts.progress)
    result, _ = run_dlr_stage(study, n_jobs=opts.workers(), progress=opts.progress)
    return result.out_dir


def _run_dsfr(study: Study, opts: _Options) -> Path:
    from her2dlr.deep.dsfr import run_study_dsfr
    from her2dlr.deep.dsfr_features import extract_dsfr_features
    from her2dlr.learn.study import resolve_feature_table

    radiomics = _dsfr_radiomics(study, required=True)
    try:  # a missing table is named before the networks describe every case
        resolve_feature_table(study, radiomics)
    except InputError as exc:
        key = "segment.dsfr.radiomics" if study.segment.dsfr.radiomics else "learn.features (segment.dsfr.radiomics)"
        raise InputError(f"{key}: {exc}") from None
    extract_dsfr_features(study, progress=opts.progress)  # layer and heat maps: segment.dsfr
    return run_study_dsfr(study, radiomics=radiomics, n_jobs=opts.workers()).out_dir  # model: segment.dsfr


def _survival_inputs(study: Study) -> dict[str, str]:
    out = _manifest_input(study)
    if study.survival.score_from is not None:  # the scores come from the learn / deep predictions
        for path in sorted([*study.run_dir.glob("learn/*/predictions.parquet"),
                            *study.run_dir.glob("deep/*/predictions.parquet")]):
            out[str(path.relative_to(study.run_dir))] = file_fingerprint(path, content=True)
    return out


def _run_survival(study: Study, opts: _Options) -> Path:
    from her2dlr.survival.stage import run_survival_stage

    return run_survival_stage(study)[1]


def _run_report(study: Study, opts: _Options) -> Path:
    from her2dlr.report.build import build_report

    return build_report(study.run_dir, progress=opts.progress, pdf=opts.pdf).html


@dataclass(frozen=True)
class _Stage:
    name: str
    section: str  # the study-file section it follows, named in messages
    depends: tuple[str, ...]
    configured: Callable[[Study], bool]
    settings: Callable[[Study, _Options], Any]
    inputs: Callable[[Study, dict[str, str] | None], dict[str, str]]  # (study, the last stamp's inputs)
    run: Callable[[Study, _Options], Path]
    inputs_after: Callable[[Study], dict[str, str]] | None = None  # inputs known only once it ran


_SPECS = (
    _Stage("cohort", "cohort, label, split, qc", (), lambda s: True,
           lambda s, o: s.model_dump(mode="json", include={"name", "cohort", "label", "split", "qc"}),
           _cohort_inputs, _run_cohort, lambda s: _cohort_inputs(s, None, after_run=True)),
    _Stage("segment", "segment", ("cohort",), lambda s: s.segment is not None,
           lambda s, o: _section(s.segment, drop=(*_EXECUTION_KEYS, "dsfr")), lambda s, _: _manifest_input(s),
           _run_segment),
    _Stage("video", "video", ("cohort", "segment"), lambda s: s.video is not None,
           lambda s, o: _section(s.video), lambda s, _: _video_inputs(s), _run_video),
    _Stage("radiomics", "radiomics", ("cohort", "segment"),
           lambda s: "radiomics" in s.model_fields_set or bool(_radiomics_names(s)),
           lambda s, o: _section(s.radiomics), lambda s, _: _radiomics_inputs(s), _run_radiomics),
    _Stage("learn", "learn", ("cohort", "video", "radiomics"), lambda s: s.learn is not None,
           lambda s, o: _section(s.learn),
           lambda s, _: {**_manifest_input(s), **_feature_inputs(s, s.learn.features)}, _run_learn),
    _Stage("deep", "deep", ("cohort", "segment"), lambda s: s.deep is not None,
           lambda s, o: _section(s.deep, drop=("dlr",)), lambda s, _: _deep_inputs(s), _run_deep),
    _Stage("dlr", "deep.dlr", ("cohort", "radiomics", "deep"), _dlr_configured,
           lambda s, o: {"arch": s.deep.arch, "dlr": _section(s.deep.dlr), "learn": _section(s.learn)},
           lambda s, _: {**_manifest_input(s), **_feature_inputs(s, [s.deep.dlr.radiomics])}, _run_dlr),
    _Stage("dsfr", "segment.dsfr", ("cohort", "segment", "radiomics"), _dsfr_configured,
           lambda s, o: _dsfr_settings(s), lambda s, _: _dsfr_inputs(s), _run_dsfr),
    _Stage("survival", "survival", ("cohort", "learn", "deep", "dlr", "dsfr"), lambda s: s.survival is not None,
           lambda s, o: _section(s.survival), lambda s, _: _survival_inputs(s), _run_survival),
    _Stage("report", "report", STAGES[:-1], lambda s: True, lambda s, o: {"pdf": o.pdf}, lambda s, _: {}, _run_report),
)


# ---------------------------------------------------------------------------- results
@dataclass
class StageOutcome:
    """What happened to one stage.

    Attributes
    ----------
    stage : str
    status : {"ran", "reused", "skipped", "not selected", "failed"}
        ``skipped``: the study does not configure it; ``not selected``: outside ``only`` / ``from_stage``.
    seconds : float
        Time spent on it (checking only, when reused).
    output : Path or None
        Its main output (manifest, feature table, result folder, report.html).
    reason : str
        Why it ran (first run, settings changed, an input or output changed, upstream re-ran, forced).
    """

    stage: str
    status: str
    seconds: float = 0.0
    output: Path | None = None
    reason: str = ""


@dataclass
class PipelineResult:
    """Outcome of :func:`run_study`: one :class:`StageOutcome` per stage, in order."""

    run_dir: Path
    stages: list[StageOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def __getitem__(self, name: str) -> StageOutcome:
        for outcome in self.stages:
            if outcome.stage == name:
                return outcome
        raise KeyError(name)

    @property
    def report(self) -> Path | None:
        """The report's HTML file, when the report stage ran or was reused."""
        out = next((o for o in self.stages if o.stage == "report"), None)
        return out.output if out is not None and out.status in ("ran", "reused") else None

    def table(self) -> Any:
        """The summary as a :class:`rich.table.Table`: stage, status, seconds, main output, why."""
        from rich.table import Table

        table = Table(title=f"her2dlr run: {self.run_dir} ({self.seconds:.1f} s)", title_justify="left")
        for col, kw in (("stage", {}), ("status", {}), ("seconds", {"justify": "right"}), ("output", {"overflow": "fold"}),
                        ("why", {"style": "dim"})):
            table.add_column(col, **kw)
        colours = {"ran": "green", "reused": "cyan", "failed": "bold red"}
        for o in self.stages:
            shown = "" if o.output is None else (
                o.output.relative_to(self.run_dir).as_posix() if o.output.is_relative_to(self.run_dir) else str(o.output))
            style = colours.get(o.status)
            table.add_row(o.stage, f"[{style}]{o.status}[/]" if style else o.status,
                          f"{o.seconds:.1f}" if o.status in ("ran", "reused", "failed") else "", shown, o.reason)
        return table


def print_summary(result: PipelineResult, console: Any = None) -> None:
    """Print the summary table of a run and where its report is."""
    from rich.console import Console

    console = console or Console()
    console.print(result.table())
    if result.report is not None:
        pdf = result.report.with_suffix(".pdf")
        console.print(f"Report: {result.report}" + (f" and {pdf}" if pdf.exists() else ""), highlight=False)


# ---------------------------------------------------------------------------- the state file
def _load_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"stages": {}}
    return state if isinstance(state.get("stages"), dict) else {"stages": {}}


def _save_state(path: Path, state: dict[str, Any]) -> None:
    from her2dlr.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(state, indent=1, sort_keys=True) + "\n")


def _outputs_changed(run_dir: Path, outputs: dict[str, str]) -> str:
    for rel, fp in outputs.items():
        now = file_fingerprint(run_dir / rel)
        if now != fp:
            return f"output {'missing' if now == 'missing' else 'changed'}: {rel}"
    return ""


def _why_stale(spec: _Stage, stamp: dict[str, Any] | None, settings_hash: str, inputs: dict[str, str],
               upstream: dict[str, str | None], run_dir: Path) -> str:
    """Empty when the stage can be reused, else the first reason it cannot."""
    if stamp is None:
        return "no finished run"
    changed_up = sorted(k for k in set(upstream) | set(stamp.get("upstream", {}))
                        if upstream.get(k) != stamp.get("upstream", {}).get(k))
    if changed_up:
        return f"upstream re-ran: {', '.join(changed_up)}"
    if stamp.get("her2dlr") != __version__:
        return f"her2dlr version {stamp.get('her2dlr')} -> {__version__}"
    if stamp.get("settings") != settings_hash:
        return f"settings changed ({spec.section})"
    old = stamp.get("inputs", {})
    diff = sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k))
    if diff:
        return f"input changed: {Path(diff[0]).name}" + (f" (+{len(diff) - 1})" if len(diff) > 1 else "")
    return _outputs_changed(run_dir, stamp.get("outputs", {}))


def _selected(only: Sequence[str] | None, from_stage: str | None) -> set[str]:
    for name in [*(only or []), *([from_stage] if from_stage else [])]:
        if name not in STAGES:
            raise InputError(f"Unknown stage '{name}'. Stages: {', '.join(STAGES)}.{nearest(name, STAGES)}")
    chosen = set(STAGES[STAGES.index(from_stage):]) if from_stage else set(STAGES)
    return chosen & set(only) if only else chosen


# ---------------------------------------------------------------------------- the pipeline
def run_study(study: Study | str | os.PathLike[str], *, force: bool = False, only: Sequence[str] | None = None,
              from_stage: str | None = None, n_jobs: int | None = None, pdf: bool = True, progress: bool = True,
              console: Any = None) -> PipelineResult:
    """Run every stage the study configures, in order, reusing the stages whose inputs have not changed.

    Parameters
    ----------
    study : Study or path
        The study, or its study file.
    force : bool, default=False
        Re-run every selected stage, changed or not.
    only : sequence of str, optional
        Consider these stages only (names in :data:`STAGES`); the others are left as they are.
    from_stage : str, optional
        Consider this stage and the ones after it only.
    n_jobs : int, optional
        Parallel workers of the cohort, radiomics, learning, deep and DSFR stages (-1: all cores);
        default: each stage's own (the study file's, or the stage command's default).
    pdf : bool, default=True
        The report also as PDF (WeasyPrint).
    progress : bool, default=True
        Progress bars of the stages (on stderr).
    console : rich.console.Console, optional
        Where to print one line per stage and the summary table (nothing printed without one).

    Returns
    -------
    PipelineResult

    Raises
    ------
    InputError
        An unknown stage name in ``only`` / ``from_stage``.
    Her2dlrError, or any error of a stage
        The first stage that fails stops the run; its message starts with the stage's name. The
        stages that finished before it keep their stamps.
    """
    t_start = time.perf_counter()
    study = study if isinstance(study, Study) else load_study(study)
    check_tracking(study)
    paths = RunPaths(study.run_dir)
    check_writable(paths.root)
    opts = _Options(n_jobs=n_jobs, progress=progress, pdf=pdf)
    chosen = _selected(only, from_stage)
    state = _load_state(paths.stages)
    stamps: dict[str, Any] = state["stages"]
    configured = {spec.name for spec in _SPECS if spec.configured(study)}
    _refuse_multiclass_deep(study, configured)
    if "dsfr" in configured:  # refused before the segmentation networks train, not after
        _dsfr_radiomics(study, required=True)
    result = PipelineResult(run_dir=paths.root)
    with tracked_pipeline(study) as log_outcomes:
        for spec in _SPECS:
            if spec.name not in configured:
                result.stages.append(StageOutcome(spec.name, "skipped", reason="not configured"))
                continue
            if spec.name not in chosen:
                result.stages.append(StageOutcome(spec.name, "not selected", reason="outside --only / --from"))
                continue
            outcome, error = _stage(spec, study, opts, stamps, configured, force, paths, state, console)
            result.stages.append(outcome)
            if error is not None:
                result.seconds = time.perf_counter() - t_start
                if console is not None:
                    print_summary(result, console)
                raise error
        if log_outcomes is not None:
            log_outcomes({o.stage: {"status": o.status, "seconds": o.seconds} for o in result.stages})
    result.seconds = time.perf_counter() - t_start
    if console is not None:
        print_summary(result, console)
    return result


def _refuse_multiclass_deep(study: Study, configured: set[str]) -> None:
    """The DLR stage fuses one positive-class signature: refuse it, before any stage runs, for a 3-class label."""
    rule = study.label.rule
    if rule == "her2_three_class" and "dlr" in configured:
        raise InputError(
            f"deep.dlr: label.rule '{rule}' has three classes (HER2-zero / HER2-low / HER2-positive), but deep "
            "learning radiomics (deep.dlr, her2dlr learn dlr) fuses the network's probability of one positive class "
            "with binary radiomics models, so it cannot run on it. Remove the `dlr` key of the study's `deep:` section "
            "(the deep and learning stages handle three classes), or use a binary rule (label.rule: her2_low or "
            "her2_status).")


def _stage(spec: _Stage, study: Study, opts: _Options, stamps: dict[str, Any], configured: set[str], force: bool,
           paths: RunPaths, state: dict[str, Any], console: Any) -> tuple[StageOutcome, BaseException | None]:
    """Check one stage and run it when it is stale; record its stamp on success, return its error on failure."""
    t0 = time.perf_counter()
    stamp = stamps.get(spec.name)
    settings_hash = _hash_text(spec.settings(study, opts))
    upstream = {d: (stamps.get(d) or {}).get("run_id") for d in spec.depends if d in configured}
    inputs = spec.inputs(study, (stamp or {}).get("inputs"))
    reason = "forced" if force else _why_stale(spec, stamp, settings_hash, inputs, upstream, paths.root)
    if not reason:
        if console is not None:
            console.print(f"[cyan]{spec.name}[/]: reused", highlight=False)
        return StageOutcome(spec.name, "reused", time.perf_counter() - t0, paths.root / stamp["main_output"]), None
    if console is not None:
        console.print(f"[green]{spec.name}[/]: running ({reason})", highlight=False)
    if stamp is not None:
        del stamps[spec.name]
        _save_state(paths.stages, state)
    not_outputs = [p.relative_to(paths.root).as_posix() for p in (paths.stages, paths.feature_cache, paths.mlruns)]
    before = _tree(paths.root, not_outputs) if paths.root.is_dir() else {}
    try:
        main = Path(spec.run(study, opts))
    except Exception as exc:
        return StageOutcome(spec.name, "failed", time.perf_counter() - t0, None, reason), _named(exc, spec)
    if spec.inputs_after is not None:
        inputs = spec.inputs_after(study)
    after = _tree(paths.root, not_outputs)
    written = {rel: f"{st.st_size}:{st.st_mtime_ns}" for rel, st in after.items()
               if rel not in before or (before[rel].st_size, before[rel].st_mtime_ns) != (st.st_size, st.st_mtime_ns)}
    main_rel = os.path.relpath(main.resolve(), paths.root.resolve())
    for rel, st in after.items():  # the main output is checked even when this run left it untouched
        if rel == main_rel or rel.startswith(main_rel + "/"):
            written.setdefault(rel, f"{st.st_size}:{st.st_mtime_ns}")
    for other in stamps.values():  # a file an earlier stage wrote and this one rewrote: keep its new stat
        for rel in set(other.get("outputs", {})) & set(written):
            other["outputs"][rel] = written[rel]
    seconds = time.perf_counter() - t0
    stamps[spec.name] = {
        "run_id": f"{datetime.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}", "her2dlr": __version__,
        "settings": settings_hash, "fingerprint": _hash_text([settings_hash, __version__, inputs]),  # parts kept too
        "inputs": inputs, "upstream": upstream, "outputs": written, "main_output": main_rel,
        "seconds": round(seconds, 3), "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    _save_state(paths.stages, state)
    if spec.name in _TRACKED:
        models = sorted({paths.root / Path(rel).parent for rel in written
                         if rel.startswith("models/") and rel.count("/") == 2 and rel.endswith("/" + MODEL_CARD)})
        track_finished_stage(study, spec.name, main, artefacts=models)
    return StageOutcome(spec.name, "ran", seconds, main, reason), None


# ---------------------------------------------------------------------------- MLflow tracking
#: Stages logged to MLflow when the study turns tracking on.
_TRACKED = ("segment", "learn", "deep", "dlr", "dsfr")


def track_finished_stage(study: Study, stage: str, folder: str | os.PathLike[str], *,
                         artefacts: Sequence[str | os.PathLike[str]] = ()) -> str | None:
    """Log a stage that finished to MLflow, when the study's ``tracking.mlflow`` is on (see :mod:`her2dlr.tracking`).

    Parameters
    ----------
    study : Study
    stage : {"segment", "learn", "deep", "dlr", "dsfr"}
    folder : path
        The stage's results folder (``segment/<arch>``, ``learn/<set>``, ``deep/<arch>``).
    artefacts : sequence of path
        The model artefact folders it wrote, logged as MLflow ``pyfunc`` models
        (:mod:`her2dlr.predict.pyfunc`).

    Returns
    -------
    str or None
        The MLflow run id (None: tracking off, or a failure, which is a warning).
    """
    if not study.tracking.mlflow:
        return None
    from her2dlr.tracking import require_mlflow, results_record, segment_record, track_stage

    require_mlflow()
    from her2dlr.predict.pyfunc import log_pyfunc_model

    if stage == "segment":
        network = Path(folder) / "final" / BEST_CHECKPOINT
        record = segment_record(folder, network=network if network.is_file() else None)
        return track_stage(study, record, model_logger=log_pyfunc_model)
    import tempfile

    record = results_record(stage, folder, artefacts=artefacts)
    with tempfile.TemporaryDirectory() as tmp:  # the ROC figure goes to the store, never into the run folder
        roc = _roc_figure(Path(folder), Path(tmp) / "roc_test.png")
        record.figures += [roc] if roc is not None else []
        return track_stage(study, record, model_logger=log_pyfunc_model)


def _roc_figure(folder: Path, out: Path) -> Path | None:
    """ROC curves of a results folder's test predictions (first repetition of a k-fold, or the hold-out), legend
    from its ``metrics.csv``; None when it has no test predictions of both classes."""
    import pandas as pd
    from sklearn.metrics import roc_curve

    from her2dlr.report.figures._base import model_colors
    from her2dlr.report.figures.discrimination import plot_roc
    from her2dlr.report.tables import fmt_ci
    from her2dlr.runfolder import METRICS, PREDICTIONS

    if not (folder / PREDICTIONS).is_file() or not (folder / METRICS).is_file():
        return None
    pred = pd.read_parquet(folder / PREDICTIONS)
    metrics = pd.read_csv(folder / METRICS).set_index(["model", "split", "scope"])
    test = pred[(pred["split"] == "test") & pred["label"].notna()]
    fold = test["fold"].astype(str)
    test = test[~fold.str.match(r"^r\d+f\d+$") | fold.str.startswith("r0f")]
    curves, labels = {}, {}
    for (model, scheme), part in test.groupby(["model", fold.str.replace(r"^r0f\d+$", "r0", regex=True)]):
        if part["label"].nunique() != 2:  # one class, or a multi-class model (no single ROC curve)
            continue
        curves[f"{model} ({scheme})"] = roc_curve(part["label"].astype(int), part["prob"])[:2]
        key = (model, "test", scheme)
        row = metrics.loc[[key]].iloc[0] if key in metrics.index else None
        labels[f"{model} ({scheme})"] = (f"{model} ({scheme}): {fmt_ci(row['auc'], row['ci_low'], row['ci_high'])}"
                                         if row is not None else f"{model} ({scheme})")
    if not curves:
        return None
    fig = plot_roc(curves, labels, model_colors(list(curves)), title=f"{folder.name}: test predictions")
    fig.savefig(out, dpi=110)
    return out


def _named(exc: BaseException, spec: _Stage) -> BaseException:
    """The stage's error, its message starting with the stage's name (toolkit errors), or with a note."""
    where = f"stage '{spec.name}' (study file: {spec.section})"
    if isinstance(exc, Her2dlrError) and len(exc.args) == 1:
        new = type(exc)(f"{where}: {exc}")
        new.__cause__ = exc
        return new
    if hasattr(exc, "add_note"):
        exc.add_note(f"while running {where}")
    return exc
