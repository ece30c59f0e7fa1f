"""Save and load models: safetensors arrays with JSON metadata, written atomically.

A model file holds the arrays ``W1, b1, W2, b2, ...`` and, in the safetensors header's metadata,
``format = "digitnet-model"``, ``format_version`` and ``digitnet``: a JSON object with the
architecture, preprocessing, training config, metrics, history, dataset hashes, the digitnet
version and a SHA-256 of the weights. JSON has no NaN, so a figure that does not exist (the
validation loss of a run without a validation set) is stored as null. Loading runs no code
(safetensors has no pickle), checks every shape against the metadata, and refuses anything that
is not a digitnet model.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from digitnet._version import __version__
from digitnet.errors import ModelFileError
from digitnet.guard import atomic_write_bytes, check_output, read_file
from digitnet.model import Model, Preprocessing
from digitnet.network import Params

__all__ = ["FORMAT", "FORMAT_VERSION", "save", "load", "to_bytes", "from_bytes",
           "weights_sha256", "json_safe"]

FORMAT = "digitnet-model"
FORMAT_VERSION = 1
MAX_BYTES = 1 << 30  # a 784-10-10 model is 32 KB; anything near this is not one of ours
_DTYPES = {"F32": np.float32, "F64": np.float64}


def weights_sha256(params: Params) -> str:
    """SHA-256 over the parameters' names, shapes, dtypes and bytes, in layer order."""
    digest = hashlib.sha256()
    for name, array in params.arrays().items():
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def to_bytes(model: Model) -> bytes:
    """The model as safetensors bytes."""
    from safetensors.numpy import save as st_save

    meta = dict(model.meta)
    meta.update(
        architecture={"sizes": list(model.sizes), "hidden_activation": "relu",
                      "output_activation": "softmax"},
        preprocessing=model.preprocessing.to_dict(),
        weights_sha256=weights_sha256(model.params),
        digitnet_version=__version__,
    )
    tensors = {k: np.ascontiguousarray(v) for k, v in model.params.arrays().items()}
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
              "digitnet": json.dumps(json_safe(meta), allow_nan=False, default=_json_default)}
    return st_save(tensors, metadata=header)


def json_safe(value: Any) -> Any:
    """``value`` with NumPy values as Python ones, paths as strings and NaN or ±inf as None."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _json_default(value: Any) -> Any:
    raise TypeError(f"cannot store {type(value).__name__} in model metadata")


def save(model: Model, path: str | Path, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Write the model to ``path`` atomically (temporary file, then rename); returns the path.

    ``path`` must not be one of ``inputs``, the files the model was made from.
    """
    path = check_output(path, inputs, example="model.safetensors", error=ModelFileError)
    try:
        atomic_write_bytes(path, to_bytes(model))
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be written ({exc.strerror or exc})") from None
    return path


def load(path: str | Path) -> Model:
    """Read a model file written by :func:`save`.

    Raises
    ------
    ModelFileError
        If the file is missing, truncated, not a digitnet model, from a newer format, has shapes
        that disagree with its metadata, non-finite weights, weights that differ from the
        recorded SHA-256 (modified or corrupted), or metadata of the wrong types (class names,
        metrics, history, dataset hashes).
    """
    path = Path(path)
    return from_bytes(read_bytes(path), str(path))


def read_bytes(path: Path, what: str = "model file") -> bytes:
    """The bytes of a model or checkpoint file, refusing what cannot be one before reading.

    Raises
    ------
    ModelFileError
        If ``path`` is missing, a folder, not a regular file, too large or unreadable; the
        message calls the file ``what``.
    """
    return read_file(path, what=what, limit=MAX_BYTES, error=ModelFileError).data


# Files people mistake for model files, by their first bytes.
_OTHER_FORMATS = ((b"\x80", "a Python pickle (digitnet never unpickles)"),
                  (b"PK\x03\x04", "a zip archive (a PyTorch .pt file or an .npz?)"),
                  (b"\x93NUMPY", "a NumPy .npy file"),
                  (b"\x89HDF", "an HDF5 file (a Keras .h5 model?)"),
                  (b"\x08", "an ONNX or other protobuf file"))


def _header(data: bytes, source: str) -> dict[str, Any]:
    if len(data) < 8:
        raise ModelFileError(f"{source}: truncated or empty ({len(data)} bytes); not a model file")
    (n,) = struct.unpack("<Q", data[:8])
    if n == 0 or 8 + n > len(data):
        # A length no model file has: the first bytes are another format's signature.
        other = next((what for magic, what in _OTHER_FORMATS if data.startswith(magic)), None)
        if other and n > MAX_BYTES:
            raise ModelFileError(f"{source}: not a safetensors model file; it looks like {other}")
        raise ModelFileError(f"{source}: not a safetensors model file (header length {n} does "
                             f"not fit in {len(data)} bytes; truncated or another format)")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ModelFileError(f"{source}: not a safetensors model file (unreadable header)") \
            from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{source}: not a safetensors model file (header is not an object)")
    needed = 8 + n + max([_data_end(entry) for entry in header.values()] or [0])
    if needed > len(data):
        raise ModelFileError(f"{source}: truncated ({len(data):,} bytes; its header describes "
                             f"{needed:,})")
    return header


def _data_end(entry: Any) -> int:
    """Where an array's data ends, as a header entry states it (0 when it states none)."""
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if isinstance(offsets, list) and len(offsets) == 2 and isinstance(offsets[1], int):
        return offsets[1]
    return 0


def _metadata(header: dict[str, Any], source: str) -> dict[str, Any]:
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{source}: not a digitnet model (a safetensors file without "
                             "digitnet metadata)")
    try:
        version = int(meta.get("format_version", ""))
    except (TypeError, ValueError):
        raise ModelFileError(f"{source}: unreadable format_version "
                             f"{_shown(meta.get('format_version'))}") from None
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{source}: written by a newer digitnet (model format {version}, "
                             f"this version reads up to {FORMAT_VERSION}); upgrade digitnet")
    if "digitnet" not in meta:
        raise ModelFileError(f"{source}: damaged model file (its metadata lacks the 'digitnet' "
                             "entry)")
    try:
        info = json.loads(meta["digitnet"])
    except (TypeError, ValueError, RecursionError):
        raise ModelFileError(f"{source}: damaged digitnet metadata (not JSON)") from None
    if not isinstance(info, dict):
        raise ModelFileError(f"{source}: damaged digitnet metadata (not an object)")
    for key in ("architecture", "preprocessing", "weights_sha256"):
        if key not in info:
            raise ModelFileError(f"{source}: digitnet metadata lacks {key!r}")
    return info


def _sizes(info: dict[str, Any], source: str) -> list[int]:
    sizes = info["architecture"].get("sizes") if isinstance(info["architecture"], dict) else None
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(type(s) is int and 0 < s <= 1 << 20 for s in sizes)):
        raise ModelFileError(f"{source}: metadata gives no valid layer sizes ({_shown(sizes)})")
    if sizes[-1] < 2:
        raise ModelFileError(f"{source}: the model has {sizes[-1]} output class; a classifier "
                             "needs at least 2, so this model cannot tell digits apart")
    return sizes


def _check_tensor_types(header: dict[str, Any], source: str) -> None:
    """Refuse tensors of a type digitnet does not read (BF16, F16, F8, integers, ...) by name,
    from the header, before the safetensors loader meets a type NumPy has no name for."""
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        kind = entry.get("dtype") if isinstance(entry, dict) else None
        if kind not in _DTYPES:
            raise ModelFileError(f"{source}: array {_shown(name, 20)} has tensor type "
                                 f"{_shown(kind, 20)}; digitnet reads F32 or F64 (float32 or "
                                 "float64) weights, so convert the model to float32")


def _params(data: bytes, header: dict[str, Any], sizes: list[int], source: str) -> Params:
    from safetensors.numpy import load as st_load

    _check_tensor_types(header, source)
    try:
        arrays = st_load(data)
    except Exception as exc:  # noqa: BLE001 - the loader's own errors vary by version and type
        detail = " ".join(str(exc).split())[:80] or type(exc).__name__
        raise ModelFileError(f"{source}: damaged safetensors data ({detail})") from None
    W: list[np.ndarray] = []
    b: list[np.ndarray] = []
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=False), start=1):
        for name, shape, out in ((f"W{layer}", (fan_in, fan_out), W),
                                 (f"b{layer}", (fan_out,), b)):
            if name not in arrays:
                raise ModelFileError(f"{source}: missing array {name}")
            array = arrays[name]
            if array.shape != shape:
                raise ModelFileError(f"{source}: {name} has shape {array.shape}, the metadata "
                                     f"says {shape}")
            if array.dtype.type not in _DTYPES.values():
                raise ModelFileError(f"{source}: {name} has dtype {array.dtype}, expected "
                                     "float32 or float64")
            if not np.isfinite(array).all():
                raise ModelFileError(f"{source}: {name} holds non-finite values (NaN or inf)")
            out.append(array)
    extra = set(arrays) - {f"{p}{k}" for k in range(1, len(sizes)) for p in "Wb"}
    if extra:
        raise ModelFileError(f"{source}: unexpected arrays {', '.join(sorted(extra))}")
    return Params(W, b)


def _preprocessing(info: dict[str, Any], source: str) -> Preprocessing:
    raw = info["preprocessing"]
    try:
        pre = Preprocessing(float(raw["scale"]), float(raw["mean"]), float(raw["std"]))
    except (KeyError, TypeError, ValueError, OverflowError):
        raise ModelFileError(f"{source}: unreadable preprocessing {_shown(raw)}") from None
    if not all(np.isfinite([pre.scale, pre.mean, pre.std])) or pre.std <= 0:
        raise ModelFileError(f"{source}: invalid preprocessing {_shown(raw)}")
    return pre


# What the commands read from a model's metadata beyond the weights, and the JSON type each
# must have when present: a damaged file is refused here rather than failing in a command.
_OPTIONAL = {"config": dict, "metrics": dict, "history": dict, "datasets": dict,
             "class_names": list, "preset": str, "digitnet_version": str}
_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string"}


def _check_optional(info: dict[str, Any], n_out: int, source: str) -> None:
    def damaged(what: str) -> ModelFileError:
        return ModelFileError(f"{source}: damaged digitnet metadata ({what})")

    for key, kind in _OPTIONAL.items():
        if key in info and not isinstance(info[key], kind):
            raise damaged(f"{key} should be {_TYPE_NAMES[kind]}, found {_shown(info[key])}")
    names = info.get("class_names")
    if names is not None and (len(names) != n_out
                              or not all(isinstance(name, str) for name in names)):
        raise damaged(f"class_names should be {n_out} names, found {_shown(names)}")
    for key, value in info.get("metrics", {}).items():
        if not _number_or_null(value):
            raise damaged(f"metric {_shown(key)} should be a number, found {_shown(value)}")
    lengths = set()
    for key, values in info.get("history", {}).items():
        if not (isinstance(values, list) and all(_number_or_null(v) for v in values)):
            raise damaged(f"history {_shown(key)} should be a list of numbers")
        lengths.add(len(values))
    if len(lengths) > 1:
        raise damaged("history lists should all have one entry per epoch, found lengths "
                      f"{', '.join(map(str, sorted(lengths)))}")
    config = info.get("config", {})
    for key in ("dataset", "preset"):
        if key in config and not isinstance(config[key], str):
            raise damaged(f"config {key} should be a string, found {_shown(config[key])}")
    data = info.get("datasets", {})
    if not isinstance(data.get("name", ""), str):
        raise damaged(f"datasets name should be a string, found {_shown(data['name'])}")
    for split in ("train", "test"):
        part = data.get(split, {})
        hashes = part.get("sha256", {}) if isinstance(part, dict) else None
        if not (isinstance(hashes, dict)
                and all(isinstance(v, str) for v in hashes.values())):
            raise damaged(f"datasets {split} should hold the files' SHA-256 hashes")


def _number_or_null(value: Any) -> bool:
    return value is None or isinstance(value, (int, float))


def _shown(value: Any, limit: int = 60) -> str:
    """A value for a one-line message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def from_bytes(data: bytes, source: str = "<bytes>") -> Model:
    """Parse a model file's bytes; see :func:`load`."""
    header = _header(data, source)
    info = _metadata(header, source)
    sizes = _sizes(info, source)
    _check_optional(info, sizes[-1], source)
    params = _params(data, header, sizes, source)
    if weights_sha256(params) != info["weights_sha256"]:
        raise ModelFileError(f"{source}: weights differ from the SHA-256 recorded when the "
                             "model was saved: the file was modified or corrupted")
    model = Model(params, _preprocessing(info, source), info)
    _check_outputs_finite(model, source)
    return model


def _check_outputs_finite(model: Model, source: str) -> None:
    """Refuse a model whose outputs are not finite numbers on probe images.

    Weights and preprocessing can each be finite and still overflow together (a standard
    deviation of 1e-320, weights of 1e30): such a model would answer NaN for every image.
    """
    n_inputs = model.sizes[0]
    probes = np.stack([np.zeros(n_inputs), np.full(n_inputs, 255.0),
                       np.arange(n_inputs) % 256.0, 255.0 - np.arange(n_inputs) % 256.0])
    with np.errstate(all="ignore"):
        probabilities = model.forward(probes).probabilities
    if not np.isfinite(probabilities).all():
        raise ModelFileError(f"{source}: the model's outputs are not finite numbers (NaN or "
                             "inf) on test images; its weights or preprocessing overflow, so "
                             "it cannot read digits; retrain it")
