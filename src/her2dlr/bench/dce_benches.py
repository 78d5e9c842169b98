"""DCE-MRI benchmarks on synthetic studies written as real DICOM files.

``her2dlr bench dce-series [--data ../shared/data/mri-breast1] [--quick]``
    Simulated studies (:mod:`her2dlr.io.synthetic_dce`) in each vendor-like layout (four of
    classic one-slice files, two of one Enhanced MR multi-frame file per study), with the
    real breast volume of ``--data`` as background when given. Metrics:
    ``phases_correct`` (share of studies split into the simulated phases, voxel for voxel, in
    time order with the right roles; must be 1.0), ``geometry_max_error_mm`` (largest distance
    between the reader's and the generator's world position of the eight corner voxels of any
    phase), ``phi_leaks`` (identifying strings written into the DICOM files that are found in
    anything the readers and a DICOM cohort build produce: the records, the volumes, every file
    of the run folder; must be 0), one ``phases_correct_<layout>`` line per layout.

``her2dlr bench mri-speed [--data ../shared/data/mri-breast1] [--quick]``
    Seconds per volume: ``read_and_split_s`` (finding the series, reading four phases and
    splitting them; median over all layouts, with the medians of the classic one-slice-per-file
    layouts and of the enhanced multi-frame ones as ``classic_s`` / ``enhanced_s``),
    ``kinetic_maps_s``, ``radiomics_mri3d_s`` (the shipped ``mri3d`` set on the third
    post-contrast phase with the lesion mask, one process), ``segmentation_s`` (the default 3D
    U-Net of ``segment``, 64^3 input, on that phase: input preparation, network, paste-back,
    post-processing) and ``network_s`` (seed 004's ``mm_resnet`` on the 32^3 tumour crop:
    cropping, resizing, normalising, forward pass); batch 1 on at most 2 threads, untrained
    weights (the time does not depend on them).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from her2dlr.bench import BenchOptions, register, result
from her2dlr.errors import InputError
from her2dlr.io.dce import kinetic_maps, read_dce_folder, select_phase
from her2dlr.io.synthetic_dce import LAYOUTS, write_synthetic_cohort

__all__ = ["background_volume", "files_containing", "synthetic_dce_study_dict"]

DEFAULT_BACKGROUND = Path("../shared/data/mri-breast1/breast1_image.nrrd")


def background_volume(opts: BenchOptions) -> tuple[np.ndarray | None, str]:
    """The real breast volume used as anatomy (``--data`` folder or file, else ../shared/data), or None."""
    candidates = []
    if opts.data is not None:
        data = Path(opts.data)
        candidates += [data] if data.is_file() else sorted(data.glob("*image*.nrrd")) or sorted(data.glob("*.nrrd"))
        if not candidates:
            raise InputError(f"--data {opts.data}: no NRRD volume found (expected e.g. breast1_image.nrrd).")
    elif DEFAULT_BACKGROUND.is_file():
        candidates = [DEFAULT_BACKGROUND]
    if not candidates:
        return None, "simulated"
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(candidates[0]))).astype(np.float32)
    return array, candidates[0].name


def files_containing(folder: Path, needles: list[str]) -> list[tuple[Path, str]]:
    """Every (file, needle) pair where the file's bytes contain the needle (UTF-8 and Latin-1)."""
    encoded = [(n, n.encode("utf-8")) for n in needles if n]
    hits = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits += [(path, n) for n, b in encoded if b in data]
    return hits


def _corner_error(image: sitk.Image, geometry: Any) -> float:
    size = image.GetSize()
    corners = np.array([[x, y, z] for x in (0, size[0] - 1) for y in (0, size[1] - 1) for z in (0, size[2] - 1)])
    got = np.array([image.TransformIndexToPhysicalPoint([int(v) for v in c]) for c in corners])
    return float(np.abs(np.linalg.norm(got - geometry.world(corners), axis=1)).max())


def _phases_match(dce: Any, simulated: list[np.ndarray]) -> bool:
    if len(dce.phases) != len(simulated):
        return False
    expected_roles = ["pre"] + [f"post{k}" for k in range(1, len(simulated))]
    return dce.roles == expected_roles and all(
        np.array_equal(sitk.GetArrayViewFromImage(p), s.astype(np.float32)) for p, s in zip(dce.phases, simulated))


@register("dce-series", f"DICOM DCE phase split in {len(LAYOUTS)} vendor layouts (classic and enhanced multi-frame): "
                        "phases_correct (must be 1), geometry error, PHI leaks (must be 0)")
def dce_series(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    import pydicom

    background, source = background_volume(opts)
    per_layout = 3 if opts.quick else 6
    n_cases = per_layout * len(LAYOUTS)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(opts.work_dir or tmp) / "dce-series"
        t0 = time.perf_counter()
        truth = write_synthetic_cohort(root / "dicom", n_cases=n_cases, seed=opts.seed, background=background,
                                       keep_cases=True)
        write_s = time.perf_counter() - t0
        outputs = root / "outputs"
        outputs.mkdir(parents=True, exist_ok=True)
        correct: dict[str, list[bool]] = {layout: [] for layout in LAYOUTS}
        geometry_error = 0.0
        t0 = time.perf_counter()
        for _, row in truth.iterrows():
            dce = read_dce_folder(root / "dicom" / row["folder"])
            correct[row["layout"]].append(_phases_match(dce, row["case"].phases))
            geometry_error = max(geometry_error, *(_corner_error(p, row["geometry"]) for p in dce.phases))
            (outputs / f"{dce.case_id}.json").write_text(json.dumps(dce.record()) + repr(dce))
            sitk.WriteImage(dce.phases[1], str(outputs / f"{dce.case_id}_post1.nrrd"))
        read_s = time.perf_counter() - t0
        run_folder = _cohort_build(root)
        needles = sorted({str(v) for col in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
                                             "InstitutionName", "ReferringPhysicianName") for v in truth[col]})
        needles += [str(pydicom.valuerep.PersonName(v)).replace("^", " ") for v in truth["PatientName"]]
        leaks = files_containing(outputs, needles) + files_containing(run_folder, needles)
    flat = [ok for values in correct.values() for ok in values]
    yield result("dce-series", "phases_correct", float(np.mean(flat)), n=len(flat), background=source)
    for layout, values in correct.items():
        yield result("dce-series", f"phases_correct_{layout}", float(np.mean(values)), n=len(values))
    yield result("dce-series", "geometry_max_error_mm", round(geometry_error, 6), n=len(flat))
    yield result("dce-series", "phi_leaks", len(leaks), n_strings=len(needles),
                 searched="records, phase volumes, cohort run folder",
                 first=str(leaks[0][0].name) if leaks else None)
    yield result("dce-series", "seconds", round(write_s + read_s, 2), write_s=round(write_s, 2),
                 read_s=round(read_s, 2), n=len(flat))


def synthetic_dce_study_dict(dicom_root: Path, out: Path, *, rule: str = "her2_three_class",
                             phase: str = "post1") -> dict[str, Any]:
    """A study file (as a dict) over a cohort written by :func:`write_synthetic_cohort`."""
    return {
        "name": "synthetic-dce",
        "output_dir": str(out),
        "cohort": {"sources": [{
            "kind": "dicom", "path": str(dicom_root), "phase": phase, "maps": ["ser"],
            "table": str(dicom_root / "clinical.csv"), "table_key_column": "folder",
            "clinical_columns": ["age"], "label_columns": ["ihc", "ish"],
            "pseudonym_key": str(out.parent / "pseudonym.key"),
        }]},
        "label": {"rule": rule, "ihc_column": "ihc", "ish_column": "ish"},
        "split": {"seed": 1, "holdout": None, "kfold": {"n_splits": 3, "n_repeats": 1}},
    }


def _cohort_build(root: Path) -> Path:
    """Build a cohort from the DICOM folders (the run folder is then searched for leaks)."""
    from her2dlr.cohort.build import build_cohort
    from her2dlr.config import study_from_dict

    raw = synthetic_dce_study_dict(root / "dicom", root / "run")
    build_cohort(study_from_dict(raw, base_dir=root), progress=False)
    return root / "run"


def _inference_timers() -> tuple[Any, Any, int]:
    """Seconds of the 3D segmentation and of the seed 004 network on one volume and its mask; the threads used."""
    import torch

    from her2dlr.deep.networks import build_network
    from her2dlr.imaging.roi import RoiSpec, prepare_roi
    from her2dlr.imaging.torchutil import default_threads
    from her2dlr.segment.data import SegSpec
    from her2dlr.segment.infer import segment_images
    from her2dlr.segment.networks import build_seg_network

    seg_spec, roi_spec = SegSpec(size=64, spatial_dims=3), RoiSpec(size=32, margin=4, spatial_dims=3)
    seg_net = build_seg_network(spatial_dims=3).eval()
    net = build_network("mm_resnet", image_size=32, spatial_dims=3).eval()

    def segmentation(volume: np.ndarray, mask: np.ndarray) -> float:
        t0 = time.perf_counter()
        segment_images(seg_net, [volume], spec=seg_spec, batch_size=1, device="cpu", progress=False)
        return time.perf_counter() - t0

    def network(volume: np.ndarray, mask: np.ndarray) -> float:
        t0 = time.perf_counter()
        x = torch.from_numpy(np.ascontiguousarray(prepare_roi(volume, mask=mask, spec=roi_spec), np.float32))
        with torch.inference_mode():
            net(x.reshape(1, 1, *x.shape[-3:]))
        return time.perf_counter() - t0

    return segmentation, network, min(2, default_threads())


@register("mri-speed", "Seconds per DCE-MRI volume: DICOM read + phase split, kinetic maps, radiomics (mri3d), "
                       "3D segmentation, network inference")
def mri_speed(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    from her2dlr.imaging.torchutil import torch_threads
    from her2dlr.radiomics.extract import extract_case

    background, source = background_volume(opts)
    n_cases = 4 if opts.quick else 12
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(opts.work_dir or tmp) / "mri-speed"
        truth = write_synthetic_cohort(root, n_cases=n_cases, seed=opts.seed, background=background)
        read_s, maps_s, radiomics_s, seg_s, net_s, n_features = [], [], [], [], [], 0
        segmentation, network, threads = _inference_timers()
        for _, row in truth.iterrows():
            folder = root / row["folder"]
            t0 = time.perf_counter()
            dce = read_dce_folder(folder)
            read_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            kinetic_maps(dce)
            maps_s.append(time.perf_counter() - t0)
            image_path = folder / "post3.nrrd"
            sitk.WriteImage(dce.phases[select_phase(dce, "post3")], str(image_path))
            t0 = time.perf_counter()
            features = extract_case(image_path, folder / "mask.nrrd", params="mri3d")
            radiomics_s.append(time.perf_counter() - t0)
            n_features = len(features)
            volume = sitk.GetArrayFromImage(sitk.ReadImage(str(image_path))).astype(np.float32)
            mask = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "mask.nrrd")))
            with torch_threads(threads):
                segmentation(volume, mask)  # warm-up: first calls allocate
                network(volume, mask)
                seg_s.append(segmentation(volume, mask))
                net_s.append(network(volume, mask))
    size = "x".join(str(s) for s in dce.phases[0].GetSize())
    common = {"n": n_cases, "volume": size, "phases": int(truth["n_phases"][0]), "background": source}
    enhanced = truth["layout"].str.startswith("enhanced-").to_numpy()
    by_kind = {f"{kind}_s": round(float(np.median(np.asarray(read_s)[chosen])), 4)
               for kind, chosen in (("classic", ~enhanced), ("enhanced", enhanced)) if chosen.any()}
    yield result("mri-speed", "read_and_split_s", round(float(np.median(read_s)), 4), **common, **by_kind,
                 seconds=round(float(np.sum(read_s)), 2))
    yield result("mri-speed", "kinetic_maps_s", round(float(np.median(maps_s)), 4), **common)
    yield result("mri-speed", "radiomics_mri3d_s", round(float(np.median(radiomics_s)), 3), **common,
                 n_features=n_features, seconds=round(float(np.sum(radiomics_s)), 2))
    yield result("mri-speed", "segmentation_s", round(float(np.median(seg_s)), 4), **common, arch="unet",
                 input="64^3", threads=threads, weights="untrained")
    yield result("mri-speed", "network_s", round(float(np.median(net_s)), 4), **common, arch="mm_resnet",
                 input="32^3", threads=threads, weights="untrained")
