"""``her2dlr predict``: a saved model applied to new cases, through :func:`her2dlr.predict.predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from her2dlr.cli.common import console, friendly

__all__ = ["predict_cmd"]


@friendly
def predict_cmd(
    model: Annotated[Path, typer.Argument(help="Model artefact folder (<run>/models/<name>).")],
    features: Annotated[Path | None, typer.Option("--features", help="Feature table (Parquet/CSV) with the model's feature columns (and clinical columns).")] = None,
    cases: Annotated[Path | None, typer.Option("--cases", help="Table of new cases: image, mask or box (x,y,w,h; x,y,z,w,h,d on volumes), optional case_id, spacing and clinical columns.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Image of one case.")] = None,
    mask: Annotated[Path | None, typer.Option("--mask", help="Lesion mask of the image.")] = None,
    box: Annotated[str | None, typer.Option("--box", help="Lesion box x,y,w,h in pixels, or x,y,z,w,h,d in voxels on a volume (models trained on boxes).")] = None,
    spacing: Annotated[float | None, typer.Option("--spacing", help="Pixel size in mm, when the file does not carry it.")] = None,
    clinical: Annotated[list[str] | None, typer.Option("--clinical", help="COLUMN=VALUE (repeatable).")] = None,
    clinical_table: Annotated[Path | None, typer.Option("--clinical-table", help="Table holding the case's clinical row.")] = None,
    case: Annotated[str, typer.Option("--case", help="Case id (row of --clinical-table; name in the output).")] = "case",
    out: Annotated[Path | None, typer.Option("--out", help="Also write the predictions as CSV.")] = None,
    heatmap: Annotated[Path | None, typer.Option("--heatmap", help="Deep and DLR models: write the network's heat map over the image (PNG; with --cases a folder, one PNG per case).")] = None,
    method: Annotated[str, typer.Option("--method", help="Heat map: cam, gradcam or gradcampp.")] = "gradcam",
    video: Annotated[Path | None, typer.Option("--video", help="Video of one case (MP4/AVI/MOV, DICOM cine or a frame folder) for a video_tf model; with --box (lesion on frame 0) or --mask (per-frame boxes CSV or mask folder).")] = None,
    overlay: Annotated[Path | None, typer.Option("--overlay", help="With --video: write the clip with the lesion outline and track (MP4).")] = None,
) -> None:
    """Apply a saved model to new cases: probability, class at the stored threshold (and a heat map for deep models)."""
    from rich.markup import escape

    from her2dlr.console import print_frame
    from her2dlr.errors import InputError
    from her2dlr.io.atomic import write_csv_atomic
    from her2dlr.learn.artefact import load_artefact
    from her2dlr.predict import cases_from_options, predict, results_frame

    if sum(x is not None for x in (cases, image, features, video)) > 1:
        raise InputError("Give one of --cases, --image, --features or --video.")
    art = load_artefact(model)
    if video is not None:
        from her2dlr.predict.video import predict_video_options

        results = [predict_video_options(art, video, overlay=overlay, box=box, mask=mask, spacing=spacing,
                                         clinical=clinical, case=case).result]
    else:
        batch = cases_from_options(art, cases=cases, features=features, image=image, mask=mask, box=box,
                                   spacing=spacing, clinical=clinical, clinical_table=clinical_table, case=case)
        results = predict(art, batch, heat_maps=heatmap, method=method)
    table = results_frame(results)
    rule = f"most probable of {', '.join(art.classes)}" if art.classes else f"threshold {art.threshold:.3f}"
    print_frame(table, f"{art.name} ({rule})")
    for warning in dict.fromkeys(w for r in results for w in r.warnings):
        console.print(f"[yellow]Warning:[/] {escape(warning)}", highlight=False)
    if out is not None:
        write_csv_atomic(table, out)
    for r in results:
        if r.heat_map is not None:
            h = r.heat_map
            typer.echo(f"Heat map ({h.method}, class {h.explained_class}, {h.lesion_share:.0%} of the heat "
                       f"inside the lesion): {h.path}")
