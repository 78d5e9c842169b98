"""``her2dlr survival``: the survival stage.

Example::

    her2dlr survival run --data cohort.csv --settings study.yaml --out runs/study/survival
    her2dlr survival run --data gbsg2.csv --time time --event cens --group horTh \\
        --covariate age --covariate tgrade --treatment horTh --score-covariate pnodes --out out/
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from her2dlr.cli.common import console, friendly, sub_app

__all__ = ["app"]

app = sub_app("Survival, risk groups and treatment benefit.")


@app.callback()
def _group() -> None:
    """Survival, risk groups and treatment benefit."""


@app.command("run")
@friendly
def run(
    study: Annotated[Path | None, typer.Argument(
        help="Study file: its `survival:` section, its cohort manifest as data, <run>/survival as output.")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Cohort table (CSV, TSV, XLSX, Parquet); default: the study's manifest.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder for tables/, figures/ and summary.txt; default: <run>/survival.")] = None,
    settings: Annotated[Path | None, typer.Option(
        "--settings", help="Study file whose `survival:` section to use (default: the STUDY's own).")] = None,
    time: Annotated[str | None, typer.Option("--time", help="Follow-up time column.")] = None,
    event: Annotated[str | None, typer.Option("--event", help="Event column (1 = event, 0 = censored).")] = None,
    time_unit: Annotated[str | None, typer.Option("--time-unit", help="days, weeks, months or years.")] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="KM/log-rank by this column (repeatable).")] = None,
    covariate: Annotated[list[str] | None, typer.Option("--covariate", help="Cox covariate (repeatable).")] = None,
    categorical: Annotated[list[str] | None, typer.Option("--categorical", help="Numeric covariate to treat as categories.")] = None,
    stepwise: Annotated[str | None, typer.Option("--stepwise", help="both, forward, backward or none.")] = None,
    score: Annotated[str | None, typer.Option("--score", help="Risk score column (higher = riskier).")] = None,
    score_covariate: Annotated[list[str] | None, typer.Option(
        "--score-covariate", help="Build an out-of-fold Cox score from these covariates (repeatable).")] = None,
    treatment: Annotated[str | None, typer.Option("--treatment", help="Treatment arm column.")] = None,
    treatment_name: Annotated[str | None, typer.Option("--treatment-name", help="Treatment name used in sentences.")] = None,
    horizon: Annotated[list[float] | None, typer.Option("--horizon", help="Report survival at this many years (repeatable).")] = None,
    risk_horizon: Annotated[float | None, typer.Option("--risk-horizon", help="Years: event horizon of the cut-off.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="Train/test column; cut-offs are fitted on 'train'.")] = None,
    her2low_true: Annotated[str | None, typer.Option("--her2low-true", help="True HER2-low/zero status column.")] = None,
    her2low_pred: Annotated[str | None, typer.Option("--her2low-pred", help="Predicted HER2-low/zero status column.")] = None,
    bootstrap: Annotated[int | None, typer.Option("--bootstrap", help="Bootstrap replicates of C-index CIs.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of folds, bootstrap, k-means, matching.")] = None,
    missing: Annotated[str | None, typer.Option(
        "--missing", help="Cases with missing values in a used column: error (list them all) or drop (count per column).")] = None,
) -> None:
    """Kaplan-Meier, log-rank, Cox (AIC stepwise), C-index, risk groups, matching, treatment benefit."""
    from her2dlr.config import load_study
    from her2dlr.errors import StudyFileError
    from her2dlr.survival.stage import run_survival_stage

    her2low = None
    if her2low_true or her2low_pred:
        if not (her2low_true and her2low_pred):
            raise StudyFileError("Give both --her2low-true and --her2low-pred.")
        her2low = {"true_column": her2low_true, "pred_column": her2low_pred}
    st = load_study(study) if study is not None else None
    other = load_study(settings) if settings is not None and (study is None or settings.resolve() != study.resolve()) else None
    report, out = run_survival_stage(
        st, settings_from=other, data=data, out=out,
        time_column=time, event_column=event, time_unit=time_unit, group_columns=group or None,
        covariates=covariate or None, categorical=categorical or None, stepwise=stepwise, score_column=score,
        score_covariates=score_covariate or None, treatment_column=treatment, treatment_name=treatment_name,
        horizons=horizon or None, risk_horizon=risk_horizon, split_column=split, her2low=her2low,
        n_bootstrap=bootstrap, seed=seed, missing=missing,
    )
    console.print(f"Wrote {len(report.tables)} tables and {len(report.figures)} figures to {out} "
                  f"in {report.seconds:.1f} s.")
    for line in report.sentences:
        console.print(f"  - {line}", highlight=False, markup=False, soft_wrap=True)
    for line in report.notes:
        console.print(f"  note: {line}", highlight=False, markup=False, style="dim", soft_wrap=True)
