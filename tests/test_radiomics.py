"""Radiomics extraction: params sets, one case against PyRadiomics itself, batches, cache."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from PIL import Image

from her2dlr.errors import InputError
from her2dlr.radiomics import extract as extract_mod
from her2dlr.radiomics.extract import (
    ExtractionResult,
    extract_case,
    extract_radiomics,
    load_params,
    params_hash,
    write_features,
)
from her2dlr.radiomics.parameters import SHIPPED_PARAMS

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
PARAMS_DIR = Path(extract_mod.__file__).parent / "params"

US2D_FEATURES = 1556
VIDEO_FEATURES = 87
MRI3D_FEATURES = 1288

RTOL = 1e-6


def _real(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is absent (the public sets live in ../shared/data)")
    return path


# ---------------------------------------------------------------- synthetic cases
def _lesion(seed: int, size: int = 72, rough: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Speckle background with an elliptic lesion; returns (uint8 image, 0/255 mask)."""
    rng = np.random.default_rng(seed)
    img = rng.gamma(2.0, 30.0, size=(size, size + 8))
    yy, xx = np.mgrid[:size, : size + 8]
    inside = ((yy - size / 2) / (size / 4)) ** 2 + ((xx - size / 2) / (size / 3.5)) ** 2 <= 1
    lesion = rng.normal(60, 35 if rough else 8, size=img.shape)
    img[inside] = lesion[inside]
    img[0, 0] = 255  # bright pixels exercise the top of the bin range
    return np.clip(img, 0, 255).astype(np.uint8), inside.astype(np.uint8) * 255


def _png(path: Path, arr: np.ndarray) -> str:
    Image.fromarray(arr).save(path)
    return str(path)


@pytest.fixture
def case_files(tmp_path: Path) -> tuple[str, str]:
    img, mask = _lesion(1, rough=True)
    return _png(tmp_path / "img.png", img), _png(tmp_path / "img_mask.png", mask)


def _manifest(tmp_path: Path, n: int) -> pd.DataFrame:
    rows = []
    for i in range(n):
        img, mask = _lesion(10 + i, rough=bool(i % 2))
        rows.append(
            {
                "case_id": f"c{i}",
                "image": _png(tmp_path / f"c{i}.png", img),
                "mask": _png(tmp_path / f"c{i}_mask.png", mask),
                "bbox": pd.NA,
                "spacing": pd.NA,
            }
        )
    return pd.DataFrame(rows)


def _assert_same(ours: dict[str, float], ref: dict[str, float]) -> None:
    assert set(ours) == set(ref), sorted(set(ours) ^ set(ref))[:10]
    names = sorted(ref)
    np.testing.assert_allclose(
        [ours[n] for n in names], [ref[n] for n in names], rtol=RTOL, atol=1e-12, err_msg=str(names[:3])
    )


def _pyradiomics(image: sitk.Image, mask: sitk.Image, params: dict, label: int) -> dict[str, float]:
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    with warnings.catch_warnings():  # pykwalify's deprecated load_module()
        warnings.simplefilter("ignore", DeprecationWarning)
        extractor = RadiomicsFeatureExtractor(params)
    raw = extractor.execute(image, mask, label=label)
    return {k: float(v) for k, v in raw.items() if not k.startswith("diagnostics_")}


def _reference_2d(image_path: str, mask_path: str, params_file: Path) -> dict[str, float]:
    """Independent reference, straight from PyRadiomics and the YAML file.

    Original and Wavelet: PyRadiomics' documented 2D route, a one-slice 3D image with
    force2D (as in the YAML). LoG, which PyRadiomics refuses on one-slice 3D input:
    the 2D image itself, without force2D.
    """
    raw = yaml.safe_load(params_file.read_text())
    image2d = sitk.ReadImage(image_path)
    mask2d = sitk.ReadImage(mask_path)
    label = int(sitk.GetArrayViewFromImage(mask2d).max())
    slice_params = {**raw, "imageType": {k: v for k, v in raw["imageType"].items() if k != "LoG"}}
    ref = _pyradiomics(sitk.JoinSeries(image2d), sitk.JoinSeries(mask2d), slice_params, label)
    if "LoG" in raw["imageType"]:
        log_params = {
            **raw,
            "imageType": {"LoG": raw["imageType"]["LoG"]},
            "setting": {**raw["setting"], "force2D": False},
        }
        ref.update(_pyradiomics(image2d, mask2d, log_params, label))
    return ref


# ---------------------------------------------------------------- params
def test_load_params_names_paths_and_errors(tmp_path: Path) -> None:
    for name in SHIPPED_PARAMS:
        assert load_params(name) == load_params(PARAMS_DIR / f"{name}.yaml")
    with pytest.raises(InputError, match="us2d, video, mri3d.*Did you mean 'us2d'"):
        load_params("us2D")
    with pytest.raises(InputError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("setting:\n  binWidth: wide\n")
    with pytest.raises(InputError, match=r"bad\.yaml.*binWidth"):
        load_params(bad)


def test_params_hash_is_stable_and_sensitive() -> None:
    params = load_params("us2d")
    reordered = dict(reversed(list(params.items())))
    assert params_hash(params) == params_hash(reordered) == params_hash(load_params("us2d"))
    as_int = {**params, "setting": {**params["setting"], "binWidth": 5}}
    assert params_hash(as_int) == params_hash(params)
    other = {**params, "setting": {**params["setting"], "binWidth": 10.0}}
    assert params_hash(other) != params_hash(params)


# ---------------------------------------------------------------- one case
def test_case_equals_direct_pyradiomics(case_files: tuple[str, str]) -> None:
    image, mask = case_files
    ours = extract_case(image, mask, None, "us2d")
    _assert_same(ours, _reference_2d(image, mask, PARAMS_DIR / "us2d.yaml"))


@pytest.mark.realdata
def test_real_busi_case_equals_direct_pyradiomics() -> None:
    image = _real("busi", "malignant", "malignant (12).png")
    mask = image.with_name("malignant (12)_mask.png")
    ours = extract_case(image, mask, None, "us2d")
    _assert_same(ours, _reference_2d(str(image), str(mask), PARAMS_DIR / "us2d.yaml"))


def test_feature_counts_and_2d_log(case_files: tuple[str, str]) -> None:
    image, mask = case_files
    us2d = extract_case(image, mask, None, "us2d")
    assert len(us2d) == US2D_FEATURES
    assert 1400 <= len(us2d) <= 1700
    assert len(extract_case(image, mask, None, "video")) == VIDEO_FEATURES
    log = {k: v for k, v in us2d.items() if k.startswith("log-sigma-")}
    assert len(log) == 9 * 91
    assert np.isfinite(list(log.values())).all()
    assert "wavelet2-LL_glcm_Contrast" in us2d and "wavelet-HH_firstorder_Mean" in us2d
    assert not any(k.startswith("diagnostics_") for k in us2d)


def test_rgb_png_equals_luma_grey(tmp_path: Path) -> None:
    grey, mask = _lesion(3, rough=True)
    rgb = np.stack([grey, np.roll(grey, 3, axis=1), 255 - grey], axis=-1).astype(np.uint8)
    rgb_path = _png(tmp_path / "rgb.png", rgb)
    mask_path = _png(tmp_path / "rgb_mask.png", mask)
    planes = rgb.astype(np.float32)  # BT.601 luma, in float32 as the reader computes it
    luma = planes[..., 0] * 0.299 + planes[..., 1] * 0.587 + planes[..., 2] * 0.114
    grey_path = str(tmp_path / "luma.nrrd")
    sitk.WriteImage(sitk.GetImageFromArray(luma.astype(np.float32)), grey_path)
    ours = extract_case(rgb_path, mask_path, None, "us2d")
    assert len(ours) == US2D_FEATURES
    _assert_same(ours, extract_case(grey_path, mask_path, None, "us2d"))


def test_bbox_roi_is_a_rectangle(case_files: tuple[str, str]) -> None:
    image, _ = case_files
    feats = extract_case(image, None, "[10, 12, 30, 20]", "video")
    assert feats["original_shape2D_PixelSurface"] == pytest.approx(30 * 20)
    assert feats["original_shape2D_Perimeter"] == pytest.approx(2 * (30 + 20), rel=0.05)
    as_list = extract_case(image, None, [10, 12, 30, 20], "video")
    _assert_same(as_list, feats)


def test_label_selects_one_value_of_a_multilabel_mask(tmp_path: Path) -> None:
    img, _ = _lesion(4)
    labels = np.zeros(img.shape, np.uint8)
    labels[10:30, 10:40] = 1
    labels[40:60, 20:50] = 2
    mask = tmp_path / "labels.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(mask))
    image = _png(tmp_path / "img.png", img)
    two = extract_case(image, mask, None, "video", label=2)
    assert two["original_shape2D_PixelSurface"] == pytest.approx(20 * 30)
    with pytest.raises(InputError, match="values 2"):
        extract_case(image, mask, None, "video")
    with pytest.raises(InputError, match="no voxel of label 7"):
        extract_case(image, mask, None, "video", label=7)


@pytest.mark.realdata
def test_mri3d_on_breast1() -> None:
    image = _real("mri-breast1", "breast1_image.nrrd")
    feats = extract_case(image, image.with_name("breast1_label.nrrd"), None, "mri3d")
    assert len(feats) == MRI3D_FEATURES
    assert "original_shape_MeshVolume" in feats and "log-sigma-5-0-mm-3D_glszm_ZoneEntropy" in feats
    assert sum(k.startswith("wavelet-") for k in feats) == 8 * 91
    assert np.isfinite(list(feats.values())).all()


@pytest.mark.realdata
def test_real_rgb_ultrasound_equals_its_luma_grey(tmp_path: Path) -> None:
    image = _real("breast-lesions-usg", "images", "case002.png")
    mask = image.with_name("case002_tumor.png")
    rgb = np.asarray(Image.open(image))
    assert rgb.ndim == 3  # the file really is colour
    planes = rgb.astype(np.float32)
    luma = planes[..., 0] * 0.299 + planes[..., 1] * 0.587 + planes[..., 2] * 0.114
    grey_path = tmp_path / "case002_luma.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(luma), str(grey_path))
    _assert_same(extract_case(image, mask, None, "video"), extract_case(grey_path, mask, None, "video"))


@pytest.mark.realdata
def test_real_mri3d_equals_direct_pyradiomics() -> None:
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    image = _real("mri-breast1", "breast1_image.nrrd")
    label = image.with_name("breast1_label.nrrd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        extractor = RadiomicsFeatureExtractor(str(PARAMS_DIR / "mri3d.yaml"))
    raw = extractor.execute(str(image), str(label))
    ref = {k: float(v) for k, v in raw.items() if not k.startswith("diagnostics_")}
    _assert_same(extract_case(image, label, None, "mri3d"), ref)


@pytest.mark.realdata
def test_bench_subset_is_every_fifth_lesion() -> None:
    from her2dlr.bench.extraction import select_busi_cases

    busi = _real("busi")
    cases = select_busi_cases(busi, 120)
    assert len(cases) == 120 and cases["case_id"].is_unique
    assert cases["case_id"].iloc[0] == "benign (1)" and cases["case_id"].iloc[-1].startswith("malignant")
    assert all(Path(m).name == f"{c}_mask.png" for c, m in zip(cases["case_id"], cases["mask"]))


# ---------------------------------------------------------------- batches
def test_batch_records_failures_and_goes_on(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, 3)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    img, _ = _lesion(9)
    empty = _png(tmp_path / "empty_mask.png", np.zeros_like(img))
    extra = pd.DataFrame(
        [
            {"case_id": "broken", "image": str(broken), "mask": manifest["mask"][0], "bbox": pd.NA, "spacing": pd.NA},
            {"case_id": "empty", "image": _png(tmp_path / "e.png", img), "mask": empty, "bbox": pd.NA, "spacing": pd.NA},
        ]
    )
    result = extract_radiomics(pd.concat([manifest, extra]), "video", progress=False)
    assert isinstance(result, ExtractionResult)
    assert list(result.features.index) == ["c0", "c1", "c2"]
    assert result.features.shape[1] == VIDEO_FEATURES
    assert (result.features.dtypes == "float64").all()
    reasons = result.failures.set_index("case_id")["reason"]
    assert list(result.failures.columns) == ["case_id", "image", "mask", "reason"]
    assert set(reasons.index) == {"broken", "empty"}
    assert "broken.png" in reasons["broken"]
    assert "empty_mask.png" in reasons["empty"] and "empty" in reasons["empty"]
    assert result.timing["n_failed"] == 2 and result.timing["n_computed"] == 5


def test_batch_equals_single_cases_and_handles_bbox_and_spacing(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, 2)
    manifest.loc[1, "mask"] = pd.NA
    manifest.loc[1, "bbox"] = json.dumps([5, 6, 20, 25])
    manifest.loc[0, "spacing"] = 0.5
    result = extract_radiomics(manifest, "video", progress=False)
    first = extract_case(manifest["image"][0], manifest["mask"][0], None, "video", spacing=0.5)
    _assert_same(result.features.loc["c0"].to_dict(), first)
    assert first["original_shape2D_PixelSurface"] == pytest.approx(
        (np.asarray(Image.open(manifest["mask"][0])) > 0).sum() * 0.25
    )
    assert result.features.loc["c1", "original_shape2D_PixelSurface"] == pytest.approx(500)


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_parallel_backends_equal_sequential(tmp_path: Path, backend: str) -> None:
    manifest = _manifest(tmp_path, 4)
    seq = extract_radiomics(manifest, "video", n_jobs=1, progress=False)
    par = extract_radiomics(manifest, "video", n_jobs=2, backend=backend, chunk_size=1, progress=False)
    assert par.timing["n_workers"] == 2
    pd.testing.assert_frame_equal(seq.features, par.features, rtol=RTOL)


def test_backend_errors(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, 1)
    with pytest.raises(InputError, match="loky, threading, sequential, dask, ray.*'loky'"):
        extract_radiomics(manifest, "video", backend="lokky", progress=False)
    for backend, module in (("dask", "distributed"), ("ray", "ray")):
        try:
            __import__(module)
        except ImportError:
            with pytest.raises(InputError, match=f"backend='{backend}' needs the optional package"):
                extract_radiomics(manifest, "video", n_jobs=2, backend=backend, progress=False)
    with pytest.raises(InputError, match="lacks column"):
        extract_radiomics(manifest.drop(columns="image"), "video", progress=False)


# ---------------------------------------------------------------- cache
def test_cache_reuses_and_recomputes_only_what_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = _manifest(tmp_path, 4)
    cache = tmp_path / "cache"
    computed: list[str] = []
    real_compute = extract_mod._compute

    def counting(image_path, *args, **kwargs):  # type: ignore[no-untyped-def]
        computed.append(Path(image_path).stem)
        return real_compute(image_path, *args, **kwargs)

    monkeypatch.setattr(extract_mod, "_compute", counting)

    first = extract_radiomics(manifest, "video", cache_dir=cache, progress=False)
    assert sorted(computed) == ["c0", "c1", "c2", "c3"]
    files = sorted(cache.rglob("*.parquet"))
    assert len(files) == 4
    stamps = {f: f.stat().st_mtime_ns for f in files}

    computed.clear()
    second = extract_radiomics(manifest, "video", cache_dir=cache, progress=False)
    assert computed == [] and second.timing["n_cached"] == 4 and second.timing["n_computed"] == 0
    assert {f: f.stat().st_mtime_ns for f in files} == stamps
    pd.testing.assert_frame_equal(first.features, second.features)

    _, new_mask = _lesion(99)
    new_mask[:, :20] = 0  # a different outline
    _png(Path(manifest["mask"][2]), new_mask)
    third = extract_radiomics(manifest, "video", cache_dir=cache, progress=False)
    assert computed == ["c2"] and third.timing["n_computed"] == 1
    assert third.features.loc["c2", "original_shape2D_PixelSurface"] != first.features.loc["c2", "original_shape2D_PixelSurface"]
    pd.testing.assert_frame_equal(third.features.drop(index="c2"), first.features.drop(index="c2"))

    computed.clear()
    wider = load_params("video")
    wider["setting"]["binWidth"] = 10.0
    fourth = extract_radiomics(manifest, wider, cache_dir=cache, progress=False)
    assert sorted(computed) == ["c0", "c1", "c2", "c3"] and fourth.timing["n_cached"] == 0


def test_cache_survives_a_touched_file_and_ignores_a_corrupt_entry(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, 2)
    cache = tmp_path / "cache"
    extract_radiomics(manifest, "video", cache_dir=cache, progress=False)
    os.utime(manifest["image"][0])  # same bytes, new mtime: still a hit
    entries = sorted(cache.rglob("*.parquet"))
    entries[0].write_bytes(b"garbage")  # a damaged entry is recomputed, not trusted
    again = extract_radiomics(manifest, "video", cache_dir=cache, progress=False)
    assert again.timing["n_computed"] == 1 and again.timing["n_cached"] == 1
    assert again.features.shape == (2, VIDEO_FEATURES)


# ---------------------------------------------------------------- output
def test_odd_feature_names_survive_parquet(tmp_path: Path) -> None:
    names = ["F1 (T=0.5,0.8)", "log-sigma-1-0-mm-3D_glcm_Id", "a/b\\c", "ümlaut µ", "with space", "1", "x.y[0]"]
    features = pd.DataFrame(
        np.arange(14, dtype=float).reshape(2, 7), columns=names, index=pd.Index(["p1", "p 2"], name="case_id")
    )
    result = ExtractionResult(features=features, failures=pd.DataFrame(), provenance={"params_hash": "x"})
    path = write_features(result, tmp_path / "out" / "features.parquet")
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, features)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_extraction_warnings_are_collected_not_lost(case_files: tuple[str, str]) -> None:
    image, mask = case_files
    params = load_params("video")
    params["featureClass"]["glcm"] = ["SumAverage", "JointAverage"]
    manifest = pd.DataFrame([{"case_id": "a", "image": image, "mask": mask}])
    result = extract_radiomics(manifest, params, progress=False)
    assert result.warnings["message"].str.contains("Sum Average").any()
    assert result.features.loc["a", "original_glcm_SumAverage"] == pytest.approx(
        2 * result.features.loc["a", "original_glcm_JointAverage"]
    )


def test_bench_needs_data() -> None:
    from her2dlr.bench import BenchOptions, run_bench

    with pytest.raises(InputError, match="--data"):
        list(run_bench("extraction", BenchOptions(data=None, quick=True)))


def test_progress_bar_counts_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _manifest(tmp_path, 2)
    extract_radiomics(manifest, "video", progress=True)
    err = capsys.readouterr().err
    assert "radiomics" in err and "2/2" in err
