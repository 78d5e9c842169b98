"""Clips for ``POST /api/predict/video``: checked by content, opened within limits, streamed frame by frame.

:func:`check_clip` looks at the bytes only: MP4 / MOV (an ISO base-media box at byte 4), AVI
(``RIFF....AVI ``) or DICOM cine (``DICM`` at byte 128, de-identified in memory before it is
written anywhere). :func:`open_clip` writes the checked bytes into the request's private
temporary folder and reads the header: frame size (pixel limit), frame count (frame limit),
frame rate. :func:`run_clip` then feeds the frames to :class:`her2dlr.predict.video.VideoStream`
(the path ``her2dlr predict MODEL --video`` shares) and hands one JSON-ready line per frame and
a last line with the case's answer to ``emit``; it stops at the next frame when ``stop`` is set
(the client went away) and removes the temporary files whatever happens.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from her2dlr.errors import InputError
from her2dlr.serve.uploads import UploadError, _check_pixels, read_dicom_header

__all__ = ["CLIP_KINDS", "CheckedClip", "OpenClip", "check_clip", "frame_line", "open_clip", "run_clip", "sniff_clip"]

log = logging.getLogger("her2dlr.serve")

#: Clip kinds recognised by content -> the file suffix the readers expect.
CLIP_KINDS = {"mp4": ".mp4", "mov": ".mov", "avi": ".avi", "dicom": ".dcm"}
_ISO_BOXES = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")  # QuickTime files without an ftyp box


@dataclass
class CheckedClip:
    """A clip that passed the content checks: its kind, its (de-identified) bytes."""

    kind: str
    data: bytes
    notes: list[str] = field(default_factory=list)
    deidentified: dict[str, Any] | None = None


@dataclass
class OpenClip:
    """A checked clip written to the request's folder, with what its header says."""

    path: Path
    kind: str
    size: tuple[int, int]
    n_frames: int | None
    fps: float


def sniff_clip(data: bytes) -> str | None:
    """The kind of a clip from its first bytes (``"mp4"``, ``"mov"``, ``"avi"``, ``"dicom"``), None when unknown."""
    if data[4:8] == b"ftyp":
        return "mov" if data[8:12] == b"qt  " else "mp4"
    if data[4:8] in _ISO_BOXES:
        return "mov"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
    if data[128:132] == b"DICM":
        return "dicom"
    return None


def _dicom_cine(name: str, data: bytes, max_pixels: int, max_frames: int) -> CheckedClip:
    from her2dlr.serve.deidentify import deidentify_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings may quote attribute values
        ds, rows, cols, frames = read_dicom_header(name, data)
        _check_pixels(name, cols, rows, 1, max_pixels)
        if frames < 2:
            raise UploadError(400, name, f"{name}: a single-frame DICOM is an image, not a cine loop; send it to "
                              "/api/models/{model}/predict.")
        if frames > max_frames:
            raise UploadError(413, name, f"{name}: {frames:,} frames is more than the server accepts "
                              f"({max_frames:,} frames).")
        report = deidentify_dataset(ds)  # before anything else reads it
        buf = io.BytesIO()
        try:
            ds.save_as(buf, enforce_file_format=True)
        except Exception as exc:  # the message names no value of the file
            raise UploadError(400, name, f"{name}: the DICOM file cannot be rewritten ({type(exc).__name__}).") from None
    notes = []
    if report.burned_in_annotation:
        notes.append("The DICOM file declares text burned into its pixels (BurnedInAnnotation = YES); it cannot be "
                     "removed and stays in the frames held for this request.")
    return CheckedClip("dicom", buf.getvalue(), notes,
                       {"removed_elements": report.removed, "replaced_uids": report.replaced_uids})


def check_clip(name: str, data: bytes, *, max_bytes: int, max_pixels: int, max_frames: int) -> CheckedClip:
    """Check one uploaded clip by its content; de-identify a DICOM cine.

    Parameters
    ----------
    name : str
        The form field (named in errors).
    data : bytes
    max_bytes, max_pixels, max_frames : int
        Largest file, frame (pixels) and clip (frames) accepted.

    Raises
    ------
    UploadError
        413 too large, 415 not a clip, 400 unreadable.
    """
    if len(data) > max_bytes:
        raise UploadError(413, name, f"{name}: {len(data):,} bytes is more than the server accepts for a clip "
                          f"({max_bytes:,} bytes).")
    if not data:
        raise UploadError(400, name, f"{name}: the file is empty.")
    kind = sniff_clip(data)
    if kind is None:
        from her2dlr.serve.uploads import sniff

        image = sniff(data)
        found = f"a {image.upper()} image" if image else "a file of unknown type"
        raise UploadError(415, name, f"{name}: expected a clip (MP4 / MOV, AVI or DICOM cine), got {found} (the type "
                          "is read from the content, not the name).")
    if kind == "dicom":
        return _dicom_cine(name, data, max_pixels, max_frames)
    return CheckedClip(kind, data)


def open_clip(folder: Path, clip: CheckedClip, *, max_pixels: int, max_frames: int, fps: float | None,
              name: str = "clip") -> OpenClip:
    """Write ``clip`` into ``folder`` and read its header within the limits.

    Raises
    ------
    UploadError
        400 undecodable or without frame size, 413 frames too large or too many, 422 no frame rate.
    """
    from her2dlr.io.video import open_video

    path = folder / f"{name}{CLIP_KINDS[clip.kind]}"
    path.write_bytes(clip.data)
    try:
        info = open_video(path).info
    except InputError:
        raise UploadError(400, name, f"{name}: the {clip.kind.upper()} file cannot be decoded (unreadable, truncated "
                          "or an unsupported codec).") from None
    if info.size is None:
        raise UploadError(400, name, f"{name}: the file declares no frame size.")
    height, width = info.size
    _check_pixels(name, width, height, 1, max_pixels)
    if info.n_frames is not None and info.n_frames > max_frames:
        raise UploadError(413, name, f"{name}: {info.n_frames:,} frames is more than the server accepts "
                          f"({max_frames:,} frames).")
    rate = info.fps or fps
    if not rate or not math.isfinite(rate) or rate <= 0:
        raise UploadError(422, "fps", "fps: the clip does not carry its frame rate; give it (frames per second).")
    return OpenClip(path, clip.kind, (height, width), info.n_frames, float(rate))


def frame_line(row: Mapping[str, Any], fps: float) -> dict[str, Any]:
    """One streamed line: a frame's localisation as :meth:`VideoStream.push` gives it, its time and QC flag."""
    from her2dlr.serve.registry import json_safe

    reason = row.get("reason")
    qc = str(reason)[4:] if isinstance(reason, str) and reason.startswith("qc: ") else "ok"
    out = {"type": "frame", **{k: row.get(k) for k in ("frame", "x", "y", "w", "h", "confidence", "source", "reason")},
           "time_s": int(row["frame"]) / fps, "qc": qc}
    return json_safe(out)


def _result_line(answer: Any, model_id: str, clip: OpenClip, notes: list[str], folder: Path) -> dict[str, Any]:
    from her2dlr.serve.registry import class_fields, json_safe
    from her2dlr.video.stage import frame_table

    result = answer.result
    text = str(folder)
    provenance = {k: v for k, v in result.provenance.items() if k != "artefact"}
    provenance["video"] = {k: v for k, v in dict(provenance.get("video") or {}).items() if k != "path"}
    return json_safe({
        "type": "result", "model": model_id, "name": result.model, "kind": result.kind, "version": result.version,
        "probability": result.probability, "predicted_class": result.predicted_class, "threshold": result.threshold,
        **class_fields(result),
        "warnings": [w.replace(text, "<upload>") for w in result.warnings], "notes": notes,
        "frames": answer.analysis.counts(), "fps": clip.fps, "provenance": provenance,
        "track": frame_table(answer.analysis.localisation).to_dict(orient="records"),
    })


def _field_of(message: str) -> str:
    low = message.lower()
    if "key frame" in low:
        return "key_frame"
    if "box" in low or "lesion" in low:
        return "box"
    return "clip"


def run_clip(stream: Any, clip: OpenClip, *, model_id: str, notes: list[str], max_frames: int,
             emit: Callable[[dict[str, Any] | None], None], stop: threading.Event,
             cleanup: contextlib.ExitStack) -> None:
    """Push every frame of ``clip`` into ``stream`` and emit its lines; always emit ``None`` last.

    Parameters
    ----------
    stream : VideoStream
    clip : OpenClip
    model_id : str
    notes : list of str
        Notes of the upload (burned-in text ...), repeated in the last line.
    max_frames : int
        Frames accepted (a container that does not declare its count is counted here).
    emit : callable
        Takes each line (a dict), then ``None`` at the end.
    stop : threading.Event
        Set when the client went away: the frames left are not read.
    cleanup : ExitStack
        Closed at the end (the stream's frames, the request's temporary folder, the slot).
    """
    from her2dlr.io.video import open_video

    try:
        for count, frame in enumerate(open_video(clip.path, fps=clip.fps)):
            if stop.is_set():
                return
            if count >= max_frames:
                emit({"type": "error", "error": f"clip: more than {max_frames:,} frames, the most the server accepts.",
                      "field": "clip"})
                return
            emit(frame_line(stream.push(frame), clip.fps))
        if not stop.is_set():
            emit(_result_line(stream.finish(), model_id, clip, notes, clip.path.parent))
    except InputError as exc:
        text = str(exc).replace(str(clip.path), "the uploaded clip").replace(str(clip.path.parent), "<upload>")
        emit({"type": "error", "error": text, "field": _field_of(text)})
    except Exception as exc:  # the client gets a line without the text, the log the type only
        log.error("POST /api/predict/video failed: %s", type(exc).__name__)
        emit({"type": "error", "error": "Internal error; the server log names its type.", "field": None})
    finally:
        cleanup.close()
        emit(None)
