"""`POST /api/predict/video`: a clip streamed back as NDJSON, a line per frame then the answer, equal to what
`VideoStream` and `predict_video` (the command line's `predict --video`) say; refusals, de-identification, limits,
temporary files (also when the client goes away mid-stream)."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import video_clip
from her2dlr.segment.data import mask_box
from her2dlr.video.simulate import SweepSettings, simulate_sweep, write_sweep

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

fastapi = pytest.importorskip("fastapi", reason="the server needs fastapi (pip install -e .)")
from fastapi.testclient import TestClient  # noqa: E402

from her2dlr.serve import ServeSettings, create_app  # noqa: E402

VIDEO = "video_tf-lr"
CLIN = "clinical-lr"
SECRET = "Doe^Jane^Cinename"


@pytest.fixture(scope="module")
def models(video_model: tuple[Path, Path], tmp_path_factory) -> Path:
    """The video model beside a clinical (image-less) model."""
    from her2dlr.bench.serve_benches import write_clinical_artefact

    folder = tmp_path_factory.mktemp("videoserve") / "models"
    shutil.copytree(video_model[0], folder / VIDEO)
    write_clinical_artefact(folder, n=60)
    return folder


@pytest.fixture(scope="module")
def client(models: Path) -> TestClient:
    return TestClient(create_app(ServeSettings(models)))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> dict:
    sweep = video_clip(400, 1)
    path = write_sweep(sweep, tmp_path_factory.mktemp("clip") / "new.mp4")
    box = tuple(int(v) for v in mask_box(sweep.masks[sweep.key_frame]))
    return {"path": path, "bytes": path.read_bytes(), "box": box, "key_frame": sweep.key_frame, "sweep": sweep}


def _lines(response) -> list[dict]:
    assert response.headers["content-type"].startswith("application/x-ndjson"), response.headers
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def _form(clip: dict, **extra: str) -> dict:
    return {"model": VIDEO, "box": ",".join(map(str, clip["box"])), "key_frame": str(clip["key_frame"]), **extra}


def _cine(frames: list[np.ndarray], fps: float) -> bytes:
    """A multi-frame DICOM (uint8 grey) of ``frames`` carrying a patient's name and ID."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = SECRET, "PID-5544332211", "US"
    stack = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])
    ds.NumberOfFrames, ds.Rows, ds.Columns = stack.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime = f"{1000 / fps:.3f}"
    ds.PixelData = stack.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_stream_gives_videostreams_lines_and_predict_videos_answer(client: TestClient, clip: dict, video_model,
                                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from her2dlr.io.video import open_video
    from her2dlr.predict.video import VideoStream, predict_video
    from her2dlr.serve.videos import frame_line
    from her2dlr.video.stage import frame_table

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    r = client.post("/api/predict/video", files={"clip": ("anything.bin", clip["bytes"], "application/octet-stream")},
                    data=_form(clip))
    assert r.status_code == 200, r.text
    lines = _lines(r)
    assert list(temp.iterdir()) == []  # the clip and the stream's frames are gone
    monkeypatch.undo()
    frames, last = lines[:-1], lines[-1]
    assert [f["type"] for f in frames] == ["frame"] * 10 and [f["frame"] for f in frames] == list(range(10))
    reader = open_video(clip["path"])
    fps = reader.info.fps
    # the per-frame lines are VideoStream.push's rows, in order, with the frame's time and QC flag
    stream = VideoStream(video_model[0], fps=fps, key_box=clip["box"], key_frame=clip["key_frame"])
    want = [json.loads(json.dumps(frame_line(stream.push(f), fps))) for f in reader]
    stream.close()
    assert frames == want
    assert frames[3]["time_s"] == pytest.approx(3 / fps)
    assert sum(f["qc"] == "blank" for f in frames) == 1  # the simulated dropout
    # the last line is the command line's answer for the same clip and box
    offline = predict_video(video_model[0], clip["path"], key_box=clip["box"], key_frame=clip["key_frame"],
                            progress=False)
    assert last["type"] == "result" and last["model"] == VIDEO
    assert last["probability"] == pytest.approx(offline.result.probability, abs=1e-9)
    assert last["predicted_class"] == offline.result.predicted_class
    assert last["threshold"] == pytest.approx(offline.result.threshold)
    assert last["frames"] == json.loads(json.dumps(offline.analysis.counts()))
    track = frame_table(offline.analysis.localisation)
    assert [t["source"] for t in last["track"]] == track["source"].tolist()
    assert "path" not in last["provenance"]["video"] and str(clip["path"]) not in r.text


def test_dicom_cine_is_deidentified_and_read_like_the_file(client: TestClient, clip: dict, video_model, tmp_path: Path):
    from her2dlr.predict.video import predict_video

    sweep = clip["sweep"]
    data = _cine(sweep.frames, fps=20.0)
    path = tmp_path / "cine.dcm"
    path.write_bytes(data)
    r = client.post("/api/predict/video", files={"clip": ("Doe_Jane.mp4", data, "video/mp4")}, data=_form(clip))
    assert r.status_code == 200, r.text
    lines = _lines(r)
    assert len(lines) == 11 and lines[-1]["type"] == "result", lines[-1]
    assert lines[-1]["fps"] == pytest.approx(20.0, rel=1e-4)
    for secret in ("Cinename", "5544332211", "Doe_Jane"):
        assert secret not in r.text
    want = predict_video(video_model[0], path, key_box=clip["box"], key_frame=clip["key_frame"], progress=False)
    assert lines[-1]["probability"] == pytest.approx(want.result.probability, abs=1e-9)


@pytest.mark.parametrize(("change", "status", "field", "words"), [
    ({"clip": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64}, 415, "clip", "got a PNG image"),
    ({"clip": b"just some text, not a clip" * 8}, 415, "clip", "unknown type"),
    ({"clip": b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200}, 400, "clip", "cannot be decoded"),
    ({"clip": b""}, 400, "clip", "empty"),
    ({"box": ""}, 422, "box", "key frame is needed"),
    ({"box": "70,20,40,40"}, 422, "box", "inside the image"),
    ({"key_frame": "10"}, 422, "key_frame", "beyond the clip's 10 frames"),
    ({"key_frame": "-1"}, 422, "key_frame", "frame number"),
    ({"fps": "fast"}, 422, "fps", "frames per second"),
    ({"model": ""}, 422, "model", VIDEO),
    ({"model": CLIN}, 400, "model", "not trained on video features"),
    ({"model": "video_tf-l"}, 404, "model", f"Did you mean '{VIDEO}'"),
    ({"clinical": '{"Age": 50}'}, 422, "clinical", "reads no column 'Age'"),
    ({"patient_name": "x"}, 422, "patient_name", "Unknown field"),
])
def test_bad_requests_get_a_4xx_naming_the_field(client: TestClient, clip: dict, change, status, field, words,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    data, files = _form(clip), {"clip": ("c.mp4", clip["bytes"], "video/mp4")}
    for key, value in change.items():
        if isinstance(value, bytes):
            files[key] = ("c.mp4", value, "video/mp4")
        else:
            data[key] = value
    r = client.post("/api/predict/video", files=files, data=data)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and words in r.json()["detail"], r.json()
    assert list(temp.iterdir()) == []


def test_size_frame_and_busy_limits(models: Path, clip: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    files = {"clip": ("c.mp4", clip["bytes"], "video/mp4")}
    small = TestClient(create_app(ServeSettings(models, max_video_mb=0.001)))
    r = small.post("/api/predict/video", files=files, data=_form(clip))
    assert r.status_code == 413 and r.json()["field"] in ("clip", "body")
    few = TestClient(create_app(ServeSettings(models, max_video_frames=5)))
    r = few.post("/api/predict/video", files=files, data=_form(clip))
    assert r.status_code == 413 and r.json()["field"] == "clip" and "10 frames" in r.json()["detail"]
    tiny = TestClient(create_app(ServeSettings(models, max_pixels=1000)))
    r = tiny.post("/api/predict/video", files=files, data=_form(clip))
    assert r.status_code == 413 and "80 x 64" in r.json()["detail"]
    app = create_app(ServeSettings(models, max_concurrent=1))
    assert app.state.slots.acquire(blocking=False)  # another prediction holds the only slot
    try:
        r = TestClient(app).post("/api/predict/video", files=files, data=_form(clip))
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
    finally:
        app.state.slots.release()
    assert list(temp.iterdir()) == []


def test_client_leaving_mid_stream_stops_the_work_and_removes_the_files(models: Path, tmp_path: Path):
    import httpx

    from her2dlr.bench.serve_benches import server_process

    sweep = simulate_sweep(*_long_scene(), SweepSettings(seed=5, n_frames=120, n_dropouts=0, n_freezes=0,
                                                         frame_size=(64, 80)))
    data = write_sweep(sweep, tmp_path / "long.mp4").read_bytes()
    form = {"model": VIDEO, "box": ",".join(str(int(v)) for v in mask_box(sweep.masks[0]))}
    temp = tmp_path / "temp"
    temp.mkdir()
    with server_process(models, max_concurrent=1, env={"TMPDIR": str(temp)}) as (url, _), \
            httpx.Client(base_url=url, timeout=60) as http:
        with http.stream("POST", "/api/predict/video", files={"clip": ("c.mp4", data, "video/mp4")},
                         data=form) as response:
            assert response.status_code == 200
            first = json.loads(next(response.iter_lines()))
            assert first["type"] == "frame" and first["frame"] == 0
        # gone after the first line: the server stops at the next frame, frees its slot and removes the files
        deadline = time.monotonic() + 30
        while any(temp.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(temp.iterdir()) == []
        r = http.post("/api/predict/video", files={"clip": ("c.mp4", data, "video/mp4")}, data=form)
        assert r.status_code == 200 and json.loads(r.text.splitlines()[-1])["type"] == "result"
        assert len(r.text.splitlines()) == 121
    assert list(temp.iterdir()) == []


def _long_scene() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    img = rng.uniform(90, 150, (160, 200)).astype(np.float32)
    yy, xx = np.mgrid[:160, :200]
    mask = (yy - 80) ** 2 / 22**2 + (xx - 100) ** 2 / 30**2 < 1
    img[mask] *= 0.4
    return img, mask
