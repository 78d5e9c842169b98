"""Command line: thin Typer commands, one module per stage, all driven by the study file.

Each command parses its options and calls one stage function; the work happens in the stages.
"""

from __future__ import annotations

import typer

from her2dlr.cli import bench, cohort, explain, extract, learn, predict, report, run, serve, survival, train

__all__ = ["app"]

app = typer.Typer(help="her2dlr: HER2 deep learning radiomics, from cohort to report.", no_args_is_help=True,
                  pretty_exceptions_enable=False)



def _print_version(value: bool) -> None:
    if value:
        from her2dlr import __version__

        typer.echo(f"her2dlr {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    pass


app.command("init")(cohort.init)
app.command("run")(run.run_cmd)
app.add_typer(cohort.app, name="cohort")
app.add_typer(extract.app, name="extract")
app.add_typer(learn.app, name="learn")
app.add_typer(train.app, name="train", help="Train networks on the study's outer folds.")
app.command("explain")(explain.explain_cmd)
app.add_typer(survival.app, name="survival", help="Survival, risk groups and treatment benefit.")
app.command("report")(report.report_command)
app.command("predict")(predict.predict_cmd)
app.command("serve")(serve.serve_cmd)
app.command("bench")(bench.bench)
app.command("demo")(bench.demo)
app.command("version")(bench.version)
