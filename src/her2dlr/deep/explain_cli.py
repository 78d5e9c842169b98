"""``her2dlr extract deep`` and ``her2dlr explain``: deep features and heat maps of a study's fold networks.

Mounted by :mod:`her2dlr.cli` (``extract deep`` in the ``extract`` group, ``explain`` at the
root); ``app`` also works on its own. Torch and MONAI are imported only when a command runs.

Examples::

    her2dlr train deep study.yaml                      # the fold networks (RUN/deep/<arch>/)
    her2dlr extract deep study.yaml                    # RUN/features/deep_<arch>/<fold>.parquet
    her2dlr explain study.yaml --method gradcam        # RUN/deep/<arch>/explain/montage.png, ...
"""

from __future__ import annotations

from pathlib import Path

import typer

from her2dlr.cli_common import console, friendly

__all__ = ["app", "explain_cmd", "extract_deep_cmd"]

app = typer.Typer(help="Deep features and heat maps of the fold networks.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
extract_app = typer.Typer(help="Extract features.", no_args_is_help=True)
app.add_typer(extract_app, name="extract")

_STUDY = typer.Argument(Path("study.yaml"), help="Study file.", show_default=True)
_ARCH = typer.Option("densenet3block", "--arch", help="Network whose checkpoints are under <run>/deep/<arch>/.")


@extract_app.command("deep")
@friendly
def extract_deep_cmd(
    study: Path = _STUDY,
    arch: str = _ARCH,
    pca: int = typer.Option(64, "--pca", help="PCA components fitted in-fold (reported; seed 002: 64)."),
    n_jobs: int = typer.Option(1, "--n-jobs", help="Threads reading images."),
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


@app.command("explain")
@friendly
def explain_cmd(
    study: Path = _STUDY,
    arch: str = _ARCH,
    method: str = typer.Option("gradcam", "--method", help="cam, gradcam or gradcampp."),
    repetition: int = typer.Option(0, "--repetition", help="Repetition of the outer k-fold whose networks explain."),
    n_per_group: int = typer.Option(4, "--n-per-group", help="Montage pictures per group (TP, FP, FN, TN)."),
    overlays: str = typer.Option("all", "--overlays", help="Per-case overlays: all, montage or none."),
    embedding: str = typer.Option("tsne", "--embedding", help="Deep-feature embedding figure: tsne, pca or none."),
    n_jobs: int = typer.Option(1, "--n-jobs", help="Threads reading images."),
) -> None:
    """Heat maps of every case by the network that never saw it: overlays, scores and the montage."""
    from her2dlr.config import load_study
    from her2dlr.deep.explain_study import explain_study
    from her2dlr.errors import InputError

    if embedding not in ("tsne", "pca", "none"):
        raise InputError(f"--embedding must be tsne, pca or none. Got {embedding!r} instead.")
    res = explain_study(load_study(study), arch=arch, method=method, repetition=repetition, n_per_group=n_per_group,
                        overlays=overlays, embedding=None if embedding == "none" else embedding, n_jobs=n_jobs)
    s = res.summary
    console.print(
        f"{s['n']} cases explained ({method}, layer {s['target_layer']}): median {100 * (s['median_heat_in_lesion'] or 0):.0f}% "
        f"of the heat inside the lesion, which covers a median {100 * (s['median_lesion_area'] or 0):.0f}% of the crop. "
        f"Montage: {res.montage}; scores: {res.out_dir / 'heat_scores.csv'}."
    )
