"""``POST /api/explain``: the forward pass of a drawing with its numbers, for the page's panel.

The body is what ``/api/predict`` takes (JSON pixels, a PNG data URL, or raw PNG bytes) and goes
through the same recipe. The answer has every array of :func:`digitnet.explain.explain` by name,
rounded to 6 significant figures: ``x`` (784), per layer ``z{l}``, ``b{l}``, ``a{l}`` (hidden)
and ``contributions{l}`` (after the first), then ``contributions`` (the output layer's
``a[j]·W[j,k]`` table), ``exponentials``, ``probabilities``, and ``silent`` (the first hidden
layer's units with a1 = 0), ``label``, ``class_names`` and ``input28``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from digitnet import explain
from digitnet.model import Model

__all__ = ["router"]


def _rounded(array: np.ndarray) -> Any:
    return np.vectorize(lambda v: float(f"{v:.6g}"), otypes=[float])(array).tolist()


def explanation(model: Model, input28: np.ndarray) -> dict[str, Any]:
    """The JSON answer for one 28x28 input."""
    result = explain.explain(model, input28)
    answer: dict[str, Any] = {name: _rounded(value) for name, value in result.arrays().items()}
    answer.update(
        label=result.label,
        class_names=list(result.class_names),
        sizes=[len(result.x), *(len(layer.z) for layer in result.layers)],
        silent=result.layers[0].silent.tolist() if len(result.layers) > 1 else [],
        input28=result.pixels.astype(int).tolist(),
    )
    return answer


def router(current: Callable[[], Model],
           read_drawing: Callable[[Request], Awaitable[np.ndarray]]) -> APIRouter:
    """The explain endpoint for the model ``current()`` returns (the one the page uses, which
    the Train panel can switch); ``read_drawing`` reads a request's drawing as the app does for
    /api/predict, with its limits and its errors."""
    api = APIRouter()

    @api.post("/api/explain")
    async def explain_drawing(request: Request) -> dict[str, Any]:
        input28 = await read_drawing(request)
        model = current()
        return await run_in_threadpool(lambda: explanation(model, input28))

    return api
