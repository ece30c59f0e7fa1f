"""More of ``digitnet bench``: onnxruntime as an inference peer, the CPU's record, two ratios.

- **onnxruntime** runs the model as ``digitnet export`` writes it (uint8 pixels in, the
  preprocessing inside the graph) on the same uint8 test images, on one thread: what a user
  would deploy with.
- **The CPU**: its model, the vector features the kernels' paths depend on and the path each
  kernel takes there (:func:`digitnet.fast.cpu.paths`).
- **Ratios**: ``inference_vs_onnxruntime`` (digitnet's images/s over onnxruntime's) and
  ``epoch_vs_floor`` (digitnet's epoch at batch 128 over the bench's FLOP floor for it).
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from digitnet.fast import cpu
from digitnet.model import Model

__all__ = ["PEERS", "missing", "cpu_record", "onnxruntime_inference", "ratios"]

PEERS = {"onnxruntime": "onnxruntime", "onnx": "onnx"}  # package name: module


def missing() -> list[str]:
    """The peers of this module that are not installed."""
    return [name for name, module in PEERS.items() if importlib.util.find_spec(module) is None]


def cpu_record() -> dict[str, Any]:
    """The CPU model, its vector features and the kernels' paths on it."""
    return {"cpu": cpu.cpu_model(), "cpu_id": cpu.cpu_id(),
            "vector_features": cpu.vector_features(), "paths": cpu.paths()}


def session(model: Model, threads: int = 1) -> Any:
    """An onnxruntime session over the exported model (uint8 input), on ``threads`` threads."""
    import onnxruntime as ort

    from digitnet.export import to_onnx_model

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    proto = to_onnx_model(model, "uint8").SerializeToString()
    return ort.InferenceSession(proto, options, providers=["CPUExecutionProvider"])


def onnxruntime_inference(model: Model, images: np.ndarray, repeats: int, latency_calls: int,
                          expected: np.ndarray | None = None, threads: int = 1
                          ) -> dict[str, Any]:
    """Images per second of onnxruntime on ``images`` (uint8, (n, 784)), the median of
    ``repeats`` passes after a warm-up; one image's latency as the bench takes it; and the
    share of its labels equal to ``expected`` (digitnet's)."""
    ort_session = session(model, threads)
    pixels = np.ascontiguousarray(images.reshape(len(images), -1), dtype=np.uint8)

    def labels(batch: np.ndarray) -> np.ndarray:
        return ort_session.run(["label"], {"pixels": batch})[0]

    seconds = _median_time(lambda: labels(pixels), repeats)
    one = pixels[:1]
    latency = _per_call(lambda: labels(one), latency_calls)
    out: dict[str, Any] = {"images_per_second": len(pixels) / seconds,
                           "single_image_seconds": latency, "threads": threads,
                           "input": "the uint8 images as loaded, through the exported model"}
    if expected is not None:
        out["labels_agree"] = float(np.mean(labels(pixels) == expected))
    return out


def ratios(result: dict[str, Any]) -> dict[str, float]:
    """``inference_vs_onnxruntime`` and ``epoch_vs_floor`` from a bench result (NaN where a
    figure is missing)."""
    speed = result.get("inference", {}).get("images_per_second", {})
    epoch = result.get("epoch_seconds", {}).get("128", {}).get("digitnet", math.nan)
    floor = result.get("floor", {}).get("epoch_flop_floor_s", math.nan)
    return {"inference_vs_onnxruntime": (speed.get("digitnet", math.nan)
                                         / speed.get("onnxruntime", math.nan)),
            "epoch_vs_floor": epoch / floor}


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _per_call(fn: Callable[[], Any], calls: int) -> float:
    """Median over 5 rounds of the mean time of ``calls`` calls (as the bench's own)."""
    fn()
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds)
