"""ONNX export: the network as a graph any ONNX runtime can run, with no digitnet installed.

The graph does everything :meth:`digitnet.model.Model.predict_proba` does, in float32::

    pixels ─Cast─ Mul(scale) ─ Sub(mean) ─ Div(std) ─→ X     x = (pixels * scale - mean) / std
    X ─Gemm(W1, b1)─ Z1 ─Relu─ A1                             Z1 = X @ W1 + b1, A1 = relu(Z1)
    ...                                                       (Gemm + Relu per hidden layer)
    A(L-1) ─Gemm(WL, bL)─ ZL ─Softmax(axis=1)─→ probabilities float32 [N, n_classes]
    probabilities ─ArgMax(axis=1)─→ label                     int64 [N]

The input ``pixels`` is ``uint8 [N, n_inputs]`` (784 for MNIST: a 28x28 image row by row, 0-255)
unless ``input_type="float32"`` asks for float pixels 0-255 instead; the graph's ``doc_string``
and the ``input_type`` metadata say which. ``label`` is the index of the most probable output:
the digit, for MNIST. The model's ``metadata_props`` record the digitnet version, preset, layer
sizes, preprocessing and the SHA-256 of the weights (the same one the model file records).

Opset 21 and IR version 10 are read by onnxruntime 1.18 and later (the ``onnx`` extra's minimum).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digitnet._version import __version__
from digitnet.errors import ConfigError, DigitnetError, ModelFileError
from digitnet.guard import atomic_write_bytes, check_output
from digitnet.model import Model

if TYPE_CHECKING:
    import onnx

__all__ = ["OPSET", "IR_VERSION", "INPUT_TYPES", "to_onnx", "to_onnx_model"]

OPSET = 21
IR_VERSION = 10
INPUT_TYPES = ("uint8", "float32")


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise DigitnetError("ONNX export needs the onnx package: "
                            "pip install 'digitnet[onnx]'") from None
    return onnx


def _as_model(model: Any) -> Model:
    if isinstance(model, Model):
        return model
    if hasattr(model, "to_model"):  # a fitted DigitNetClassifier
        return model.to_model()
    raise TypeError(f"expected a digitnet Model or DigitNetClassifier, got "
                    f"{type(model).__name__}")


def _description(model: Model, input_type: str) -> str:
    n_inputs, n_classes = model.sizes[0], model.sizes[-1]
    pre = model.preprocessing
    values = "values 0-255" if np.isclose(pre.scale, 1 / 255) else "values as trained on"
    return (
        f"digitnet {'-'.join(map(str, model.sizes))} network. Input 'pixels': {input_type} "
        f"[N, {n_inputs}], one image per row (28x28 row by row for MNIST), {values}. "
        f"Preprocessing in the graph: x = (pixels * {pre.scale!r} - {pre.mean!r}) / "
        f"{pre.std!r}. Each hidden layer Gemm + Relu; output Gemm + Softmax(axis=1). "
        f"Outputs: 'probabilities' float32 [N, {n_classes}], 'label' int64 [N] (argmax)."
    )


def _metadata(model: Model, input_type: str) -> dict[str, str]:
    from digitnet.modelfile import weights_sha256

    return {
        "digitnet_version": __version__,
        "preset": str(model.meta.get("preset", "")),
        "sizes": json.dumps(list(model.sizes)),
        "weights_sha256": weights_sha256(model.params),
        "input_type": input_type,
        "preprocessing": json.dumps(model.preprocessing.to_dict()),
        "class_names": json.dumps(model.class_names),
    }


def _nodes(model: Model) -> tuple[list[Any], list[Any]]:
    """The graph's nodes and initializers (constants), in order."""
    onnx = _onnx()
    from onnx import numpy_helper

    helper = onnx.helper
    pre = model.preprocessing

    def const(name: str, value: Any) -> Any:
        return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)

    initializers = [const("scale", pre.scale), const("mean", pre.mean), const("std", pre.std)]
    nodes = [
        helper.make_node("Cast", ["pixels"], ["pixels_float"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Mul", ["pixels_float", "scale"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["A0"]),  # A0 = X, the network's input
    ]
    last = len(model.params.W)
    for layer, (W, b) in enumerate(zip(model.params.W, model.params.b, strict=True), start=1):
        initializers += [const(f"W{layer}", W), const(f"b{layer}", b)]
        nodes.append(helper.make_node("Gemm", [f"A{layer - 1}", f"W{layer}", f"b{layer}"],
                                      [f"Z{layer}"]))  # Z1 = A0 @ W1 + b1
        if layer < last:
            nodes.append(helper.make_node("Relu", [f"Z{layer}"], [f"A{layer}"]))
    nodes += [
        helper.make_node("Softmax", [f"Z{last}"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    return nodes, initializers


def to_onnx_model(model: Any, input_type: str = "uint8") -> onnx.ModelProto:
    """The network as a checked in-memory ONNX model; see the module docstring for the graph.

    Parameters
    ----------
    model : digitnet.model.Model or DigitNetClassifier
        The network to export (float64 weights are stored as float32).
    input_type : {"uint8", "float32"}
        Element type of the ``pixels`` input; either way the values are pixels 0-255.

    Returns
    -------
    onnx.ModelProto
        Opset :data:`OPSET`, IR version :data:`IR_VERSION`, accepted by
        ``onnx.checker.check_model``.
    """
    onnx = _onnx()
    model = _as_model(model)
    if input_type not in INPUT_TYPES:
        raise ConfigError(f"unknown input type {input_type!r}; choose one of "
                         f"{', '.join(INPUT_TYPES)}")
    helper = onnx.helper
    elem = onnx.TensorProto.UINT8 if input_type == "uint8" else onnx.TensorProto.FLOAT
    n_inputs, n_classes = model.sizes[0], model.sizes[-1]
    nodes, initializers = _nodes(model)
    description = _description(model, input_type)
    graph = helper.make_graph(
        nodes, "digitnet", [helper.make_tensor_value_info("pixels", elem, ["N", n_inputs])],
        [helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT,
                                       ["N", n_classes]),
         helper.make_tensor_value_info("label", onnx.TensorProto.INT64, ["N"])],
        initializer=initializers, doc_string=description)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name="digitnet",
                              producer_version=__version__, doc_string=description)
    helper.set_model_props(proto, _metadata(model, input_type))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def to_onnx(model: Any, path: str | Path, input_type: str = "uint8",
            inputs: Iterable[str | Path] = ()) -> Path:
    """Write the network as an ONNX file, atomically (temporary file, then rename).

    Parameters
    ----------
    model : digitnet.model.Model or DigitNetClassifier
    path : str or Path
        The file to write, e.g. ``model.onnx``; missing folders are created.
    input_type : {"uint8", "float32"}
        Element type of the ``pixels`` input; see :func:`to_onnx_model`.
    inputs : iterable of str or Path
        Files the model was read from: ``path`` must not be one of them.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ModelFileError
        If ``path`` is a folder, one of ``inputs``, or cannot be written.
    DigitnetError
        If the onnx package is not installed.

    Examples
    --------
    >>> import onnxruntime
    >>> to_onnx(model, "model.onnx")
    >>> session = onnxruntime.InferenceSession("model.onnx")
    >>> probabilities, label = session.run(None, {"pixels": images.reshape(-1, 784)})
    """
    path = check_output(path, inputs, example="model.onnx", error=ModelFileError)
    data = to_onnx_model(model, input_type).SerializeToString()
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be written ({exc.strerror or exc})") from None
    return path
