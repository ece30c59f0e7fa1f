"""onnxruntime as an inference peer: the model as ``digitnet export`` writes it (uint8 pixels
in, the preprocessing inside the graph), run on the same uint8 test images on one thread. It is
what a user would deploy with."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

from digitnet.model import Model

__all__ = ["MODULES", "missing", "session", "labeller"]

MODULES = {"onnxruntime": "onnxruntime", "onnx": "onnx"}  # package name: module


def missing() -> list[str]:
    """The packages of this peer that are not installed."""
    return [name for name, module in MODULES.items() if importlib.util.find_spec(module) is None]


def session(model: Model, threads: int = 1) -> Any:
    """An onnxruntime session over the exported model (uint8 input): ``threads`` intra-op
    threads, sequential execution, every graph optimisation."""
    import onnxruntime as ort

    from digitnet.export import to_onnx_model

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    proto = to_onnx_model(model, "uint8").SerializeToString()
    return ort.InferenceSession(proto, options, providers=["CPUExecutionProvider"])


def labeller(model: Model, threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """A function from uint8 images (n, 784) to onnxruntime's labels for them."""
    ort_session = session(model, threads)

    def labels(images: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(images.reshape(len(images), -1), dtype=np.uint8)
        out: np.ndarray = ort_session.run(["label"], {"pixels": pixels})[0]
        return out

    return labels
