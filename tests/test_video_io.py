"""Video readers: PyAV containers, DICOM cine, numbered frame folders; streaming and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from her2dlr.errors import InputError
from her2dlr.io.video import VideoWriter, frame_files, frame_grey, open_video


def _frames(n: int, shape: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    # A bright square that moves one pixel a frame over a dark ramp: frames differ, and lossy
    # coding keeps each frame's mean within a few grey levels.
    out = []
    for i in range(n):
        f = np.tile(np.linspace(0, 60, shape[1], dtype=np.float32), (shape[0], 1))
        f[10:30, 5 + i:25 + i] = 220
        out.append(f.astype(np.uint8))
    return out


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mov"])
def test_container_round_trip_keeps_count_rate_and_content(tmp_path: Path, suffix: str) -> None:
    frames = _frames(15)
    path = tmp_path / f"clip{suffix}"
    with VideoWriter(path, fps=25) as writer:
        for f in frames:
            writer.write(f)
    reader = open_video(path)
    assert reader.info.kind == "container"
    assert reader.info.fps == pytest.approx(25.0)
    assert reader.info.size == (48, 64)
    decoded = list(reader)
    assert len(decoded) == 15
    for want, got in zip(frames, decoded):
        assert got.shape == (48, 64, 3)
        assert abs(frame_grey(got).mean() - want.mean()) < 4.0
    # the square moved: the brightest column block follows it
    assert np.argmax(frame_grey(decoded[-1])[20]) > np.argmax(frame_grey(decoded[0])[20])


def test_reader_streams_and_can_be_iterated_twice(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, fps=10) as writer:
        for f in _frames(6):
            writer.write(f)
    reader = open_video(path)
    it = iter(reader)
    assert next(it).shape == (48, 64, 3)  # a generator, not a list
    assert sum(1 for _ in reader) == 6


def test_dicom_cine_from_pydicom_test_data() -> None:
    from pydicom.data import get_testdata_files

    found = get_testdata_files("examples_ybr_color.dcm")  # local only: never downloads
    if not found:
        pytest.skip("pydicom's examples_ybr_color.dcm is not installed")
    reader = open_video(found[0])
    info = reader.info
    assert info.kind == "dicom" and info.n_frames == 30
    assert info.fps == pytest.approx(1000 / 33.333, rel=1e-4)  # FrameTime 33.333 ms
    # SequenceOfUltrasoundRegions: PhysicalDeltaX 0.05105 cm -> 0.5105 mm
    assert info.pixel_spacing == pytest.approx((0.510497, 0.510497), rel=1e-4)
    frames = list(reader)
    assert len(frames) == 30 and frames[0].shape == (240, 320, 3) and frames[0].dtype == np.uint8
    import pydicom

    ds = pydicom.dcmread(found[0])
    ds.pixel_array_options(as_rgb=True)
    np.testing.assert_array_equal(frames[7], ds.pixel_array[7])


def test_multiframe_rle_dicom_two_frames() -> None:
    from pydicom.data import get_testdata_files

    found = get_testdata_files("SC_rgb_rle_2frame.dcm")
    if not found:
        pytest.skip("pydicom's SC_rgb_rle_2frame.dcm is not installed")
    reader = open_video(found[0], fps=12.5)
    assert reader.info.fps == 12.5 and reader.info.pixel_spacing == (1.0, 1.0)
    frames = list(reader)
    assert len(frames) == 2 and frames[0].shape == (100, 100, 3)
    assert not np.array_equal(frames[0], frames[1])


def _folder(tmp_path: Path, numbers: list[int], sizes: dict[int, tuple[int, int]] | None = None) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in numbers:
        h, w = (sizes or {}).get(n, (32, 40))
        Image.fromarray(np.full((h, w), n * 10 % 256, np.uint8)).save(folder / f"us_{n:04d}.png")
    return folder


def test_frame_folder_in_numeric_order(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [1, 2, 3, 10, 4, 5, 6, 7, 8, 9])
    assert [p.name for p in frame_files(folder)][-2:] == ["us_0009.png", "us_0010.png"]
    reader = open_video(folder, fps=20)
    assert reader.info.kind == "frames" and reader.info.n_frames == 10 and reader.info.fps == 20
    assert [int(f[0, 0]) for f in reader] == [n * 10 for n in range(1, 11)]


def test_frame_folder_with_a_gap_names_the_missing_frame(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [1, 2, 4])
    with pytest.raises(InputError, match=r"gaps in its numbering: frame\(s\) 3 missing"):
        open_video(folder)


def test_mixed_frame_sizes_are_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [1, 2, 3], sizes={3: (30, 40)})
    with pytest.raises(InputError, match="mixes frame sizes: frame 2 is 40x30"):
        list(open_video(folder))


def test_unreadable_truncated_and_empty_files(tmp_path: Path) -> None:
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(InputError, match=r"noise.mp4 \(unreadable, truncated"):
        open_video(bad)
    good = tmp_path / "clip.mp4"
    with VideoWriter(good, fps=10) as writer:
        for f in _frames(10):
            writer.write(f)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="cut.mp4"):
        list(open_video(cut))
    with pytest.raises(InputError, match="Video not found"):
        open_video(tmp_path / "absent.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no frame images"):
        open_video(empty)


def test_writer_leaves_nothing_on_error(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with pytest.raises(InputError, match="No frames were written"), VideoWriter(path):
        pass
    assert not path.exists()
    with pytest.raises(RuntimeError), VideoWriter(path) as writer:
        writer.write(np.zeros((16, 16), np.uint8))
        raise RuntimeError("stop")
    assert not path.exists() and not list(tmp_path.iterdir())
