"""Command line: one Typer command per stage, all driven by the study file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from her2dlr.cli_common import console, friendly
from her2dlr.survival.cli import app as survival_app

app = typer.Typer(help="her2dlr: HER2 deep learning radiomics, from cohort to report.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
cohort_app = typer.Typer(help="Import, QC and split the cohort.", no_args_is_help=True)
extract_app = typer.Typer(help="Extract features.", no_args_is_help=True)
learn_app = typer.Typer(help="Feature selection, model zoo, nested cross-validation.", no_args_is_help=True)
app.add_typer(cohort_app, name="cohort")
app.add_typer(extract_app, name="extract")
app.add_typer(learn_app, name="learn")

StudyArg = typer.Argument(Path("study.yaml"), help="Study file.", show_default=True)




@app.command()
@friendly
def init(
    path: Path = typer.Argument(Path("study.yaml"), help="Where to write the example study file."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented example study file."""
    from her2dlr.study_template import write_example

    write_example(path, force=force)
    console.print(f"Wrote {path}. Edit the cohort sources and label, then run `her2dlr cohort qc {path}`.")


def _build(study_path: Path, n_jobs: int) -> Any:
    from her2dlr.cohort.build import build_cohort
    from her2dlr.config import load_study

    study = load_study(study_path)
    return build_cohort(study, n_jobs=n_jobs, progress=True)


@cohort_app.command("build")
@friendly
def cohort_build(study: Path = StudyArg, n_jobs: int = typer.Option(-1, help="Parallel workers (-1: all cores).")) -> None:
    """Import sources, apply the label rule, run QC and write the splits into the manifest."""
    from her2dlr.report_console import print_cohort

    print_cohort(_build(study, n_jobs))


@cohort_app.command("qc")
@friendly
def cohort_qc(study: Path = StudyArg, n_jobs: int = typer.Option(-1, help="Parallel workers (-1: all cores).")) -> None:
    """Build the cohort and print the QC summary (QC table and summary written to <run>/cohort/)."""
    from her2dlr.report_console import print_cohort

    build = _build(study, n_jobs)
    print_cohort(build)
    typer.echo(build.qc.summary_text())


@extract_app.command("radiomics")
@friendly
def extract_radiomics_cmd(
    study: Path = StudyArg,
    params: Optional[str] = typer.Option(None, help="Params set (us2d, video, mri3d) or YAML path; default from the study."),
    roi: Optional[str] = typer.Option(None, help="'mask' or 'bbox'; default from the study."),
    n_jobs: Optional[int] = typer.Option(None, help="Parallel workers; default from the study."),
) -> None:
    """Extract PyRadiomics features of every included case (cached; failures recorded, not fatal)."""
    from her2dlr.config import load_study
    from her2dlr.radiomics.stage import run_radiomics_stage

    s = load_study(study)
    settings = s.radiomics.model_copy(update={k: v for k, v in {"params": params, "roi": roi, "n_jobs": n_jobs}.items() if v is not None})
    out = run_radiomics_stage(s, settings)
    console.print(
        f"{out.n_cases} cases x {out.n_features} features -> {out.path}"
        + (f"; {out.n_failed} failed (see {out.failures_path})" if out.n_failed else "")
    )


@learn_app.command("run")
@friendly
def learn_run(
    study: Path = StudyArg,
    features: Optional[List[str]] = typer.Option(None, "--features", help="Feature table name under <run>/features (repeatable); default from the study."),
    model: Optional[List[str]] = typer.Option(None, "--model", help="Zoo model (repeatable); default from the study."),
    scheme: Optional[List[str]] = typer.Option(None, "--scheme", help="kfold and/or holdout; default from the study."),
    n_jobs: Optional[int] = typer.Option(None, "--n-jobs", help="Parallel outer folds."),
    pairs: bool = typer.Option(False, "--pairs", help="Also every imaging x clinical classifier pairing (seed 001); needs 'clinical' among the features."),
) -> None:
    """Select features and evaluate every model on the study's splits (predictions, metrics, funnel, model artefacts).

    Example, the 4 x 4 pairings of seed 001 in one command:
    her2dlr learn run study.yaml --features radiomics_us2d_mask --features clinical --pairs
    --model svm --model rf --model lr --model xgboost
    """
    from her2dlr.config import load_study
    from her2dlr.learn.study import run_study_learning
    from her2dlr.report_console import print_metrics

    s = load_study(study)
    for result in run_study_learning(s, features=features, models=model, schemes=scheme, n_jobs=n_jobs, pairs=pairs):
        print_metrics(result.metrics, f"Models on {result.out_dir.name} (written to {result.out_dir})")


@learn_app.command("dlr")
@friendly
def learn_dlr(
    study: Path = StudyArg,
    arch: Optional[str] = typer.Option(None, "--arch", help="Network whose deep features to use (`her2dlr extract deep` first); default: the study's deep.arch."),
    radiomics: Optional[str] = typer.Option(None, "--radiomics", help="Radiomics table name under <run>/features (or a path); default: deep.dlr.radiomics."),
    model: Optional[str] = typer.Option(None, "--model", help="Zoo classifier; default: deep.dlr.model (lr)."),
    n_components: Optional[int] = typer.Option(None, "--n-components", help="PCA components of the deep features, fitted in-fold; default 64."),
    n_jobs: int = typer.Option(1, "--n-jobs", help="Parallel outer folds."),
) -> None:
    """Deep learning radiomics (seed 002): deep, DLR (early fusion) and late-fusion models on the study's k-fold.

    Writes <run>/learn/dlr_<arch>/ (predictions, metrics, funnel) and, when a hold-out or final
    network was trained (`her2dlr train deep --scheme holdout` or `--final`), the deployable
    signature, DLR and late-fusion artefacts under <run>/models/.
    """
    from her2dlr.config import load_study
    from her2dlr.deep.deploy import save_dlr_artefacts
    from her2dlr.deep.dlr import run_study_dlr
    from her2dlr.deep.settings import DeepSettings
    from her2dlr.report_console import print_metrics

    s = load_study(study)
    d = s.deep or DeepSettings()
    arch = arch or d.arch
    opts = {"radiomics": radiomics or d.dlr.radiomics, "model": model or d.dlr.model,
            "n_components": n_components or d.dlr.n_components}
    result = run_study_dlr(s, arch=arch, n_jobs=n_jobs, **opts)
    print_metrics(result.metrics, f"DLR models (written to {result.out_dir})")
    saved = save_dlr_artefacts(s, arch=arch, metrics=result.metrics, **opts)
    for path in saved:
        console.print(f"Deployable model: {path}", highlight=False)
    if not saved:
        console.print(f"No deployable DLR model: train a hold-out or final network first "
                      f"(`her2dlr train deep --arch {arch} --final`).", highlight=False)


@app.command()
@friendly
def predict(
    model: Path = typer.Argument(..., help="Model artefact folder (<run>/models/<name>)."),
    features: Optional[Path] = typer.Option(None, "--features", help="Feature table (Parquet/CSV) with the model's feature columns (and clinical columns)."),
    cases: Optional[Path] = typer.Option(None, "--cases", help="Table of new cases: image, mask or box (x,y,w,h), optional case_id, spacing and clinical columns."),
    image: Optional[Path] = typer.Option(None, "--image", help="Image of one case."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Lesion mask of the image."),
    box: Optional[str] = typer.Option(None, "--box", help="Lesion box x,y,w,h in pixels (models trained on boxes)."),
    spacing: Optional[float] = typer.Option(None, "--spacing", help="Pixel size in mm, when the file does not carry it."),
    clinical: Optional[List[str]] = typer.Option(None, "--clinical", help="COLUMN=VALUE (repeatable)."),
    clinical_table: Optional[Path] = typer.Option(None, "--clinical-table", help="Table holding the case's clinical row."),
    case: str = typer.Option("case", "--case", help="Case id (row of --clinical-table; name in the output)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the predictions as CSV."),
    heatmap: Optional[Path] = typer.Option(None, "--heatmap", help="Deep and DLR models: write the network's heat map over the image (PNG; with --cases a folder, one PNG per case)."),
    method: str = typer.Option("gradcam", "--method", help="Heat map: cam, gradcam or gradcampp."),
) -> None:
    """Apply a saved model to new cases: probability, class at the stored threshold (and a heat map for deep models)."""
    from her2dlr.errors import InputError
    from her2dlr.io.atomic import write_csv_atomic
    from her2dlr.learn.artefact import artefact_slug, load_artefact
    from her2dlr.learn.predict import (
        case_inputs,
        cases_inputs,
        cases_table,
        clinical_row,
        feature_rows,
        parse_box,
        parse_clinical,
    )
    from her2dlr.report_console import print_frame

    art = load_artefact(model)
    lesion_box = parse_box(box)
    if sum(x is not None for x in (cases, image, features)) > 1:
        raise InputError("Give one of --cases, --image or --features.")
    if heatmap is not None and cases is None and (image is None or (mask is None and lesion_box is None)):
        raise InputError("--heatmap needs --image with --mask or --box (or --cases).")
    if heatmap is not None and not art.with_networks():
        raise InputError(f"Model '{art.name}' has no network: --heatmap is for deep and DLR models.")
    new_cases = cases_table(cases) if cases is not None else []
    if cases is not None:
        frame = cases_inputs(art, new_cases)
    elif features is not None:
        frame = feature_rows(art, features)
        extra = parse_clinical(clinical)
        for key, value in extra.items():
            frame[key] = value
    else:
        values = clinical_row(clinical_table, case) if clinical_table else {}
        values.update(parse_clinical(clinical))
        frame = case_inputs(art, case_id=case, image=image, mask=mask, box=lesion_box, spacing=spacing,
                            clinical={k: values[k] for k in art.clinical_types if k in values})
    result = art.predict(frame)
    print_frame(result, f"{art.name} (threshold {art.threshold:.3f})")
    if out is not None:
        write_csv_atomic(result, out)
    if heatmap is not None:
        from her2dlr.deep.deploy import case_heat_map

        jobs = ([(c["image"], heatmap / f"{artefact_slug(c['case_id'])}.png", c["mask"], c["box"]) for c in new_cases]
                if cases is not None else [(image, heatmap, mask, lesion_box)])
        for img, path, lesion_mask, lesion in jobs:
            heat = case_heat_map(art, img, path, mask=lesion_mask, box=lesion, method=method)
            typer.echo(f"Heat map ({heat.method}, class {heat.explained_class}, {heat.lesion_share:.0%} of the heat "
                       f"inside the lesion): {heat.path}")


@learn_app.command("models")
def learn_models() -> None:
    """List the classifiers of the model zoo."""
    from her2dlr.learn.zoo import list_models

    for name, desc in list_models().items():
        typer.echo(f"{name:12s} {desc}")


@learn_app.command("steps")
def learn_steps() -> None:
    """List the feature-selection steps and their parameters."""
    from her2dlr.learn.selection import SELECTION_STEPS, step_parameters

    for name in SELECTION_STEPS:
        typer.echo(f"{name:12s} {step_parameters(name)}")


@app.command()
@friendly
def bench(
    name: Optional[str] = typer.Argument(None, help="Benchmark name (see --list)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Data folder the benchmark reads."),
    quick: bool = typer.Option(False, "--quick", help="Small version for CI."),
    train: Optional[Path] = typer.Option(None, "--train", help="Training data (external validation)."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test data (external validation)."),
    seed: int = typer.Option(0, "--seed"),
    n_jobs: int = typer.Option(2, "--n-jobs"),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Folder for caches (default: a temporary one)."),
    list_: bool = typer.Option(False, "--list", help="List the benchmarks."),
) -> None:
    """Run a named benchmark; prints one JSON object per line."""
    from her2dlr.bench import BenchOptions, dumps, list_benches, run_bench

    if list_ or name is None:
        for bench_name, desc in list_benches().items():
            typer.echo(f"{bench_name:20s} {desc}")
        return
    opts = BenchOptions(data=data, quick=quick, train=train, test=test, seed=seed, n_jobs=n_jobs, work_dir=work_dir)
    for line in run_bench(name, opts):
        typer.echo(dumps(line))
        sys.stdout.flush()


@app.command()
@friendly
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Run folder of the demo."),
    n_jobs: int = typer.Option(-1, "--n-jobs", help="Parallel workers (-1: all cores)."),
) -> None:
    """Run the whole pipeline on the embedded sample (BUSI + BrEaST-Lesions-USG subsets), offline."""
    from her2dlr.demo import run_demo

    run_demo(out, n_jobs=n_jobs)


@app.command("run")
@friendly
def run_cmd(
    study: Path = StudyArg,
    force: bool = typer.Option(False, "--force", help="Re-run every stage, changed or not."),
    only: Optional[List[str]] = typer.Option(None, "--only", help="Only this stage (repeatable): cohort, radiomics, learn, deep, dlr, survival, report."),
    from_stage: Optional[str] = typer.Option(None, "--from", help="This stage and the ones after it."),
    n_jobs: Optional[int] = typer.Option(None, "--n-jobs", help="Parallel workers (-1: all cores); default: each stage's own."),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Also write report.pdf."),
) -> None:
    """Run every stage the study file configures, re-running only those whose settings or inputs changed."""
    from her2dlr.pipeline import run_study

    run_study(study, force=force, only=only or None, from_stage=from_stage, n_jobs=n_jobs, pdf=pdf, console=console)


@app.command()
def version() -> None:
    """Print the version."""
    from her2dlr import __version__

    typer.echo(__version__)


app.add_typer(survival_app, name="survival", help="Survival, risk groups and treatment benefit.")

# Deep features and heat maps of the fold networks (her2dlr.deep.explain_cli)
from her2dlr.deep.explain_cli import explain_cmd, extract_deep_cmd  # noqa: E402

extract_app.command("deep")(extract_deep_cmd)
app.command("explain")(explain_cmd)

# Network training on the study's outer folds (her2dlr.deep.cli)
from her2dlr.deep.cli import app as train_app  # noqa: E402

app.add_typer(train_app, name="train", help="Train networks on the study's outer folds.")

# Study report (her2dlr.report.cli)
from her2dlr.report.cli import report_command  # noqa: E402

app.command("report")(report_command)
