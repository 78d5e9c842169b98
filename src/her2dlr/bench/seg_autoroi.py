"""Benchmark ``busi-autoroi``: BUSI benign vs malignant from radiomics on automatic ROIs.

``her2dlr bench busi-autoroi --data ../shared/data/busi [--quick] [--work-dir DIR] [--n-jobs 2]``

Same cohort, groups and outer folds as ``busi-seg`` (the default BUSI study, repetition 0 of
its group 5-fold CV, which is also ``busi-radiomics``' first repetition). Four ROI settings:

- ``manual``: the delineated mask ``X_mask.png``;
- ``auto``: the out-of-fold mask of the unprompted U-Net of ``busi-seg`` (the network that
  drew a case's mask never saw that case);
- ``box_prompt``: the out-of-fold mask of the box-prompted U-Net (reader's box = bounding
  rectangle of the true mask);
- ``box``: the plain bounding rectangle (seed 000).

The masks come from ``busi-seg``'s work folder (trained first when absent, with the same
settings and ``--quick``). Radiomics: ``busi-radiomics``' ``us2d_original`` set and feature
cache (:func:`her2dlr.bench.busi_radiomics.roi_features`). Model: one pre-specified
classifier, logistic regression with seed 002's selection, tuned by the inner group 5-fold grid
search (:func:`her2dlr.bench.busi_radiomics.model_search` with ``models=["lr"]``): no choice
among classifiers, so the four AUCs are comparable and none is picked on the test folds.

**Empty automatic masks are excluded, never replaced**: a case whose network found no lesion
has no ROI (the stage never gives it the whole image or its box), so it drops out of that
setting's AUC; ``n_empty`` counts them, ``n`` is the number of cases scored and
``n_dropped`` every case left out (empty, or a mask too small for the features). A
setting left with fewer than :data:`MIN_PER_CLASS` cases of a class reports no AUC (null). A
setting that loses cases is scored on an easier or harder subset, which the reader should
weigh; ``auc_<setting>_same_cases`` repeats ``manual`` on exactly the cases that setting kept.

Lines: ``auc_manual``, ``auc_auto``, ``auc_box_prompt`` (target >= 0.95), ``auc_box`` with
DeLong 95% CIs (pooled out-of-fold predictions of the 5 folds), ``seconds`` (extraction and
learning of this bench; segmentation is ``busi-seg``'s).

Development run (seed 0, ``busi-seg``'s 64 px / 10-epoch masks, none empty): ``auc_manual``
0.966, ``auc_auto`` 0.825, ``auc_box_prompt`` 0.896 (target 0.95), ``auc_box`` 0.888; 558 s.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from her2dlr.bench import BenchOptions, register, result

__all__ = ["AUTO_SETTINGS", "MODEL", "busi_autoroi_bench", "roi_auc"]

BENCH = "busi-autoroi"
MODEL = "lr"
#: ROI setting -> ``busi-seg`` run whose out-of-fold masks it reads.
AUTO_SETTINGS = {"auto": "unprompted", "box_prompt": "box_prompt"}
TARGETS = {"box_prompt": 0.95}
#: Fewest cases of each class an ROI setting must keep to be scored (group 5-fold needs some per fold).
MIN_PER_CLASS = 10


def roi_auc(manifest: Any, roi: str, name: str, work: Path, memo: Path, opts: BenchOptions) -> dict[str, Any]:
    """Pooled out-of-fold AUC (DeLong CI) of logistic regression on the radiomics of ROI ``roi``.

    Returns
    -------
    dict
        ``auc``, ``ci_low``, ``ci_high``, ``n`` (cases scored), ``positives``, ``kept`` (their
        case ids) and ``seconds``.
    """
    from her2dlr.bench.breast_usg import best_by_prefix
    from her2dlr.bench.busi_radiomics import PARAMS, SELECTION, model_search, params_path, roi_features

    t0 = time.perf_counter()
    print(f"{BENCH}: ROI '{name}': radiomics of {len(manifest.table)} cases, then the nested CV ...", file=sys.stderr,
          flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        features, kept, _ = roi_features(manifest, roi, params_path(PARAMS), work / "cache", opts.n_jobs, BENCH)
        labels = kept.table["label"]
        if labels.nunique() < 2 or labels.value_counts().min() < MIN_PER_CLASS:
            return {"auc": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": len(kept.table),
                    "positives": int(labels.sum()), "kept": set(kept.table["case_id"].astype(str)),
                    "seconds": time.perf_counter() - t0}
        metrics, _ = model_search(features, kept, [MODEL], selection=SELECTION, feature_set=f"radiomics_{name}",
                                  n_jobs=opts.n_jobs, seed=opts.seed, memo_dir=memo / name)
    best, _ = best_by_prefix(metrics, f"radiomics_{name}-")
    if best is None:
        raise RuntimeError(f"{BENCH}: the learning stage returned no test metrics for ROI '{name}'.")
    table = kept.table
    return {"auc": float(best["auc"]), "ci_low": float(best["ci_low"]), "ci_high": float(best["ci_high"]),
            "n": len(table), "positives": int(table["label"].sum()), "kept": set(table["case_id"].astype(str)),
            "seconds": time.perf_counter() - t0}


@register(BENCH, "BUSI radiomics AUC on manual, automatic (U-Net), box-prompted masks and boxes; "
                 "auc_box_prompt target 0.95")
def busi_autoroi_bench(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield ``auc_manual``, ``auc_auto``, ``auc_box_prompt``, ``auc_box`` (see the module docstring)."""
    from her2dlr.bench.busi_radiomics import default_work_dir
    from her2dlr.bench.cohort_benches import require_data
    from her2dlr.bench.seg_quality import busi_seg_runs, seg_settings, settings_info
    from her2dlr.cohort.manifest import Manifest, with_auto_masks

    data = require_data(opts, BENCH, "the BUSI folder with benign/, malignant/, normal/")
    runs = busi_seg_runs(opts, data)
    work = default_work_dir(opts)
    t0 = time.perf_counter()
    cases = Manifest.load(runs["unprompted"].study.paths.manifest)
    total = len(cases.table)
    common = {"model": MODEL, "folds": 5, "repeats": 1, "quick": opts.quick}
    lines = []
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        manual = roi_auc(cases, "mask", "manual", work, Path(tmp), opts)
        lines.append(result(BENCH, "auc_manual", manual["auc"], ci_low=manual["ci_low"], ci_high=manual["ci_high"],
                            n=manual["n"], positives=manual["positives"], n_dropped=total - manual["n"], **common))
        for name, setting in AUTO_SETTINGS.items():
            table = with_auto_masks(cases.table, runs[setting].study.paths.auto_masks)
            n_empty = int(table["mask_auto_empty"].fillna(True).astype(bool).sum())
            auto = roi_auc(cases.copy(table), "auto", name, work, Path(tmp), opts)
            lines.append(result(
                BENCH, f"auc_{name}", auto["auc"], ci_low=auto["ci_low"], ci_high=auto["ci_high"],
                target=TARGETS.get(name), n=auto["n"], positives=auto["positives"], n_empty=n_empty,
                n_dropped=total - auto["n"], empty_masks="excluded", **common,
                **settings_info(seg_settings(opts, setting == "box_prompt"))))
            if auto["n"] < manual["n"]:
                same = cases.copy(cases.table[cases.table["case_id"].astype(str).isin(auto["kept"])]
                                  .reset_index(drop=True))
                ref = roi_auc(same, "mask", f"manual_as_{name}", work, Path(tmp), opts)
                lines.append(result(BENCH, f"auc_{name}_same_cases", ref["auc"], ci_low=ref["ci_low"],
                                    ci_high=ref["ci_high"], n=ref["n"], roi="manual", **common))
        box = roi_auc(cases, "bbox", "box", work, Path(tmp), opts)
        lines.append(result(BENCH, "auc_box", box["auc"], ci_low=box["ci_low"], ci_high=box["ci_high"], n=box["n"],
                            positives=box["positives"], n_dropped=total - box["n"], **common))
    yield from lines
    seconds = time.perf_counter() - t0
    yield result(BENCH, "seconds", round(seconds, 1), seconds=round(seconds, 1), n=total, n_jobs=opts.n_jobs,
                 seg_cached=all(r.cached for r in runs.values()))
