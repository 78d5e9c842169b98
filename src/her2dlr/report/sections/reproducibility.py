"""Reproducibility: package versions, seeds, configuration hashes and fingerprints of the run's files."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from her2dlr.report.context import ReportContext
from her2dlr.report.document import Section
from her2dlr.report.run import file_sha256

__all__ = ["input_files", "reproducibility_section"]

_SKIP_DIRS = {"report", "cache", "masks"}
_SUFFIXES = {".parquet", ".csv", ".json", ".txt", ".yaml", ".yml"}


def input_files(ctx: ReportContext) -> list[Path]:
    """Files of the run the report reads (stage outputs; caches, masks and the report itself left out)."""
    root = ctx.run.root
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if not p.is_file() or any(part in _SKIP_DIRS or part.startswith(".") for part in rel):
            continue
        if p.suffix.lower() in _SUFFIXES or (rel[0] in ("deep", "survival") and p.suffix.lower() == ".png"):
            out.append(p)
    return out


def reproducibility_section(ctx: ReportContext) -> Section:
    """Versions, seeds, hashes and file fingerprints (DESIGN rule 5)."""
    from her2dlr.provenance import config_hash, package_versions

    sec = Section("reproducibility", "Reproducibility")
    run = ctx.run
    sec.text("Every figure and table of this report is computed from the files listed below; running "
             "`her2dlr report` on the same run folder regenerates them. The CSV files under report/tables and "
             "report/figures hold the numbers of each table and figure.")
    # versions
    rows = []
    for name in run.feature_tables:
        rec = run.feature_record(name) or {}
        for key in ("pyradiomics", "python"):
            if rec.get(key):
                rows.append({"package": key, "version": str(rec[key]), "recorded_in": f"features/{name}.json"})
    for path, card in run.model_cards:
        for pkg, ver in (card.get("versions") or {}).items():
            rows.append({"package": pkg, "version": str(ver), "recorded_in": run.rel(path)})
    for pkg, ver in package_versions().items():
        rows.append({"package": pkg, "version": ver, "recorded_in": "report build (this environment)"})
    sec.add(ctx.table("versions", "Software versions recorded by the stages and used to build this report.",
                      pd.DataFrame(rows)))
    # seeds and hashes
    settings_rows = []
    m = run.manifest
    if m is not None:
        split = m.meta.get("split") or {}
        if "seed" in split:
            settings_rows.append({"item": "split seed", "value": str(split["seed"]), "source": "cohort/manifest.parquet"})
        settings_rows.append({"item": "cohort settings hash", "value": config_hash(m.meta),
                              "source": "cohort/manifest.parquet (metadata)"})
    for ls in run.learn_sets:
        st = ls.settings
        if st:
            if "seed" in st:
                settings_rows.append({"item": f"learning seed ({ls.name})", "value": str(st["seed"]),
                                      "source": run.rel(ls.file("settings.json"))})
            settings_rows.append({"item": f"learning config hash ({ls.name})", "value": config_hash(st),
                                  "source": run.rel(ls.file("settings.json"))})
    for name in run.feature_tables:
        rec = run.feature_record(name) or {}
        if rec.get("params_hash"):
            settings_rows.append({"item": f"radiomics params hash ({name})", "value": str(rec["params_hash"]),
                                  "source": f"features/{name}.json"})
    for path, card in run.model_cards:
        for key in ("config_hash", "seed"):
            if card.get(key) is not None:
                settings_rows.append({"item": f"{key} ({path.parent.name})", "value": str(card[key]),
                                      "source": run.rel(path)})
    settings_rows.append({"item": "report bootstrap seed", "value": "0", "source": "report"})
    if m is not None and "pixel_sha1" in m.table.columns:
        inc = m.included
        sha = sorted(str(s) for s in inc["pixel_sha1"].dropna())
        if sha:
            fp = hashlib.sha256("\n".join(sha).encode()).hexdigest()[:16]
            settings_rows.append({"item": f"pixel fingerprint of the {len(sha)} included images", "value": fp,
                                  "source": "SHA-256 of the sorted pixel_sha1 column of the manifest"})
    sec.add(ctx.table("seeds_and_hashes", "Seeds, configuration hashes and the image-content fingerprint.",
                      pd.DataFrame(settings_rows)))
    # file fingerprints
    files = input_files(ctx)
    frows = []
    for p in files:
        st = p.stat()
        frows.append({"file": run.rel(p), "bytes": st.st_size, "sha256": file_sha256(p)[:16],
                      "modified_utc": datetime.fromtimestamp(st.st_mtime, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")})
    sec.add(ctx.table("file_fingerprints", "Run files read by the report, with the first 16 hex digits of their SHA-256.",
                      pd.DataFrame(frows), max_rows=60))
    from her2dlr import __version__

    ctx.facts.set("code", f"Analysis with her2dlr {__version__} (open source, Apache-2.0); settings, seeds and hashes "
                          "are recorded in the run folder.", sec.title)
    ctx.facts.set("pipeline", "Pipeline: cohort import and QC \u2192 patient-level splits \u2192 feature extraction \u2192 "
                              "selection and modelling inside training folds \u2192 evaluation \u2192 report (this "
                              "document); every stage's files are listed under Reproducibility.", sec.title)
    return sec
