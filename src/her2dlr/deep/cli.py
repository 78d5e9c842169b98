"""``her2dlr train``: Typer sub-app training networks on the study's folds (mounted by ``her2dlr.cli``).

Example::

    her2dlr train deep study.yaml --arch densenet3block --epochs 40 --batch-size 32
    her2dlr train deep study.yaml --arch resnet101 --image-size 224 --channels 3 \\
        --weights ~/weights/resnet101_imagenet.pt --device cuda
    torchrun --nproc_per_node=4 "$(which her2dlr)" train deep study.yaml --arch resnet50 --distributed

Settings come from the study file's ``deep:`` section (:mod:`her2dlr.deep.settings`); an
option given on the command line overrides it.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from pydantic import ValidationError

from her2dlr.cli_common import console, friendly
from her2dlr.errors import InputError

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
    arch: Optional[str] = typer.Option(None, "--arch", help="Network (see `her2dlr train archs`; default densenet3block)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Most epochs per fold (default 40)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size (per process with --distributed; default 32)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="AdamW learning rate (default 1e-3)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Default 1e-4."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="ROI side in px (default: 64 for densenet3block, 224 otherwise)."),
    channels: Optional[int] = typer.Option(None, "--channels", help="1 (grey, default) or 3."),
    margin: Optional[int] = typer.Option(None, "--margin", help="Pixels added around the lesion's bounding rectangle (default 10)."),
    keep_aspect: Optional[bool] = typer.Option(None, "--keep-aspect/--stretch", help="Square the ROI with image context instead of stretching it."),
    loss: Optional[str] = typer.Option(None, "--loss", help="weighted_ce (default), ce or focal."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="cosine (default), plateau or none."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Early-stopping patience in epochs (0: off; default 10)."),
    keep: Optional[str] = typer.Option(None, "--keep", help="best (early stopping on validation AUC, default) or last (full schedule)."),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Inner validation share of each training fold (default 0.2)."),
    scheme: Optional[List[str]] = typer.Option(None, "--scheme", help="kfold and/or holdout (default: kfold)."),
    repeat: Optional[List[int]] = typer.Option(None, "--repeat", help="Only this k-fold repetition (repeatable)."),
    final: Optional[bool] = typer.Option(None, "--final/--no-final", help="Also train the deployable model on the hold-out's training rows."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Local file of starting weights (never downloaded)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (default), cpu, cuda or cuda:N."),
    allow_cpu_fallback: Optional[bool] = typer.Option(None, "--allow-cpu-fallback/--no-cpu-fallback", help="Use the CPU when the asked GPU is absent."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    num_workers: int = typer.Option(0, "--num-workers", help="DataLoader worker processes."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Torch CPU threads (default: idle CPUs)."),
    n_jobs: int = typer.Option(2, "--n-jobs", help="Threads reading images."),
    resume: bool = typer.Option(False, "--resume", help="Continue interrupted folds from their last.pt."),
    distributed: bool = typer.Option(False, "--distributed", help="DistributedDataParallel (launch with torchrun)."),
) -> None:
    """Train a network on every outer fold; write checkpoints, predictions and metrics to <run>/deep/<arch>.

    Settings come from the study file's `deep:` section; an option given here overrides it.
    """
    from her2dlr.config import load_study
    from her2dlr.deep.settings import DeepSettings
    from her2dlr.deep.stage import deep_dir, run_deep_stage
    from her2dlr.report_console import print_metrics

    s = load_study(study)
    try:
        d = (s.deep or DeepSettings()).merged(
            arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, image_size=image_size,
            channels=channels, margin=margin, keep_aspect=keep_aspect, loss=loss, scheduler=scheduler,
            patience=patience, keep=keep, val_fraction=val_fraction, schemes=scheme or None, final=final,
            weights=weights.resolve() if weights else None, device=device, allow_cpu_fallback=allow_cpu_fallback,
            seed=seed)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"Option --{str(err['loc'][0]).replace('_', '-')}: {err['msg']} "
                         f"(got {err.get('input')!r}).") from None
    settings, roi = d.training(weights_dir=s.base_dir, num_workers=num_workers, num_threads=threads,
                               distributed=distributed)
    result = run_deep_stage(s, settings=settings, roi=roi, schemes=d.schemes, repeats=repeat,
                            resume=resume, final=d.final, n_jobs=n_jobs)
    if len(result.metrics):
        print_metrics(result.metrics, f"{result.model} (written to {deep_dir(s, d.arch)})")
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
