"""``her2dlr train``: Typer sub-app training networks on the study's folds (mounted by ``her2dlr.cli``).

Example::

    her2dlr train deep study.yaml --arch densenet3block --epochs 40 --batch-size 32
    her2dlr train deep study.yaml --arch resnet101 --image-size 224 --channels 3 \\
        --weights ~/weights/resnet101_imagenet.pt --device cuda
    torchrun --nproc_per_node=4 "$(which her2dlr)" train deep study.yaml --arch resnet50 --distributed

Settings come from the options (the study file gives the cohort, label and splits).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from her2dlr.cli_common import console, friendly

__all__ = ["app"]

app = typer.Typer(help="Train networks on the study's outer folds.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.callback()
def _group() -> None:
    """Train networks on the study's outer folds."""


@app.command("deep")
@friendly
def train_deep(
    study: Path = typer.Argument(Path("study.yaml"), help="Study file (cohort built with `her2dlr cohort build`)."),
    arch: str = typer.Option("densenet3block", "--arch", help="Network (see `her2dlr train archs`)."),
    epochs: int = typer.Option(40, "--epochs", help="Most epochs per fold."),
    batch_size: int = typer.Option(32, "--batch-size", help="Batch size (per process with --distributed)."),
    lr: float = typer.Option(1e-3, "--lr", help="AdamW learning rate."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay"),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="ROI side in px (default: 64 for densenet3block, 224 otherwise)."),
    channels: int = typer.Option(1, "--channels", help="1 (grey) or 3."),
    margin: int = typer.Option(10, "--margin", help="Pixels added around the lesion's bounding rectangle."),
    keep_aspect: bool = typer.Option(False, "--keep-aspect", help="Square the ROI with image context instead of stretching it."),
    loss: str = typer.Option("weighted_ce", "--loss", help="weighted_ce, ce or focal."),
    scheduler: str = typer.Option("cosine", "--scheduler", help="cosine, plateau or none."),
    patience: int = typer.Option(10, "--patience", help="Early-stopping patience in epochs (0: off)."),
    keep: str = typer.Option("best", "--keep", help="best (early stopping on validation AUC) or last (full schedule)."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Inner validation share of each training fold."),
    scheme: Optional[List[str]] = typer.Option(None, "--scheme", help="kfold and/or holdout (default: kfold)."),
    repeat: Optional[List[int]] = typer.Option(None, "--repeat", help="Only this k-fold repetition (repeatable)."),
    final: bool = typer.Option(False, "--final", help="Also train the deployable model on the hold-out's training rows."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Local file of starting weights (never downloaded)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    allow_cpu_fallback: bool = typer.Option(False, "--allow-cpu-fallback", help="Use the CPU when the asked GPU is absent."),
    seed: int = typer.Option(0, "--seed"),
    num_workers: int = typer.Option(0, "--num-workers", help="DataLoader worker processes."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Torch CPU threads (default: idle CPUs)."),
    n_jobs: int = typer.Option(2, "--n-jobs", help="Threads reading images."),
    resume: bool = typer.Option(False, "--resume", help="Continue interrupted folds from their last.pt."),
    distributed: bool = typer.Option(False, "--distributed", help="DistributedDataParallel (launch with torchrun)."),
) -> None:
    """Train a network on every outer fold; write checkpoints, predictions and metrics to <run>/deep/<arch>."""
    from her2dlr.config import load_study
    from her2dlr.deep.networks import DEFAULT_IMAGE_SIZE, check_arch
    from her2dlr.deep.stage import deep_dir, run_deep_stage
    from her2dlr.deep.train import TrainSettings
    from her2dlr.imaging.roi import RoiSpec
    from her2dlr.report_console import print_frame

    s = load_study(study)
    check_arch(arch)
    size = image_size or DEFAULT_IMAGE_SIZE[arch]
    settings = TrainSettings(
        arch=arch, image_size=size, in_channels=channels, weights=str(weights) if weights else None, epochs=epochs,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, loss=loss, scheduler=scheduler, patience=patience, keep=keep,
        val_fraction=val_fraction, seed=seed, device=device, allow_cpu_fallback=allow_cpu_fallback,
        num_workers=num_workers, num_threads=threads, distributed=distributed,
    )
    roi = RoiSpec(size=size, margin=margin, channels=channels, keep_aspect=keep_aspect)
    result = run_deep_stage(s, settings=settings, roi=roi, schemes=scheme or ["kfold"], repeats=repeat,
                            resume=resume, final=final, n_jobs=n_jobs)
    if len(result.metrics):
        cols = [c for c in ("model", "split", "scope", "n", "auc", "ci_low", "ci_high", "sensitivity", "specificity",
                            "threshold") if c in result.metrics.columns]
        print_frame(result.metrics[cols], f"{result.model} (written to {deep_dir(s, arch)})")
    for fold in result.folds:
        for note in fold.notes:
            console.print(f"[yellow]Note:[/] {note}", highlight=False)
    if result.artefact is not None:
        console.print(f"Deployable model: {result.artefact} (apply it with `her2dlr predict {result.artefact} "
                      "--image IMG --box x,y,w,h --heatmap heat.png`)", highlight=False)
    else:
        console.print("No deployable model written: train with --scheme holdout or --final for one.",
                      highlight=False)


@app.command("archs")
def archs() -> None:
    """List the networks."""
    from her2dlr.deep.networks import DEFAULT_IMAGE_SIZE, list_archs

    for name, desc in list_archs().items():
        typer.echo(f"{name:16s} {DEFAULT_IMAGE_SIZE[name]:4d} px  {desc}")
