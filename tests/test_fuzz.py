"""Fuzzing the readers of untrusted input: they raise digitnet's own errors and nothing else.

Each target is fed arbitrary bytes and, more usefully, valid input with a few bytes flipped, cut
or inserted, and structure-aware edits (IDX headers with other dimensions, PNG chunks with valid
CRCs, model metadata with other JSON values), so the fuzzing reaches past the first check. What
a reader accepts must be well formed: the checks after each call say what that means.

The example counts scale with ``DIGITNET_FUZZ_EXAMPLES`` (500 unless set); ``pytest --fuzz``
raises it (see conftest.py).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageDraw

from digitnet import datasets, imaging, modelfile
from digitnet.errors import DataError, DigitnetError, ImageError, ModelFileError
from digitnet.model import Model, Preprocessing
from digitnet.network import init_params
from tiny_data import idx_bytes

FUZZ_EXAMPLES = int(os.environ.get("DIGITNET_FUZZ_EXAMPLES", "500"))


def examples(share: float) -> int:
    """A target's example count: ``share`` of DIGITNET_FUZZ_EXAMPLES (the slow ones get less)."""
    return max(20, round(FUZZ_EXAMPLES * share))


def fuzz_settings(share: float) -> Callable[[Any], Any]:
    return settings(max_examples=examples(share), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --------------------------------------------------------------------------------------------
# Mutations of valid input


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], hot: int = 0) -> bytes:
    """One of ``seeds`` with a few bytes flipped, inserted or removed, perhaps cut short.

    Half the edits land in the first ``hot`` bytes when ``hot`` is given (a header, where an
    edit changes what the reader believes rather than one pixel).
    """
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        end = min(hot, len(data)) if hot and draw(st.booleans()) else len(data)
        at = draw(st.integers(0, end - 1))
        edit = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        if edit == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "set":
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, ord(","), ord('"')]))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at:at + draw(st.integers(1, 8))]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


# --------------------------------------------------------------------------------------------
# Data files: IDX, CSV, npz, chosen by content through load_file


_RNG = np.random.default_rng(7)
IMAGES = _RNG.integers(0, 256, size=(2, 28, 28), dtype=np.uint8)
LABELS = np.array([3, 9], dtype=np.uint8)


def csv_bytes(header: bool, label: bool) -> bytes:
    lines = []
    if header:
        lines.append(",".join((["label"] if label else []) + [f"pixel{i}" for i in range(784)]))
    for image, y in zip(IMAGES, LABELS, strict=True):
        lines.append(",".join(([str(y)] if label else []) + [str(v) for v in image.ravel()]))
    return ("\n".join(lines) + "\n").encode()


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


DATA_SEEDS = [
    idx_bytes(IMAGES),
    idx_bytes(IMAGES.reshape(2, 784)),
    idx_bytes(LABELS),
    idx_bytes(IMAGES.astype(">i4"), 0x0C),
    csv_bytes(header=True, label=True),
    csv_bytes(header=True, label=False),
    csv_bytes(header=False, label=True),
    npz_bytes(x_train=IMAGES, y_train=LABELS, x_test=IMAGES[:1], y_test=LABELS[:1]),
]


@st.composite
def idx_headers(draw: st.DrawFn) -> bytes:
    """An IDX header that claims any type and dimensions, followed by a few bytes."""
    dims = draw(st.lists(st.sampled_from([0, 1, 2, 28, 784, 2**31, 2**32 - 1]), max_size=5))
    type_byte = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF]))
    ndim = draw(st.sampled_from([len(dims), 0, 255]))
    header = bytes([0, 0, type_byte, ndim]) + b"".join(struct.pack(">I", d) for d in dims)
    return header + draw(st.binary(max_size=64))


DATA_BYTES = st.one_of(
    st.binary(max_size=1024),
    mutated(DATA_SEEDS, hot=64),
    mutated(DATA_SEEDS, hot=64).map(gz),
    mutated([gz(seed) for seed in DATA_SEEDS], hot=32),
    idx_headers(),
)
DATA_NAMES = st.sampled_from([
    "t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz", "train.csv", "train.csv.gz",
    "mnist.npz", "digits", "t10k-labels-idx1-ubyte",
])


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    # Module-scoped: hypothesis runs every example in one test call.
    with tempfile.TemporaryDirectory(prefix="digitnet-fuzz-") as folder:
        yield Path(folder)


def check_digits(images: np.ndarray, labels: np.ndarray | None) -> None:
    assert images.dtype == np.uint8 and images.ndim == 3 and images.shape[1:] == (28, 28)
    if labels is not None:
        assert labels.dtype == np.uint8 and labels.shape == (len(images),)
        assert labels.size == 0 or int(labels.max()) <= 9


@fuzz_settings(1.0)
@given(data=DATA_BYTES, name=DATA_NAMES, beside=st.none() | mutated([idx_bytes(LABELS)]),
       split=st.sampled_from(["train", "test"]))
def test_load_file_raises_only_data_errors(
    scratch: Path, data: bytes, name: str, beside: bytes | None, split: str
) -> None:
    for old in scratch.iterdir():
        old.unlink()
    path = scratch / name
    path.write_bytes(data)
    if beside is not None:  # a labels file next to an images file is read with it
        (scratch / "t10k-labels-idx1-ubyte").write_bytes(beside)
    try:
        images, labels = datasets.load_file(path, split)
    except DataError as exc:
        assert_one_line(exc, str(scratch))  # the file, or the labels file beside it
        return
    check_digits(images, labels)


@fuzz_settings(1.0)
@given(DATA_BYTES)
def test_parsers_raise_only_data_errors(data: bytes) -> None:
    for parse in (datasets.parse_idx, datasets.parse_csv, datasets.parse_npz):
        try:
            result = parse(data, "input")
        except DataError as exc:
            assert_one_line(exc, "input")
            continue
        if parse is datasets.parse_idx:
            assert isinstance(result, np.ndarray)
        else:
            check_digits(*result)


def assert_one_line(exc: DigitnetError, source: str) -> None:
    message = str(exc)
    assert message and "\n" not in message and "\r" not in message, repr(message)
    assert source in message, message


# --------------------------------------------------------------------------------------------
# Images: bytes through preprocess, values through from_values


def _digit(mode: str, size: tuple[int, int] = (40, 36)) -> Image.Image:
    image = Image.new("L", size, 255)
    ImageDraw.Draw(image).line([(8, 6), (30, 6), (14, 32)], fill=0, width=4)
    if mode == "RGBA":  # ink on a transparent layer
        rgba = Image.new("RGBA", size, (0, 0, 0, 0))
        rgba.putalpha(Image.eval(image, lambda v: 255 - v))
        return rgba
    if mode == "I;16":
        return Image.fromarray(np.asarray(image, dtype=np.uint16) * 257)
    return image.convert(mode)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


IMAGE_SEEDS = [
    _encode(_digit("L"), "PNG"),
    _encode(_digit("RGBA"), "PNG"),
    _encode(_digit("I;16"), "PNG"),
    _encode(_digit("P"), "PNG"),
    _encode(_digit("1"), "PNG"),
    _encode(_digit("RGB"), "JPEG"),
    _encode(_digit("L"), "GIF"),
    _encode(_digit("L"), "BMP"),
    _encode(_digit("I;16"), "TIFF"),
    _encode(_digit("RGB"), "WEBP"),
    _encode(_digit("L"), "PPM"),
]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@st.composite
def png_with_edited_header(draw: st.DrawFn) -> bytes:
    """A PNG whose IHDR claims other sizes, depths or colour types, with a valid CRC.

    The size stays small enough to decode or is refused from the header, so no example ever
    allocates a large image.
    """
    seed = draw(st.sampled_from(IMAGE_SEEDS[:5]))
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", seed[16:29])
    width = draw(st.sampled_from([width, 0, 1, 7, 8, 200, 2**31 - 1, 20_000, 60_000]))
    height = draw(st.sampled_from([height, 0, 1, 8, 300, 2**31 - 1, 20_000]))
    if width * height > imaging.MAX_PIXELS and draw(st.booleans()):
        width, height = 8, 8
    fields = (width, height, draw(st.sampled_from([depth, 1, 2, 4, 8, 16, 3])),
              draw(st.sampled_from([colour, 0, 2, 3, 4, 6, 5])),
              draw(st.sampled_from([compression, 1])), draw(st.sampled_from([filtering, 1])),
              draw(st.sampled_from([interlace, 1, 2])))
    return seed[:8] + _chunk(b"IHDR", struct.pack(">IIBBBBB", *fields)) + seed[33:]


IMAGE_BYTES = st.one_of(
    st.binary(max_size=256),
    mutated(IMAGE_SEEDS, hot=64),
    png_with_edited_header(),
)


@fuzz_settings(1.0)
@given(IMAGE_BYTES)
def test_preprocess_raises_only_image_errors(data: bytes) -> None:
    try:
        out = imaging.preprocess(data)
    except ImageError as exc:
        assert_one_line(exc, "image data")
        return
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out.max() == 255


GREY = st.one_of(st.integers(0, 255), st.floats(0, 255), st.booleans())
ODD = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.none(),
                st.text(max_size=3), st.lists(st.integers(0, 255), max_size=2),
                st.complex_numbers(max_magnitude=10))


@st.composite
def drawings(draw: st.DrawFn) -> list[Any]:
    """784 grey values holding a stroke, with perhaps a few odd values or a wrong length."""
    values: list[Any] = [draw(st.sampled_from([0, 255]))] * 784
    ink = 255 - values[0]
    row, col = draw(st.integers(0, 27)), draw(st.integers(0, 27))
    for k in range(draw(st.integers(0, 60))):
        values[(row + k // 6) % 28 * 28 + (col + k % 6) % 28] = ink
    for _ in range(draw(st.integers(0, 3))):
        values[draw(st.integers(0, 783))] = draw(ODD)
    cut = draw(st.sampled_from([784, 784, 784, 0, 783, 785]))
    return (values + [0])[:cut]


VALUES = st.one_of(
    st.lists(GREY, max_size=800),
    # 784 grey levels, mostly background: drawn as an array (quick), given as a list
    hnp.arrays(np.float64, 784, elements=st.floats(0, 255),
               fill=st.sampled_from([0.0, 255.0])).map(lambda a: a.tolist()),
    drawings(),
    st.lists(ODD, max_size=4),
    ODD,
)


@fuzz_settings(1.0)
@given(VALUES)
def test_from_values_raises_only_image_errors(values: Any) -> None:
    try:
        out = imaging.from_values(values, source="canvas")
    except ImageError as exc:
        assert_one_line(exc, "canvas")
        return
    assert out.shape == (28, 28) and out.dtype == np.uint8


# --------------------------------------------------------------------------------------------
# Model files


def _model(sizes: tuple[int, ...], dtype: type = np.float32) -> Model:
    params = init_params(sizes, np.random.default_rng(0), "he", dtype)
    meta = {"config": {"hidden": sizes[1]}, "preset": "default",
            "metrics": {"train_accuracy": 0.5, "dev_accuracy": float("nan")},
            "history": {"loss": [2.3, 1.1]}, "class_names": [str(k) for k in range(sizes[-1])],
            "datasets": {"name": "mnist", "train": {"sha256": {"a": "b"}}}}
    return Model(params, Preprocessing(1 / 255, 0.13, 0.31), meta)


MODELS = [_model((784, 3, 10)), _model((784, 2, 2, 10), np.float64), _model((784, 10))]
MODEL_SEEDS = [modelfile.to_bytes(model) for model in MODELS]


def _header_size(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12,
)
META_KEYS = ["architecture", "preprocessing", "weights_sha256", "config", "metrics", "history",
             "class_names", "datasets", "preset", "digitnet_version"]


@st.composite
def edited_metadata(draw: st.DrawFn) -> bytes:
    """A valid model whose digitnet metadata has some values replaced by any JSON.

    The weights are untouched, so their SHA-256 still matches and the loader must judge the
    metadata itself.
    """
    from safetensors.numpy import save

    k = draw(st.integers(0, len(MODELS) - 1))
    header = json.loads(MODEL_SEEDS[k][8:_header_size(MODEL_SEEDS[k])])["__metadata__"]
    info = json.loads(header["digitnet"])
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(META_KEYS))
        target = info
        if isinstance(info.get(key), dict) and info[key] and draw(st.booleans()):
            target, key = info[key], draw(st.sampled_from(sorted(info[key])))
        if draw(st.integers(0, 5)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(JSON)
    if draw(st.integers(0, 4)) == 0:
        header["format_version"] = draw(st.sampled_from(["0", "-1", "1.0", "", "9" * 30, "２"]))
    header["digitnet"] = json.dumps(info)
    arrays = {name: np.ascontiguousarray(a) for name, a in MODELS[k].params.arrays().items()}
    return save(arrays, metadata=header)


@st.composite
def raw_headers(draw: st.DrawFn) -> bytes:
    """A safetensors-shaped file: a length, a JSON header of any content, a few bytes."""
    header = draw(st.one_of(JSON, st.dictionaries(st.sampled_from(["__metadata__", "W1", "b1"]),
                                                  JSON, max_size=3)))
    text = json.dumps(header).encode()
    n = draw(st.sampled_from([len(text), len(text) + 1, 0, 2**63, 2**64 - 1]))
    return struct.pack("<Q", n) + text + draw(st.binary(max_size=32))


MODEL_BYTES = st.one_of(
    st.binary(max_size=512),
    mutated(MODEL_SEEDS, hot=1500),
    edited_metadata(),
    raw_headers(),
)


def check_model(model: Model) -> None:
    """A model the loader accepts can be used by every command."""
    n_out = model.sizes[-1]
    assert model.sizes[0] > 0 and n_out > 0
    names = model.class_names
    assert len(names) == n_out and all(isinstance(name, str) for name in names)
    if model.sizes[0] == 784:
        assert model.predict_proba(IMAGES).shape == (2, n_out)
    for key in ("config", "metrics", "datasets", "history"):
        assert isinstance(model.meta.get(key, {}), dict)


@fuzz_settings(1.0)
@given(MODEL_BYTES)
def test_model_from_bytes_raises_only_model_file_errors(data: bytes) -> None:
    try:
        model = modelfile.from_bytes(data, "model.safetensors")
    except ModelFileError as exc:
        assert_one_line(exc, "model.safetensors")
        return
    check_model(model)


@fuzz_settings(0.5)
@given(st.one_of(mutated(MODEL_SEEDS, hot=1500), edited_metadata()))
def test_info_on_damaged_models_prints_a_line_or_a_table(scratch: Path, data: bytes) -> None:
    from typer.testing import CliRunner

    from digitnet.cli import app

    path = scratch / "model.safetensors"
    path.write_bytes(data)
    for args in (["info", str(path)], ["info", "--json", str(path)]):
        result = CliRunner().invoke(app, args)
        if result.exit_code == 0:
            assert result.stdout
        else:
            assert result.exit_code == 1, (result.output, result.exception)
            assert result.stderr.startswith("error: "), result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
