"""Benchmark ``voxel-spacing``: do a lesion's 3D radiomics agree across two scanners' voxel grids?

``her2dlr bench voxel-spacing [--quick] [--seed 0] [--n-jobs 2]``

Each synthetic lesion is one continuous object: an ellipsoid (semi-axes 5-9 mm) whose grey
levels are a sum of random plane waves (wavelengths 3-8 mm) over a smooth background, defined in
millimetres. It is sampled on the voxel centres of two acquisitions of one field of view:

- scanner A: 0.7 x 0.7 x 1.5 mm (x, y, z), scanner B: 1.0 x 1.0 x 3.0 mm;

each voxel averages the object over its extent (2 x 2 x 2 sub-samples) and gets Gaussian noise;
the mask holds the voxels whose centre lies in the ellipsoid. Radiomics (PyRadiomics:
first-order, GLCM, GLRLM, GLSZM of the original image, z-score normalised, bin width 5) of
the two volumes of every lesion are compared by Lin's concordance correlation coefficient
(CCC) over the lesions, one CCC per feature, for two ``radiomics.voxel_size`` rules:

- ``as_given``: each volume on its own grid (``voxel_size: params`` with a set that does not
  resample);
- ``training``: every volume resampled by PyRadiomics to the per-axis median spacing of the
  training volumes (:func:`her2dlr.radiomics.voxel_size.plan_voxel_size`; here the first half
  of the lesions, both scanners, are the training volumes).

Lines: ``ccc_median_<rule>`` (median CCC over features), ``share_ccc_over_0.9_<rule>`` (share
of features agreeing well), ``n`` lesions and features, ``seconds``. Shape features are left
out (their agreement is a property of the mask's sampling, not of resampling the image).

This is a phantom with a known truth (the same object under two grids), not a claim about any
scanner: it measures how much of a feature's value is the voxel grid rather than the lesion.

Development run (seed 0, 40 lesions, 74 features, 2 shared cores under other load): median CCC
0.573 on the own grids, 0.792 resampled to the training median 0.85 x 0.85 x 2.25 mm; share of
features with CCC > 0.9: 0.162 and 0.230; 271.5 s.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.bench import BenchOptions, register, result

__all__ = ["SCANNERS", "lins_ccc", "phantom_volume", "voxel_spacing_bench"]

BENCH = "voxel-spacing"
#: Voxel spacing (x, y, z) in mm of the two simulated acquisitions.
SCANNERS = {"A": (0.7, 0.7, 1.5), "B": (1.0, 1.0, 3.0)}
FIELD_MM = 30.0
PARAMS: dict[str, Any] = {
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": [], "glcm": [], "glrlm": [], "glszm": []},
    "setting": {"binWidth": 5.0, "normalize": True, "normalizeScale": 100.0, "interpolator": "sitkBSpline",
                "padDistance": 10, "label": 1},
}


def _lesion(rng: np.random.Generator) -> dict[str, Any]:
    """Random parameters of one continuous lesion (mm)."""
    n = 6
    directions = rng.normal(size=(n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return {"centre": rng.uniform(-2.0, 2.0, size=3), "axes": rng.uniform(5.0, 9.0, size=3),
            "k": directions * (2 * np.pi / rng.uniform(3.0, 8.0, size=(n, 1))), "phase": rng.uniform(0, 2 * np.pi, n),
            "amp": rng.uniform(10.0, 40.0, size=n), "level": rng.uniform(150.0, 250.0)}


def _object(p: dict[str, Any], xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey level and inside-ness of the lesion at points ``xyz`` (..., 3) in mm."""
    rel = (xyz - p["centre"]) / p["axes"]
    inside = (rel ** 2).sum(axis=-1) <= 1.0
    waves = (p["amp"] * np.cos(xyz @ p["k"].T + p["phase"])).sum(axis=-1)
    background = 80.0 + 10.0 * np.cos(xyz[..., 0] / 7.0) * np.cos(xyz[..., 1] / 9.0)
    return np.where(inside, p["level"] + waves, background), inside


def phantom_volume(p: dict[str, Any], spacing: tuple[float, float, float], rng: np.random.Generator,
                   noise: float = 5.0) -> tuple[Any, Any]:
    """The lesion ``p`` sampled on a grid of ``spacing`` (x, y, z) mm: image and mask as ``SimpleITK`` images."""
    import SimpleITK as sitk

    size = [round(FIELD_MM / s) for s in spacing]
    axes = [(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(size, spacing)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    centres = np.stack([x, y, z], axis=-1)
    total = np.zeros(centres.shape[:-1])
    for offset in np.array(np.meshgrid(*[[-0.25, 0.25]] * 3, indexing="ij")).reshape(3, -1).T:
        total += _object(p, centres + offset * np.asarray(spacing))[0]
    grey = total / 8.0 + rng.normal(0.0, noise, size=total.shape)
    inside = _object(p, centres)[1]
    origin = [float(a[0]) for a in axes]
    images = []
    for arr in (grey.astype(np.float32), inside.astype(np.uint8)):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing)
        img.SetOrigin(origin)
        images.append(img)
    return images[0], images[1]


def lins_ccc(a: np.ndarray, b: np.ndarray) -> float:
    """Lin's concordance correlation coefficient of paired values (NaN when both are constant)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    va, vb = a.var(), b.var()
    denom = va + vb + (a.mean() - b.mean()) ** 2
    return float(2 * np.cov(a, b, bias=True)[0, 1] / denom) if denom > 0 else float("nan")


@register(BENCH, "Agreement (Lin's CCC) of 3D radiomics of one phantom lesion on two scanners' voxel grids, "
                 "own grid vs radiomics.voxel_size: training")
def voxel_spacing_bench(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield the CCC lines of both rules (see the module docstring)."""
    import SimpleITK as sitk

    from her2dlr.radiomics.extract import extract_radiomics
    from her2dlr.radiomics.voxel_size import plan_voxel_size, with_voxel_size

    start = time.perf_counter()
    n = 12 if opts.quick else 40
    rng = np.random.default_rng(opts.seed)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for i in range(n):
            p = _lesion(rng)
            for scanner, spacing in SCANNERS.items():
                image, mask = phantom_volume(p, spacing, rng)
                case = f"lesion{i:03d}{scanner}"
                sitk.WriteImage(image, str(Path(tmp) / f"{case}.nrrd"), True)
                sitk.WriteImage(mask, str(Path(tmp) / f"{case}_mask.nrrd"), True)
                rows.append({"case_id": case, "image": str(Path(tmp) / f"{case}.nrrd"),
                             "mask": str(Path(tmp) / f"{case}_mask.nrrd"), "bbox": None, "lesion": i,
                             "scanner": scanner})
        table = pd.DataFrame(rows)
        train = table["lesion"] < n // 2
        plans = {"as_given": plan_voxel_size(table, train, "params"),
                 "training": plan_voxel_size(table, train, "training")}
        for rule, plan in plans.items():
            feats = extract_radiomics(table, with_voxel_size(PARAMS, plan), n_jobs=opts.n_jobs,
                                      progress=False).features
            feats = feats[[c for c in feats.columns if "_shape_" not in c]]
            a = feats.loc[table.loc[table["scanner"] == "A", "case_id"]].to_numpy()
            b = feats.loc[table.loc[table["scanner"] == "B", "case_id"]].to_numpy()
            ccc = np.array([lins_ccc(a[:, j], b[:, j]) for j in range(a.shape[1])])
            ccc = ccc[np.isfinite(ccc)]
            target = None if plan.target_mm is None else list(plan.target_mm)
            yield result(BENCH, f"ccc_median_{rule}", round(float(np.median(ccc)), 4), n=n, n_features=len(ccc),
                         target_mm=target)
            yield result(BENCH, f"share_ccc_over_0.9_{rule}", round(float((ccc > 0.9).mean()), 4), n=n,
                         n_features=len(ccc))
    yield result(BENCH, "seconds", round(time.perf_counter() - start, 1), n=n)
