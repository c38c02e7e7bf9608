"""The Starlette app behind `img2img serve`: the page at `/` (its scripts and styles are package
files under /static, nothing from a CDN), the JSON API under /api (images, and short videos at
/api/translate-video), /healthz and /openapi.json.

Every refusal is a JSON `{"error": ...}` with its status, never a traceback. Requests that need
a model pass a gate first: at most `workers` model calls run at once, in worker threads (the
event loop stays free), and at most `queue` more wait; beyond that the answer is 503 with
Retry-After, before the upload is read, so a burst of uploads holds at most
(workers + queue) x max_bytes in memory."""
from __future__ import annotations

import contextlib
import logging
import re
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..inference.stabilize import STABILIZERS
from ..inference.translator import DEFAULT_TILE, Sampler, Translator
from . import imaging
from .models import ApiError, ModelPool
from .openapi import schema

log = logging.getLogger("img2img.serve")
STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_BYTES = 20 * 2**20
DEFAULT_MAX_PIXELS = 4096 * 4096
DEFAULT_MAX_FRAMES = 600  # a video upload: 20 s at 30 frames/s
MULTIPART_SLACK = 64 * 1024  # boundaries, part headers and the small fields around the image


class Gate:
    """Admission for model work: `workers` at once in threads, `queue` more waiting."""

    def __init__(self, workers: int, queue: int):
        self.workers, self.queue, self.busy = workers, queue, 0
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:  # made inside the event loop that uses it
            self._limiter = anyio.CapacityLimiter(self.workers)
        return self._limiter

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        if self.busy >= self.workers + self.queue:
            raise ApiError(503, f"the server is busy ({self.busy} requests in progress or "
                                "waiting); try again shortly", retry_after=1)
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(function, *args, limiter=self.limiter)


def error_response(status: int, message: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _guarded(endpoint: Callable[[Request], Awaitable[Response]]
             ) -> Callable[[Request], Awaitable[Response]]:
    """Refusals become their JSON error; anything unexpected a logged 500, the server lives."""
    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            return error_response(exc.status, exc.message, exc.retry_after)
        except Exception as exc:
            log.exception("internal error on %s %s", request.method, request.url.path)
            return error_response(500, f"internal error: {type(exc).__name__}: {exc}")
    guarded.__name__ = endpoint.__name__
    return guarded


class Limits:
    def __init__(self, max_bytes: int, max_pixels: int, max_frames: int = DEFAULT_MAX_FRAMES):
        if max_bytes < 1 or max_pixels < 1 or max_frames < 1:
            raise ValueError("max_bytes, max_pixels and max_frames must be at least 1")
        self.max_bytes, self.max_pixels, self.max_frames = max_bytes, max_pixels, max_frames

    def too_large(self, size: int | None = None) -> ApiError:
        said = f"is {size} bytes" if size is not None else "is too large"
        return ApiError(413, f"the upload {said}; this server takes images up to "
                             f"{self.max_bytes} bytes (--max-bytes)")


async def read_form(request: Request, limits: Limits, urlencoded: bool = False) -> FormData:
    """The multipart form (or, with `urlencoded`, an URL-encoded one), read no further than
    the byte limit allows (413 past it)."""
    kind = request.headers.get("content-type", "")
    plain = urlencoded and kind.startswith("application/x-www-form-urlencoded")
    if not kind.startswith("multipart/form-data") and not plain:
        raise ApiError(400, "send the image as multipart/form-data with an 'image' file field "
                            "(curl -F image=@photo.jpg ...)" if not urlencoded else
                            "send the fields as multipart/form-data or "
                            "application/x-www-form-urlencoded (curl -F label=7 ...)")
    allowed = limits.max_bytes + MULTIPART_SLACK
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > allowed:
        raise limits.too_large(int(declared))

    async def capped() -> AsyncIterator[bytes]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > allowed:
                raise limits.too_large()
            yield chunk

    try:
        if plain:
            return await FormParser(request.headers, capped(), max_fields=32,
                                    max_part_size=MULTIPART_SLACK).parse()
        return await MultiPartParser(request.headers, capped(), max_files=1, max_fields=32,
                                     max_part_size=MULTIPART_SLACK).parse()
    except MultiPartException as exc:
        raise ApiError(400, f"malformed multipart form: {exc.message}") from None


def _text(form: FormData, key: str) -> str | None:
    value = form.get(key)
    if isinstance(value, UploadFile):
        raise ApiError(400, f"'{key}' must be a text field, not a file")
    return value.strip() if isinstance(value, str) and value.strip() else None


def _integer(form: FormData, key: str, default: int | None) -> int | None:
    text = _text(form, key)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ApiError(422, f"'{key}' must be a whole number, got '{text}'") from None


async def _upload(form: FormData, limits: Limits, field: str = "image") -> tuple[bytes, str]:
    image = form.get(field)
    if not isinstance(image, UploadFile):
        example = "photo.jpg" if field == "image" else "clip.mp4"
        raise ApiError(400, f"no '{field}' file in the form (curl -F {field}=@{example} ...)")
    data = await image.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise limits.too_large(image.size)
    return data, Path(image.filename or field).name


def _header_text(text: str) -> str:
    """`text` as a header value can carry it: HTTP headers are Latin-1, and a client's file
    name may hold anything (quotes, line breaks, any script)."""
    return urllib.parse.quote(text, safe=" -_.,:;+=()[]@~!$&'")


def _image_response(data: bytes, suffix: str, name: str, **headers: str) -> Response:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._") or "image"
    return Response(data, media_type=imaging.MEDIA_TYPES[suffix], headers={
        "Content-Disposition": f'inline; filename="{stem}{suffix}"',
        **{key: _header_text(value) for key, value in headers.items()}})


class Endpoints:
    """The app's request handlers, over one pool of models, one set of limits and one gate."""

    def __init__(self, pool: ModelPool, limits: Limits, gate: Gate):
        self.pool, self.limits, self.gate = pool, limits, gate

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def models(self, request: Request) -> Response:
        self.pool.start()
        return JSONResponse({"models": self.pool.describe(), "loading": self.pool.loading,
                             "limits": {"max_bytes": self.limits.max_bytes,
                                        "max_pixels": self.limits.max_pixels,
                                        "max_frames": self.limits.max_frames}})

    async def healthz(self, request: Request) -> Response:
        self.pool.start()
        states = {e.name: e.status for e in self.pool.entries.values()}
        ready = any(s == "ready" for s in states.values())
        status = "loading" if self.pool.loading else "ok" if ready else "failed"
        return JSONResponse({"status": status, "models": states},
                            status_code=200 if status == "ok" else 503)

    async def translate(self, request: Request) -> Response:
        async with self.gate.admit():
            form = await read_form(request, self.limits)
            data, filename = await _upload(form, self.limits)
            name, translator = self.pool.get(_text(form, "model"), Translator)
            direction, style = imaging.check_choice(translator, _text(form, "direction"),
                                                    _text(form, "style"))
            upload = await anyio.to_thread.run_sync(imaging.decode, data, filename,
                                                    self.limits.max_pixels)
            suffix = imaging.output_suffix(_text(form, "format"), upload.suffix)
            seed = _integer(form, "seed", None)
            result = await self.gate.run(imaging.translate, translator, upload, direction,
                                         style, suffix, seed)
        seeded = {} if seed is None else {"X-Seed": str(seed)}
        return _image_response(result, suffix, filename, **{"X-Model": name, **seeded})

    async def translate_video(self, request: Request) -> Response:
        async with self.gate.admit():
            form = await read_form(request, self.limits)
            data, filename = await _upload(form, self.limits, "video")
            name, translator = self.pool.get(_text(form, "model"), Translator)
            direction, style = imaging.check_choice(translator, _text(form, "direction"),
                                                    _text(form, "style"))
            stabilize = _text(form, "stabilize")
            if stabilize not in (None, *STABILIZERS):
                raise ApiError(422, f"unknown stabilize '{stabilize}'; choose one of: "
                                    f"{', '.join(STABILIZERS)}")
            result = await self.gate.run(imaging.translate_video, translator, data, filename,
                                         direction, style, stabilize, self.limits.max_frames,
                                         self.limits.max_pixels)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename).stem).strip("._") or "video"
        return Response(result, media_type="video/mp4", headers={
            "Content-Disposition": f'inline; filename="{stem}.mp4"',
            "X-Model": _header_text(name)})

    async def sample(self, request: Request) -> Response:
        async with self.gate.admit():
            form = await read_form(request, self.limits, urlencoded=True)
            name, sampler = self.pool.get(_text(form, "model"), Sampler)
            labels = [v for v in form.getlist("label") if isinstance(v, str) and v.strip()]
            indices = imaging.resolve_labels(sampler, labels)
            count = _integer(form, "n", 8)
            seed = _integer(form, "seed", None)
            seed = secrets.randbelow(2**31) if seed is None else seed
            suffix = imaging.output_suffix(_text(form, "format"), ".png")
            result = await self.gate.run(imaging.sample_grid, sampler, indices, count, seed,
                                         suffix)
        return _image_response(result, suffix, f"{name}-samples", **{
            "X-Model": name, "X-Seed": str(seed)})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(schema(self.limits.max_bytes, self.limits.max_pixels,
                                   self.limits.max_frames))

    async def http_error(self, request: Request, exc: Exception) -> Response:
        """Starlette's own refusals (no such route, wrong method) as our JSON errors."""
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "") or "error"
        if status == 404:
            detail = f"no such page or endpoint: {request.url.path} (see /openapi.json)"
        return error_response(status, str(detail))

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.pool.start()
        yield


def create_app(models: Any = None, *, runs_dir: str | Path = "runs", device: str = "auto",
               tile: int = DEFAULT_TILE, max_bytes: int = DEFAULT_MAX_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 1, queue: int = 8,
               catalog: Any = None, max_frames: int = DEFAULT_MAX_FRAMES) -> Starlette:
    """The ASGI app serving `models` (run folders, checkpoints, 'latest', or loaded models;
    default: the newest run under `runs_dir`). Runs load in a background thread when the app
    starts (or at its first request, when embedded without lifespan events); `max_bytes` and
    `max_pixels` bound an upload, and `max_frames` a video upload's frame count; `workers`
    model calls run at once and `queue` more wait."""
    if workers < 1 or queue < 0:
        raise ValueError("workers must be at least 1 and queue at least 0")
    pool = ModelPool(models if not isinstance(models, (str, Path)) else [models],
                     runs_dir=Path(runs_dir), device=device, tile=tile, catalog=catalog)
    api = Endpoints(pool, Limits(max_bytes, max_pixels, max_frames), Gate(workers, queue))
    routes = [
        Route("/", api.index, methods=["GET"]),
        Route("/api/models", _guarded(api.models), methods=["GET"]),
        Route("/api/translate", _guarded(api.translate), methods=["POST"]),
        Route("/api/translate-video", _guarded(api.translate_video), methods=["POST"]),
        Route("/api/sample", _guarded(api.sample), methods=["POST"]),
        Route("/healthz", _guarded(api.healthz), methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=api.lifespan,
                    exception_handlers={HTTPException: api.http_error})
    app.state.pool, app.state.gate, app.state.limits = pool, api.gate, api.limits
    return app


__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_FRAMES", "DEFAULT_MAX_PIXELS", "Endpoints",
           "create_app"]
