"""``her2dlr train``: networks trained on the study's outer folds.

Example::

    her2dlr train deep study.yaml --arch densenet3block --epochs 40 --batch-size 32
    her2dlr train deep study.yaml --arch resnet101 --image-size 224 --channels 3 \\
        --weights ~/weights/resnet101_imagenet.pt --device cuda
    torchrun --nproc_per_node=4 -m her2dlr train deep study.yaml --arch resnet50
    torchrun --nproc_per_node=2 -m her2dlr train seg study.yaml

Under ``torchrun`` (``WORLD_SIZE`` > 1) training is distributed by itself (DistributedDataParallel,
:mod:`her2dlr.imaging.distributed`): every process trains on its shard, only rank 0 writes and prints.

Settings come from the study file's ``deep:`` section (:mod:`her2dlr.deep.settings`); an
option given on the command line overrides it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from her2dlr.cli.common import console, friendly, sub_app
from her2dlr.errors import InputError

__all__ = ["app"]

app = sub_app("Train networks on the study's outer folds.")

DISTRIBUTED_HELP = ("DistributedDataParallel over the processes of a torchrun launch (default: on when torchrun "
                    "started several processes).")


def _launch(distributed: bool | None) -> tuple[bool, bool]:
    """Whether this process is rank 0 (the one that writes and prints), and whether to train distributed."""
    from her2dlr.imaging.distributed import is_main_process, launched_world_size

    return is_main_process(), launched_world_size() > 1 if distributed is None else distributed


@app.callback()
def _group() -> None:
    """Train networks on the study's outer folds."""


@app.command("deep")
@friendly
def train_deep(
    study: Annotated[Path, typer.Argument(help="Study file (cohort built with `her2dlr cohort build`).")] = Path("study.yaml"),
    arch: Annotated[str | None, typer.Option("--arch", help="Network (see `her2dlr train archs`; default densenet3block).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Most epochs per fold (default 40).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Batch size (per process with --distributed; default 32).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="AdamW learning rate (default 1e-3).")] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay", help="Default 1e-4.")] = None,
    image_size: Annotated[int | None, typer.Option("--image-size", help="ROI side in px (default by network and dimension: `her2dlr train archs`).")] = None,
    spatial_dims: Annotated[int | None, typer.Option("--spatial-dims", help="2 (images, default) or 3 (volumes).")] = None,
    channels: Annotated[int | None, typer.Option("--channels", help="1 (grey, default) or 3.")] = None,
    slices: Annotated[int | None, typer.Option("--slices", help="2.5D: this many (odd) slices of each MR volume around the lesion as the channels of a 2D network.")] = None,
    margin: Annotated[int | None, typer.Option("--margin", help="Pixels added around the lesion's bounding rectangle (default 10).")] = None,
    keep_aspect: Annotated[bool | None, typer.Option("--keep-aspect/--stretch", help="Square the ROI with image context instead of stretching it.")] = None,
    loss: Annotated[str | None, typer.Option("--loss", help="weighted_ce (default), ce or focal.")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="cosine (default), plateau or none.")] = None,
    patience: Annotated[int | None, typer.Option("--patience", help="Early-stopping patience in epochs (0: off; default 10).")] = None,
    keep: Annotated[str | None, typer.Option("--keep", help="best (early stopping on validation AUC, default) or last (full schedule).")] = None,
    val_fraction: Annotated[float | None, typer.Option("--val-fraction", help="Inner validation share of each training fold (default 0.2).")] = None,
    scheme: Annotated[list[str] | None, typer.Option("--scheme", help="kfold and/or holdout (default: kfold).")] = None,
    repeat: Annotated[list[int] | None, typer.Option("--repeat", help="Only this k-fold repetition (repeatable).")] = None,
    final: Annotated[bool | None, typer.Option("--final/--no-final", help="Also train the deployable model on the hold-out's training rows.")] = None,
    weights: Annotated[Path | None, typer.Option("--weights", help="Local file of starting weights (never downloaded).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto (default), cpu, cuda or cuda:N.")] = None,
    allow_cpu_fallback: Annotated[bool | None, typer.Option("--allow-cpu-fallback/--no-cpu-fallback", help="Use the CPU when the asked GPU is absent.")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    num_workers: Annotated[int, typer.Option("--num-workers", help="DataLoader worker processes.")] = 0,
    threads: Annotated[int | None, typer.Option("--threads", help="Torch CPU threads (default: idle CPUs).")] = None,
    n_jobs: Annotated[int, typer.Option("--n-jobs", help="Threads reading images.")] = 2,
    resume: Annotated[bool, typer.Option("--resume", help="Continue interrupted folds from their last.pt.")] = False,
    distributed: Annotated[bool | None, typer.Option("--distributed/--no-distributed", help=DISTRIBUTED_HELP)] = None,
) -> None:
    """Train a network on every outer fold; write checkpoints, predictions and metrics to <run>/deep/<arch>.

    Settings come from the study file's `deep:` section; an option given here overrides it.
    """
    from her2dlr.config import load_study
    from her2dlr.console import print_metrics
    from her2dlr.deep.settings import DeepSettings
    from her2dlr.deep.stage import deep_dir, run_deep_stage, training_settings
    from her2dlr.pipeline import track_finished_stage
    from her2dlr.tracking import check_tracking

    s = load_study(study)
    check_tracking(s)
    try:
        d = (s.deep or DeepSettings()).merged(
            arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, image_size=image_size,
            spatial_dims=spatial_dims, slices=slices,
            channels=channels, margin=margin, keep_aspect=keep_aspect, loss=loss, scheduler=scheduler,
            patience=patience, keep=keep, val_fraction=val_fraction, schemes=scheme or None, final=final,
            weights=weights.resolve() if weights else None, device=device, allow_cpu_fallback=allow_cpu_fallback,
            seed=seed)
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a rule between settings (e.g. deep.slices with spatial_dims 3) names its keys
            raise InputError(f"Options and the study file's deep: section disagree: "
                             f"{str(err['msg']).removeprefix('Value error, ')}.") from None
        raise InputError(f"Option --{str(err['loc'][0]).replace('_', '-')}: "
                         f"{str(err['msg']).removeprefix('Value error, ')} "
                         f"(got {err.get('input')!r}).") from None
    main, distributed = _launch(distributed)
    settings, roi = training_settings(d, weights_dir=s.base_dir, num_workers=num_workers, num_threads=threads,
                                      distributed=distributed, progress=main)
    result = run_deep_stage(s, settings=settings, roi=roi, schemes=d.schemes, repeats=repeat,
                            resume=resume, final=d.final, n_jobs=n_jobs, lesion=d.roi, progress=main)
    if not main:  # the other processes of a torchrun launch only help train
        return
    track_finished_stage(s, "deep", deep_dir(s, d.arch), artefacts=[result.artefact] if result.artefact else [])
    if len(result.metrics):
        print_metrics(result.metrics, f"{result.model} (written to {deep_dir(s, d.arch)})")
    for fold in result.folds:
        if fold.recipe is not None:
            scores = ", ".join(f"{k} {v:.3f}" for k, v in fold.recipe_scores.items())
            console.print(f"Fold {fold.fold}: recipe {fold.recipe} (inner validation AUC: {scores})",
                          highlight=False)
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
    from her2dlr.deep.networks import DEFAULT_IMAGE_SIZE, DEFAULT_VOLUME_SIZE, list_archs

    for name, desc in list_archs().items():
        typer.echo(f"{name:16s} {DEFAULT_IMAGE_SIZE[name]:4d} px (2D) {DEFAULT_VOLUME_SIZE[name]:3d} voxels (3D)  {desc}")


@app.command("seg")
@friendly
def train_seg(
    study: Annotated[Path, typer.Argument(help="Study file (cohort built with `her2dlr cohort build`, split.kfold set).")] = Path("study.yaml"),
    arch: Annotated[str | None, typer.Option("--arch", help="unet (default), attention_unet or segresnet.")] = None,
    box_prompt: Annotated[bool | None, typer.Option("--box-prompt/--no-box-prompt", help="The network reads the lesion box (seed 000).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Most epochs per fold (default 60).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Default 16.")] = None,
    image_size: Annotated[int | None, typer.Option("--image-size", help="Network input side (default 128 in 2D, 64 in 3D).")] = None,
    patience: Annotated[int | None, typer.Option("--patience", help="Early stopping on the validation Dice (0: off; default 10).")] = None,
    repetition: Annotated[int | None, typer.Option("--repetition", help="k-fold repetition whose folds give the out-of-fold masks (default 0).")] = None,
    final: Annotated[bool | None, typer.Option("--final/--no-final", help="Also the network for new cases, trained on every case with a mask.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto (default), cpu, cuda or cuda:N.")] = None,
    distributed: Annotated[bool | None, typer.Option("--distributed/--no-distributed", help=DISTRIBUTED_HELP)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue interrupted networks from their resume.pt.")] = False,
) -> None:
    """Train a segmentation network per outer fold; every case gets its out-of-fold mask (<run>/segment/<arch>/)."""
    from her2dlr.config import load_study
    from her2dlr.pipeline import track_finished_stage
    from her2dlr.segment.settings import SegmentSettings
    from her2dlr.segment.stage import run_seg_stage
    from her2dlr.tracking import check_tracking

    s = load_study(study)
    check_tracking(s)
    given = {"arch": arch, "box_prompt": box_prompt, "epochs": epochs, "batch_size": batch_size,
             "image_size": image_size, "patience": patience, "repetition": repetition, "device": device}
    base = s.segment or SegmentSettings()
    try:
        settings = SegmentSettings.model_validate({**base.model_dump(), **{k: v for k, v in given.items() if v is not None}})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"Option --{str(err['loc'][0]).replace('_', '-')}: "
                         f"{str(err['msg']).removeprefix('Value error, ')} "
                         f"(got {err.get('input')!r}).") from None
    main, distributed = _launch(distributed)
    res = run_seg_stage(s, settings, final=final, progress=main, distributed=distributed, resume=resume)
    if not main:  # the other processes of a torchrun launch only help train
        return
    track_finished_stage(s, "segment", res.out_dir)
    m = res.summary
    if m.get("n_cases"):
        console.print(f"Out-of-fold masks of {len(res.masks)} cases -> {res.out_dir / 'masks'}; against the given masks "
                      f"({m['n_cases']} cases): Dice {m['dice_mean']:.3f} [{m['dice_ci_low']:.3f}, {m['dice_ci_high']:.3f}], "
                      f"IoU {m['iou_mean']:.3f}, HD95 {m['hd95_px_median']:.1f} px, detection {m['detection_rate']:.0%}.",
                      highlight=False)
    empty = int(res.masks["empty"].sum())
    if empty:
        console.print(f"[yellow]Note:[/] {empty} case(s) got an empty mask: they have no automatic ROI.", highlight=False)
    for note in res.notes:
        console.print(f"[yellow]Note:[/] {note}", highlight=False)
    if res.final is not None:
        console.print(f"Network for new cases: {res.final}", highlight=False)
