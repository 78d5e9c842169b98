"""The report's segmentation section: how well the networks found the lesions (``segment/``)."""

from __future__ import annotations

import json

import pandas as pd

from her2dlr.report.context import ReportContext
from her2dlr.report.document import Section
from her2dlr.report.sections.extras import _png_block
from her2dlr.report.tables import format_frame

__all__ = ["segmentation_section"]

_SHOWN = {"n_cases": "cases with a given mask", "dice_mean": "Dice (mean)", "dice_ci_low": "Dice 95% CI low",
          "dice_ci_high": "Dice 95% CI high", "dice_median": "Dice (median)", "iou_mean": "IoU (mean)",
          "hd95_px_median": "HD95 (median, px)", "hd95_mm_median": "HD95 (median, mm)",
          "detection_rate": "detection rate (IoU > 0.5)", "n_pred_empty": "empty predictions"}


def segmentation_section(ctx: ReportContext) -> Section:
    """Out-of-fold Dice, IoU, HD95 and detection of every segmentation network, with the best / median / worst montage."""
    sec = Section("segmentation", "Lesion segmentation")
    folder = ctx.run.paths.segment
    archs = sorted(p for p in folder.iterdir() if (p / "summary.json").is_file()) if folder.is_dir() else []
    if not archs:
        return sec.note("The run has no segment/ outputs (`her2dlr train seg`): the lesions were given, not found.",
                        "missing")
    sec.text("Each case's mask comes from the network of its outer fold, which never saw it; the numbers compare "
             "these out-of-fold masks with the given delineations (case-bootstrap 95% CI of the mean Dice).")
    rows = []
    for arch in archs:
        summary = json.loads((arch / "summary.json").read_text(encoding="utf-8"))
        settings = summary.get("settings", {})
        rows.append({"network": arch.name, "box prompt": settings.get("box_prompt"),
                     **{label: summary.get(key) for key, label in _SHOWN.items()}})
    table = pd.DataFrame(rows)
    sec.add(ctx.table("segmentation_summary", "Out-of-fold segmentation quality (segment/<network>/summary.json).",
                      table, display=format_frame(table), sources=[ctx.run.rel(a / "summary.json") for a in archs]))
    for arch in archs:
        montage = arch / "montage.png"
        if montage.is_file():
            block = _png_block(ctx, "segmentation", montage, f"Best, median and worst cases by Dice, {arch.name} "
                               "(given outline green, predicted red).")
            if block is not None:
                sec.add(block)
    ctx.facts.set("segmentation", f"Automatic lesion segmentation ({', '.join(a.name for a in archs)}), out of fold.",
                  sec.title)
    return sec
