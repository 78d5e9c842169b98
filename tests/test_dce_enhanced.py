"""Enhanced MR (multi-frame, one file per series) DCE studies: read like the classic files of the same study,
against an independent writer (highdicom's legacy conversion), in any frame order, by every temporal attribute,
bad input named by file and frame, and no identifying attribute in any output."""

from __future__ import annotations

import datetime
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from her2dlr.bench.dce_benches import files_containing
from her2dlr.errors import InputError
from her2dlr.io.dce import DcePhases, read_dce_folder, read_dce_study
from her2dlr.io.deid import load_or_create_key, phi_values, strip_identifiers
from her2dlr.io.dicom_series import find_studies
from her2dlr.io.synthetic_dce import identity_of, simulate_case, write_dce_dicom

SHAPE = (6, 20, 18)  # z, y, x
N_PHASES = 3
ENHANCED = ("enhanced-temporal-index", "enhanced-datetime")


def _write(folder: Path, layout: str, seed: int = 5):
    """The same simulated study (same seed) in any layout: the generator's draws do not depend on the layout."""
    rng = np.random.default_rng(seed)
    case = simulate_case(1, rng, shape=SHAPE, n_phases=N_PHASES)
    identity = identity_of(seed, rng)
    write_dce_dicom(case, folder, layout=layout, identity=identity, rng=rng)
    return case, identity


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object, dict[str, str]]]:
    root = tmp_path_factory.mktemp("enhanced")
    out = {}
    for layout in ("temporal-position", "trigger-time", *ENHANCED):
        case, identity = _write(root / layout, layout)
        out[layout] = (root / layout, case, identity)
    return out


def _assert_same(a: DcePhases, b: DcePhases) -> None:
    assert a.roles == b.roles and len(a.phases) == len(b.phases)
    np.testing.assert_allclose(a.times_s, b.times_s, atol=1e-3)
    for x, y in zip(a.phases, b.phases):
        assert x.GetSize() == y.GetSize()
        np.testing.assert_allclose(x.GetSpacing(), y.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(x.GetOrigin(), y.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(x.GetDirection(), y.GetDirection(), atol=1e-9)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(x), sitk.GetArrayFromImage(y))


def _enhanced_file(studies, layout: str, tmp_path: Path) -> Path:
    folder = shutil.copytree(studies[layout][0], tmp_path / "case")
    return folder / "IM00000"


# --------------------------------------------------------------------------- reading
@pytest.mark.parametrize("layout, split_tag", [("enhanced-temporal-index", "TemporalPositionIndex"),
                                               ("enhanced-datetime", "FrameAcquisitionDateTime")])
def test_enhanced_file_reads_like_the_classic_files_of_the_same_study(studies, layout: str, split_tag: str) -> None:
    folder, case, _ = studies[layout]
    assert [p.name for p in folder.iterdir() if p.name != "mask.nrrd"] == ["IM00000"]
    assert pydicom.dcmread(folder / "IM00000", stop_before_pixels=True).NumberOfFrames == SHAPE[0] * N_PHASES
    enhanced, classic = read_dce_folder(folder), read_dce_folder(studies["temporal-position"][0])
    _assert_same(enhanced, classic)
    for read, truth in zip(enhanced.phases, case.phases):  # stored values offset, undone by the rescale intercept
        np.testing.assert_array_equal(sitk.GetArrayFromImage(read), truth.astype(np.float32))
    record = enhanced.record()
    assert (record["dce_layout"], record["dce_split_tag"], record["dce_order_tag"], record["dce_time_tag"]) == (
        "enhanced-multi-phase-series", split_tag, split_tag, "FrameAcquisitionDateTime")
    assert record["dce_roles"] == "pre post1 post2" and record["dce_size"] == "18x20x6"


def test_a_legacy_converted_file_written_by_highdicom_reads_like_its_source(studies, tmp_path: Path) -> None:
    """highdicom's converter is an independent writer of the enhanced layout (per-frame geometry and the classic
    TriggerTime kept in each frame's UnassignedPerFrameConvertedAttributesSequence)."""
    from highdicom.legacy import LegacyConvertedEnhancedMRImage

    source = studies["trigger-time"][0]
    files = [pydicom.dcmread(p) for p in sorted(source.glob("IM*"))]
    converted = LegacyConvertedEnhancedMRImage(files, series_instance_uid=generate_uid(), series_number=7,
                                               sop_instance_uid=generate_uid(), instance_number=1)
    (tmp_path / "lc").mkdir()
    converted.save_as(tmp_path / "lc" / "LC.dcm")
    dce = read_dce_folder(tmp_path / "lc")
    _assert_same(dce, read_dce_folder(source))
    assert (dce.split_tag, dce.time_tag) == ("TriggerTime", "TriggerTime")


def _frames(ds: Dataset) -> np.ndarray:
    return np.frombuffer(ds.PixelData, dtype=np.uint16).reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))


def _keep_frames(path: Path, keep: list[int]) -> None:
    """Rewrite an enhanced file with only the frames ``keep`` (file indices), in that order."""
    ds = pydicom.dcmread(path)
    pixels = _frames(ds)
    items = list(ds.PerFrameFunctionalGroupsSequence)
    ds.PerFrameFunctionalGroupsSequence = Sequence([items[i] for i in keep])
    ds.PixelData = np.ascontiguousarray(pixels[keep]).tobytes()
    ds.NumberOfFrames = len(keep)
    ds.save_as(path)


def _content(ds: Dataset, i: int) -> Dataset:
    return ds.PerFrameFunctionalGroupsSequence[i].FrameContentSequence[0]


def test_frames_in_any_order_read_the_same(studies, tmp_path: Path) -> None:
    path = _enhanced_file(studies, "enhanced-temporal-index", tmp_path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    written = [(int(_content(ds, i).TemporalPositionIndex), int(_content(ds, i).InStackPositionNumber))
               for i in range(int(ds.NumberOfFrames))]
    assert written != sorted(written)  # the generator already shuffles the frames
    _keep_frames(path, list(np.random.default_rng(1).permutation(len(written))))
    _assert_same(read_dce_folder(path.parent), read_dce_folder(studies["temporal-position"][0]))


def _index_by_dimension_only(ds: Dataset) -> None:
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.FrameContentSequence[0].TemporalPositionIndex


def _cardiac(keyword: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        ds.DimensionIndexSequence = Sequence([ds.DimensionIndexSequence[0]])  # spatial dimension only
        for item in ds.PerFrameFunctionalGroupsSequence:
            content = item.FrameContentSequence[0]
            for gone in ("TemporalPositionIndex", "FrameAcquisitionDateTime", "FrameReferenceDateTime"):
                delattr(content, gone)
            content.DimensionIndexValues = content.DimensionIndexValues[0]
            delay = Dataset()
            setattr(delay, keyword, (content.FrameAcquisitionNumber - 1) * 61000.0 if keyword != "TriggerTime"
                    else f"{(content.FrameAcquisitionNumber - 1) * 61000.0:.1f}")
            item.CardiacSynchronizationSequence = Sequence([delay])
    return change


@pytest.mark.parametrize("change, tag", [(_index_by_dimension_only, "DimensionIndexValues"),
                                         (_cardiac("NominalCardiacTriggerDelayTime"), "NominalCardiacTriggerDelayTime"),
                                         (_cardiac("TriggerTime"), "TriggerTime")])
def test_phases_are_split_by_whichever_temporal_attribute_the_frames_fill(studies, tmp_path: Path, change, tag) -> None:
    path = _enhanced_file(studies, "enhanced-temporal-index", tmp_path)
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)
    dce = read_dce_folder(path.parent)
    classic = read_dce_folder(studies["temporal-position"][0])
    assert dce.split_tag == tag and dce.order_tag == tag
    assert dce.roles == classic.roles
    for x, y in zip(dce.phases, classic.phases):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(x), sitk.GetArrayFromImage(y))
    if tag != "DimensionIndexValues":
        assert dce.time_tag == tag and dce.times_s == [0.0, 61.0, 122.0]


def test_acquisition_times_that_differ_slice_by_slice_split_into_blocks_of_whole_volumes(studies, tmp_path) -> None:
    path = _enhanced_file(studies, "enhanced-datetime", tmp_path)
    ds = pydicom.dcmread(path)
    for item in ds.PerFrameFunctionalGroupsSequence:  # 2D multi-slice: slice z acquired 1.5 s after slice z - 1
        content, z = item.FrameContentSequence[0], int(item.FrameContentSequence[0].DimensionIndexValues) - 1
        stamp = datetime.datetime.strptime(content.FrameAcquisitionDateTime, "%Y%m%d%H%M%S.%f")
        content.FrameAcquisitionDateTime = (stamp + datetime.timedelta(seconds=1.5 * z)).strftime("%Y%m%d%H%M%S.%f")
    ds.save_as(path)
    dce = read_dce_folder(path.parent)
    assert dce.split_tag == "FrameAcquisitionDateTime (blocks)" and dce.order_tag == "FrameAcquisitionDateTime"
    _assert_same(dce, read_dce_folder(studies["temporal-position"][0]))


def test_folder_discovery_takes_an_enhanced_file_as_one_series_beside_classic_studies(studies, tmp_path: Path) -> None:
    for layout in ("enhanced-datetime", "trigger-time"):
        folder = studies[layout][0]
        shutil.copytree(folder, tmp_path / "export" / f"patient-{layout}" / "study")
    found = find_studies(tmp_path / "export")
    assert len(found) == 2  # one simulated patient (same seed), two studies (each write draws new UIDs)
    by_files = {len({s.path for s in study.slices}): study for study in found}
    enhanced = by_files[1]
    assert len(enhanced.slices) == SHAPE[0] * N_PHASES and len(enhanced.series) == 1
    assert read_dce_study(enhanced).layout == "enhanced-multi-phase-series"


def test_dynamics_stored_as_one_enhanced_series_per_phase(studies, tmp_path: Path) -> None:
    """One enhanced file per dynamic, each its own series (as some scanners export): phases by series, in time order."""
    source = pydicom.dcmread(studies["enhanced-temporal-index"][0] / "IM00000")
    pixels = _frames(source)
    (tmp_path / "split").mkdir()
    for k, series_number in zip(range(1, N_PHASES + 1), (12, 10, 11)):  # series numbers not in time order
        keep = [i for i in range(int(source.NumberOfFrames)) if int(_content(source, i).TemporalPositionIndex) == k]
        ds = pydicom.dcmread(studies["enhanced-temporal-index"][0] / "IM00000")
        ds.PerFrameFunctionalGroupsSequence = Sequence([source.PerFrameFunctionalGroupsSequence[i] for i in keep])
        ds.PixelData, ds.NumberOfFrames = np.ascontiguousarray(pixels[keep]).tobytes(), len(keep)
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SeriesNumber = generate_uid(), generate_uid(), series_number
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(tmp_path / "split" / f"dyn{series_number}.dcm")
    dce = read_dce_folder(tmp_path / "split")
    assert (dce.layout, dce.split_tag, dce.order_tag, dce.n_series) == (
        "enhanced-series-per-phase", "SeriesInstanceUID", "TemporalPositionIndex", 3)
    _assert_same(dce, read_dce_folder(studies["temporal-position"][0]))


# --------------------------------------------------------------------------- bad input
def _drop_one_frame_of_phase_2(ds: Dataset) -> list[int]:
    n = int(ds.NumberOfFrames)
    victim = next(i for i in range(n) if int(_content(ds, i).TemporalPositionIndex) == 2)
    return [i for i in range(n) if i != victim]


def _drop_one_slice_of_every_phase(ds: Dataset) -> list[int]:
    return [i for i in range(int(ds.NumberOfFrames)) if int(_content(ds, i).InStackPositionNumber) != 3]


@pytest.mark.parametrize("keep, message", [
    (_drop_one_frame_of_phase_2, r"file IM00000: phases of different sizes \(TemporalPositionIndex=1: 6 slices, "
                                 r"TemporalPositionIndex=2: 5 slices"),
    (_drop_one_slice_of_every_phase, r"uneven slice spacing .* between IM00000 frame \d+ and IM00000 frame \d+"),
])
def test_missing_frames_are_refused_naming_the_file_and_frame(studies, tmp_path: Path, keep, message) -> None:
    path = _enhanced_file(studies, "enhanced-temporal-index", tmp_path)
    _keep_frames(path, keep(pydicom.dcmread(path, stop_before_pixels=True)))
    with pytest.raises(InputError, match=message):
        read_dce_folder(path.parent)


def _more_frames_than_items(ds: Dataset) -> None:
    ds.NumberOfFrames = int(ds.NumberOfFrames) + 1


def _truncated_pixels(ds: Dataset) -> None:
    ds.PixelData = ds.PixelData[: len(ds.PixelData) - 3 * int(ds.Rows) * int(ds.Columns) * 2]


def _one_frame_of_another_pixel_size(ds: Dataset) -> None:
    ds.PerFrameFunctionalGroupsSequence[4].PixelMeasuresSequence[0].PixelSpacing = ["0.5", "0.5"]


def _no_pixel_data(ds: Dataset) -> None:
    del ds.PixelData


def _one_frame_without_position(ds: Dataset) -> None:
    del ds.PerFrameFunctionalGroupsSequence[7].PlanePositionSequence


def _multi_frame_without_functional_groups(ds: Dataset) -> None:
    del ds.PerFrameFunctionalGroupsSequence


@pytest.mark.parametrize("damage, message", [
    (_more_frames_than_items, r"IM00000: NumberOfFrames is 19 but PerFrameFunctionalGroupsSequence has 18 item"),
    (_truncated_pixels, r"IM00000: NumberOfFrames is 18 but its pixel data holds 15 whole frame\(s\); frame 16 "
                        r"onwards has no pixel data"),
    (_one_frame_of_another_pixel_size, r"slice IM00000 frame \d+ has pixel spacing .* unlike IM00000 frame \d+ "),
    (_no_pixel_data, r"IM00000 is an image \(20x18, 18 frames\) without pixel data"),
    (_one_frame_without_position, r"IM00000, frame 8 of 18: no usable PlanePositionSequence > ImagePositionPatient"),
    (_multi_frame_without_functional_groups, r"IM00000 holds 18 frames but no per-frame functional groups"),
])
def test_damaged_enhanced_files_are_refused_naming_the_file_and_frame(studies, tmp_path: Path, damage, message) -> None:
    path = _enhanced_file(studies, "enhanced-datetime", tmp_path)  # geometry per frame in this variant
    ds = pydicom.dcmread(path)
    damage(ds)
    ds.save_as(path)
    with pytest.raises(InputError, match=message) as info:
        read_dce_folder(path.parent)
    if damage is _one_frame_of_another_pixel_size:
        assert "IM00000 frame 5 " in str(info.value) and "(0.5, 0.5)" in str(info.value)


# --------------------------------------------------------------------------- de-identification
@pytest.mark.parametrize("layout", ENHANCED)
def test_no_identifying_attribute_of_an_enhanced_file_reaches_any_output(studies, layout: str, tmp_path: Path) -> None:
    folder, _, identity = studies[layout]
    ds = pydicom.dcmread(folder / "IM00000")
    needles = phi_values(ds)
    # identifiers inside sequences are searched for too: other patient ids, the request, each frame's comments
    assert identity["PatientID"] in needles and identity["AccessionNumber"] in needles
    assert any(v.startswith("dynamic ") and identity["PatientID"] in v for v in needles)
    assert files_containing(folder, needles)  # the search finds them where they are
    key = load_or_create_key(tmp_path / "key")
    dce = read_dce_folder(folder, key=key)
    out = tmp_path / "out"
    out.mkdir()
    (out / "record.json").write_text(json.dumps(dce.record()) + repr(dce) + repr(find_studies(folder, key=key)))
    for role, phase in zip(dce.roles, dce.phases):
        sitk.WriteImage(phase, str(out / f"{dce.case_id}_{role}.nrrd"))
    assert not files_containing(out, [*needles, *identity.values()])
    stripped = strip_identifiers(ds)
    assert phi_values(stripped) == [] and "OtherPatientIDsSequence" not in stripped
