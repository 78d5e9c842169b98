"""DICOM series and DCE phases: layouts, geometry against SimpleITK and the generator, kinetic maps, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from her2dlr.errors import InputError
from her2dlr.io.dce import DcePhases, kinetic_maps, read_dce_folder, read_dce_volume, select_phase
from her2dlr.io.deid import load_or_create_key, pseudonym
from her2dlr.io.dicom_series import find_studies, read_slice_headers, stack_slices
from her2dlr.io.synthetic_dce import LAYOUTS, identity_of, simulate_case, write_dce_dicom

SHAPE = (6, 20, 18)  # z, y, x: small and not square, so a swapped axis shows

EXPECTED_TAGS = {  # layout -> (dce_layout, split tag, order tag)
    "series-per-phase": ("series-per-phase", "SeriesInstanceUID", "AcquisitionNumber"),
    "temporal-position": ("multi-phase-series", "TemporalPositionIdentifier", "TemporalPositionIdentifier"),
    "trigger-time": ("multi-phase-series", "TriggerTime", "TriggerTime"),
    "acquisition-time": ("series-per-phase", "SeriesInstanceUID", "AcquisitionTime"),
    "enhanced-temporal-index": ("enhanced-multi-phase-series", "TemporalPositionIndex", "TemporalPositionIndex"),
    "enhanced-datetime": ("enhanced-multi-phase-series", "FrameAcquisitionDateTime", "FrameAcquisitionDateTime"),
}


def _write(folder: Path, layout: str, seed: int = 0, label: int = 2, n_phases: int = 3):
    rng = np.random.default_rng(seed)
    case = simulate_case(label, rng, shape=SHAPE, n_phases=n_phases)
    identity = identity_of(seed, rng)
    write_dce_dicom(case, folder, layout=layout, identity=identity, rng=rng)
    return case, identity


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object, dict[str, str]]]:
    root = tmp_path_factory.mktemp("dce")
    out = {}
    for k, layout in enumerate(LAYOUTS):
        case, identity = _write(root / layout, layout, seed=k)
        out[layout] = (root / layout, case, identity)
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_is_split_into_the_simulated_phases_in_time_order(written, layout: str) -> None:
    folder, case, _ = written[layout]
    dce = read_dce_folder(folder)
    assert dce.roles == ["pre", "post1", "post2"]
    for read, truth in zip(dce.phases, case.phases):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(read), truth.astype(np.float32))
    record = dce.record()
    assert (record["dce_layout"], record["dce_split_tag"], record["dce_order_tag"]) == EXPECTED_TAGS[layout]
    if layout != "series-per-phase":  # the only layout without a time tag
        np.testing.assert_allclose(dce.times_s, np.array(case.times_s) - case.times_s[0], atol=1e-3)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_geometry_matches_the_written_voxel_positions(written, layout: str) -> None:
    folder, case, _ = written[layout]
    image = read_dce_folder(folder).phases[1]
    corners = np.array([[0, 0, 0], [SHAPE[2] - 1, SHAPE[1] - 1, SHAPE[0] - 1], [3, 11, 4]])
    got = np.array([image.TransformIndexToPhysicalPoint([int(v) for v in c]) for c in corners])
    np.testing.assert_allclose(got, case.geometry.world(corners), atol=1e-3)
    mask = sitk.ReadImage(str(folder / "mask.nrrd"))
    np.testing.assert_allclose(mask.GetOrigin(), image.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(mask.GetDirection(), image.GetDirection(), atol=1e-5)


def test_one_phase_series_reads_like_simpleitk_gdcm(written) -> None:
    """SimpleITK's GDCM series reader is the independent reference for one phase's volume."""
    folder = written["series-per-phase"][0]
    phase_folder = sorted(p for p in folder.iterdir() if p.is_dir())[0]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(phase_folder)))
    reference = reader.Execute()
    ours = stack_slices(read_slice_headers(phase_folder)[0])
    np.testing.assert_allclose(ours.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(ours.GetSpacing(), reference.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(ours.GetDirection(), reference.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(reference))


def test_pydicom_mr_file_reads_with_its_geometry_and_is_not_a_dynamic_study(tmp_path: Path) -> None:
    source = Path(get_testdata_file("MR_small.dcm"))
    ds = pydicom.dcmread(source)
    image = stack_slices(read_slice_headers(source)[0])
    assert image.GetSize() == (ds.Columns, ds.Rows, 1)
    np.testing.assert_allclose(image.GetOrigin(), [float(v) for v in ds.ImagePositionPatient])
    np.testing.assert_allclose(image.GetSpacing()[:2], [float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0])])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image)[0], ds.pixel_array.astype(np.float32))
    shutil.copy2(source, tmp_path / "MR_small.dcm")
    shutil.copy2(get_testdata_file("rtplan.dcm"), tmp_path / "rtplan.dcm")  # a DICOM file without an image: skipped
    with pytest.raises(InputError, match="one volume found"):
        read_dce_folder(tmp_path)


def test_pseudonyms_are_keyed_and_the_patient_never_appears(written, tmp_path: Path) -> None:
    folder, _, identity = written["trigger-time"]
    key = load_or_create_key(tmp_path / "key")
    assert load_or_create_key(tmp_path / "key") == key
    assert (tmp_path / "key").stat().st_mode & 0o077 == 0
    dce = read_dce_folder(folder, key=key)
    assert dce.patient_id == pseudonym(identity["PatientID"], key, prefix="patient")
    assert read_dce_folder(folder, key=b"another key" * 3).patient_id != dce.patient_id
    shown = repr(dce) + repr(dce.record()) + repr(find_studies(folder, key=key))
    for value in identity.values():
        assert value not in shown


def test_four_d_volume_splits_along_its_last_axis(written, tmp_path: Path) -> None:
    _, case, _ = written["trigger-time"]
    volume = sitk.JoinSeries([sitk.GetImageFromArray(p.astype(np.float32)) for p in case.phases])
    sitk.WriteImage(volume, str(tmp_path / "dyn.nii.gz"))
    dce = read_dce_volume(tmp_path / "dyn.nii.gz")
    assert dce.layout == "4d-volume" and dce.roles == ["pre", "post1", "post2"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(dce.phases[2]), case.phases[2])
    with pytest.raises(InputError, match="must be 4D"):
        read_dce_volume(written["trigger-time"][0] / "mask.nrrd")


def _hand_case(values: list[float], times: list[float | None]) -> DcePhases:
    phases = [sitk.GetImageFromArray(np.full((2, 3, 3), v, dtype=np.float32)) for v in values]
    roles = ["pre"] + [f"post{k}" for k in range(1, len(values))]
    return DcePhases(case_id="c", patient_id="p", phases=phases, roles=roles, times_s=times, layout="x",
                     split_tag="x", order_tag="x")


def test_kinetic_maps_match_a_hand_worked_curve() -> None:
    # pre 100, post1 200 at 60 s, post2 180 at 120 s: wash-in 100/60 per s, SER 100/80, peak at 60 s
    maps = kinetic_maps(_hand_case([100, 200, 180], [0.0, 60.0, 120.0]))
    np.testing.assert_allclose(sitk.GetArrayFromImage(maps["subtraction"]), 100.0)
    np.testing.assert_allclose(sitk.GetArrayFromImage(maps["wash_in"]), 100.0 / 60.0, rtol=1e-6)
    np.testing.assert_allclose(sitk.GetArrayFromImage(maps["ser"]), 1.25, rtol=1e-6)
    np.testing.assert_allclose(sitk.GetArrayFromImage(maps["ttp"]), 60.0)
    no_times = kinetic_maps(_hand_case([100, 150, 250], [None, None, None]), ["wash_in", "ttp"])
    np.testing.assert_allclose(sitk.GetArrayFromImage(no_times["wash_in"]), 50.0)  # per phase
    np.testing.assert_allclose(sitk.GetArrayFromImage(no_times["ttp"]), 2.0)


def test_phase_rules_pick_the_named_or_peak_phase_and_list_the_phases_found() -> None:
    dce = _hand_case([100, 150, 260, 220], [0.0, 60.0, 120.0, 180.0])
    assert select_phase(dce, "post3") == 3 and select_phase(dce, "pre") == 0 and select_phase(dce, "last") == 3
    assert select_phase(dce, "peak") == 2
    with pytest.raises(InputError, match=r"phases found: pre \(0 s\), post1 \(60 s\), post2 \(120 s\), post3"):
        select_phase(dce, "post5")
    with pytest.raises(InputError, match="Unknown phase rule"):
        select_phase(dce, "third")


# --------------------------------------------------------------------------- bad input
def test_missing_slice_is_refused_naming_the_gap(written, tmp_path: Path) -> None:
    folder = shutil.copytree(written["trigger-time"][0], tmp_path / "case")
    z_of = {p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in folder.glob("IM*")}
    middle = sorted(set(z_of.values()))[2]
    for path, z in z_of.items():  # the same slice of every phase, so every phase is short of it
        if z == middle:
            path.unlink()
    with pytest.raises(InputError, match="uneven slice spacing.*slice is probably missing"):
        read_dce_folder(folder)


def test_phases_of_different_sizes_are_refused(written, tmp_path: Path) -> None:
    folder = shutil.copytree(written["temporal-position"][0], tmp_path / "case")
    edge = None
    for path in sorted(folder.glob("IM*")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        z = float(ds.ImagePositionPatient[2])
        if int(ds.TemporalPositionIdentifier) == 2 and (edge is None or z > edge[1]):
            edge = (path, z)
    edge[0].unlink()  # the top slice of phase 2 only
    with pytest.raises(InputError, match="phases of different sizes"):
        read_dce_folder(folder)


def test_two_patients_in_one_folder_are_refused_without_naming_them(written, tmp_path: Path) -> None:
    folder = shutil.copytree(written["trigger-time"][0], tmp_path / "case")
    stranger = next(written["temporal-position"][0].glob("IM*"))
    shutil.copy2(stranger, folder / "IM_other")
    with pytest.raises(InputError, match="mixes the DICOM files of 2 patients") as info:
        read_dce_folder(folder)
    for value in [*written["trigger-time"][2].values(), *written["temporal-position"][2].values()]:
        if value not in ("Synthetic Breast Centre Zeta", "Referrer^Quintus", "20240117"):
            assert value not in str(info.value)


def test_a_dicom_image_without_pixel_data_is_named(written, tmp_path: Path) -> None:
    folder = shutil.copytree(written["trigger-time"][0], tmp_path / "case")
    victim = sorted(folder.glob("IM*"))[3]
    ds = pydicom.dcmread(victim)
    del ds.PixelData
    ds.save_as(victim)
    with pytest.raises(InputError, match=f"{victim.name} is an image .* without pixel data"):
        read_dce_folder(folder)


def test_series_without_any_splitting_tag_is_refused(written, tmp_path: Path) -> None:
    folder = shutil.copytree(written["trigger-time"][0], tmp_path / "case")
    for path in folder.glob("IM*"):
        ds = pydicom.dcmread(path)
        del ds.TriggerTime
        ds.save_as(path)
    with pytest.raises(InputError, match="no tag splits them into phases"):
        read_dce_folder(folder)
