"""A synthetic run folder in the stages' formats, for tests, benchmarks and examples of the report.

:func:`make_synthetic_run` writes ``cohort/``, ``features/`` and ``learn/<set>/`` as the stages
do (the manifest with its metadata, QC summary, label counts, splits; a feature table; the
predictions, ``metrics.csv`` made by :func:`her2dlr.evaluate.metrics.metrics_table`, funnel,
selection frequency, tuning and settings), and optionally ``models/`` (a model card with a
logistic model), ``deep/`` (a Grad-CAM montage PNG) and ``survival/`` (summary, table, figure).
Models differ in signal strength and calibration so every figure has something to show.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from her2dlr.runfolder import (
    FEATURE_FREQUENCY,
    FUNNEL,
    METRICS,
    MODEL_CARD,
    PARAMS,
    PREDICTIONS,
    SETTINGS,
    RunPaths,
)

__all__ = ["make_synthetic_run"]

_CLASSIFIERS = ["lr", "svm", "rf", "extratrees", "xgboost", "lightgbm", "knn", "nb"]
_STEPS = ["variance", "zscore", "ttest", "pearson", "greedy", "lasso"]


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _youden(y: np.ndarray, p: np.ndarray) -> float:
    from her2dlr.learn.thresholds import youden_threshold

    return float(youden_threshold(y, p))


def _cohort(root: Path, n_cases: int, n_patients: int, scheme: str, rng: np.random.Generator,
            clinical: bool) -> pd.DataFrame:
    from her2dlr.cohort.build import split_summary
    from her2dlr.cohort.manifest import Manifest
    from her2dlr.cohort.settings import SplitSettings
    from her2dlr.cohort.splits import assign_splits
    from her2dlr.io.atomic import write_csv_atomic, write_text_atomic

    patient_of = np.concatenate([np.arange(n_patients), rng.choice(n_patients, n_cases - n_patients, replace=False)])
    patient_of.sort()
    pat_label = (rng.random(n_patients) < 0.35).astype(int)
    label = pat_label[patient_of]
    n_excluded = max(2, n_cases // 50)
    table = pd.DataFrame({
        "case_id": [f"case{i:04d}" for i in range(n_cases + n_excluded)],
        "patient_id": [f"pt{p:04d}" for p in patient_of] + [f"px{i:03d}" for i in range(n_excluded)],
        "modality": "US",
        "image": [f"images/img{i:04d}.png" for i in range(n_cases + n_excluded)],
        "mask": [f"images/img{i:04d}_mask.png" for i in range(n_cases + n_excluded)],
        "centre": "Centre A",
        "source": "clinical.csv",
        "label": np.concatenate([label.astype(float), np.full(n_excluded, np.nan)]),
    })
    table["include"] = table["label"].notna()
    table["exclude_reason"] = np.where(table["include"], None, "missing_label")
    table["group"] = pd.factorize(table["patient_id"])[0]
    table["pixel_sha1"] = [f"{rng.integers(0, 2**63):016x}" for _ in range(len(table))]
    clinical_columns, types = [], {}
    if clinical:
        n = len(table)
        lab = table["label"].fillna(0).to_numpy()
        table["Age"] = np.round(rng.normal(52 + 3 * lab, 10, n)).clip(25, 85)
        table["PR"] = np.where(rng.random(n) < 0.65 - 0.35 * lab, "positive", "negative")
        table["Grade"] = rng.choice(["1", "2", "3"], n, p=[0.2, 0.45, 0.35])
        ki67 = np.round(rng.gamma(2 + 2 * lab, 8, n), 1)
        table["Ki67"] = np.where(rng.random(n) < 0.05, np.nan, ki67)
        signs = np.array(["palpable", "palpable&skin retraction", "nipple discharge", "none"])
        table["Signs"] = rng.choice(signs, n, p=[0.5, 0.15, 0.1, 0.25])
        clinical_columns = ["Age", "PR", "Grade", "Ki67", "Signs"]
        types = {"Age": "numeric", "PR": "categorical", "Grade": "categorical", "Ki67": "numeric", "Signs": "multi"}
    split_cfg = {"seed": 7, "holdout": {"test_size": 0.3} if scheme == "holdout" else None,
                 "kfold": {"n_splits": 3, "n_repeats": 2} if scheme == "kfold" else None}
    manifest = Manifest(table, clinical_columns=clinical_columns, clinical_types=types, meta={
        "label": {"rule": "column", "column": "HER2", "positive": ["positive"], "negative": ["negative"],
                  "classes": ["HER2-negative", "HER2-positive"]},
        "study": "synthetic"})
    manifest = assign_splits(manifest, SplitSettings.model_validate(split_cfg))
    manifest.meta["split"] = split_cfg
    paths = RunPaths(root)
    cohort = paths.cohort
    manifest.save(paths.manifest)
    inc = manifest.table[manifest.table["include"]]
    qc = {"n_rows": len(table), "n_output_rows": len(table), "n_included": len(inc), "n_excluded": n_excluded,
          "n_input_rows_excluded": n_excluded, "excluded_by_reason": {"excluded_before_qc": n_excluded},
          "unreadable_images": 0, "rgb_converted": 3, "multi_lesion_rows": 0, "rows_without_roi": 0,
          "derived_masks": 0, "exact_duplicate_groups": 0, "rows_in_exact_duplicate_groups": 0,
          "near_duplicate_groups": 0, "rows_in_duplicate_groups": 0, "largest_duplicate_group": 1,
          "duplicate_pairs": 0, "pairs_by_method": {}, "cross_label_pairs": 0,
          "n_groups": int(table["patient_id"].nunique()), "n_patients": int(table["patient_id"].nunique()),
          "label_balance": {"0": int((inc["label"] == 0).sum()), "1": int((inc["label"] == 1).sum())},
          "settings": {"lesion_policy": "largest", "near_duplicate_distance": 10}}
    write_text_atomic(cohort / "qc_summary.json", json.dumps(qc, indent=2))
    write_text_atomic(cohort / "label_counts.json", json.dumps(
        {"HER2-negative": int((table["label"] == 0).sum()), "HER2-positive": int((table["label"] == 1).sum())}))
    labels = pd.DataFrame({"case_id": table["case_id"], "label": table["label"],
                           "reason": np.where(table["include"], None, "missing value in 'HER2'"), "flag": None})
    write_csv_atomic(labels, cohort / "labels.csv")
    write_csv_atomic(split_summary(manifest), cohort / "splits.csv")
    return manifest.table


def _features(root: Path, table: pd.DataFrame, n_features: int, rng: np.random.Generator) -> tuple[str, list[str]]:
    from her2dlr.io.atomic import write_parquet_atomic, write_text_atomic

    inc = table[table["include"]]
    y = inc["label"].astype(int).to_numpy()
    names = [f"wavelet-LH_glcm_F{i} (bin=5, T=0.5)" if i % 3 else f"original_firstorder_F{i}" for i in range(n_features)]
    base = rng.normal(size=(len(inc), n_features))
    base[:, :8] += np.outer(y, np.linspace(1.0, 0.3, 8))
    base[:, 8:12] = base[:, :4] * 0.8 + rng.normal(scale=0.4, size=(len(inc), 4))
    feats = pd.DataFrame(base, index=pd.Index(inc["case_id"].astype(str), name="case_id"), columns=names)
    name = "radiomics_us2d_mask"
    write_parquet_atomic(feats, RunPaths(root).feature_table(name))
    write_text_atomic(RunPaths(root).feature_record(name), json.dumps({
        "params": "us2d", "roi": "mask", "params_hash": "0123456789abcdef", "n_cases": len(inc),
        "n_features": n_features, "n_failed": 0, "pyradiomics": "v3.1.4", "python": "3.11.7"}, indent=2))
    return name, names


def _probs(y: np.ndarray, strength: float, scale: float, shift: float, rng: np.random.Generator,
           noise: np.ndarray) -> np.ndarray:
    z = strength * (y - 0.5) * 2 + noise + rng.normal(scale=0.6, size=len(y))
    return 1.0 / (1.0 + np.exp(-(scale * z + shift)))


def _learn(root: Path, table: pd.DataFrame, set_name: str, feature_names: list[str], n_models: int, scheme: str,
           rng: np.random.Generator) -> None:
    from her2dlr.evaluate.metrics import metrics_table
    from her2dlr.io.atomic import write_csv_atomic, write_parquet_atomic, write_text_atomic

    inc = table[table["include"]].reset_index(drop=True)
    y_all = inc["label"].astype(int).to_numpy()
    case_noise = rng.normal(scale=0.8, size=len(inc))
    models = [f"{set_name}-{c}" for c in _CLASSIFIERS[: max(1, n_models - 1)]]
    if n_models > 1:
        models.append(f"{set_name}+clinical-lr")
    models = models[:n_models]
    rows, funnel, freq, params = [], [], [], []
    for k, model in enumerate(models):
        strength = 0.55 + 0.12 * k
        scale, shift = (0.8 + 0.15 * k), (-0.5 + 0.1 * k)
        if scheme == "holdout":
            folds = [("holdout", (inc["split"] == "train").to_numpy(), (inc["split"] == "test").to_numpy())]
        else:
            folds = []
            for rep in (0, 1):
                col = inc[f"fold_r{rep}"].to_numpy()
                for j in sorted(set(col) - {-1}):
                    folds.append((f"r{rep}f{j}", (col != j) & (col >= 0), col == j))
        for fold, tr, te in folds:
            p_tr_oof = _probs(y_all[tr], strength, scale, shift, rng, case_noise[tr])
            p_tr = _probs(y_all[tr], strength * 1.6, scale, shift, rng, case_noise[tr] * 0.5)
            p_te = _probs(y_all[te], strength, scale, shift, rng, case_noise[te])
            thr = _youden(y_all[tr], p_tr_oof)
            for split, mask, p in (("train", tr, p_tr), ("train_oof", tr, p_tr_oof), ("test", te, p_te)):
                part = inc.loc[mask, ["case_id", "patient_id"]].copy()
                part["model"], part["fold"], part["split"], part["prob"] = model, fold, split, p
                part["class"] = (p >= thr).astype(int)
                part["label"] = y_all[mask]
                part["threshold"] = thr
                rows.append(part)
            n = len(feature_names)
            counts = [n, n, int(n * 0.6), int(n * 0.35), int(n * 0.3), 6 + k % 3]
            for i, step in enumerate(_STEPS):
                funnel.append({"fold": fold, "step": step, "n_in": counts[i - 1] if i else n, "n_out": counts[i],
                               "model": model, "scheme": scheme})
            params.append({"fold": fold, "n_features": counts[-1], "inner_median_auc": 0.7 + 0.02 * k,
                           "threshold": thr, "model": model, "scheme": scheme, "model__C": [0.1, 1.0][k % 2]})
        n_f = len(folds)
        for i, f in enumerate(feature_names[:16]):
            freq.append({"feature": f, "frequency": max(0.0, 1.0 - i * 0.07 - 0.02 * k) if n_f else 0,
                         "model": model, "scheme": scheme})
    pred = pd.concat(rows, ignore_index=True)
    out = RunPaths(root).learn_set(set_name)
    write_parquet_atomic(pred, out / PREDICTIONS, index=False)
    write_csv_atomic(metrics_table(pred), out / METRICS)
    write_csv_atomic(pd.DataFrame(funnel), out / FUNNEL)
    write_csv_atomic(pd.DataFrame(freq), out / FEATURE_FREQUENCY)
    write_csv_atomic(pd.DataFrame(params), out / PARAMS)
    write_text_atomic(out / SETTINGS, json.dumps({
        "feature_set": set_name, "features": [set_name, "clinical"],
        "selection": [{"name": s} for s in _STEPS], "models": [{"name": c} for c in _CLASSIFIERS[:n_models]],
        "schemes": [scheme], "search": {"inner_splits": 5, "search": "grid", "n_iter": 10},
        "threshold": {"method": "youden", "target": None, "source": "inner_oof"}, "seed": 0}, indent=2))


def _extras(root: Path, rng: np.random.Generator) -> None:
    from her2dlr.io.atomic import write_csv_atomic, write_text_atomic

    card = {"name": "combined", "task": "HER2 status", "threshold": 0.4, "config_hash": "fedcba9876543210",
            "versions": {"scikit-learn": "1.9.1"},
            "logistic": {"intercept": -2.2, "coefficients": {"Age": 0.025, "PR=positive": -1.1, "rad_score": 1.9},
                         "ranges": {"Age": [25, 85], "rad_score": [-3, 3]},
                         "levels": {"PR": ["negative", "positive"]}}}
    paths = RunPaths(root)
    paths.model("combined").mkdir(parents=True, exist_ok=True)
    write_text_atomic(paths.model("combined") / MODEL_CARD, json.dumps(card, indent=2))
    (paths.deep / "gradcam").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:96, :192]
    heat = np.exp(-(((yy - 48) / 20) ** 2 + ((xx % 96 - 48) / 25) ** 2))
    img = np.stack([(255 * heat).astype(np.uint8), (rng.random((96, 192)) * 120).astype(np.uint8),
                    (255 * (1 - heat)).astype(np.uint8)], axis=-1)
    (paths.deep / "gradcam" / "gradcam_montage_test.png").write_bytes(_png(img))
    surv = paths.survival
    write_text_atomic(surv / "summary.txt", "Kaplan-Meier: 120 patients, 30 events.\n\nHigh-risk group had shorter "
                                            "disease-free survival (log-rank p = 0.01).")
    write_csv_atomic(pd.DataFrame({"group": ["low", "high"], "n": [60, 60], "events": [10, 20],
                                   "median": [np.nan, 48.0]}), surv / "tables" / "km_overall.csv")
    (surv / "figures").mkdir(parents=True, exist_ok=True)
    (surv / "figures" / "km_overall.png").write_bytes(_png((rng.random((60, 90, 3)) * 255).astype(np.uint8)))


def make_synthetic_run(root: str | os.PathLike[str], *, n_cases: int = 200, n_patients: int | None = None,
                       n_models: int = 3, scheme: str = "holdout", n_features: int = 30, clinical: bool = True,
                       extras: bool = True, seed: int = 0) -> Path:
    """Write a synthetic run folder and return its path.

    Parameters
    ----------
    root : path
        The run folder to create.
    n_cases : int, default=200
        Included images (a few more are imported and excluded by the label rule).
    n_patients : int, optional
        Patients (default 3/4 of ``n_cases``; some patients have two images).
    n_models : int, default=3
        Models in ``learn/<set>/`` (the last one a "+clinical" model when there are several).
    scheme : {"holdout", "kfold"}, default="holdout"
    n_features : int, default=30
    clinical : bool, default=True
        Clinical columns (numeric, categorical with missing values, multi-valued) in the manifest.
    extras : bool, default=True
        Also ``models/combined/model_card.json``, ``deep/`` Grad-CAM PNG and ``survival/`` outputs.
    seed : int, default=0
    """
    if scheme not in ("holdout", "kfold"):
        from her2dlr.errors import InputError

        raise InputError(f"The 'scheme' parameter of make_synthetic_run must be 'holdout' or 'kfold'. Got {scheme!r}.")
    root = Path(root)
    rng = np.random.default_rng(seed)
    n_patients = n_patients or max(2, (3 * n_cases) // 4)
    table = _cohort(root, n_cases, n_patients, scheme, rng, clinical)
    set_name, names = _features(root, table, n_features, rng)
    _learn(root, table, set_name, names, n_models, scheme, rng)
    if extras:
        _extras(root, rng)
    return root
