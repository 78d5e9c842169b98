"""``her2dlr survival``: Typer sub-app of the survival stage (mounted by ``her2dlr.cli``).

Example::

    her2dlr survival run --data cohort.csv --settings study.yaml --out runs/study/survival
    her2dlr survival run --data gbsg2.csv --time time --event cens --group horTh \\
        --covariate age --covariate tgrade --treatment horTh --score-covariate pnodes --out out/
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from her2dlr.cli_common import console, friendly

__all__ = ["app"]

app = typer.Typer(help="Survival, risk groups and treatment benefit.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.callback()
def _group() -> None:
    """Survival, risk groups and treatment benefit."""


@app.command("run")
@friendly
def run(
    study: Optional[Path] = typer.Argument(
        None, help="Study file: its `survival:` section, its cohort manifest as data, <run>/survival as output."
    ),
    data: Optional[Path] = typer.Option(None, "--data", help="Cohort table (CSV, TSV, XLSX, Parquet); default: the study's manifest."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder for tables/, figures/ and summary.txt; default: <run>/survival."),
    settings: Optional[Path] = typer.Option(
        None, "--settings", help="Study file whose `survival:` section to use (default: the STUDY's own)."
    ),
    time: Optional[str] = typer.Option(None, "--time", help="Follow-up time column."),
    event: Optional[str] = typer.Option(None, "--event", help="Event column (1 = event, 0 = censored)."),
    time_unit: Optional[str] = typer.Option(None, "--time-unit", help="days, weeks, months or years."),
    group: Optional[List[str]] = typer.Option(None, "--group", help="KM/log-rank by this column (repeatable)."),
    covariate: Optional[List[str]] = typer.Option(None, "--covariate", help="Cox covariate (repeatable)."),
    categorical: Optional[List[str]] = typer.Option(None, "--categorical", help="Numeric covariate to treat as categories."),
    stepwise: Optional[str] = typer.Option(None, "--stepwise", help="both, forward, backward or none."),
    score: Optional[str] = typer.Option(None, "--score", help="Risk score column (higher = riskier)."),
    score_covariate: Optional[List[str]] = typer.Option(
        None, "--score-covariate", help="Build an out-of-fold Cox score from these covariates (repeatable)."
    ),
    treatment: Optional[str] = typer.Option(None, "--treatment", help="Treatment arm column."),
    treatment_name: Optional[str] = typer.Option(None, "--treatment-name", help="Treatment name used in sentences."),
    horizon: Optional[List[float]] = typer.Option(None, "--horizon", help="Report survival at this many years (repeatable)."),
    risk_horizon: Optional[float] = typer.Option(None, "--risk-horizon", help="Years: event horizon of the cut-off."),
    split: Optional[str] = typer.Option(None, "--split", help="Train/test column; cut-offs are fitted on 'train'."),
    her2low_true: Optional[str] = typer.Option(None, "--her2low-true", help="True HER2-low/zero status column."),
    her2low_pred: Optional[str] = typer.Option(None, "--her2low-pred", help="Predicted HER2-low/zero status column."),
    bootstrap: Optional[int] = typer.Option(None, "--bootstrap", help="Bootstrap replicates of C-index CIs."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of folds, bootstrap, k-means, matching."),
) -> None:
    """Kaplan-Meier, log-rank, Cox (AIC stepwise), C-index, risk groups, matching, treatment benefit."""
    from her2dlr.errors import StudyFileError
    from her2dlr.io.tables import read_table
    from her2dlr.survival.driver import run_survival
    from her2dlr.survival.settings import load_survival_settings

    her2low = None
    if her2low_true or her2low_pred:
        if not (her2low_true and her2low_pred):
            raise StudyFileError("Give both --her2low-true and --her2low-pred.")
        her2low = {"true_column": her2low_true, "pred_column": her2low_pred}
    st = None
    if study is not None:
        from her2dlr.config import load_study

        st = load_study(study)
    elif data is None or out is None:
        raise StudyFileError("Give a study file, or both --data and --out.")
    source: Any = st  # the study's survival section, from the Study loaded above (None: the defaults)
    if settings is not None and (study is None or settings.resolve() != study.resolve()):
        source = settings  # another study file's survival section
    s = load_survival_settings(
        source,
        time_column=time, event_column=event, time_unit=time_unit, group_columns=group or None,
        covariates=covariate or None, categorical=categorical or None, stepwise=stepwise, score_column=score,
        score_covariates=score_covariate or None, treatment_column=treatment, treatment_name=treatment_name,
        horizons=horizon or None, risk_horizon=risk_horizon, split_column=split, her2low=her2low,
        n_bootstrap=bootstrap, seed=seed,
    )
    if st is not None:
        from her2dlr.cohort.build import manifest_path
        from her2dlr.cohort.manifest import Manifest

        df = read_table(data) if data else Manifest.load(manifest_path(st)).included
        out = out or st.run_dir / "survival"
    else:
        df = read_table(data)
    report = run_survival(df, s, out)
    console.print(f"Wrote {len(report.tables)} tables and {len(report.figures)} figures to {out} "
                  f"in {report.seconds:.1f} s.")
    for line in report.sentences:
        console.print(f"  - {line}", highlight=False, markup=False, soft_wrap=True)
    for line in report.notes:
        console.print(f"  note: {line}", highlight=False, markup=False, style="dim", soft_wrap=True)
