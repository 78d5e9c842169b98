"""``her2dlr learn``: feature selection and the model zoo on the study's splits, and deep learning radiomics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from her2dlr.cli.cluster import SchedulerOption, with_scheduler
from her2dlr.cli.common import StudyArg, console, friendly, sub_app

__all__ = ["app"]

app = sub_app("Feature selection, model zoo, nested cross-validation.")


@app.command("run")
@friendly
def learn_run(
    study: StudyArg = Path("study.yaml"),
    features: Annotated[list[str] | None, typer.Option("--features", help="Feature table name under <run>/features (repeatable); default from the study.")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="Zoo model (repeatable); default from the study.")] = None,
    scheme: Annotated[list[str] | None, typer.Option("--scheme", help="kfold and/or holdout; default from the study.")] = None,
    n_jobs: Annotated[int | None, typer.Option("--n-jobs", help="Parallel outer folds.")] = None,
    pairs: Annotated[bool, typer.Option("--pairs", help="Also every imaging x clinical classifier pairing (seed 001); needs 'clinical' among the features.")] = False,
    scheduler: SchedulerOption = None,
) -> None:
    """Select features and evaluate every model on the study's splits (predictions, metrics, funnel, model artefacts).

    Example, the 4 x 4 pairings of seed 001 in one command:
    her2dlr learn run study.yaml --features radiomics_us2d_mask --features clinical --pairs
    --model svm --model rf --model lr --model xgboost
    """
    from her2dlr.config import load_study
    from her2dlr.console import print_metrics
    from her2dlr.learn.study import run_study_learning
    from her2dlr.pipeline import track_finished_stage
    from her2dlr.runfolder import METRICS, MODEL_CARD
    from her2dlr.tracking import check_tracking

    s = with_scheduler(load_study(study), scheduler, add_learn=True)
    check_tracking(s)
    for result in run_study_learning(s, features=features, models=model, schemes=scheme, n_jobs=n_jobs, pairs=pairs):
        print_metrics(result.metrics, f"Models on {result.out_dir.name} (written to {result.out_dir})",
                      predictions=result.predictions, source=result.out_dir / METRICS, run_dir=s.run_dir)
        track_finished_stage(s, "learn", result.out_dir, artefacts=[p for p in result.files if (p / MODEL_CARD).is_file()])


@app.command("dlr")
@friendly
def learn_dlr(
    study: StudyArg = Path("study.yaml"),
    arch: Annotated[str | None, typer.Option("--arch", help="Network whose deep features to use (`her2dlr extract deep` first); default: the study's deep.arch.")] = None,
    radiomics: Annotated[str | None, typer.Option("--radiomics", help="Radiomics table name under <run>/features (or a path); default: deep.dlr.radiomics.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Zoo classifier; default: deep.dlr.model (lr).")] = None,
    n_components: Annotated[int | None, typer.Option("--n-components", help="PCA components of the deep features, fitted in-fold; default 64.")] = None,
    n_jobs: Annotated[int, typer.Option("--n-jobs", help="Parallel outer folds.")] = 1,
) -> None:
    """Deep learning radiomics (seed 002): deep, DLR (early fusion) and late-fusion models on the study's k-fold.

    Writes <run>/learn/dlr_<arch>/ (predictions, metrics, funnel) and, when a hold-out or final
    network was trained (`her2dlr train deep --scheme holdout` or `--final`), the deployable
    signature, DLR and late-fusion artefacts under <run>/models/.
    """
    from her2dlr.config import load_study
    from her2dlr.console import print_metrics
    from her2dlr.deep.stage import run_dlr_stage

    s = load_study(study)
    result, saved = run_dlr_stage(s, arch=arch, radiomics=radiomics, model=model, n_components=n_components,
                                  n_jobs=n_jobs)
    print_metrics(result.metrics, f"DLR models (written to {result.out_dir})", predictions=result.predictions,
                  run_dir=s.run_dir)
    for path in saved:
        console.print(f"Deployable model: {path}", highlight=False)
    if not saved:
        console.print(f"No deployable DLR model: train a hold-out or final network first "
                      f"(`her2dlr train deep --arch {arch or (s.deep.arch if s.deep else 'densenet3block')} --final`).",
                      highlight=False)


@app.command("dsfr")
@friendly
def learn_dsfr(
    study: StudyArg = Path("study.yaml"),
    radiomics: Annotated[str | None, typer.Option("--radiomics", help="Radiomics table name under <run>/features (or a path); default: segment.dsfr.radiomics, else the first radiomics table of learn.features, else the one table named radiomics*.")] = None,
    arch: Annotated[str | None, typer.Option("--arch", help="Segmentation network whose DSFR features to use (`her2dlr extract dsfr` first); default: segment.arch.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Zoo classifier of the DSFR and radiomics models; default: segment.dsfr.model (lr).")] = None,
    n_jobs: Annotated[int, typer.Option("--n-jobs", help="Parallel outer folds.")] = 1,
) -> None:
    """DSFR models (seed 003): DSFR, radiomics and their probability average (DLR) on the segmentation networks' folds.

    Writes <run>/learn/dsfr_<arch>/ (predictions, metrics, funnel, settings.json). Only the
    outer folds of segment.repetition are scored: the segmentation networks were trained on them.
    `her2dlr run` chains `extract dsfr` and this command when the study sets segment.dsfr.models: true.
    """
    from her2dlr.config import load_study
    from her2dlr.console import print_metrics
    from her2dlr.deep.dsfr import run_study_dsfr

    s = load_study(study)
    result = run_study_dsfr(s, arch=arch, radiomics=radiomics, model=model, n_jobs=n_jobs)
    print_metrics(result.metrics, f"DSFR models (written to {result.out_dir})", predictions=result.predictions,
                  run_dir=s.run_dir)
    for note in result.notes:
        console.print(note, highlight=False)


@app.command("models")
def learn_models() -> None:
    """List the classifiers of the model zoo."""
    from her2dlr.learn.zoo import list_models

    for name, desc in list_models().items():
        typer.echo(f"{name:12s} {desc}")


@app.command("steps")
def learn_steps() -> None:
    """List the feature-selection steps and their parameters."""
    from her2dlr.learn.selection import SELECTION_STEPS, step_parameters

    for name in SELECTION_STEPS:
        typer.echo(f"{name:12s} {step_parameters(name)}")
