"""``her2dlr bench serve``: the HTTP server under load, against a real uvicorn on 127.0.0.1.

``her2dlr bench serve [--data MODELS_DIR] [--work-dir DIR] [--quick]``

The server (``her2dlr serve``, default safety settings but 4 predictions at a time) runs in a
subprocess on a free loopback port and is driven with httpx. The model is a deep artefact of the seed-000
network (``densenet3block``, 64 x 64 box ROIs): ``--data`` may name a models folder holding
one; otherwise a small one is trained on synthetic lesions (smooth benign vs rough malignant,
a few epochs, CPU) and kept under ``<work_dir>/serve/models`` for the next run. The case is a
480 x 360 ultrasound-sized synthetic PNG with its lesion box. At most 500 requests are sent.

Metrics:

``latency_p50_ms`` / ``latency_p95_ms``
    One ``POST /api/models/{m}/predict`` with the Grad-CAM heat map (PNG in the answer), one
    request at a time, after 5 warm-up requests (``n``: timed requests).
``throughput_rps``
    Predictions with heat maps per second with 4 clients at once.
``errors``
    Failed or non-200 answers among the timed predictions (must be 0).
``rss_growth_mb``
    Growth of the server process's resident memory from after the warm-up to after all
    requests (total requests in ``n``); ``growth_after_sequential_mb`` the growth after the
    one-at-a-time requests only (the rest comes with the concurrent phase's threads).
``rejected_bad_inputs``
    Bad uploads (:func:`bad_inputs`, at least 25 kinds: wrong type by content, truncated files,
    decompression bombs, boxes outside the image, malformed clinical JSON, unknown fields ...)
    answered with a 4xx and a JSON message; ``n`` the catalogue's size, ``failures`` the names
    of those that were not.
``video_frames_per_s``
    Frame lines streamed per second by ``POST /api/predict/video`` for a simulated 150-frame sweep
    (240 x 320, tracker from the key-frame box), from sending the clip to the last frame's line, for
    a ``video_tf`` logistic model learnt from 12 simulated sweeps (:func:`write_video_artefact`);
    ``first_line_ms``, ``last_frame_ms`` and ``answer_ms`` the times to the first line, the last
    frame's line and the answer (features of every frame, then the model), means of 2 clips sent
    after the load above.

Default work dir: a fixed folder in the system temp directory.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from her2dlr.bench import BenchOptions, register, result

__all__ = ["ARCH", "VIDEO_PARAMS", "bad_inputs", "free_port", "lesion_case", "serve_bench", "server_process",
           "simulated_clip", "train_tiny_network", "write_clinical_artefact", "write_segmenter_artefact",
           "write_video_artefact"]

ARCH = "densenet3block"  # seed 000's network
MAX_REQUESTS = 500


def lesion_case(seed: int, rough: bool, *, shape: tuple[int, int] = (96, 80)) -> tuple[np.ndarray, np.ndarray]:
    """A speckled ultrasound-like image with an elliptic lesion, smooth or rough inside; its mask (0/255)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    img = rng.gamma(2.0, 30.0, size=(h, w))
    yy, xx = np.mgrid[:h, :w]
    cy, cx = h / 2 + rng.integers(-h // 10, h // 10 + 1), w / 2 + rng.integers(-w // 10, w // 10 + 1)
    ry, rx = h / 4 * rng.uniform(0.8, 1.2), w / 4 * rng.uniform(0.8, 1.2)
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    img[inside] = rng.normal(60, 35 if rough else 5, size=(h, w))[inside] - 20
    return np.clip(img, 0, 255).astype(np.uint8), inside.astype(np.uint8) * 255


def train_tiny_network(models_dir: str | os.PathLike[str], *, seed: int = 0, n_per_class: int = 16, epochs: int = 3,
                       name: str = f"deep_{ARCH}-signature", work_dir: str | os.PathLike[str] | None = None,
                       segmenter: Path | None = None) -> Path:
    """Train the seed-000 network briefly on synthetic lesions and save it as a ``deep`` artefact.

    The network reads 64 x 64 box ROIs (default :class:`~her2dlr.imaging.roi.RoiSpec`); its
    threshold is chosen (Youden) on its training predictions. ``epochs=0`` builds the network
    without training it (initial weights: enough to exercise the serving path quickly).
    Returns the artefact folder ``models_dir/<name>``.
    """
    from her2dlr.deep.data import load_rois
    from her2dlr.deep.deploy import save_deep_artefact
    from her2dlr.deep.train import TrainSettings, load_checkpoint, predict_proba, save_checkpoint, train_network
    from her2dlr.imaging.roi import RoiSpec
    from her2dlr.learn.thresholds import choose_threshold
    from her2dlr.runfolder import BEST_CHECKPOINT

    images, masks, labels = [], [], []
    for i in range(2 * n_per_class):
        img, mask = lesion_case(seed * 1000 + i, rough=bool(i % 2))
        images.append(img)
        masks.append(mask)
        labels.append(i % 2)
    spec = RoiSpec(size=64)
    rois = load_rois(images, masks, spec=spec)
    y = np.asarray(labels)
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="her2dlr-tiny-"))
    folder = work / "deep" / ARCH / "holdout"
    settings = TrainSettings(arch=ARCH, image_size=64, epochs=max(epochs, 1), batch_size=16, patience=0, seed=seed,
                             device="cpu", num_threads=2, progress=False, min_class_cases=len(y))
    if epochs > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # no inner validation split on purpose: every case trains
            network = train_network(rois, y, settings=settings, out_dir=folder,
                                    extra={"roi": spec.to_dict(), "fold": "holdout", "model": name}).model
    else:  # built, not trained: its initial weights (for tests of the serving path, not of learning)
        import torch

        from her2dlr.deep.networks import build_network
        from her2dlr.deep.train import make_checkpoint

        torch.manual_seed(seed)
        network = build_network(ARCH, image_size=64).eval()
        save_checkpoint(make_checkpoint(network, settings, epoch=0, kind="best",
                                        extra={"roi": spec.to_dict(), "fold": "holdout", "model": name}),
                        folder / BEST_CHECKPOINT)
    prob = predict_proba(network, rois)[:, 1]
    thr = choose_threshold(y, prob, source="train_fit")
    path = folder / BEST_CHECKPOINT
    ckpt = load_checkpoint(path)
    ckpt["extra"] = {**dict(ckpt.get("extra") or {}), "threshold": thr.to_dict(),
                     "train_cases": [f"synthetic{i}" for i in range(len(y))]}
    save_checkpoint(ckpt, path)
    task = {"rule": "column", "positive": ["rough lesion (synthetic)"], "negative": ["smooth lesion (synthetic)"]}
    out = save_deep_artefact(models_dir, work / "deep" / ARCH, name=name, task=task, segmenter=segmenter)
    assert out is not None
    return out


def write_segmenter_artefact(models_dir: str | os.PathLike[str], network_artefact: str | os.PathLike[str], *,
                             seed: int = 0, epochs: int = 2, n_images: int = 24, name: str = f"deep_{ARCH}-auto") -> Path:
    """A copy of a ``deep`` artefact that carries a small segmentation network (finds the lesion itself).

    The U-Net (32 px input, unprompted) is trained for ``epochs`` on synthetic lesions.
    """
    import shutil

    from her2dlr.learn.artefact import CARD, SEGMENTER, write_checksums
    from her2dlr.segment.checkpoints import save_segmenter
    from her2dlr.segment.data import SegSpec, load_seg_pairs
    from her2dlr.segment.train import SegTrainSettings, train_segmenter

    pairs = [lesion_case(seed * 1000 + 500 + i, rough=bool(i % 2), shape=(56, 56)) for i in range(n_images)]
    spec = SegSpec(size=32)
    x, m, _ = load_seg_pairs([p[0] for p in pairs], [(p[1] > 0).astype(np.uint8) for p in pairs], spec=spec,
                             progress=False)
    settings = SegTrainSettings(image_size=32, epochs=epochs, features=(8, 16, 32), batch_size=8, lr=3e-3, patience=0,
                                device="cpu", num_threads=2, progress=False, seed=seed)
    res = train_segmenter(x, m, settings=settings)
    target = Path(models_dir) / name
    shutil.copytree(network_artefact, target)
    save_segmenter(res.model, spec, settings, target / SEGMENTER)
    card = json.loads((target / CARD).read_text())
    card["name"] = name
    (target / CARD).write_text(json.dumps(card, indent=2))
    write_checksums(target)  # the artefact's files are now these
    return target


def write_clinical_artefact(models_dir: str | os.PathLike[str], *, seed: int = 0, n: int = 120,
                            name: str = "clinical-lr") -> Path:
    """A clinical-only logistic model (``Age`` numeric, ``Shape`` categorical) on synthetic cases."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from her2dlr.learn.artefact import save_artefact
    from her2dlr.learn.clinical import clinical_pipeline
    from her2dlr.learn.thresholds import choose_threshold

    rng = np.random.default_rng(seed)
    shape = rng.choice(["oval", "irregular", "round"], size=n)
    age = rng.normal(55, 10, size=n).round()
    logit = -0.8 + 1.6 * (shape == "irregular") + 0.05 * (age - 55)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({"Age": age, "Shape": shape})
    types = {"Age": "numeric", "Shape": "categorical"}
    pipe = clinical_pipeline(types, min_frequency=None, classifier=LogisticRegression(max_iter=1000)).fit(frame, y)
    thr = choose_threshold(y, pipe.predict_proba(frame)[:, 1], source="train_fit")
    ranges = {"Age": [float(age.min()), float(age.max())]}
    return save_artefact(Path(models_dir) / name, name=name, kind="pipeline", threshold=thr, pipeline=pipe,
                         inputs={"columns": ["Age", "Shape"], "features": [], "clinical": types,
                                 "units": {"Age": "years"}},
                         task={"rule": "column", "positive": ["1"], "negative": ["0"]},
                         training={"scheme": "synthetic", "n_cases": n, "n_positive": int(y.sum())}, logistic={"ranges": ranges})


#: Radiomics settings of the small video_tf models (first-order features of each frame).
VIDEO_PARAMS = {"imageType": {"Original": {}}, "featureClass": {"firstorder": ["Mean", "Median", "10Percentile"]},
                "setting": {"binWidth": 5.0, "label": 1, "minimumROIDimensions": 2, "minimumROISize": 16}}


def simulated_clip(seed: int, label: int, *, n_frames: int = 10, frame_size: tuple[int, int] = (64, 80),
                   n_dropouts: int = 1) -> Any:
    """A simulated probe sweep (:func:`her2dlr.video.simulate.simulate_sweep`) over an elliptic lesion that is
    darker in class 1; ``n_dropouts`` blank frames."""
    from her2dlr.video.simulate import SweepSettings, simulate_sweep

    rng = np.random.default_rng(seed)
    img = rng.uniform(90, 150, (160, 200)).astype(np.float32)
    yy, xx = np.mgrid[:160, :200]
    mask = (yy - 80) ** 2 / 22**2 + (xx - 100) ** 2 / 30**2 < 1
    img[mask] *= 0.25 if label else 0.6
    return simulate_sweep(img, mask, SweepSettings(seed=seed, n_frames=n_frames, n_dropouts=n_dropouts, n_freezes=0,
                                                   frame_size=frame_size))


def write_video_artefact(models_dir: str | os.PathLike[str], work_dir: str | os.PathLike[str], *,
                         n_clips: int = 12) -> Path:
    """A ``video_tf`` logistic model (``<models_dir>/video_tf-lr``) learnt from ``n_clips`` simulated sweeps
    (tracker from the key-frame box, 3-fold CV, fitted on all clips); the clips and tables go to ``work_dir``."""
    import pandas as pd
    import yaml

    from her2dlr.cohort.manifest import Manifest
    from her2dlr.cohort.splits import repeated_group_kfold
    from her2dlr.learn.settings import LearnSettings
    from her2dlr.learn.stage import run_learn_stage
    from her2dlr.radiomics.parameters import load_params, params_hash
    from her2dlr.segment.data import mask_box
    from her2dlr.video.simulate import write_sweep
    from her2dlr.video.stage import extract_video_table

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    params = work / "params.yaml"
    params.write_text(yaml.safe_dump(VIDEO_PARAMS))
    rows = []
    for i in range(n_clips):
        sweep = simulated_clip(i, i % 2)
        path = write_sweep(sweep, work / f"v{i}.mp4")
        rows.append({"case_id": f"v{i}", "image": str(path), "modality": "US-video", "key_frame": sweep.key_frame,
                     "bbox": json.dumps(list(mask_box(sweep.masks[sweep.key_frame]))), "label": i % 2})
    table, failures = extract_video_table(pd.DataFrame(rows), work / "features", params=str(params), progress=False)
    if not failures.empty:
        raise RuntimeError(f"simulated clips failed: {failures.to_dict(orient='records')}")
    ids = np.array([r["case_id"] for r in rows])
    y = np.array([r["label"] for r in rows])
    manifest = Manifest(pd.DataFrame({"case_id": ids, "patient_id": ids, "image": "x", "label": y,
                                      "fold_r0": repeated_group_kfold(y, ids, 3, 1, 0)[0]}))
    settings = LearnSettings(features=["video_tf"], models=[{"name": "lr", "grid": {}}], schemes=["kfold"],
                             selection=[{"name": "variance"}], search={"inner_splits": 2})
    provenance = [{"name": "video_tf", "params": str(params), "roi": "video",
                   "params_hash": params_hash(load_params(params))}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_learn_stage(table, manifest, settings, work / "learn", feature_set="video_tf", models_dir=Path(models_dir),
                        feature_tables=provenance, progress=False)
    return Path(models_dir) / "video_tf-lr"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server_process(models_dir: str | os.PathLike[str], *, port: int | None = None, max_concurrent: int = 2,
                   env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """``her2dlr serve`` in a subprocess on 127.0.0.1: yields ``(url, pid)`` once it answers; stopped on exit.

    ``env`` adds environment variables (e.g. ``TMPDIR``: where its temporary files go).

    A subprocess, not an import: the server sits above the benchmarks in the layer order, and
    its memory is then measured alone.
    """
    import subprocess
    import sys

    import httpx

    port = port or free_port()
    code = "import sys; from her2dlr.cli import app; sys.argv[0] = 'her2dlr'; app()"
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", str(models_dir), "--port", str(port),
                             "--max-concurrent", str(max_concurrent), "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                raise RuntimeError(f"her2dlr serve exited with code {proc.returncode}: {err}")
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("her2dlr serve did not answer within 120 s")
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def bad_inputs(png: bytes, mask_png: bytes, box: str) -> dict[str, dict[str, Any]]:
    """A catalogue of bad predict requests: name -> ``{"files": ..., "data": ...}`` for httpx.

    Each must be refused with a 4xx and a JSON message naming the field.
    """
    import struct
    import zlib

    from PIL import Image

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    jpeg = io.BytesIO()
    Image.new("L", (40, 30)).save(jpeg, format="JPEG")
    gif = io.BytesIO()
    Image.new("L", (40, 30)).save(gif, format="GIF")
    small_mask = _png(np.zeros((10, 10), dtype=np.uint8))
    fake_dicom = b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x04\x00garb" + b"\x00" * 20
    img = {"image": ("case.png", png, "image/png")}
    cases: dict[str, dict[str, Any]] = {
        "no_image": {"files": {"mask": ("m.png", mask_png, "image/png")}, "data": {}},
        "empty_file": {"files": {"image": ("x.png", b"", "image/png")}, "data": {"box": box}},
        "text_as_png": {"files": {"image": ("x.png", b"hello, not an image" * 10, "image/png")}, "data": {"box": box}},
        "gif": {"files": {"image": ("x.gif", gif.getvalue(), "image/gif")}, "data": {"box": box}},
        "pdf_named_png": {"files": {"image": ("x.png", b"%PDF-1.4\n" + b"0" * 200, "image/png")}, "data": {"box": box}},
        "truncated_png": {"files": {"image": ("x.png", png[: len(png) // 2], "image/png")}, "data": {"box": box}},
        "truncated_jpeg": {"files": {"image": ("x.jpg", jpeg.getvalue()[:40], "image/jpeg")}, "data": {"box": box}},
        "png_bomb": {"files": {"image": ("x.png", bomb, "image/png")}, "data": {"box": box}},
        "fake_dicom": {"files": {"image": ("x.dcm", fake_dicom, "application/dicom")}, "data": {"box": box}},
        "jpeg_as_mask": {"files": {**img, "mask": ("m.jpg", jpeg.getvalue(), "image/jpeg")}, "data": {}},
        "mask_other_size": {"files": {**img, "mask": ("m.png", small_mask, "image/png")}, "data": {}},
        "no_lesion": {"files": img, "data": {}},
        "box_outside": {"files": img, "data": {"box": "5000,5000,10,10"}},
        "box_negative": {"files": img, "data": {"box": "-5,10,20,20"}},
        "box_zero_size": {"files": img, "data": {"box": "10,10,0,0"}},
        "box_three_numbers": {"files": img, "data": {"box": "10,10,20"}},
        "box_text": {"files": img, "data": {"box": "left,top,wide,high"}},
        "box_nan": {"files": img, "data": {"box": "nan,10,20,20"}},
        "clinical_not_json": {"files": img, "data": {"box": box, "clinical": "{Age: 52"}},
        "clinical_list": {"files": img, "data": {"box": box, "clinical": "[1, 2]"}},
        "clinical_unknown_column": {"files": img, "data": {"box": box, "clinical": '{"PatientName": "x"}'}},
        "spacing_text": {"files": img, "data": {"box": box, "spacing": "small"}},
        "spacing_negative": {"files": img, "data": {"box": box, "spacing": "-0.1"}},
        "method_unknown": {"files": img, "data": {"box": box, "method": "saliency"}},
        "heat_map_not_bool": {"files": img, "data": {"box": box, "heat_map": "perhaps"}},
        "unknown_field": {"files": img, "data": {"box": box, "patient_id": "123"}},
        "image_as_text": {"files": {}, "data": {"image": "not a file", "box": box}},
        "box_as_file": {"files": {**img, "box": ("b.txt", box.encode(), "text/plain")}, "data": {}},
    }
    return cases


def _rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MB (Linux ``/proc``; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024
    except OSError:
        return None


def _model_dir(opts: BenchOptions) -> Path:
    if opts.data is not None:
        return Path(opts.data)
    base = Path(opts.work_dir) if opts.work_dir else Path(tempfile.gettempdir()) / "her2dlr-bench"
    models = base / "serve" / "models"
    if not (models / f"deep_{ARCH}-signature" / "model_card.json").is_file():
        train_tiny_network(models, seed=opts.seed, n_per_class=24, epochs=4, work_dir=base / "serve")
    if not (models / "video_tf-lr" / "model_card.json").is_file():
        write_video_artefact(models, base / "serve" / "video")
    return models


def _stream_clip(client: Any, data: bytes, box: str, key_frame: int) -> dict[str, Any]:
    """Send a clip to the video endpoint: seconds to the first line, to the last frame's line and to the answer."""
    t0 = time.perf_counter()
    first, last_frame, frames, last = None, float("nan"), 0, {}
    with client.stream("POST", "/api/predict/video", files={"clip": ("clip.mp4", data, "video/mp4")},
                       data={"model": "video_tf-lr", "box": box, "key_frame": str(key_frame)}) as r:
        for line in r.iter_lines():
            if not line.strip():
                continue
            first = first if first is not None else time.perf_counter() - t0
            last = json.loads(line)
            if last.get("type") == "frame":
                frames += 1
                last_frame = time.perf_counter() - t0
    return {"first": first or float("nan"), "last_frame": last_frame, "answer": time.perf_counter() - t0,
            "frames": frames, "answered": last.get("type") == "result"}


@register("serve", "HTTP server (uvicorn on 127.0.0.1): predict latency with heat map, throughput, memory, bad inputs")
def serve_bench(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield ``latency_p50_ms``, ``latency_p95_ms``, ``throughput_rps``, ``errors``, ``rss_growth_mb``, ``rejected_bad_inputs``."""
    import httpx

    name = "serve"
    models_dir = _model_dir(opts)
    img, mask = lesion_case(opts.seed + 4242, rough=True, shape=(360, 480))
    ys, xs = np.nonzero(mask)
    box = f"{xs.min()},{ys.min()},{xs.max() - xs.min() + 1},{ys.max() - ys.min() + 1}"
    png, mask_png = _png(img), _png(mask)
    n_seq = 60 if opts.quick else 150
    n_conc = 40 if opts.quick else 120
    catalogue = bad_inputs(png, mask_png, box)
    n_warm = 5
    sent = 0
    info = {"model": "", "image": "480x360 PNG + box", "heat_map": "gradcam", "threads": os.cpu_count()}
    from her2dlr.segment.data import mask_box
    from her2dlr.video.simulate import write_sweep

    sweep = simulated_clip(opts.seed + 77, 1, n_frames=150, frame_size=(240, 320), n_dropouts=2)
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_sweep(sweep, Path(tmp) / "clip.mp4").read_bytes()
    clip_box = ",".join(str(int(v)) for v in mask_box(sweep.masks[sweep.key_frame]))
    with server_process(models_dir, max_concurrent=4) as (url, pid), httpx.Client(base_url=url, timeout=60) as client:
        listed = client.get("/api/models").json()
        model = next((m["id"] for m in listed if m["kind"] == "deep" and (m["inputs"]["image_spec"] or {}).get("arch")
                      == ARCH), None) or next(m["id"] for m in listed if m["heat_map"])
        info["model"] = model
        sent += 2
        endpoint = f"/api/models/{model}/predict"

        def one() -> tuple[float, int]:
            t0 = time.perf_counter()
            r = client.post(endpoint, files={"image": ("case.png", png, "image/png")}, data={"box": box})
            ok = r.status_code == 200 and r.json().get("heat_map") is not None
            return (time.perf_counter() - t0) * 1000, 0 if ok else 1

        for _ in range(n_warm):
            one()
        sent += n_warm
        rss0 = _rss_mb(pid)
        seq = [one() for _ in range(n_seq)]
        sent += n_seq
        rss_seq = _rss_mb(pid)
        lat = np.array([s[0] for s in seq])
        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            conc = list(pool.map(lambda _: one(), range(n_conc)))
        wall = time.perf_counter() - t0
        sent += n_conc
        rejected, failures = 0, []
        for bad_name, req in catalogue.items():
            r = client.post(endpoint, files=req["files"] or None, data=req["data"])
            sent += 1
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            if 400 <= r.status_code < 500 and body.get("detail"):
                rejected += 1
            else:
                failures.append(f"{bad_name}:{r.status_code}")
        n_clips = 2
        remaining = MAX_REQUESTS - sent - n_clips
        tail = [one() for _ in range(max(remaining, 0))]
        sent += len(tail)
        rss1 = _rss_mb(pid)
        clips = [_stream_clip(client, clip, clip_box, sweep.key_frame) for _ in range(n_clips)]
        sent += n_clips
    errors = sum(s[1] for s in seq) + sum(c[1] for c in conc) + sum(t[1] for t in tail)
    yield result(name, "latency_p50_ms", round(float(np.percentile(lat, 50)), 1), n=n_seq, **info)
    yield result(name, "latency_p95_ms", round(float(np.percentile(lat, 95)), 1), n=n_seq, **info)
    yield result(name, "throughput_rps", round(n_conc / wall, 2), n=n_conc, concurrency=4, seconds=round(wall, 2), **info)
    yield result(name, "errors", errors, n=n_seq + n_conc + len(tail))
    growth = round(rss1 - rss0, 1) if rss0 is not None and rss1 is not None else float("nan")
    mid = round(rss_seq - rss0, 1) if rss0 is not None and rss_seq is not None else None
    yield result(name, "rss_growth_mb", growth, n=sent, rss_mb=round(rss1, 1) if rss1 is not None else None,
                 growth_after_sequential_mb=mid, process="server")
    yield result(name, "rejected_bad_inputs", rejected, n=len(catalogue), failures=failures)
    def mean_ms(key: str) -> float:
        return round(float(np.mean([c[key] for c in clips])) * 1000, 1)

    yield result(name, "video_frames_per_s", round(float(np.mean([c["frames"] / c["last_frame"] for c in clips])), 1),
                 n=len(clips), frames=[c["frames"] for c in clips], answered=sum(c["answered"] for c in clips),
                 frame_size="320x240", first_line_ms=mean_ms("first"), last_frame_ms=mean_ms("last_frame"),
                 answer_ms=mean_ms("answer"), model="video_tf-lr")
