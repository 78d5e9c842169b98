"""Benchmark ``breast-usg``: clinical, radiomics and combined models on BrEaST-Lesions-USG.

``her2dlr bench breast-usg --data ../shared/data/breast-lesions-usg [--quick] [--work-dir DIR]``

Cohort: the clinical table (one row per patient), malignant (98) vs benign (154); the 4
normal images have no label and stay out. Clinical columns: Age, Tissue_composition, Signs,
Symptoms and the BI-RADS lexicon descriptors Shape, Margin, Echogenicity,
Posterior_features, Halo, Calcifications, Skin_thickening. Interpretation, BIRADS,
Verification and Diagnosis are *not* used: they are the radiologist's conclusion or the
histology, i.e. the label itself.

Radiomics: the shipped ``us2d`` set on the tumour masks, with the pixel size of the table;
features are cached per case under ``--work-dir`` (default: a fixed folder in the system
temp directory), so a second run skips extraction.

Evaluation: the default repeated (3 x) group 5-fold CV of the cohort build; for each
classifier the learning stage fits, fold by fold, ``clinical-<clf>`` (encoder ->
univariable + backward stepwise multivariable selection -> classifier, seed 002),
``radiomics-<clf>`` (seed 002's radiomics selection -> classifier), ``radiomics+clinical-<clf>``
(early fusion) and ``late(radiomics,clinical)-<clf>`` (mean probability, seed 003).

Metrics: ``auc_clinical``, ``auc_radiomics``, ``auc_combined`` and ``auc_late``: the best
classifier of each family by mean pooled out-of-fold AUC over repetitions (``model`` names
it), with ``ci_low``/``ci_high`` (mean per-repetition DeLong limits); one
``auc_<family>_<clf>`` line per classifier; ``clinical_variables`` (value: how many variables
were kept in at least half of the clinical model's folds; ``kept`` lists every variable
with the fraction of folds that kept it); ``seconds`` (the whole model search, extraction
excluded) and ``seconds_extraction``. Choosing the best of several classifiers on the same
out-of-fold predictions is mildly optimistic; the per-classifier lines show the spread.

``--quick``: 80 cases (stratified, seeded), repetition 0 only, logistic regression only.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.bench import BenchOptions, register, result
from her2dlr.bench.cohort_benches import require_data
from her2dlr.errors import InputError

__all__ = ["BREAST_CLINICAL", "FAMILIES", "PARAMS", "best_by_prefix", "breast_study", "breast_usg_bench", "labelled_cases",
           "radiomics_or_drop", "subset_cases"]

BENCH = "breast-usg"
TABLE = "BrEaST-Lesions-USG-clinical-data-Dec-15-2023.xlsx"
#: Clinical columns that do not encode the diagnosis.
BREAST_CLINICAL = ["Age", "Tissue_composition", "Signs", "Symptoms", "Shape", "Margin", "Echogenicity",
                   "Posterior_features", "Halo", "Calcifications", "Skin_thickening"]
FULL_MODELS = ["lr", "svm"]
QUICK_MODELS = ["lr"]
QUICK_CASES = 80
#: The shipped radiomics parameter set of the bench.
PARAMS = "us2d"
#: metric family -> model-name prefix in the learning stage.
FAMILIES = {"clinical": "clinical-", "radiomics": "radiomics-", "combined": "radiomics+clinical-",
            "late": "late(radiomics,clinical)-"}


def breast_study(data: Path, out: Path) -> Any:
    """The BrEaST-Lesions-USG study: table source, malignant vs benign, default splits."""
    from her2dlr.config import study_from_dict

    table = data / TABLE
    if not table.is_file():
        raise InputError(f"--data {data} has no {TABLE}: give the breast-lesions-usg folder.")
    raw = {
        "name": "breast-usg",
        "output_dir": str(out),
        "cohort": {"sources": [{
            "kind": "table", "path": str(table), "image_root": str(data / "images"),
            "image_column": "Image_filename", "mask_column": "Mask_tumor_filename", "spacing_column": "Pixel_size",
            "spacing_unit": "cm", "clinical_columns": BREAST_CLINICAL, "label_columns": ["Classification"],
        }]},
        "label": {"rule": "column", "column": "Classification", "positive": ["malignant"], "negative": ["benign"]},
    }
    return study_from_dict(raw, base_dir=out)


def subset_cases(manifest: Any, n_cases: int, seed: int) -> Any:
    """``n_cases`` labelled cases (stratified by label, seeded), repetition 0 of the k-fold only."""
    table = manifest.table
    labelled = table[table["label"].notna() & table["include"].fillna(True).astype(bool)]
    rng = np.random.default_rng(seed)
    frac = min(1.0, n_cases / max(len(labelled), 1))
    keep = []
    for _, part in labelled.groupby("label"):
        k = round(len(part) * frac)
        keep += list(rng.choice(part.index.to_numpy(), size=k, replace=False))
    sub = table.loc[sorted(keep)].drop(columns=[c for c in table.columns if str(c).startswith("fold_r")
                                                and c != "fold_r0"])
    return manifest.copy(sub.reset_index(drop=True))


def labelled_cases(manifest: Any) -> Any:
    """The manifest's included rows that have a label."""
    table = manifest.table
    labelled = table["label"].notna() & table["include"].fillna(True).astype(bool)
    return manifest.copy(table[labelled].reset_index(drop=True))


def radiomics_or_drop(manifest: Any, params: Any, cache_dir: Path, n_jobs: int, bench: str,
                      table: pd.DataFrame | None = None) -> tuple[pd.DataFrame, Any, float]:
    """Radiomics of the manifest's rows (cached per case); cases that fail are warned about and left out.

    ``table`` gives the rows to extract when they differ from the manifest's (e.g. boxes
    instead of masks, see :func:`her2dlr.radiomics.stage.rows_for_roi`).

    Returns
    -------
    (features, manifest without the failed cases, seconds of the extraction)
    """
    from her2dlr.radiomics.extract import extract_radiomics

    t0 = time.perf_counter()
    extraction = extract_radiomics(manifest.table if table is None else table, params, n_jobs=n_jobs,
                                   cache_dir=cache_dir, progress=False)
    seconds = time.perf_counter() - t0
    features = extraction.features
    failed = sorted(set(manifest.table["case_id"].astype(str)) - set(features.index.astype(str)))
    if failed:
        warnings.warn(f"{bench}: radiomics failed for {len(failed)} case(s) {failed[:5]}; left out", stacklevel=2)
        manifest = manifest.copy(manifest.table[~manifest.table["case_id"].astype(str).isin(failed)]
                                 .reset_index(drop=True))
    return features, manifest, seconds


def best_by_prefix(metrics: pd.DataFrame, prefix: str) -> tuple[pd.Series | None, pd.DataFrame]:
    """The test-split ``scope="mean"`` rows of models named ``prefix*`` and the one with the best AUC."""
    rows = metrics[(metrics["split"] == "test") & (metrics["scope"] == "mean")
                   & metrics["model"].str.startswith(prefix, na=False)]
    if rows.empty:
        return None, rows
    return rows.loc[rows["auc"].idxmax()], rows


@register(BENCH, "BrEaST-Lesions-USG malignant vs benign: clinical, radiomics, combined (early/late fusion) AUCs")
def breast_usg_bench(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield the benchmark's result lines (see the module docstring)."""
    from her2dlr.cohort.build import build_cohort
    from her2dlr.learn.settings import LearnSettings
    from her2dlr.learn.stage import run_learn_stage

    data = require_data(opts, BENCH, "the breast-lesions-usg folder with the clinical .xlsx and images/")
    work = Path(opts.work_dir) if opts.work_dir else Path(tempfile.gettempdir()) / "her2dlr-bench-breast-usg"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        build = build_cohort(breast_study(data, Path(tmp)), n_jobs=opts.n_jobs, progress=False)
        manifest = build.manifest
        if opts.quick:
            manifest = subset_cases(manifest, QUICK_CASES, opts.seed)
        manifest = labelled_cases(manifest)
        features, manifest, seconds_extraction = radiomics_or_drop(manifest, PARAMS, work / "cache", opts.n_jobs,
                                                                   BENCH)

        models = QUICK_MODELS if opts.quick else FULL_MODELS
        settings = LearnSettings(features=["radiomics", "clinical"], models=models, schemes=["kfold"],
                                 n_jobs=opts.n_jobs, seed=opts.seed)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stage = run_learn_stage(features, manifest, settings, Path(tmp) / "learn", feature_set="radiomics",
                                    clinical=True)
        seconds = time.perf_counter() - t0

    n = len(manifest.table)
    repeats = len(manifest.fold_columns) if hasattr(manifest, "fold_columns") else None
    info = {"n": n, "positives": int(manifest.table["label"].sum()), "repeats": repeats, "folds": 5,
            "quick": opts.quick}
    per_classifier = []
    for family, prefix in FAMILIES.items():
        best, rows = best_by_prefix(stage.metrics, prefix)
        if best is None:
            continue
        yield result(BENCH, f"auc_{family}", float(best["auc"]), ci_low=float(best["ci_low"]),
                     ci_high=float(best["ci_high"]), model=str(best["model"]), **info)
        for row in rows.itertuples():
            clf = str(row.model).removeprefix(prefix)
            per_classifier.append(result(BENCH, f"auc_{family}_{clf}", float(row.auc), ci_low=float(row.ci_low),
                                         ci_high=float(row.ci_high), n=n))
    yield from per_classifier
    clin = next(r for r in stage.results if r.model.startswith("clinical-"))
    from her2dlr.learn.fusion import selected_clinical_variables

    freq = pd.concat([selected_clinical_variables(r) for r in stage.results
                      if r.model.startswith("clinical-")], axis=1).mean(axis=1).fillna(0.0)
    freq = freq.sort_values(ascending=False, kind="stable")
    yield result(BENCH, "clinical_variables", int((freq >= 0.5).sum()), n=n, folds=len(clin.fits),
                 kept={str(k): round(float(v), 3) for k, v in freq.items()})
    yield result(BENCH, "seconds", round(seconds, 2), seconds=round(seconds, 2),
                 seconds_extraction=round(seconds_extraction, 2), n=n, n_jobs=opts.n_jobs,
                 n_features=int(features.shape[1]))
