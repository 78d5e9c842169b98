"""``her2dlr extract``: radiomics features, and the deep features of the fold networks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from her2dlr.cli.common import ArchOption, StudyArg, console, friendly, sub_app

__all__ = ["app"]

app = sub_app("Extract features.")


@app.command("radiomics")
@friendly
def extract_radiomics_cmd(
    study: StudyArg = Path("study.yaml"),
    params: Annotated[str | None, typer.Option(help="Params set (us2d, video, mri3d) or YAML path; default from the study.")] = None,
    roi: Annotated[str | None, typer.Option(help="'mask' or 'bbox'; default from the study.")] = None,
    n_jobs: Annotated[int | None, typer.Option(help="Parallel workers; default from the study.")] = None,
) -> None:
    """Extract PyRadiomics features of every included case (cached; failures recorded, not fatal)."""
    from her2dlr.config import load_study
    from her2dlr.radiomics.stage import run_radiomics_stage

    s = load_study(study)
    chosen = {"params": params, "roi": roi, "n_jobs": n_jobs}
    settings = s.radiomics.model_copy(update={k: v for k, v in chosen.items() if v is not None})
    out = run_radiomics_stage(s, settings)
    console.print(
        f"{out.n_cases} cases x {out.n_features} features -> {out.path}"
        + (f"; {out.n_failed} failed (see {out.failures_path})" if out.n_failed else "")
    )


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
