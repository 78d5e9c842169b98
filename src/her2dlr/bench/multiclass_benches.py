"""Benchmark ``multiclass``: the three-class task (HER2-zero / low / positive) through the toolkit's nested CV.

``her2dlr bench multiclass [--quick] [--seed N]``

A synthetic feature table of 240 patients (90 with ``--quick``), two images each, 200 features
(100 with ``--quick``) of which three carry the class: one shifts HER2-low, one HER2-positive, one
rises with the class (HER2-low sitting between zero and positive, as in the IHC scale). The
labels are balanced over the three classes. Each line is one evaluation of
:func:`her2dlr.learn.cv.run_outer_cv` (repeated 5-fold by patient, inner 5-fold search by the
median macro one-vs-rest AUC, selection ``variance -> zscore -> ttest (one-way ANOVA) ->
pearson -> lasso (multinomial)``, L2 logistic regression), scored on the pooled out-of-fold
rows of the first repetition by :mod:`her2dlr.evaluate.multiclass_tables`:

* ``macro_auc_3class``: macro one-vs-rest AUC (stratified bootstrap CI), with the per-class AUCs,
  accuracy and balanced accuracy;
* ``macro_auc_3class_noise``: the same pipeline with the labels permuted by patient (nothing to
  learn): it must stay near 0.5, or something leaks;
* ``auc_low_vs_zero``: the binary HER2-low vs HER2-zero task on the same cohort (HER2-positive
  patients left out), the toolkit's binary path.

``seconds`` on every line is that evaluation's wall time. The signal strength is fixed, so the
numbers are for regression checks of the code, not claims about real data.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.bench import BenchOptions, register, result

BENCH = "multiclass"
SELECTION = [{"name": "variance"}, {"name": "zscore"}, {"name": "ttest", "alpha": 0.05},
             {"name": "pearson", "threshold": 0.9}, {"name": "lasso", "cv": 5, "n_cs": 10}]
NAMES = ["HER2-zero", "HER2-low", "HER2-positive"]


def three_class_cohort(n_patients: int, n_features: int, seed: int, *, signal: float = 1.0,
                       permute: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature table and manifest (``label`` 0/1/2, ``fold_r0``, ``fold_r1``) of the benchmark."""
    from her2dlr.cohort.splits import repeated_group_kfold

    rng = np.random.default_rng(seed)
    y_pat = rng.permutation(np.arange(n_patients) % 3)
    y = np.repeat(y_pat, 2)
    patients = np.repeat([f"p{i:04d}" for i in range(n_patients)], 2)
    ids = [f"{p}_{k}" for p, k in zip(patients, [0, 1] * n_patients)]
    X = rng.normal(size=(len(y), n_features))
    X[:, 0] += signal * (y == 1)
    X[:, 1] += signal * (y == 2)
    X[:, 2] += 0.6 * signal * y
    X += np.repeat(rng.normal(scale=0.5, size=(n_patients, n_features)), 2, axis=0)  # patient effect
    if permute:
        y = np.repeat(rng.permutation(y_pat), 2)
    features = pd.DataFrame(X, index=pd.Index(ids, name="case_id"), columns=[f"feature {j}" for j in range(n_features)])
    manifest = pd.DataFrame({"case_id": ids, "patient_id": patients, "label": y, "include": True})
    for r, fold in enumerate(repeated_group_kfold(y, patients, 5, 2, seed)):
        manifest[f"fold_r{r}"] = fold
    return features, manifest


@register("multiclass", "Three-class HER2 (zero / low / positive) nested CV: macro one-vs-rest AUC, noise control, "
                        "HER2-low vs zero")
def multiclass_bench(options: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield ``macro_auc_3class``, ``macro_auc_3class_noise`` and ``auc_low_vs_zero`` (see the module docstring)."""
    from her2dlr.evaluate.metrics import metrics_table
    from her2dlr.evaluate.multiclass_tables import multiclass_tables
    from her2dlr.learn.cv import run_outer_cv
    from her2dlr.learn.tuning import SearchSettings

    n_patients, n_features = (90, 100) if options.quick else (240, 200)
    search = SearchSettings(inner_splits=5, random_state=options.seed)
    common: dict[str, Any] = {"model": "lr", "selection": SELECTION, "search": search, "keep_train": False,
                              "n_jobs": options.n_jobs, "grid": {"C": [0.1, 1.0]}}
    info = {"n": 2 * n_patients, "patients": n_patients, "features": n_features, "folds": 5}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for metric, permute in (("macro_auc_3class", False), ("macro_auc_3class_noise", True)):
            features, manifest = three_class_cohort(n_patients, n_features, options.seed, permute=permute)
            start = time.perf_counter()
            res = run_outer_cv(features, manifest, **common)
            seconds = time.perf_counter() - start
            pred = res.predictions[res.predictions["fold"].str.startswith("r0")]
            tables = multiclass_tables(pred, class_names=NAMES)
            row = tables.metrics[tables.metrics["scope"] == "r0"].iloc[0]
            per = tables.per_class[(tables.per_class["scope"] == "r0") & (tables.per_class["class"] != "macro")]
            yield result(BENCH, metric, round(float(row["auc"]), 4), ci_low=round(float(row["ci_low"]), 4),
                         ci_high=round(float(row["ci_high"]), 4), accuracy=round(float(row["accuracy"]), 4),
                         balanced_accuracy=round(float(per["balanced_accuracy"].iloc[0]), 4),
                         per_class={n: round(float(a), 4) for n, a in zip(per["name"], per["auc"])},
                         **info, seconds=round(seconds, 1))
        features, manifest = three_class_cohort(n_patients, n_features, options.seed)
        binary = manifest[manifest["label"] < 2].drop(columns=["fold_r0", "fold_r1"]).reset_index(drop=True)
        from her2dlr.cohort.splits import repeated_group_kfold

        for r, fold in enumerate(repeated_group_kfold(binary["label"].to_numpy(), binary["patient_id"].to_numpy(), 5,
                                                      1, options.seed)):
            binary[f"fold_r{r}"] = fold
        start = time.perf_counter()
        res = run_outer_cv(features.loc[binary["case_id"]], binary, **common)
        seconds = time.perf_counter() - start
        row = metrics_table(res.predictions)
        row = row[(row["split"] == "test") & (row["scope"] == "r0")].iloc[0]
        yield result(BENCH, "auc_low_vs_zero", round(float(row["auc"]), 4), ci_low=round(float(row["ci_low"]), 4),
                     ci_high=round(float(row["ci_high"]), 4), ci_method=row["ci_method"], n=int(row["n"]),
                     features=n_features, folds=5, seconds=round(seconds, 1))
