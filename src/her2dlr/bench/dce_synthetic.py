"""Benchmark ``dce-synthetic``: a simulated DCE cohort with a known class signal, end to end from DICOM.

``her2dlr bench dce-synthetic [--data ../shared/data/mri-breast1] [--quick]``

150 studies (45 with ``--quick``), HER2-zero / HER2-low / HER2-positive in turn, written as DICOM
in the four vendor layouts over the real breast volume's anatomy, read back and split into phases
by :mod:`her2dlr.io.dce`. The class kinetics are brought towards each other
(``separation=0.3`` of the generator's distance), so that the task is not trivial. The post1 - pre subtraction and the lesion mask then feed:

* radiomics: PyRadiomics first-order + GLCM on the original subtraction image (a small set, so
  the benchmark runs in minutes on 2 cores; the shipped ``mri3d`` set's speed is in
  ``mri-speed``), a standardised logistic regression, 5-fold stratified out-of-fold
  probabilities: ``radiomics_auc_low_vs_zero``, ``radiomics_auc_positive_vs_rest`` (DeLong CI)
  and ``radiomics_macro_auc_3class`` (one-vs-rest, bootstrap CI; :mod:`her2dlr.evaluate.multiclass`);
* the DeepTEPP-style network (:mod:`her2dlr.deep.deeptepp`) on 2.5D mosaics of the tumour patch,
  HER2-positive vs the rest, 3-fold out-of-fold scores, one line per variant: ``base`` (no
  multi-view, no jigsaw, no clinical fusion), ``multi_view`` (training patches balanced with
  views), ``jigsaw`` (training mosaics shuffled every epoch), ``clinical`` (age fused at the head;
  the generator makes age unrelated to the class, so no gain is expected) and ``all``.

The network here is trained by a short loop of its own (Adam, 40 epochs, full batch), not by the
study's deep training stage. ``seconds`` is the wall time of the whole benchmark.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from her2dlr.bench import BenchOptions, register, result
from her2dlr.bench.dce_benches import background_volume

BENCH = "dce-synthetic"
#: Class kinetics at a third of the generator's full distance from HER2-low: a task no method solves perfectly.
SEPARATION = 0.3
SMALL_PARAMS = {
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": None, "glcm": ["Contrast", "Correlation", "Idm", "JointEntropy", "ClusterShade"]},
    "setting": {"binWidth": 25.0, "label": 1, "minimumROISize": 10, "additionalInfo": False},
}
VARIANTS = {
    "base": {"multi_view": False, "jigsaw": False, "clinical": False},
    "multi_view": {"multi_view": True, "jigsaw": False, "clinical": False},
    "jigsaw": {"multi_view": False, "jigsaw": True, "clinical": False},
    "clinical": {"multi_view": False, "jigsaw": False, "clinical": True},
    "all": {"multi_view": True, "jigsaw": True, "clinical": True},
}


def _read_cases(root: Path, truth: Any) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    from her2dlr.io.dce import kinetic_maps, read_dce_folder

    subtractions, masks, paths = [], [], []
    for _, row in truth.iterrows():
        folder = root / row["folder"]
        dce = read_dce_folder(folder)
        subtraction = kinetic_maps(dce, ["subtraction"], phase=dce.index("post1"))["subtraction"]
        path = folder / "subtraction.nrrd"
        sitk.WriteImage(subtraction, str(path))
        subtractions.append(sitk.GetArrayFromImage(subtraction))
        masks.append(sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "mask.nrrd"))))
        paths.append(str(path))
    return subtractions, masks, paths


def _radiomics_lines(paths: list[str], folders: list[Path], labels: np.ndarray, seed: int) -> Iterator[dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from her2dlr.evaluate.delong import delong_auc_ci
    from her2dlr.evaluate.multiclass import multiclass_metrics
    from her2dlr.radiomics.extract import extract_case

    rows = [extract_case(p, f / "mask.nrrd", params=SMALL_PARAMS) for p, f in zip(paths, folders)]
    names = sorted(rows[0])
    x = np.array([[r[n] for n in names] for r in rows], dtype=float)
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=2000))
    pair = labels < 2
    p_low = cross_val_predict(model, x[pair], labels[pair], cv=cv, method="predict_proba")[:, 1]
    r = delong_auc_ci(labels[pair], p_low)
    yield result(BENCH, "radiomics_auc_low_vs_zero", round(r.auc, 4), ci_low=round(r.ci_low, 4),
                 ci_high=round(r.ci_high, 4), n=int(pair.sum()), n_features=len(names))
    positive = (labels == 2).astype(int)
    p_pos = cross_val_predict(model, x, positive, cv=cv, method="predict_proba")[:, 1]
    r = delong_auc_ci(positive, p_pos)
    yield result(BENCH, "radiomics_auc_positive_vs_rest", round(r.auc, 4), ci_low=round(r.ci_low, 4),
                 ci_high=round(r.ci_high, 4), n=len(labels))
    proba = cross_val_predict(model, x, labels, cv=cv, method="predict_proba")
    m = multiclass_metrics(labels, proba, class_names=["HER2-zero", "HER2-low", "HER2-positive"], seed=seed)
    yield result(BENCH, "radiomics_macro_auc_3class", round(m.macro_auc, 4), ci_low=round(m.macro_ci_low, 4),
                 ci_high=round(m.macro_ci_high, 4), n=len(labels),
                 per_class={str(k): round(float(v), 4) for k, v in zip(m.per_class["name"], m.per_class["auc"])},
                 balanced_accuracy=round(m.balanced_accuracy, 4))


def _network_scores(patches: list[np.ndarray], y: np.ndarray, age: np.ndarray, switches: dict[str, bool],
                    seed: int, epochs: int) -> np.ndarray:
    import torch
    from sklearn.model_selection import StratifiedKFold

    from her2dlr.deep.deeptepp import MMResNet, balance_with_views, jigsaw_shuffle, slice_mosaic

    rng = np.random.default_rng(seed)
    scores = np.zeros(len(y))
    age_z = ((age - age.mean()) / age.std()).astype(np.float32)
    for train, test in StratifiedKFold(3, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        torch.manual_seed(seed)
        train_p, train_y, source = [patches[i] for i in train], [int(y[i]) for i in train], list(range(len(train)))
        if switches["multi_view"]:
            train_p, train_y, source = balance_with_views(train_p, train_y, seed=seed)
        train_clin = torch.tensor(age_z[train][source])[:, None]
        mosaics = np.stack([slice_mosaic(p, 2) for p in train_p])
        y_t = torch.tensor(train_y)
        net = MMResNet(1, 2, spatial_dims=2, widths=(4, 8, 8, 16), proj_dim=8,
                       n_clinical=1 if switches["clinical"] else 0)
        opt = torch.optim.Adam(net.parameters(), lr=0.003)
        for _ in range(epochs):
            batch = np.stack([jigsaw_shuffle(m, 2, rng) for m in mosaics]) if switches["jigsaw"] else mosaics
            net.train()
            opt.zero_grad()
            logits = net(torch.tensor(batch)[:, None], train_clin if switches["clinical"] else None)
            torch.nn.functional.cross_entropy(logits, y_t).backward()
            opt.step()
        net.eval()
        test_x = torch.tensor(np.stack([slice_mosaic(patches[i], 2) for i in test]))[:, None]
        with torch.no_grad():
            logits = net(test_x, torch.tensor(age_z[test])[:, None] if switches["clinical"] else None)
        scores[test] = torch.softmax(logits, 1)[:, 1].numpy()
    return scores


@register(BENCH, "Synthetic DCE cohort from DICOM: radiomics AUCs (low vs zero, 3-class macro), DeepTEPP network with/without each switch")
def dce_synthetic(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    import torch

    from her2dlr.deep.deeptepp import tumour_patch
    from her2dlr.evaluate.delong import delong_auc_ci
    from her2dlr.io.synthetic_dce import write_synthetic_cohort

    start = time.perf_counter()
    background, source = background_volume(opts)
    n_cases = 45 if opts.quick else 150
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(opts.work_dir or tmp) / BENCH
            truth = write_synthetic_cohort(root, n_cases=n_cases, seed=opts.seed, shape=(12, 32, 32),
                                           background=background, separation=SEPARATION)
            subtractions, masks, paths = _read_cases(root, truth)
            labels = truth["label"].to_numpy(int)
            yield from _radiomics_lines(paths, [root / f for f in truth["folder"]], labels, opts.seed)
            patches = [(tumour_patch(s, m, 12) / 300.0).astype(np.float32) for s, m in zip(subtractions, masks)]
            positive = (labels == 2).astype(int)
            for name, switches in VARIANTS.items():
                t0 = time.perf_counter()
                scores = _network_scores(patches, positive, truth["age"].to_numpy(float), switches, opts.seed,
                                         epochs=25 if opts.quick else 40)
                r = delong_auc_ci(positive, scores)
                yield result(BENCH, f"deeptepp_auc_{name}", round(r.auc, 4), ci_low=round(r.ci_low, 4),
                             ci_high=round(r.ci_high, 4), n=len(labels), task="HER2-positive vs rest",
                             seconds=round(time.perf_counter() - t0, 1), **switches)
    finally:
        torch.set_num_threads(threads)
    yield result(BENCH, "seconds", round(time.perf_counter() - start, 1), n=n_cases, background=source,
                 separation=SEPARATION,
                 seconds=round(time.perf_counter() - start, 1))
