"""Streaming readers and a writer for ultrasound video.

Three sources, one interface (:func:`open_video`):

* video files (MP4, AVI, MOV, MKV, M4V, WEBM) decoded by PyAV (FFmpeg);
* DICOM cine (multi-frame ultrasound, grey or colour, any transfer syntax one of pydicom's
  pixel handlers decodes: native, RLE, JPEG baseline through Pillow, ...);
* a folder of numbered frame images (``frame_0001.jpg``, ``12.png``, ...), as seed 001 stores them.

Frames are yielded one at a time (a 2,000-frame clip is never held whole in memory) as
``uint8``/``uint16`` arrays: ``(H, W)`` for grey, ``(H, W, 3)`` RGB for colour. The frame rate
and the pixel spacing are kept when the file carries them (``None`` otherwise). Every reader
refuses, with the file named, what the rest of the toolkit cannot use: an unreadable or
truncated file, a codec that cannot be decoded, zero frames, gaps in a folder's numbering and
frames of mixed sizes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from her2dlr.errors import InputError
from her2dlr.io.atomic import atomic_path
from her2dlr.io.images import LUMA_WEIGHTS

__all__ = [
    "FRAME_SUFFIXES",
    "VIDEO_SUFFIXES",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "frame_files",
    "frame_grey",
    "open_video",
]

PathLike = str | os.PathLike[str]

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm"})
"""File suffixes read through PyAV."""
FRAME_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
"""Image suffixes of a frame folder."""
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ""})
_NUMBER = re.compile(r"(\d+)(?!.*\d)")


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a clip before its frames are decoded.

    Attributes
    ----------
    path : Path
    kind : {"container", "dicom", "frames"}
    n_frames : int or None
        Frame count from the header or the folder; ``None`` when the container does not say.
    fps : float or None
        Frames per second, when the file carries it.
    pixel_spacing : (float, float) or None
        Row and column spacing in mm, when the file carries it.
    size : (int, int) or None
        Frame height and width.
    """

    path: Path
    kind: str
    n_frames: int | None
    fps: float | None
    pixel_spacing: tuple[float, float] | None
    size: tuple[int, int] | None


def frame_grey(frame: np.ndarray) -> np.ndarray:
    """A frame as float32 grey: RGB(A) through the ITU-R BT.601 luma weights, grey unchanged.

    Parameters
    ----------
    frame : ndarray of shape (H, W) or (H, W, C)

    Returns
    -------
    ndarray of shape (H, W), float32
    """
    arr = np.asarray(frame)
    if arr.ndim == 2:
        return arr.astype(np.float32, copy=False)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = arr[..., :3].astype(np.float32)
        return rgb @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        return arr[..., 0].astype(np.float32)
    raise InputError(f"A frame must be (H, W) or (H, W, 3); got shape {arr.shape}.")


def frame_files(folder: PathLike) -> list[Path]:
    """The frame images of a folder, in frame-number order.

    The number of a file is the last run of digits in its name (``us_0012.jpg`` -> 12).

    Raises
    ------
    InputError
        No frame images, a file without a number, two files with one number, or a gap in the
        numbering (the first missing numbers are named).
    """
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
    if not files:
        raise InputError(f"Frame folder {folder} holds no frame images ({', '.join(sorted(FRAME_SUFFIXES))}).")
    numbered: dict[int, Path] = {}
    for p in files:
        match = _NUMBER.search(p.stem)
        if match is None:
            raise InputError(f"Frame file {p} has no frame number in its name (expected e.g. frame_0001{p.suffix}).")
        number = int(match.group(1))
        if number in numbered:
            raise InputError(f"Frame folder {folder}: {numbered[number].name} and {p.name} both have number {number}.")
        numbered[number] = p
    numbers = sorted(numbered)
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise InputError(f"Frame folder {folder} has gaps in its numbering: frame(s) {shown} missing "
                         f"({len(missing)} of {numbers[-1] - numbers[0] + 1}).")
    return [numbered[n] for n in numbers]


def _kind(path: Path) -> str:
    if not path.exists():
        raise InputError(f"Video not found: {path}")
    if path.is_dir():
        return "frames"
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "container"
    if suffix in _DICOM_SUFFIXES:
        return "dicom"
    with open(path, "rb") as fh:
        head = fh.read(132)
    if head[128:132] == b"DICM":
        return "dicom"
    raise InputError(f"Cannot tell what kind of video {path} is: expected a video file "
                     f"({', '.join(sorted(VIDEO_SUFFIXES))}), a DICOM cine file or a folder of numbered frames.")


# ------------------------------------------------------------------------ PyAV
def _av_error(path: Path, exc: Exception) -> InputError:
    text = str(exc).strip() or type(exc).__name__
    return InputError(f"Cannot decode video {path} (unreadable, truncated or an unsupported codec): {text}")


def _container_info(path: Path) -> VideoInfo:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"Video file {path} has no video stream.")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            ctx = stream.codec_context
            return VideoInfo(path=path, kind="container", n_frames=int(stream.frames) or None,
                             fps=float(rate) if rate else None, pixel_spacing=None,
                             size=(int(ctx.height), int(ctx.width)) if ctx.width else None)
    except av.FFmpegError as exc:
        raise _av_error(path, exc) from None


def _container_frames(info: VideoInfo) -> Iterator[np.ndarray]:
    import av

    count = 0
    try:
        with av.open(str(info.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                count += 1
                yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as exc:
        raise _av_error(info.path, exc) from None
    if info.n_frames and count < info.n_frames:
        raise InputError(f"Video {info.path} is truncated: its header announces {info.n_frames} frames but only "
                         f"{count} could be decoded.")


# ------------------------------------------------------------------------ DICOM
def _dicom_spacing(ds: object) -> tuple[float, float] | None:
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        value = getattr(ds, key, None)
        if value is not None and len(value) == 2:
            return float(value[0]), float(value[1])
    regions = getattr(ds, "SequenceOfUltrasoundRegions", None)
    for region in regions or []:
        # Physical units 3 = cm (DICOM PS3.3 C.8.5.5.1.15); only spatial regions give a spacing.
        if getattr(region, "PhysicalUnitsXDirection", None) == 3 and getattr(region, "PhysicalUnitsYDirection", None) == 3:
            return float(region.PhysicalDeltaY) * 10.0, float(region.PhysicalDeltaX) * 10.0
    return None


def _dicom_fps(ds: object) -> float | None:
    frame_time = getattr(ds, "FrameTime", None)
    if frame_time:
        return 1000.0 / float(frame_time)
    vector = getattr(ds, "FrameTimeVector", None)
    if vector is not None and len(vector) > 1:
        steps = [float(v) for v in list(vector)[1:] if float(v) > 0]
        if steps:
            return 1000.0 / float(np.mean(steps))
    for key in ("CineRate", "RecommendedDisplayFrameRate"):
        value = getattr(ds, key, None)
        if value:
            return float(value)
    return None


def _dicom_info(path: Path) -> VideoInfo:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as exc:  # pydicom raises several types for a bad file
        raise InputError(f"Cannot read DICOM file {path}: {str(exc).strip() or type(exc).__name__}") from None
    if "Rows" not in ds or "Columns" not in ds:
        raise InputError(f"DICOM file {path} holds no image (no Rows/Columns).")
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if n < 1:
        raise InputError(f"DICOM file {path} has zero frames.")
    return VideoInfo(path=path, kind="dicom", n_frames=n, fps=_dicom_fps(ds), pixel_spacing=_dicom_spacing(ds),
                     size=(int(ds.Rows), int(ds.Columns)))


def _dicom_frames(info: VideoInfo) -> Iterator[np.ndarray]:
    import pydicom
    from pydicom.pixels import iter_pixels

    ds = pydicom.dcmread(str(info.path), stop_before_pixels=True)
    invert = getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1"
    count = 0
    try:
        for arr in iter_pixels(str(info.path)):
            count += 1
            if invert:
                arr = np.iinfo(arr.dtype).max - arr if arr.dtype.kind == "u" else arr.max() - arr
            yield arr
    except InputError:
        raise
    except Exception as exc:  # pixel handlers raise RuntimeError, ValueError, NotImplementedError...
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"Cannot decode the frames of DICOM file {info.path} (frame {count}): {text}") from None
    if count < (info.n_frames or 0):
        raise InputError(f"DICOM file {info.path} is truncated: {info.n_frames} frames announced, {count} decoded.")


# ------------------------------------------------------------------------ frame folders
def _folder_info(path: Path) -> VideoInfo:
    from PIL import Image

    files = frame_files(path)
    try:
        with Image.open(files[0]) as im:
            size = (im.height, im.width)
    except OSError as exc:
        raise InputError(f"Cannot read frame image {files[0]}: {exc}") from None
    return VideoInfo(path=path, kind="frames", n_frames=len(files), fps=None, pixel_spacing=None, size=size)


def _folder_frames(info: VideoInfo) -> Iterator[np.ndarray]:
    from PIL import Image

    for file in frame_files(info.path):
        try:
            with Image.open(file) as im:
                if im.mode in ("L", "I;16", "I;16B", "I"):
                    arr = np.asarray(im)
                else:
                    arr = np.asarray(im.convert("RGB"))
        except OSError as exc:
            raise InputError(f"Cannot read frame image {file}: {exc}") from None
        yield arr


# ------------------------------------------------------------------------ the reader
class VideoReader:
    """A clip that can be iterated frame by frame (again and again; nothing is cached).

    Parameters
    ----------
    path : path-like
        Video file, DICOM cine file or frame folder.
    fps : float, optional
        Frame rate to use when the file does not carry one (frame folders never do).
    pixel_spacing : float, optional
        Pixel size in mm to use when the file does not carry one.

    Attributes
    ----------
    info : VideoInfo

    Examples
    --------
    >>> reader = open_video("clip.mp4")  # doctest: +SKIP
    >>> for index, frame in enumerate(reader):  # doctest: +SKIP
    ...     pass
    """

    def __init__(self, path: PathLike, *, fps: float | None = None, pixel_spacing: float | None = None) -> None:
        path = Path(path)
        kind = _kind(path)
        info = {"container": _container_info, "dicom": _dicom_info, "frames": _folder_info}[kind](path)
        if info.fps is None and fps is not None:
            info = replace(info, fps=float(fps))
        if info.pixel_spacing is None and pixel_spacing is not None:
            info = replace(info, pixel_spacing=(float(pixel_spacing), float(pixel_spacing)))
        self.info = info

    def __iter__(self) -> Iterator[np.ndarray]:
        source = {"container": _container_frames, "dicom": _dicom_frames, "frames": _folder_frames}[self.info.kind]
        return _checked(source(self.info), self.info.path)

    def __repr__(self) -> str:
        i = self.info
        return f"VideoReader({str(i.path)!r}, kind={i.kind}, n_frames={i.n_frames}, fps={i.fps}, size={i.size})"


def _checked(frames: Iterable[np.ndarray], path: Path) -> Iterator[np.ndarray]:
    """Refuse mixed frame sizes and an empty clip."""
    first: tuple[int, ...] | None = None
    index = -1
    for index, frame in enumerate(frames):
        shape = frame.shape[:2]
        if first is None:
            first = shape
        elif shape != first:
            raise InputError(f"Video {path} mixes frame sizes: frame {index} is {shape[1]}x{shape[0]} but frame 0 "
                             f"is {first[1]}x{first[0]} (width x height).")
        yield frame
    if index < 0:
        raise InputError(f"Video {path} has zero frames.")


def open_video(path: PathLike, *, fps: float | None = None, pixel_spacing: float | None = None) -> VideoReader:
    """Open a clip for streaming (see :class:`VideoReader`); the header is read now, frames on iteration.

    Raises
    ------
    InputError
        Missing or unreadable file, unknown kind, no video stream, zero frames, gaps in a frame
        folder's numbering.
    """
    return VideoReader(path, fps=fps, pixel_spacing=pixel_spacing)


class VideoWriter:
    """Write frames to an MP4 (H.264) or another PyAV container, atomically.

    Use as a context manager; the file appears under its name only when the block ends
    without error. Frames may be grey ``(H, W)`` or RGB ``(H, W, 3)`` ``uint8``.

    Parameters
    ----------
    path : path-like
    fps : float, default 30
    crf : int, default 18
        H.264 quality (0 lossless, 18 visually lossless, 23 FFmpeg's default).
    """

    def __init__(self, path: PathLike, *, fps: float = 30.0, crf: int = 18) -> None:
        self.path = Path(path)
        self.fps = fps
        self.crf = crf
        self._atomic = None
        self._container = None
        self._stream = None
        self.n_frames = 0

    def __enter__(self) -> VideoWriter:
        import av

        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        fmt = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}.get(self.path.suffix.lower())
        if fmt is None:
            raise InputError(f"Cannot write video {self.path}: use .mp4, .mov, .mkv or .avi.")
        self._container = av.open(str(tmp), mode="w", format=fmt)
        rate = Fraction(self.fps).limit_denominator(1001)
        if fmt == "avi":
            self._stream = self._container.add_stream("mpeg4", rate=rate)
        else:
            self._stream = self._container.add_stream("libx264", rate=rate, options={"crf": str(self.crf)})
        self._stream.pix_fmt = "yuv420p"
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one frame (the first frame fixes the size; H.264 needs even sides, so odd sides are padded)."""
        import av

        arr = np.asarray(frame)
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        h, w = arr.shape[:2]
        if h % 2 or w % 2:
            arr = np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        stream = self._stream
        if self.n_frames == 0:
            stream.height, stream.width = arr.shape[:2]
        elif (stream.height, stream.width) != arr.shape[:2]:
            raise InputError(f"Writing {self.path}: frame {self.n_frames} has another size than frame 0.")
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")):
            self._container.mux(packet)
        self.n_frames += 1

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        if exc_type is None and self.n_frames == 0:
            exc_type, exc = InputError, InputError(f"No frames were written to {self.path}.")
        try:
            if exc_type is None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
        if exc_type is None:
            self._atomic.__exit__(None, None, None)
        else:
            self._atomic.__exit__(exc_type, exc, tb)
            if isinstance(exc, InputError) and tb is None:
                raise exc
