"""Learning benchmarks: ``her2dlr bench leakage``.

Pure-noise features with random labels cannot be predicted: an honest pipeline must score an
AUC near 0.5. Two runs of the same pipeline (missing/variance filter -> t-test p < 0.05 ->
Pearson |r| > 0.9 pruning -> LASSO with 10-fold CV -> logistic regression tuned by inner CV,
best setting by median AUC) over the same repeated 5-fold splits:

* ``auc_proper``: every step is fitted inside each outer training fold (nested CV);
* ``auc_leaky``: the selection is fitted once on all cases first - the classic mistake - and
  only the model is cross-validated on the features it picked. The test rows helped choose the
  features, so the AUC is inflated, which shows that the benchmark can tell the two apart.

* ``auc_proper_workflows``: the workflow search (:mod:`her2dlr.learn.workflows`) in every outer
  training fold instead of the fixed pipeline: :data:`LEAKAGE_WORKFLOWS` (feature set ``all``;
  chains ``none``, ``unsupervised``, the pipeline above, ``mrmr``; logistic regression and naive
  Bayes; 12 workflows, top 3 averaged). Choosing among many workflows by inner AUC must not
  lift it above chance either (the ``lasso`` chain is left out here only for time: LASSO on
  2,000 unfiltered columns is the slowest step).

Each value is the mean over repetitions of the pooled out-of-fold AUC; ``ci_low``/``ci_high``
are the mean per-repetition DeLong limits, ``auc_min``/``auc_max`` the range
(see :mod:`her2dlr.evaluate.metrics`) and ``auc_fold_mean`` the mean of the per-fold AUCs.
Full: 200 cases x 2000 features, 3 repetitions; ``--quick``: 120 x 1000, 1 repetition.

On pure noise the pooled out-of-fold AUC of an honest pipeline sits slightly *below* 0.5
(0.44-0.50 over seeds 0-3): holding cases out shifts the training class means away from them,
the known negative bias of cross-validation under the null (Parker, Guenter & Bedo 2007,
"Stratification bias in low signal microarray studies", BMC Bioinformatics 8:326). A value
clearly above 0.5 would mean a leak.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.bench import BenchOptions, register, result

__all__ = ["LEAKAGE_SELECTION", "LEAKAGE_WORKFLOWS", "leakage_bench", "noise_cohort"]

#: Seed 002's radiomics selection.
LEAKAGE_SELECTION: list[dict[str, Any]] = [
    {"name": "variance"},
    {"name": "ttest", "alpha": 0.05},
    {"name": "pearson", "threshold": 0.9},
    {"name": "lasso"},
]

#: The workflow space of ``auc_proper_workflows`` (keyword arguments of WorkflowSpace).
LEAKAGE_WORKFLOWS: dict[str, Any] = {
    "feature_sets": ["all"],
    "chains": ["none", "unsupervised", {"name": "seed002", "steps": LEAKAGE_SELECTION}, "mrmr"],
    "models": ["lr", "nb"],
    "n_workflows": 12,
    "top_k": 3,
}


def noise_cohort(n_cases: int, n_features: int, n_repeats: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random-normal features and random balanced labels, with a manifest of repeated 5-fold splits.

    Returns
    -------
    features : DataFrame of shape (n_cases, n_features)
        Indexed by case id; PyRadiomics-like names with characters LightGBM would refuse.
    manifest : DataFrame
        ``case_id, patient_id, label, fold_r0 ..``.
    """
    from her2dlr.cohort.splits import repeated_group_kfold

    rng = np.random.default_rng(seed)
    ids = [f"case{i:04d}" for i in range(n_cases)]
    y = rng.permutation(np.arange(n_cases) % 2)
    names = [f"noise_{j} (T=0.5,0.8)" for j in range(n_features)]
    features = pd.DataFrame(rng.normal(size=(n_cases, n_features)), index=pd.Index(ids, name="case_id"),
                            columns=names)
    manifest = pd.DataFrame({"case_id": ids, "patient_id": ids, "label": y})
    folds = repeated_group_kfold(y, np.asarray(ids), 5, n_repeats, seed)
    for r in range(n_repeats):
        manifest[f"fold_r{r}"] = folds[r]
    return features, manifest


def _mean_auc(predictions: pd.DataFrame) -> dict[str, float]:
    """Mean pooled OOF AUC over repetitions with CI and range, plus the mean per-fold AUC."""
    from sklearn.metrics import roc_auc_score

    from her2dlr.evaluate.metrics import metrics_table

    table = metrics_table(predictions)
    row = table[(table["split"] == "test") & (table["scope"] == "mean")].iloc[0]
    out = {k: float(row[k]) for k in ("auc", "ci_low", "ci_high", "auc_min", "auc_max")}
    test = predictions[predictions["split"] == "test"]
    out["auc_fold_mean"] = float(np.mean([roc_auc_score(f["label"], f["prob"]) for _, f in test.groupby("fold")]))
    return out


@register("leakage", "Noise features + random labels: nested selection (auc_proper ~0.5) vs selection on all data (auc_leaky)")
def leakage_bench(options: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield ``auc_proper`` and ``auc_leaky`` (see the module docstring)."""
    from sklearn.pipeline import Pipeline

    from her2dlr.learn.cv import run_outer_cv
    from her2dlr.learn.selection import build_selection, selection_funnel
    from her2dlr.learn.tuning import SearchSettings

    name = "leakage"
    n_cases, n_features, repeats = (120, 1000, 1) if options.quick else (200, 2000, 3)
    features, manifest = noise_cohort(n_cases, n_features, repeats, options.seed)
    search = SearchSettings(inner_splits=5, n_jobs=1, random_state=options.seed)
    common: dict[str, Any] = {"model": "lr", "scheme": "kfold", "search": search, "keep_train": False,
                              "n_jobs": options.n_jobs}
    info = {"n": n_cases, "features": n_features, "repeats": repeats, "folds": 5}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        proper = run_outer_cv(features, manifest, selection=LEAKAGE_SELECTION, **common)
        seconds = time.perf_counter() - start
        kept = proper.funnel().groupby("step", sort=False)["n_out"].median()
        yield result(name, "auc_proper", _mean_auc(proper.predictions)["auc"],
                     **{k: v for k, v in _mean_auc(proper.predictions).items() if k != "auc"}, **info,
                     median_features_kept=float(kept.iloc[-1]) if len(kept) else None, seconds=seconds)

        start = time.perf_counter()
        y_all = manifest.set_index("case_id").loc[features.index, "label"].to_numpy()
        leaky_selection = Pipeline(build_selection(LEAKAGE_SELECTION)).fit(features, y_all)  # the mistake
        selected = leaky_selection.transform(features)
        leaky = run_outer_cv(selected, manifest, selection=[], **common)
        seconds = time.perf_counter() - start
        stats = _mean_auc(leaky.predictions)
        yield result(name, "auc_leaky", stats["auc"], **{k: v for k, v in stats.items() if k != "auc"}, **info,
                     features_kept=int(selection_funnel(leaky_selection)["n_out"].iloc[-1]), seconds=seconds)

        from her2dlr.learn.workflows import WorkflowSpace

        start = time.perf_counter()
        searched = run_outer_cv(features, manifest, selection=[], workflows=WorkflowSpace(**LEAKAGE_WORKFLOWS),
                                **{**common, "model": "workflows"})
        seconds = time.perf_counter() - start
        stats = _mean_auc(searched.predictions)
        yield result(name, "auc_proper_workflows", stats["auc"], **{k: v for k, v in stats.items() if k != "auc"},
                     **info, n_workflows=LEAKAGE_WORKFLOWS["n_workflows"], top_k=LEAKAGE_WORKFLOWS["top_k"],
                     seconds=seconds)
