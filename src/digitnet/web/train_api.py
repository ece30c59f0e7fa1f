"""The Train panel's API: start a run, follow it as server-sent events, stop it, use it.

Endpoints
---------
``GET /api/train``
    Whether this server trains (and why not), whether a run is going (``busy``), the presets,
    the limits, whether the training data is there (and how to provide it when it is not).
    When it is, it starts loading in the background, so the first run need not wait for it.
``POST /api/train``
    JSON of :class:`~digitnet.training.TrainConfig` fields, e.g. ``{"preset": "default",
    "hidden": 16, "epochs": 3}``; answers ``202 {"run": "<id>"}``. A bad option: 422, naming it
    and what would work; a run already going: 409; no training data: 503; training off: 403.
``GET /api/train/<id>/events``
    ``text/event-stream`` of the run's events (see :mod:`digitnet.web.runs`): what happened so
    far, then what happens, to the closing ``done``, ``stopped`` or ``error``. Each event's
    ``id`` is its index, so a browser that reconnects (``Last-Event-ID``) resumes where it was.
``POST /api/train/<id>/stop``
    Ends the run at the trainer's next step boundary; ``stopped`` follows with the weights so
    far (which ``use`` and ``model`` then serve).
``POST /api/train/<id>/use``
    Makes ``/api/predict``, ``/api/model`` and ``/api/weights`` answer with the run's model.
``GET /api/train/<id>/model``
    The run's model file: the safetensors ``digitnet train`` writes.

An unknown id is 404. Errors are ``{"error": message}`` (and ``"field"`` for a bad option).
"""

# Annotations are evaluated where they are written (no __future__ import): FastAPI reads the
# endpoints' local dependency type below from them.
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from digitnet import modelfile, training
from digitnet.model import Model
from digitnet.optim import OPTIMIZERS, SCHEDULES
from digitnet.web.runs import Run, RunManager, RunRefused, TrainSettings

__all__ = ["attach", "MAX_OPTIONS_BODY"]

log = logging.getLogger("digitnet.web")

MAX_OPTIONS_BODY = 10_000
"""The largest body ``POST /api/train`` reads, in bytes: a few options."""


def attach(app: FastAPI, settings: TrainSettings | None, use: Callable[[Model], None]
           ) -> RunManager:
    """Add the training endpoints to ``app``; ``use`` switches the served model.

    With ``settings`` None, training is off and the page says so.
    """
    settings = settings or TrainSettings(allowed=False, reason="this server was started "
                                                               "without training")
    manager = RunManager(settings)
    app.state.training_runs = manager
    app.add_exception_handler(RunRefused, _refused)  # type: ignore[arg-type]
    app.include_router(_router(manager, use))
    return manager


def _router(manager: RunManager, use: Callable[[Model], None]) -> APIRouter:
    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(manager.close)  # stopping the server stops the run

    router = APIRouter(lifespan=lifespan)

    def find_run(run_id: str) -> Run:
        return manager.get(run_id)

    TheRun = Annotated[Run, Depends(find_run)]

    @router.get("/api/train")
    async def train_info() -> dict[str, Any]:
        settings = manager.settings
        missing = await run_in_threadpool(manager.missing_data) if settings.allowed else None
        if settings.allowed and missing is None:
            manager.prefetch()
        return {"allowed": settings.allowed, "reason": settings.reason or None,
                "busy": manager.busy, "missing_data": missing,
                "limits": settings.limits.to_dict(), "presets": training.PRESETS,
                "defaults": training.TrainConfig().to_dict(),
                "choices": {"preset": list(training.PRESETS), "optimizer": list(OPTIMIZERS),
                            "schedule": list(SCHEDULES)}}

    @router.post("/api/train", status_code=202)
    async def start(request: Request) -> dict[str, str]:
        options = _options(await _body(request))
        run = await run_in_threadpool(manager.start, options)
        log.info("training run %s started: %s", run.id[:6], _summary(run.config))
        return {"run": run.id}

    @router.get("/api/train/{run_id}/events", response_class=EventSourceResponse)
    async def events(request: Request, run: TheRun) -> AsyncIterator[ServerSentEvent]:
        after = _last_event_id(request.headers.get("last-event-id"))
        async for index, kind, text in run.follow(after):
            yield ServerSentEvent(event=kind, raw_data=text, id=str(index))

    @router.post("/api/train/{run_id}/stop")
    async def stop(run: TheRun) -> dict[str, str]:
        run.stop()
        return {"run": run.id, "state": "stopping" if run.running else run.state}

    @router.post("/api/train/{run_id}/use")
    async def use_model(run: TheRun) -> dict[str, Any]:
        model = _model_of(run)
        await run_in_threadpool(use, model)
        log.info("serving the model of training run %s", run.id[:6])
        return {"run": run.id, "sizes": list(model.sizes)}

    @router.get("/api/train/{run_id}/model")
    async def download(run: TheRun) -> Response:
        model = _model_of(run)
        data = await run_in_threadpool(modelfile.to_bytes, model)
        name = f"digitnet-{run.config.preset}-{'-'.join(map(str, model.sizes))}.safetensors"
        return Response(data, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    return router


def _model_of(run: Run) -> Model:
    if run.model is None:
        if run.running:
            raise RunRefused(409, "the run is still training: wait for it to end, or stop it")
        raise RunRefused(409, "the run failed, so it has no model")
    return run.model


async def _body(request: Request) -> bytes:
    stated = request.headers.get("content-length", "")
    if stated.strip().isdigit() and int(stated) > MAX_OPTIONS_BODY:
        raise RunRefused(413, f"the body is {int(stated):,} bytes; training options take at "
                              f"most {MAX_OPTIONS_BODY:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_OPTIONS_BODY:
            raise RunRefused(413, f"the body is over the limit of {MAX_OPTIONS_BODY:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _options(body: bytes) -> Any:
    if not body.strip():
        return {}  # the default preset
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_not_finite)
    except UnicodeDecodeError:
        raise RunRefused(400, "the body is not UTF-8 text; expected JSON") from None
    except json.JSONDecodeError as exc:
        raise RunRefused(400, f"the body is not valid JSON ({exc.msg} at line {exc.lineno} "
                              f"column {exc.colno})") from None
    except (RecursionError, ValueError):
        raise RunRefused(422, "the body holds a value too deep or too long to read; expected "
                              "an object of training options") from None


def _not_finite(constant: str) -> float:
    raise RunRefused(422, f"{constant} is not a finite number; training options take finite "
                          "numbers")


def _last_event_id(value: str | None) -> int:
    """The index of the last event a reconnecting client has, or -1 (from the start)."""
    if value is None or not value.strip().isdigit() or len(value) > 9:
        return -1
    return int(value)


def _summary(config: training.TrainConfig) -> str:
    steps = (f"{config.iterations} iterations" if config.iterations
             else f"{config.epochs} epochs")
    return f"{config.preset} preset, {config.hidden} hidden x {config.layers}, {steps}"


async def _refused(request: Request, exc: RunRefused) -> JSONResponse:
    log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.message)
    body: dict[str, Any] = {"error": exc.message}
    if exc.field is not None:
        body["field"] = exc.field
    return JSONResponse(body, status_code=exc.status)
