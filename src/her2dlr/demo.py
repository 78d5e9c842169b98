"""``her2dlr demo``: the whole pipeline on the embedded sample, offline, in a few minutes on 2 cores."""

from __future__ import annotations

import json
import shlex
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from her2dlr.cohort.build import build_cohort
from her2dlr.config import Study, study_from_dict
from her2dlr.console import best_model_line, print_cohort, print_frame
from her2dlr.io.atomic import write_text_atomic
from her2dlr.learn.study import run_study_learning
from her2dlr.radiomics.stage import run_radiomics_stage

__all__ = ["REPORT_STUDY", "demo_data_dir", "demo_studies", "run_demo"]

console = Console()

BREAST_CLINICAL = [
    "Age", "Tissue_composition", "Signs", "Symptoms", "Shape", "Margin", "Echogenicity",
    "Posterior_features", "Halo", "Calcifications", "Skin_thickening",
]


def demo_data_dir() -> Path:
    """Folder of the embedded sample inside the installed package."""
    return Path(str(resources.files("her2dlr") / "data" / "demo"))


#: The demo study whose report ends the demo (it has a clinical table, so every report section has content).
REPORT_STUDY = "breast"


def demo_studies(out: Path, *, quick: bool = False) -> dict[str, dict[str, Any]]:
    """The two demo studies as study-file dicts (BUSI folders; BrEaST table with clinical columns).

    ``quick`` keeps the same stages with less work (the 100-feature ``us2d_original`` params set,
    logistic regression only without a search, one repetition of the k-fold, no network): a check
    that the whole path, report included, runs, not a result.
    """
    data = demo_data_dir()
    params = "us2d_original" if quick else "us2d"
    table = f"radiomics_{params}_mask"
    common = {
        "split": {"seed": 2024, "holdout": {"test_size": 0.3}, "kfold": {"n_splits": 3, "n_repeats": 1 if quick else 2}},
        "radiomics": {"params": params, "roi": "mask"},
        # Seed 002's selection; two classifiers and the repeated k-fold keep the demo short.
        "learn": {"features": [table], "models": ["lr", "rf"], "schemes": ["kfold"], "n_jobs": -1},
    }
    if quick:  # no hyper-parameter search, a 3-fold LASSO: the same steps, a fraction of the fitting
        common["learn"].update(models=[{"name": "lr", "grid": {}}], search={"inner_splits": 2},
                               selection=[{"name": "variance"}, {"name": "zscore"}, {"name": "ttest", "alpha": 0.05},
                                          {"name": "lasso", "cv": 3}])
    deep = {} if quick else {"deep": {"epochs": 15, "patience": 5, "schemes": ["holdout"]}}
    return {
        "busi": {
            "name": "busi",
            "output_dir": str(out / "busi"),
            "cohort": {"sources": [{"kind": "folders", "path": str(data / "busi"), "centre": "Baheya"}]},
            "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]},
            "qc": {"lesion_policy": "largest"},
            **common,
            # seed 000's network on 64 x 64 box ROIs, trained on the hold-out's training rows (a short demo run)
            **deep,
        },
        "breast": {
            "name": "breast",
            "output_dir": str(out / "breast"),
            "cohort": {"sources": [{
                "kind": "table", "path": str(data / "breast" / "clinical.csv"), "image_root": str(data / "breast" / "images"),
                "image_column": "Image_filename", "mask_column": "Mask_tumor_filename",
                "spacing_column": "Pixel_size", "spacing_unit": "cm", "centre": "Krakow",
                "clinical_columns": BREAST_CLINICAL, "label_columns": ["Classification"],
            }]},
            "label": {"rule": "column", "column": "Classification", "positive": ["malignant"], "negative": ["benign"]},
            **common,
            # radiomics, clinical, early fusion, late fusion, stacking and seed 002's combined model
            "learn": {**common["learn"], "features": [table, "clinical"]},
        },
    }


def _number(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if v != v else v


def _predict_example(study: Study, manifest: Any) -> dict[str, Any] | None:
    """Apply the study's combined (or else radiomics) model artefact to its first case, as a user would."""
    from her2dlr.learn.artefact import load_artefact
    from her2dlr.predict import Case, predict

    models = study.paths.models
    folders = sorted(models.glob("combined*")) or sorted(models.glob("radiomics*"))
    if not folders:
        return None
    art = load_artefact(folders[0])
    row = manifest.included.iloc[0]
    clinical = {c: row[c] for c in art.clinical_types}
    pred = predict(art, Case(case_id=str(row["case_id"]), image=row["image"], mask=row["mask"],
                             spacing=_number(row.get("spacing")), clinical=clinical))[0]
    args = " ".join(f"--clinical {shlex.quote(f'{k}={v}')}" for k, v in list(clinical.items())[:2])
    args += " ..." if len(clinical) > 2 else ""
    return {"model": art.name, "case": str(row["case_id"]), "label": int(row["label"]),
            "command": f"{folders[0]} --image {shlex.quote(Path(row['image']).name)} "
                       f"--mask {shlex.quote(Path(str(row['mask'])).name)} {args}".strip(),
            "result": f"prob {pred.probability:.3f}, class {pred.predicted_class} (threshold {pred.threshold:.3f}), "
                      f"true label {int(row['label'])}"}


def _deep_example(study: Study, manifest: Any, n_jobs: int) -> dict[str, Any] | None:
    """Train the study's network on the hold-out, then apply its artefact to a test case with a heat map."""
    from her2dlr.deep.stage import run_deep_stage, training_settings
    from her2dlr.learn.artefact import artefact_slug, load_artefact
    from her2dlr.predict import Case, predict

    if study.deep is None:
        return None
    settings, roi = training_settings(study.deep, weights_dir=study.base_dir)
    result = run_deep_stage(study, settings=settings, roi=roi, schemes=study.deep.schemes, final=study.deep.final,
                            n_jobs=max(n_jobs, 1))
    if result.artefact is None:
        return None
    m = result.metrics
    test = m[(m["split"] == "test") & (m["scope"] == "holdout")]
    art = load_artefact(result.artefact)
    table = manifest.included
    row = table[table["split"] == "test"].iloc[0]
    heat_path = study.paths.deep / f"heat_{artefact_slug(Path(str(row['image'])).stem)}.png"
    pred = predict(art, Case(case_id=str(row["case_id"]), image=row["image"], mask=row["mask"]),
                   heat_maps=heat_path)[0]
    heat = pred.heat_map
    assert heat is not None
    return {"model": art.name, "test_auc": round(float(test["auc"].iloc[0]), 3) if len(test) else None,
            "test_n": int(test["n"].iloc[0]) if len(test) else None, "case": str(row["case_id"]),
            "command": f"{result.artefact} --image {shlex.quote(Path(row['image']).name)} "
                       f"--mask {shlex.quote(Path(str(row['mask'])).name)} --heatmap {shlex.quote(heat_path.name)}",
            "result": f"prob {pred.probability:.3f}, class {pred.predicted_class} (threshold {pred.threshold:.3f}), "
                      f"true label {int(row['label'])}; {heat.lesion_share:.0%} of the Grad-CAM heat inside the "
                      f"lesion -> {heat_path}"}


def _report(study: Study, *, pdf: bool) -> Path:
    """Build the study's report (``<run>/report/report.html``, and its PDF) and print where it is."""
    from her2dlr.report.build import build_report

    res = build_report(study.run_dir, progress=True, pdf=pdf)
    for warning in res.warnings:
        console.print(f"[yellow]Report section not built:[/] {warning}", highlight=False)
    console.print(f"[bold]Report[/] {len(res.sections)} sections, {len(res.figures)} figures, {len(res.tables)} tables "
                  f"({res.seconds:.0f} s)" + (f"; PDF: {res.pdf}" if res.pdf else ""), highlight=False)
    return res.html


def run_demo(out: str | Path = "runs/demo", *, n_jobs: int = -1, quick: bool = False,
             studies: tuple[str, ...] | None = None, pdf: bool = True) -> dict[str, Any]:
    """Run import -> QC -> splits -> radiomics -> models (-> network) on the demo studies, then the report.

    Parameters
    ----------
    out : path, default="runs/demo"
        Demo folder: one run folder per study, the study files, ``demo_summary.json``.
    n_jobs : int, default=-1
        Parallel workers (-1: all cores).
    quick : bool, default=False
        Less work with the same stages (see :func:`demo_studies`).
    studies : tuple of str, optional
        The demo studies to run (default: all, ``busi`` and ``breast``).
    pdf : bool, default=True
        Write the report's PDF as well as its HTML.

    Returns
    -------
    dict
        What ``demo_summary.json`` holds; ``summary["report"]`` is the report's HTML path (the
        :data:`REPORT_STUDY` study's, when it ran).
    """
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    t_all = time.perf_counter()
    chosen = demo_studies(out, quick=quick)
    unknown = sorted(set(studies or ()) - set(chosen))
    if unknown:
        from her2dlr.errors import InputError

        raise InputError(f"Unknown demo study {unknown}; the demo studies are {sorted(chosen)}.")
    report: Path | None = None
    for key, raw in chosen.items():
        if studies and key not in studies:
            continue
        console.rule(f"[bold]Demo study: {key}")
        write_text_atomic(out / f"{key}_study.yaml", yaml.safe_dump(raw, sort_keys=False))
        study: Study = study_from_dict(raw, base_dir=out, source=f"{key}_study.yaml")
        t0 = time.perf_counter()
        build = build_cohort(study, n_jobs=n_jobs, progress=True)
        print_cohort(build)
        rad = run_radiomics_stage(study, study.radiomics.model_copy(update={"n_jobs": n_jobs}))
        console.print(f"[bold]Radiomics[/] {rad.n_cases} cases x {rad.n_features} features, {rad.n_failed} failed -> {rad.path}")
        learned = run_study_learning(study, progress=True)[0]
        radiomics_table = raw["learn"]["features"][0]
        shown = learned.metrics[(learned.metrics["scope"] == "mean") & (learned.metrics["split"] == "test")].assign(
            model=lambda d, t=radiomics_table: d["model"].str.replace(t, "radiomics", regex=False))
        print_frame(shown[["model", "n", "auc", "ci_low", "ci_high", "sensitivity", "specificity"]],
                    f"Models, {key}: out-of-fold AUC, mean over repetitions", max_rows=None)
        best = best_model_line(learned.metrics, learned.predictions)
        if best:
            console.print(f"[bold]{best}[/]", highlight=False, soft_wrap=True)
        example = _predict_example(study, build.manifest)
        if example:
            console.print(f"[bold]her2dlr predict[/] {example['command']}\n  -> {example['result']}")
        deep = _deep_example(study, build.manifest, n_jobs)
        if deep:
            console.print(f"[bold]Deep model[/] {deep['model']}: hold-out test AUC {deep['test_auc']} "
                          f"(n = {deep['test_n']}; a {study.deep.epochs}-epoch demo run, not a result)\n"
                          f"[bold]her2dlr predict[/] {deep['command']}\n  -> {deep['result']}")
        summary[key] = {
            "rows": len(build.manifest), "included": len(build.manifest.included),
            "qc": {k: v for k, v in build.qc.summary.items() if isinstance(v, (int, float, str))},
            "radiomics": {"cases": rad.n_cases, "features": rad.n_features, "failed": rad.n_failed},
            "models": {r["model"]: round(float(r["auc"]), 3) for _, r in shown.iterrows()},
            "seconds": round(time.perf_counter() - t0, 1),
            "predict_example": example,
            "deep_example": deep,
        }
        if key == REPORT_STUDY:
            report = _report(study, pdf=pdf)
            summary[key]["report"] = str(report)
    summary["seconds_total"] = round(time.perf_counter() - t_all, 1)
    summary["report"] = str(report) if report else None
    write_text_atomic(out / "demo_summary.json", json.dumps(summary, indent=2, default=str))
    console.print(f"Demo finished in {summary['seconds_total']} s; outputs in {out}")
    if report is not None:
        console.print(f"[bold]Study report[/] ({REPORT_STUDY} sample), open it in a browser:\n{report}",
                      highlight=False, soft_wrap=True)
    return summary
