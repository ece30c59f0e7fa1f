"""The drawing demo's web app: one static page and a small JSON API over a model.

Endpoints
---------
``GET /``
    The page (``static/index.html``; its script and style under ``/static/``).
``POST /api/predict``
    The digit in a drawing. The body is JSON, ``{"pixels": [784 grey values 0-255]}`` (a 28x28
    drawing row by row) or ``{"image": "data:image/png;base64,..."}``, or the raw bytes of a PNG
    with ``Content-Type: image/png``. Either way the drawing goes through
    :mod:`digitnet.imaging`, as ``digitnet predict`` does, and the answer is
    ``{"label", "class_name", "probabilities", "hidden", "input28"}``: the most probable class,
    the probability of each class, the hidden units' activations A1 and the 28x28 input the
    network saw (grey levels 0-255, row by row).
``GET /api/model``
    Layer sizes, preset, metrics, class names and whether sample digits are available.
``GET /api/weights``
    Each hidden unit's incoming weights (a column of W1) as a 28x28 array, its outgoing weights
    and bias.
``GET /api/sample``
    A random test digit (``?index=`` picks one): 784 grey values and its label; 404 when the
    app was started without test digits.
``POST /api/explain``
    The same body; the forward pass with its numbers (see :mod:`digitnet.web.explain_api`).
``GET /healthz``
    ``{"status": "ok"}``.
``/api/train...``
    The Train panel: train a network in the page and switch to it (:mod:`digitnet.web.train_api`).

Every error is JSON, ``{"error": "..."}``, with a 4xx status, and is logged as one line on the
``digitnet.web`` logger. A body larger than ``max_body`` bytes is refused with 413, whether its
``Content-Length`` says so or its stream runs over; one that takes longer than
``body_timeout`` seconds to arrive, with 408. The body is read asynchronously, so a slow client
holds up no one else; inference, two small matrix products, runs in the request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from digitnet import imaging
from digitnet.errors import ImageError
from digitnet.model import Model
from digitnet.web import explain_api
from digitnet.web.runs import TrainSettings

__all__ = ["create_app", "ApiError", "MAX_BODY", "MAX_IMAGE_SIDE", "STATIC"]

STATIC = Path(__file__).parent / "static"
MAX_BODY = 2_000_000
"""The largest request body accepted, in bytes: a drawing is a few kilobytes."""
BODY_TIMEOUT = 30.0
"""Seconds a client has to send its whole body; a stalled upload is answered 408."""
MAX_IMAGE_SIDE = 2048
"""The widest and tallest PNG accepted, in pixels; checked before any pixel is decoded."""
MAX_IMAGE_PIXELS = 2048 * 2048
"""The most pixels a PNG may have, checked on the size the decoder reads from the file."""
DECODERS = 2
"""Images decoded at once; more uploads wait their turn, so memory stays bounded."""
N_PIXELS = 28 * 28
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DRAW_A_DIGIT = "the drawing is empty: draw a digit"

log = logging.getLogger("digitnet.web")


class ApiError(Exception):
    """A request the API refuses: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(
    model: Model,
    samples: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    max_body: int = MAX_BODY,
    body_timeout: float = BODY_TIMEOUT,
    rng: np.random.Generator | None = None,
    training: TrainSettings | None = None,
) -> FastAPI:
    """The web app for ``model``.

    Parameters
    ----------
    model
        The network to run; it must take 784 inputs.
    samples
        Test images (n, 28, 28) uint8 and labels (n,) for ``/api/sample``, or None.
    max_body
        The largest request body accepted, in bytes.
    body_timeout
        Seconds a client may take to send its body.
    rng
        Where ``/api/sample`` draws its random digits from (default: a fresh generator).
    training
        Whether and how the Train panel trains; None: training is off.
    """
    if model.sizes[0] != N_PIXELS:
        raise ValueError(f"the model takes {model.sizes[0]} inputs; the page draws 28x28 = 784")
    if samples is not None:
        samples = (np.asarray(samples[0]).reshape(-1, 28, 28), np.asarray(samples[1]))
        if len(samples[0]) != len(samples[1]) or not len(samples[0]):
            raise ValueError("samples must hold as many labels as images, at least one")
        if int(samples[1].max()) >= model.sizes[-1] or int(samples[1].min()) < 0:
            raise ValueError(f"sample labels reach {int(samples[1].max())}, but the model has "
                             f"{model.sizes[-1]} classes")
    rng = rng or np.random.default_rng()
    served = _Served(model, samples is not None)

    decoding = threading.BoundedSemaphore(DECODERS)
    app = FastAPI(title="digitnet", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(_RangeCheck)
    from digitnet.web import train_api  # it imports this module: not at the top

    train_api.attach(app, training, served.use)

    async def read_drawing(request: Request) -> np.ndarray:
        """The request's drawing as the 28x28 input, the body limited in size and time."""
        try:
            body = await asyncio.wait_for(_read_body(request, max_body), body_timeout)
        except asyncio.TimeoutError:
            raise ApiError(408, f"the body did not arrive within {body_timeout:g} seconds") \
                from None
        # Decoding a large PNG takes tens of milliseconds: do it off the event loop, so other
        # requests are answered meanwhile.
        content_type = request.headers.get("content-type")
        return await run_in_threadpool(lambda: _input28(content_type, body, decoding))

    app.include_router(explain_api.router(lambda: served.model, read_drawing))  # /api/explain

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.api_route("/api/model", methods=["GET", "HEAD"])
    async def model_info() -> dict[str, Any]:
        return served.info

    @app.api_route("/api/weights", methods=["GET", "HEAD"])
    async def model_weights() -> dict[str, Any]:
        return served.weights

    @app.get("/api/sample")
    async def sample(index: int | None = None) -> dict[str, Any]:
        if samples is None:
            raise ApiError(404, "no test digits are available: the server found no dataset")
        images, labels = samples
        if index is None:
            index = int(rng.integers(len(images)))
        elif not 0 <= index < len(images):
            raise ApiError(422, f"index {_number(index)} is out of range; there are {len(images)} "
                                f"test digits (0 to {len(images) - 1})")
        label = int(labels[index])
        names = served.model.class_names  # the model in use may have been switched
        return {"index": index, "label": label,
                "class_name": names[label] if label < len(names) else str(label),
                "pixels": images[index].reshape(-1).tolist()}

    @app.post("/api/predict")
    async def predict(request: Request) -> dict[str, Any]:
        input28 = await read_drawing(request)
        model = served.model
        return await run_in_threadpool(lambda: _prediction(model, input28))

    return app


class _Served:
    """The model the API answers with; ``use`` switches to another (a run of the Train panel)."""

    def __init__(self, model: Model, have_samples: bool) -> None:
        self.have_samples = have_samples
        self.use(model)

    def use(self, model: Model) -> None:
        if model.sizes[0] != N_PIXELS:
            raise ValueError(f"the model takes {model.sizes[0]} inputs; the page draws 784")
        info, weights = _model_info(model, self.have_samples), _weights(model)
        self.model, self.info, self.weights = model, info, weights


# -- reading a request ------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    stated = request.headers.get("content-length")
    if stated is not None:
        if not stated.strip().isdigit():
            raise ApiError(400, f"Content-Length {stated!r} is not a number of bytes")
        if int(stated) > limit:
            raise ApiError(413, f"the body is {int(stated):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the body is over the limit of {limit:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "the client went away before sending the whole body") from None
    return b"".join(chunks)


def _input28(content_type: str | None, body: bytes,
             decoding: threading.BoundedSemaphore) -> np.ndarray:
    """The 28x28 MNIST-style input for a request body of the given content type."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "image/png":
        return _from_png(body, decoding)
    if media != "application/json":
        raise ApiError(415, f"expected Content-Type application/json or image/png, got "
                            f"{media or 'none'}")
    payload = _json(body)
    if not isinstance(payload, dict) or len(payload.keys() & {"pixels", "image"}) != 1:
        raise ApiError(422, 'expected {"pixels": [784 grey values 0-255]} or '
                            '{"image": "data:image/png;base64,..."}')
    if "pixels" in payload:
        return _from_pixels(payload["pixels"])
    return _from_png(_data_url(payload["image"]), decoding)


def _json(body: bytes) -> Any:
    if not body:
        raise ApiError(400, "the body is empty; expected JSON")
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_not_finite)
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text; expected JSON") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc.msg} at line {exc.lineno} "
                            f"column {exc.colno})") from None
    except RecursionError:
        raise ApiError(400, "the body's JSON is nested too deeply; expected a flat list of "
                            "pixels") from None
    except ValueError:  # an integer of thousands of digits, refused by int()
        raise ApiError(422, "the body holds a number too long to read; grey values must be "
                            "0-255") from None


def _not_finite(constant: str) -> float:
    raise ApiError(422, f"{constant} is not a finite number; grey values must be 0-255")


def _from_pixels(values: Any) -> np.ndarray:
    # What JSON can hold beyond numbers is refused here; the grey values themselves (how many,
    # finite, 0-255, blank) are checked by imaging.from_values, as for any other caller.
    if not isinstance(values, list):
        raise ApiError(422, f"pixels must be a list of {N_PIXELS} numbers, got "
                            f"{type(values).__name__}")
    for i, value in enumerate(values):
        if isinstance(value, list):  # nested: from_values names the shape
            break
        if type(value) not in (int, float):  # bool is an int to Python, not a grey level
            raise ApiError(422, f"pixels[{i}] is {json.dumps(value)[:40]}, not a number")
        if type(value) is int and not -(2**63) <= value < 2**63:  # beyond any array's integers
            raise ApiError(422, f"pixels[{i}] is {_number(value)}, outside the grey levels "
                                "0-255")
    try:
        return imaging.from_values(values, source="pixels")
    except ImageError as exc:
        raise ApiError(422, DRAW_A_DIGIT if "no digit found" in str(exc) else str(exc)) \
            from None


def _number(value: float) -> str:
    """A number as an error message shows it: short, however many digits it has."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 20 else f"{text[:12]}... ({len(text)} characters)"


def _data_url(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("data:"):
        raise ApiError(422, 'image must be a data URL, "data:image/png;base64,..."')
    header, comma, data = value.partition(",")
    if not comma or not header.endswith(";base64"):
        raise ApiError(422, 'image must be a base64 data URL, "data:image/png;base64,..."')
    media = header[len("data:"):-len(";base64")].strip().lower()
    if media != "image/png":
        raise ApiError(415, f"image must be a PNG, got {media or 'no type'}")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "image is not valid base64") from None


def _from_png(data: bytes, decoding: threading.BoundedSemaphore) -> np.ndarray:
    if not data.startswith(PNG_SIGNATURE):
        raise ApiError(415, "the upload is not a PNG image (it lacks the PNG signature)")
    with decoding:  # a full-size image takes ~100 MB on its way to 28x28: a few at a time
        try:
            # The size is checked on what the decoder reads, before it allocates anything.
            grey = imaging.read_image(data, max_pixels=MAX_IMAGE_PIXELS,
                                      max_side=MAX_IMAGE_SIDE)
        except ImageError as exc:
            raise ApiError(422, str(exc)) from None
        if min(grey.shape) < imaging.MIN_SIDE:
            raise ApiError(422, f"the image is {grey.shape[1]}x{grey.shape[0]} pixels, too "
                                "small to hold a digit")
        return _to_mnist(grey)


def _to_mnist(grey: np.ndarray) -> np.ndarray:
    # The grey levels were checked above, so the recipe can only find no digit in them.
    try:
        return imaging.to_mnist(grey, source="the drawing")
    except ImageError:
        raise ApiError(422, DRAW_A_DIGIT) from None


# -- answers ----------------------------------------------------------------------------------


def _prediction(model: Model, input28: np.ndarray) -> dict[str, Any]:
    with np.errstate(all="ignore"):
        fwd = model.forward(input28.reshape(1, N_PIXELS))
    probabilities = fwd.probabilities[0].astype(np.float64)
    if not (np.isfinite(probabilities).all() and np.isfinite(fwd.A[1]).all()):
        raise ApiError(422, "the model's outputs are not finite numbers for this drawing; its "
                            "weights overflow on it")
    label = int(np.argmax(probabilities))
    return {
        "label": label,
        "class_name": model.class_names[label],
        "probabilities": [round(float(p), 6) for p in probabilities],
        "hidden": [round(float(a), 5) for a in fwd.A[1][0]],
        "input28": input28.astype(int).tolist(),
    }


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats as None, so that it is valid JSON."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _model_info(model: Model, have_samples: bool) -> dict[str, Any]:
    meta = model.meta
    config = meta.get("config") or {}
    data = meta.get("datasets") or {}
    return _finite({
        "sizes": list(model.sizes),
        "hidden_units": model.sizes[1],
        "preset": meta.get("preset"),
        "dataset": data.get("name") or config.get("dataset"),
        "class_names": model.class_names,
        "metrics": meta.get("metrics") or {},
        "config": config,
        "preprocessing": model.preprocessing.to_dict(),
        "samples": have_samples,
    })


def _weights(model: Model) -> dict[str, Any]:
    W1, b1 = model.params.W[0], model.params.b[0]
    outgoing = model.params.W[1] if len(model.params.W) == 2 else None
    units = []
    for j in range(W1.shape[1]):
        units.append({
            "index": j,
            "weights": np.round(W1[:, j].astype(np.float64), 4).reshape(28, 28).tolist(),
            "bias": round(float(b1[j]), 5),
            "outgoing": None if outgoing is None else [round(float(w), 5) for w in outgoing[j]],
        })
    return {"limit": float(np.abs(W1).max()), "class_names": model.class_names,
            "units": units}


# -- errors -----------------------------------------------------------------------------------


def _error(request: Request, status: int, message: str) -> JSONResponse:
    log.warning("%s %s -> %d: %s", request.method, request.url.path, status, message)
    return JSONResponse({"error": message}, status_code=status)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _error(request, exc.status, exc.message)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    if exc.status_code == 404:
        message = f"{request.url.path}: not found"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} {request.url.path}: method not allowed" + (
            f"; use {allowed}" if allowed else "")
    return _error(request, exc.status_code, message)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else
                     str(error.get("msg", "invalid")))
    return _error(request, 422, "; ".join(parts) or "invalid request")


# -- Range headers ----------------------------------------------------------------------------

_RANGE = re.compile(r"bytes=\s*(\d*-\d*)(\s*,\s*\d*-\d*)*\s*")


class _RangeCheck:
    """Drops a malformed ``Range`` header, so the file is answered whole (RFC 9110 lets a
    server ignore Range), and answers any error that the framework's own parts send as plain
    text (an unsatisfiable range, say) as JSON, like every other error."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        ranges = [v for k, v in headers if k == b"range"]
        if ranges and not all(_valid_range(v) for v in ranges):
            scope = dict(scope, headers=[(k, v) for k, v in headers if k != b"range"])
        replaced = False

        async def send_json_errors(message: Any) -> None:
            nonlocal replaced
            if replaced:
                return  # the plain-text body of a replaced answer
            if message["type"] == "http.response.start" and message["status"] >= 400:
                kind = dict(message.get("headers") or []).get(b"content-type", b"")
                if not kind.startswith(b"application/json"):
                    replaced = True
                    await _send_json_error(scope, send, message["status"])
                    return
            await send(message)

        await self.app(scope, receive, send_json_errors)


_PLAIN_ERRORS = {416: "the Range asks for bytes beyond the end of the file; leave Range out "
                      "or ask for bytes=0-"}


async def _send_json_error(scope: Any, send: Any, status: int) -> None:
    message = _PLAIN_ERRORS.get(status, "request refused")
    log.warning("%s %s -> %d: %s", scope.get("method"), scope.get("path"), status, message)
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body",
                "body": b"" if scope.get("method") == "HEAD" else body})


def _valid_range(value: bytes) -> bool:
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return False
    if not _RANGE.fullmatch(text):
        return False
    spans = [span.strip().split("-") for span in text.split("=", 1)[1].split(",")]
    return all((a or b) and (not (a and b) or int(a) <= int(b)) for a, b in spans)
