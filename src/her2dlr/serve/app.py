"""The FastAPI application: the API over :func:`her2dlr.predict.predict` and the page for one case.

Routes (every ``/api`` route checks the token when one is set)::

    GET  /                              the page (static files of this package)
    GET  /docs                          the API described from its OpenAPI schema (no external assets)
    GET  /openapi.json                  the schema
    GET  /api/health                    status, number of models, version
    GET  /api/models                    model summaries: card, lesion input, clinical fields
    GET  /api/models/{model}            one summary with its full model card
    POST /api/models/{model}/predict    one case (multipart) -> probability, class, heat map PNG (a
                                        multi-class model adds class_name and class_probabilities)
    POST /api/models/{model}/segment    one image (+ box) -> the automatic lesion mask PNG
    POST /api/preview                   one image -> PNG as the models read it (DICOM de-identified)
    POST /api/predict/video             one clip (multipart) -> NDJSON stream: a line per frame, then the answer

Every refused request gets a 4xx JSON body ``{"detail": ..., "field": ...}``; an unexpected
error gets a 500 with a generic message (the log holds its type, never the request's content).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

import her2dlr
from her2dlr.errors import Her2dlrError, InputError
from her2dlr.serve.forms import (
    METHODS,
    Form,
    parse_box_field,
    parse_clinical_field,
    parse_flag,
    parse_spacing,
    read_form,
)
from her2dlr.serve.registry import ModelRegistry, class_fields, json_safe, model_summary, reads_video
from her2dlr.serve.settings import ServeSettings
from her2dlr.serve.uploads import (
    CheckedUpload,
    UploadError,
    WithheldValues,
    case_folder,
    check_upload,
    write_upload,
)
from her2dlr.serve.videos import CheckedClip, OpenClip, check_clip, open_clip, run_clip

__all__ = ["NOTICE", "create_app"]

log = logging.getLogger("her2dlr.serve")

#: Shown on the page and returned with every prediction.
NOTICE = "Research use only, not for diagnosis."

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
                                "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                                "form-action 'self'"),
}


def _error(status: int, detail: str, field: str | None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "field": field}, status_code=status, headers=headers)


class Busy(Exception):
    """All prediction slots are taken."""


def _field_of(message: str) -> str:
    """The form field an error message from the prediction code is about."""
    low = message.lower()
    for key, words in (("mask", ("mask",)), ("box", ("--box", " box")), ("clinical", ("clinical",)),
                       ("spacing", ("spacing", "pixel size"))):
        if any(w in low for w in words):
            return key
    return "image"


def _static_dir() -> Path:
    return Path(str(resources.files("her2dlr.serve") / "static"))


def _multipart_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    errors = {str(code): {"description": text, "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/ErrorBody"}}}} for code, text in (
        (400, "Bad input (names the field)"), (401, "Missing or wrong token"), (404, "Unknown model"),
        (413, "Upload too large"), (415, "Not an accepted file type"), (422, "Malformed field"),
        (503, "Busy: retry after the Retry-After seconds"))}
    return {"requestBody": {"required": bool(required), "content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": properties, "required": required, "additionalProperties": False}}}},
        "responses": errors}


_IMAGE = {"type": "string", "format": "binary", "description": "PNG, JPEG or DICOM (Part-10) image of the case."}
_BOX = {"type": "string", "description": "Lesion box x,y,w,h in pixels.", "example": "40,30,60,50"}
_PREDICT_FORM = _multipart_schema({
    "image": _IMAGE,
    "mask": {"type": "string", "format": "binary", "description": "Lesion mask (PNG, same size as the image)."},
    "box": _BOX,
    "clinical": {"type": "string", "description": 'Clinical values as a JSON object, e.g. {"Age": 52}.'},
    "spacing": {"type": "string", "description": "Pixel size in mm, when the file does not carry it."},
    "heat_map": {"type": "string", "enum": ["true", "false"], "description": "Draw the heat map (models with a network)."},
    "method": {"type": "string", "enum": list(METHODS), "description": "Heat map method."},
}, [])
_VIDEO_FORM = _multipart_schema({
    "model": {"type": "string", "description": "The model (its id in GET /api/models), one that reads video features."},
    "clip": {"type": "string", "format": "binary", "description": "The clip: MP4 / MOV, AVI or DICOM cine."},
    "box": {**_BOX, "description": "Lesion box x,y,w,h in pixels on the key frame."},
    "key_frame": {"type": "string", "description": "The frame the box is drawn on (default 0).", "example": "0"},
    "fps": {"type": "string", "description": "Frames per second, when the file does not carry it."},
    "clinical": {"type": "string", "description": 'Clinical values as a JSON object, e.g. {"Age": 52}.'},
}, ["model", "clip", "box"])
_VIDEO_FORM["responses"]["200"] = {"description": "NDJSON: one line per frame (type frame), then the answer (type "
                                   "result) or an error line (type error)",
                                   "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}
_SEGMENT_FORM = _multipart_schema({"image": _IMAGE, "box": _BOX}, ["image"])
_PREVIEW_FORM = _multipart_schema({"image": _IMAGE}, ["image"])


def create_app(settings: ServeSettings, *, registry: ModelRegistry | None = None) -> FastAPI:
    """The application for ``settings`` (checked: a non-loopback host needs a token).

    Parameters
    ----------
    settings : ServeSettings
    registry : ModelRegistry, optional
        Models already loaded (default: :meth:`ModelRegistry.load` of ``settings.models_dir``).

    Raises
    ------
    InputError
        Unsafe settings, or a models folder without artefacts.
    """
    settings.check()
    _withhold_dicom_values()
    models = registry or ModelRegistry.load(settings.models_dir)
    slots = threading.BoundedSemaphore(settings.max_concurrent)
    # the computing happens on a few long-lived threads (one per slot, one for previews): a thread per
    # request from a large pool would give each its own allocator arena and grow the memory for good
    workers = ThreadPoolExecutor(settings.max_concurrent + 1, thread_name_prefix="her2dlr-serve")

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        workers.shutdown(wait=False, cancel_futures=True)

    async def compute(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(workers, functools.partial(fn, *args, **kwargs))

    app = FastAPI(title="her2dlr", version=her2dlr.__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description=f"HER2 models of a study, one case at a time. {NOTICE}")
    app.state.settings, app.state.registry, app.state.slots = settings, models, slots

    api = APIRouter(prefix="/api", dependencies=[Depends(_token_check(settings.token))])

    @api.get("/health", summary="Server status")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": her2dlr.__version__, "models": len(models.models), "notice": NOTICE,
                "max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels,
                "max_video_bytes": settings.max_video_bytes, "max_video_frames": settings.max_video_frames}

    @api.get("/models", summary="The models with their cards and input fields")
    def list_models() -> list[dict[str, Any]]:
        return models.summaries()

    @api.get("/models/{model}", summary="One model with its full card")
    def get_model(model: str) -> dict[str, Any]:
        art = models.get(model)
        return {**model_summary(model, art), "card": json_safe(art.card)}

    def take_slot() -> None:
        if not slots.acquire(blocking=False):
            raise Busy()

    @api.post("/models/{model}/predict", summary="Predict one case", openapi_extra=_PREDICT_FORM)
    async def predict_case(model: str, request: Request) -> dict[str, Any]:
        art = models.get(model)
        form = await read_form(request, files=("image", "mask"), fields=("box", "clinical", "spacing", "heat_map",
                                                                       "method"), max_file_bytes=settings.max_upload_bytes)
        inputs = await compute(_predict_inputs, art, form, settings)  # decoding off the event loop
        take_slot()
        try:
            return await compute(_predict, art, model, **inputs)
        finally:
            slots.release()

    @api.post("/models/{model}/segment", summary="Automatic lesion mask of one image", openapi_extra=_SEGMENT_FORM)
    async def segment_case(model: str, request: Request) -> dict[str, Any]:
        art = models.get(model)
        if art.segmenter_path is None:
            raise UploadError(400, "model", f"Model '{model}' carries no segmentation network; models with one: "
                              f"{', '.join(k for k, a in models.models.items() if a.segmenter_path) or 'none'}.")
        form = await read_form(request, files=("image",), fields=("box",), max_file_bytes=settings.max_upload_bytes)
        image = await compute(_checked, "image", form.files.get("image"), settings)
        if image is None:
            raise UploadError(422, "image", "image: the image to segment is missing.")
        box = parse_box_field(form.fields.get("box"), image.shape)
        take_slot()
        try:
            return await compute(_segment, art, model, image, box)
        finally:
            slots.release()

    @api.post("/preview", summary="The image as the server reads it (a DICOM file de-identified), as PNG",
              openapi_extra=_PREVIEW_FORM)
    async def preview(request: Request) -> dict[str, Any]:
        form = await read_form(request, files=("image",), fields=(), max_file_bytes=settings.max_upload_bytes)
        image = await compute(_checked, "image", form.files.get("image"), settings)
        if image is None:
            raise UploadError(422, "image", "image: the image is missing.")
        return await compute(_preview, image)

    @api.post("/predict/video", summary="Predict one clip, streaming a line per frame (NDJSON)",
              openapi_extra=_VIDEO_FORM, response_class=StreamingResponse)
    async def predict_clip(request: Request) -> StreamingResponse:
        form = await read_form(request, files=("clip",), fields=("model", "box", "key_frame", "fps", "clinical"),
                               max_file_bytes=settings.max_video_bytes)
        job = await compute(_clip_job, models, form, settings)  # checks and opens the clip off the event loop
        try:
            take_slot()
        except Busy:
            job.cleanup.close()
            raise
        job.cleanup.callback(slots.release)
        return _stream_clip(job, workers, settings.max_video_frames)

    app.include_router(api)
    _install_handlers(app)
    _install_middleware(app, settings)
    static = _static_dir()

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(static / "index.html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(static / "docs.html")

    app.mount("/static", StaticFiles(directory=static), name="static")
    _add_error_schema(app)
    return app


def _withhold_dicom_values() -> None:
    """pydicom logs invalid values verbatim (a birth date, a name): its records are rewritten without them."""
    pydicom_log = logging.getLogger("pydicom")
    if not any(isinstance(f, WithheldValues) for f in pydicom_log.filters):
        pydicom_log.addFilter(WithheldValues())


def _token_check(token: str | None) -> Any:
    """The dependency that refuses an ``/api`` call without the token (compared in constant time)."""

    def require_token(request: Request) -> None:
        if not token:
            return
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else request.headers.get("x-token", "")
        if not hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8")):
            raise UploadError(401, "token", "This server needs its token: send 'Authorization: Bearer <token>'.")

    return require_token


def _checked(name: str, data: bytes | None, settings: ServeSettings,
             allowed: tuple[str, ...] = ("png", "jpeg", "dicom")) -> CheckedUpload | None:
    if data is None:
        return None
    return check_upload(name, data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels, allowed=allowed)


def _predict_inputs(art: Any, form: Form, settings: ServeSettings) -> dict[str, Any]:
    """The checked inputs of a predict form (uploads by content, box inside the image, clinical columns ...)."""
    image = _checked("image", form.files.get("image"), settings)
    mask = _checked("mask", form.files.get("mask"), settings, ("png",))
    if mask is not None and image is None:
        raise UploadError(422, "image", "image: a mask needs its image.")
    if mask is not None and image is not None and mask.shape != image.shape:
        raise UploadError(422, "mask", f"mask: {mask.shape[1]} x {mask.shape[0]} pixels but the image is "
                          f"{image.shape[1]} x {image.shape[0]}.")
    box = parse_box_field(form.fields.get("box"), image.shape if image is not None else None)
    method = form.fields.get("method") or "gradcam"
    if method not in METHODS:
        raise UploadError(422, "method", f"method: expected one of {', '.join(METHODS)}; got {method[:40]!r}.")
    default_heat = bool(art.with_networks()) and (mask is not None or box is not None)
    return {"image": image, "mask": mask, "box": box, "method": method,
            "clinical": parse_clinical_field(form.fields.get("clinical"), art.clinical_types),
            "spacing": parse_spacing(form.fields.get("spacing")),
            "heat": parse_flag("heat_map", form.fields.get("heat_map"), default_heat)}


def _predict(art: Any, model_id: str, *, image: CheckedUpload | None, mask: CheckedUpload | None,
             box: tuple[float, ...] | None, clinical: dict[str, Any], spacing: float | None, heat: bool,
             method: str) -> dict[str, Any]:
    """Write the checked uploads to a private temporary folder, call ``predict``, remove the folder."""
    from her2dlr.predict import Case, predict

    with case_folder() as folder:
        image_path = write_upload(folder, "image", image) if image is not None else None
        mask_path = write_upload(folder, "mask", mask) if mask is not None else None
        heat_path = folder / "heat_map.png"
        case = Case(case_id="case", image=image_path, mask=mask_path, box=box, spacing=spacing, clinical=clinical)
        try:
            result = predict(art, case, heat_maps=heat_path if heat else None, method=method, progress=False)[0]
        except InputError as exc:
            raise _clean_error(exc, folder) from None
        heat_map = None
        if result.heat_map is not None:
            h = result.heat_map
            heat_map = {"png_base64": base64.b64encode(Path(h.path).read_bytes()).decode("ascii"), "method": h.method,
                        "explained_class": h.explained_class, "lesion_share": h.lesion_share}
    provenance = {k: v for k, v in result.provenance.items() if k != "artefact"}
    notes = [*(image.notes if image else [])]
    if not heat and art.with_networks() and mask is None and box is None:
        notes.append("No heat map: it needs the lesion as a mask or a box.")
    return json_safe({
        "model": model_id, "name": result.model, "kind": result.kind, "version": result.version,
        "probability": result.probability, "predicted_class": result.predicted_class, "threshold": result.threshold,
        **class_fields(result),
        "warnings": [_strip_paths(w, folder) for w in result.warnings], "notes": notes, "provenance": provenance,
        "heat_map": heat_map, "image": {"kind": image.kind, "height": image.shape[0], "width": image.shape[1],
                                        "deidentified": image.deidentified} if image else None,
        "notice": NOTICE,
    })


def _segment(art: Any, model_id: str, image: CheckedUpload, box: tuple[float, ...] | None) -> dict[str, Any]:
    import io

    import numpy as np
    from PIL import Image

    from her2dlr.io.images import mask_to_bbox
    from her2dlr.predict.segmenter import automatic_mask

    with case_folder() as folder:
        path = write_upload(folder, "image", image)
        try:
            mask, info = automatic_mask(art, path, box=box)
        except InputError as exc:
            raise _clean_error(exc, folder) from None
    buf = io.BytesIO()
    Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255).save(buf, format="PNG")
    return json_safe({"model": model_id, "mask_png_base64": base64.b64encode(buf.getvalue()).decode("ascii"),
                      "box": list(mask_to_bbox(np.asarray(mask) > 0)),
                      **{k: info[k] for k in ("network", "box_prompt", "confidence", "empty")},
                      "notes": image.notes, "notice": NOTICE})


def _preview(image: CheckedUpload) -> dict[str, Any]:
    """The grey image the models read, scaled to 8 bits (1st-99th percentile) as PNG (shows a DICOM file in the page)."""
    import io

    import numpy as np
    import SimpleITK as sitk
    from PIL import Image

    from her2dlr.io.images import read_image, to_grey

    with case_folder() as folder:
        path = write_upload(folder, "image", image)
        try:
            arr = sitk.GetArrayFromImage(to_grey(read_image(path))).astype(np.float64)
        except InputError as exc:
            raise _clean_error(exc, folder) from None
    if arr.ndim != 2:
        raise UploadError(400, "image", f"image: a 2D image is expected; this one has shape {arr.shape}.")
    lo, hi = np.percentile(arr, [1, 99]) if arr.size else (0.0, 1.0)
    scaled = np.clip((arr - lo) / (hi - lo if hi > lo else 1.0) * 255, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(scaled).save(buf, format="PNG")
    return {"png_base64": base64.b64encode(buf.getvalue()).decode("ascii"), "height": int(arr.shape[0]),
            "width": int(arr.shape[1]), "deidentified": image.deidentified, "notes": image.notes}


@dataclass
class _ClipJob:
    """A checked, opened clip with its VideoStream, and what removes its files (and frees its slot)."""

    model_id: str
    clip: OpenClip
    stream: Any
    notes: list[str]
    cleanup: contextlib.ExitStack


def _clip_job(models: ModelRegistry, form: Form, settings: ServeSettings) -> _ClipJob:
    """Check a video form (model, clip by content, box on the key frame ...) and open the clip."""
    from her2dlr.predict.video import VideoStream

    model_id = (form.fields.get("model") or "").strip()
    videos = ", ".join(k for k, a in models.models.items() if reads_video(a)) or "none"
    if not model_id:
        raise UploadError(422, "model", f"model: name the model; models that read video: {videos}.")
    art = models.get(model_id)
    if not reads_video(art):
        raise UploadError(400, "model", f"model: '{model_id}' was not trained on video features (video_tf); models "
                          f"that read video: {videos}.")
    clinical = parse_clinical_field(form.fields.get("clinical"), art.clinical_types)
    key_frame = _key_frame(form.fields.get("key_frame"))
    fps = _fps(form.fields.get("fps"))
    if form.files.get("clip") is None:
        raise UploadError(422, "clip", "clip: the clip is missing.")
    checked: CheckedClip = check_clip("clip", form.files["clip"], max_bytes=settings.max_video_bytes,
                                      max_pixels=settings.max_pixels, max_frames=settings.max_video_frames)
    cleanup = contextlib.ExitStack()
    try:
        folder = cleanup.enter_context(case_folder())
        clip = open_clip(folder, checked, max_pixels=settings.max_pixels, max_frames=settings.max_video_frames, fps=fps)
        box = parse_box_field(form.fields.get("box"), clip.size)
        if box is None:
            raise UploadError(422, "box", "box: the lesion box x,y,w,h on the key frame is needed (the tracker starts "
                              "from it).")
        if clip.n_frames is not None and key_frame >= clip.n_frames:
            raise UploadError(422, "key_frame", f"key_frame: {key_frame} is beyond the clip's {clip.n_frames} frames.")
        stream = VideoStream(art, fps=clip.fps, key_box=box, key_frame=key_frame, clinical=clinical)
        cleanup.callback(stream.close)
    except BaseException:
        cleanup.close()
        raise
    notes = list(checked.notes)
    return _ClipJob(model_id, clip, stream, notes, cleanup)


def _key_frame(text: str | None) -> int:
    if text is None or not text.strip():
        return 0
    try:
        value = int(text)
    except ValueError:
        raise UploadError(422, "key_frame", f"key_frame: expected a frame number (0, 1, ...); got {text[:40]!r}.") from None
    if value < 0:
        raise UploadError(422, "key_frame", f"key_frame: expected a frame number (0, 1, ...); got {value}.")
    return value


def _fps(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1000:  # also refuses NaN
        raise UploadError(422, "fps", f"fps: expected frames per second in (0, 1000]; got {text[:40]!r}.")
    return value


class _ClipResponse(StreamingResponse):
    """The NDJSON stream of a clip; whatever ends it (last line, client gone, error) tells the computing to stop."""

    def __init__(self, lines: AsyncIterator[bytes], stop: threading.Event) -> None:
        super().__init__(lines, media_type="application/x-ndjson")
        self._stop = stop

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stop.set()


def _stream_clip(job: _ClipJob, workers: ThreadPoolExecutor, max_frames: int) -> StreamingResponse:
    """Start the clip's computing on a worker and stream its lines as they come."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    stop = threading.Event()

    def emit(line: dict[str, Any] | None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        except RuntimeError:  # the event loop is closed: nobody reads any more
            stop.set()

    try:
        workers.submit(run_clip, job.stream, job.clip, model_id=job.model_id, notes=job.notes, max_frames=max_frames,
                       emit=emit, stop=stop, cleanup=job.cleanup)
    except RuntimeError:  # shutting down
        job.cleanup.close()
        raise

    async def lines() -> AsyncIterator[bytes]:
        try:
            while (line := await queue.get()) is not None:
                yield (json.dumps(line) + "\n").encode()
        finally:
            stop.set()

    return _ClipResponse(lines(), stop)


def _strip_paths(message: str, folder: Path) -> str:
    """A message without the request's temporary paths (the files are named as the form fields)."""
    for name in ("image.png", "image.jpg", "image.dcm", "mask.png"):
        message = message.replace(str(folder / name), f"the uploaded {name.split('.')[0]}")
    return message.replace(str(folder), "<upload>")


def _clean_error(exc: InputError, folder: Path) -> UploadError:
    message = _strip_paths(str(exc), folder)
    return UploadError(400, _field_of(message), message)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.message, exc.field, headers)

    @app.exception_handler(Her2dlrError)
    async def input_error(request: Request, exc: Her2dlrError) -> JSONResponse:
        text = str(exc)
        if text.startswith("No model '"):
            return _error(404, text, "model")
        return _error(400, text, _field_of(text))

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy) -> JSONResponse:
        return _error(503, "The server is computing as many predictions as it allows; retry in a few seconds.", None,
                      {"Retry-After": "2"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = (exc.errors() or [{}])[0]
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        name = loc[-1] if loc else None
        return _error(422, f"{name or 'request'}: {first.get('msg', 'invalid value')}", name)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), None, dict(exc.headers or {}) or None)


def _install_middleware(app: FastAPI, settings: ServeSettings) -> None:
    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        t0 = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as exc:  # the last line of defence: no traceback text reaches the client
            log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
            response = _error(500, "Internal error; the server log names its type.", None)
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        log.info("%s %s -> %d in %.0f ms", request.method, request.url.path, response.status_code,
                 (time.perf_counter() - t0) * 1000)
        return response

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-Token"])


def _add_error_schema(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {}).setdefault("schemas", {})["ErrorBody"] = {
                "type": "object", "required": ["detail", "field"],
                "properties": {"detail": {"type": "string"}, "field": {"type": ["string", "null"]}}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
