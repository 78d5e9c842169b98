"""Explainability (Grad-CAM montages from ``deep/``) and survival (outputs of ``survival/``)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from her2dlr.report.context import ReportContext
from her2dlr.report.document import FigureBlock, Section
from her2dlr.report.tables import format_frame

__all__ = ["MAX_IMAGES", "explainability_section", "survival_section"]

#: Images embedded per section (the rest are listed).
MAX_IMAGES = 12
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_block(ctx: ReportContext, prefix: str, p: Path, caption: str) -> FigureBlock | None:
    """A figure block holding a PNG file of the run as it is (None when the file is not a PNG)."""
    data = p.read_bytes()
    if not data.startswith(_PNG_MAGIC):
        return None
    return FigureBlock(ctx.unique_name(f"{prefix}_{p.stem}"), caption, data, [ctx.run.rel(p)], "80%")


def explainability_section(ctx: ReportContext) -> Section:
    """Grad-CAM / CAM montages found under ``deep/`` (PNG files), embedded as they are."""
    sec = Section("explainability", "Explainability")
    run = ctx.run
    if not run.deep_dir.is_dir():
        return sec.note("The run has no deep/ outputs: no Grad-CAM maps to show (none).", "missing")
    images = run.gradcam_images
    if not images:
        return sec.note("deep/ holds no Grad-CAM montages (PNG files named *cam*, *montage* or *saliency*): "
                        "none to show.", "missing")
    sec.text("Class activation maps (Grad-CAM) of the deep-learning models: regions that raised the predicted "
             "probability of the positive class are warm. Maps show where a network looked, not why; read them with "
             "the images.")
    for path in images[:MAX_IMAGES]:
        what = ("Grad-CAM montage (most confident true positives, false positives, false negatives and true "
                "negatives)" if "montage" in path.name.lower() else
                "Embedding of the network's deep features" if "embedding" in path.name.lower() else "Heat map")
        block = _png_block(ctx, "gradcam", path, f"{what}: {run.rel(path)}.")
        if block is not None:
            sec.add(block)
    for summary in sorted(run.deep_dir.rglob("heat_summary.json")):
        try:
            data = json.loads(summary.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue
        flat = pd.json_normalize(data, sep=".").T.reset_index()
        flat.columns = ["item", "value"]
        flat["value"] = flat["value"].map(lambda v: v if not isinstance(v, (list, dict)) else json.dumps(v))
        sec.add(ctx.table(f"heat_summary_{summary.parent.parent.name}", f"Heat-map summary ({run.rel(summary)}): "
                          "share of the heat inside the lesion, by group.", flat, display=format_frame(flat),
                          sources=[run.rel(summary)]))
    if len(images) > MAX_IMAGES:
        sec.note(f"{len(images) - MAX_IMAGES} more montage(s) in deep/: "
                 + ", ".join(run.rel(p) for p in images[MAX_IMAGES:MAX_IMAGES + 20]), "info")
    ctx.facts.set("explainability", f"Grad-CAM maps of the deep-learning models ({len(images)} montage(s) in deep/).",
                  sec.title)
    return sec


def survival_section(ctx: ReportContext) -> Section:
    """Summary, tables and figures written by the survival stage (``survival/``)."""
    sec = Section("survival", "Survival")
    folder = ctx.run.survival_dir
    if not folder.is_dir():
        return sec.note("The run has no survival/ outputs (`her2dlr survival run`): no survival analysis.", "missing")
    summary = folder / "summary.txt"
    if summary.exists():
        for para in summary.read_text(encoding="utf-8").strip().split("\n\n"):
            if para.strip():
                sec.text(" ".join(line.strip() for line in para.splitlines() if line.strip()))
    settings = folder / "survival_settings.json"
    if settings.exists():
        try:
            st = json.loads(settings.read_text(encoding="utf-8"))
            keys = {k: v for k, v in st.items() if isinstance(v, (str, int, float)) and v not in ("", None)}
            if keys:
                sec.text("Settings: " + "; ".join(f"{k} = {v}" for k, v in list(keys.items())[:12]) + ".")
        except json.JSONDecodeError:
            sec.note("survival/survival_settings.json is not valid JSON.", "warning")
    figures = sorted((folder / "figures").glob("*.png")) if (folder / "figures").is_dir() else []
    for p in figures[:MAX_IMAGES * 2]:
        block = _png_block(ctx, "survival", p, f"{p.stem.replace('_', ' ').capitalize()} (survival/figures/{p.name}).")
        if block is not None:
            block.width = "70%"
            sec.add(block)
    tables = sorted((folder / "tables").glob("*.csv")) if (folder / "tables").is_dir() else []
    for p in tables:
        try:
            df = pd.read_csv(p)
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            continue
        sec.add(ctx.table(f"survival_{p.stem}", f"{p.stem.replace('_', ' ').capitalize()} (survival/tables/{p.name}).",
                          df, display=format_frame(df), sources=[ctx.run.rel(p)], max_rows=40))
    if not (figures or tables or summary.exists()):
        sec.note("survival/ holds no summary, tables or figures.", "missing")
    else:
        ctx.facts.set("survival", "Kaplan-Meier, Cox models and risk groups from the survival stage.", sec.title)
    return sec
