"""``her2dlr extract``: radiomics features, and the deep features of the fold networks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from her2dlr.cli.cluster import SchedulerOption, with_scheduler
from her2dlr.cli.common import ArchOption, StudyArg, console, friendly, sub_app
from her2dlr.radiomics.parameters import shipped_params_help

__all__ = ["app"]

app = sub_app("Extract features.")


@app.command("radiomics")
@friendly
def extract_radiomics_cmd(
    study: StudyArg = Path("study.yaml"),
    params: Annotated[str | None, typer.Option(help=f"Shipped params set ({shipped_params_help()}) or the path of a "
                                                    "PyRadiomics params YAML; default from the study.")] = None,
    roi: Annotated[str | None, typer.Option(help="'mask' or 'bbox'; default from the study.")] = None,
    n_jobs: Annotated[int | None, typer.Option(help="Parallel workers; default from the study.")] = None,
    scheduler: SchedulerOption = None,
) -> None:
    """Extract PyRadiomics features of every included case (cached; failures recorded, not fatal)."""
    from her2dlr.config import load_study
    from her2dlr.radiomics.stage import run_radiomics_stage

    s = with_scheduler(load_study(study), scheduler)
    chosen = {"params": params, "roi": roi, "n_jobs": n_jobs}
    settings = s.radiomics.model_copy(update={k: v for k, v in chosen.items() if v is not None})
    out = run_radiomics_stage(s, settings)
    console.print(
        f"{out.n_cases} cases x {out.n_features} features -> {out.path}; "
        f"{out.n_computed} extracted now, {out.n_cached} from the cache"
        + (f"; {out.n_failed} failed (see {out.failures_path})" if out.n_failed else ""),
        highlight=False,
    )
    if out.pixel_size is not None:
        console.print(f"Pixel size: {out.pixel_size.note}", highlight=False)


@app.command("deep")
@friendly
def extract_deep_cmd(
    study: StudyArg = Path("study.yaml"),
    arch: ArchOption = "densenet3block",
    pca: Annotated[int, typer.Option("--pca", help="PCA components fitted in-fold (reported; seed 002: 64).")] = 64,
    n_jobs: Annotated[int, typer.Option("--n-jobs", help="Threads reading images.")] = 1,
) -> None:
    """Penultimate-layer features of every case from every fold network (one table per fold)."""
    from her2dlr.config import load_study
    from her2dlr.deep.features import extract_deep_features

    out = extract_deep_features(load_study(study), arch=arch, n_components=pca, n_jobs=n_jobs, progress=True)
    first = next(iter(out.folds.values()))
    s = out.pca.summary()
    console.print(
        f"{len(out.folds)} fold networks x {len(first.features)} cases x {first.embed_dim} features -> {out.folder}; "
        f"in-fold PCA to {s['n_components']} components keeps {100 * s['mean']:.1f}% of the variance "
        f"(range {100 * s['min']:.1f}-{100 * s['max']:.1f}%)."
    )


@app.command("dsfr")
@friendly
def extract_dsfr_cmd(
    study: StudyArg = Path("study.yaml"),
    arch: Annotated[str | None, typer.Option("--arch", help="Segmentation network (`her2dlr train seg` first); default: the study's segment.arch.")] = None,
    layer: Annotated[str | None, typer.Option("--layer", help="Activation layer: 0-based index in forward order or module name; default segment.dsfr.layer (9, the 10th).")] = None,
    heatmaps: Annotated[int | None, typer.Option("--heatmaps", min=0, help="Cases drawn under heatmaps/ (kept channels over the image); default segment.dsfr.heatmaps (4).")] = None,
) -> None:
    """DSFR features (seed 003): every segmentation fold network's lesion channel means of every case (one table per network)."""
    from her2dlr.config import load_study
    from her2dlr.deep.dsfr_features import extract_dsfr_features

    chosen = int(layer) if layer is not None and layer.lstrip("-").isdigit() else layer
    out = extract_dsfr_features(load_study(study), arch=arch, layer=chosen, n_heatmaps=heatmaps, progress=True)
    first = next(iter(out.folds.values()))
    console.print(
        f"{len(out.folds)} segmentation fold networks x {len(first.features)} cases x {first.embed_dim} channels of "
        f"layer '{out.layer}' (lesion: {'out-of-fold automatic masks' if out.lesion == 'auto' else 'given masks'}) "
        f"-> {out.folder}; {len(out.heatmaps)} heat map(s)"
        + (f"; {len(out.skipped)} case(s) without a lesion mask skipped" if out.skipped else "") + ".",
        highlight=False,
    )


@app.command("video")
@friendly
def extract_video_cmd(
    study: StudyArg = Path("study.yaml"),
    params: Annotated[str | None, typer.Option(help="Per-frame radiomics params set or YAML path; default: video.params of the study, else 'video'.")] = None,
    network: Annotated[Path | None, typer.Option("--network", help="Segmentation checkpoint for videos without per-frame annotations (else the tracker from the row's key-frame bbox); default: video.network of the study.")] = None,
    n_jobs: Annotated[int | None, typer.Option("--n-jobs", help="Worker processes over frames; default: video.n_jobs of the study.")] = None,
) -> None:
    """Per-frame lesion localisation, radiomics curves and their time-frequency features (video_tf) of every video row."""
    from her2dlr.config import load_study
    from her2dlr.video.settings import VideoSettings
    from her2dlr.video.stage import run_video_stage

    s = load_study(study)
    given = {"params": params, "network": network.resolve() if network is not None else None, "n_jobs": n_jobs}
    settings = (s.video or VideoSettings()).model_copy(update={k: v for k, v in given.items() if v is not None})
    table, failures = run_video_stage(s, settings)
    console.print(f"{len(table)} videos x {table.shape[1]} features -> {s.paths.feature_table('video_tf')}"
                  + (f"; {len(failures)} left out (see {s.paths.feature_failures('video_tf')})" if len(failures) else ""))
