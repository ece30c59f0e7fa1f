"""Model files: round trips, atomic writes, and every kind of file that must be refused."""

from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from digitnet import guard, modelfile, network
from digitnet.errors import ModelFileError
from digitnet.model import Model, Preprocessing


def make_model(hidden: int = 10, dtype=np.float32, seed: int = 0) -> Model:
    params = network.init_params((784, hidden, 10), np.random.default_rng(seed), "he", dtype)
    params.b = [np.random.default_rng(seed + 1).normal(0, 0.1, b.shape).astype(dtype)
                for b in params.b]
    meta = {
        "config": {"preset": "default", "lr": 0.01, "iterations": None, "seed": seed},
        "preset": "default",
        "metrics": {"train_accuracy": 0.95, "dev_accuracy": 0.94, "epochs": 3},
        "history": {"epoch": [1, 2, 3], "loss": [0.9, 0.5, 0.3],
                    "val_accuracy": [0.8, 0.9, 0.94]},
        "class_names": [str(k) for k in range(10)],
    }
    return Model(params, Preprocessing(1 / 255, 0.13, 0.31), meta)


@pytest.fixture
def model() -> Model:
    return make_model()


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (50, 28, 28)).astype(np.uint8)


def same_arrays(a: Model, b: Model) -> bool:
    return all(x.dtype == y.dtype and np.array_equal(x, y)
               for x, y in zip(a.params.arrays().values(), b.params.arrays().values(),
                               strict=True))


def parts(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """A file's safetensors metadata (with ``digitnet`` decoded) and its arrays."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])["__metadata__"]
    header["digitnet"] = json.loads(header["digitnet"])
    return header, st_load(data)


def rebuilt(header: dict, arrays: dict[str, np.ndarray]) -> bytes:
    header = dict(header, digitnet=json.dumps(header["digitnet"]))
    return st_save(arrays, metadata=header)


# ------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_gives_identical_arrays_and_predictions(tmp_path, images, dtype):
    model = make_model(dtype=dtype)
    path = modelfile.save(model, tmp_path / "model.safetensors")
    loaded = modelfile.load(path)
    assert same_arrays(model, loaded)
    assert loaded.params.dtype == dtype
    assert loaded.preprocessing == model.preprocessing
    assert np.array_equal(loaded.predict_proba(images), model.predict_proba(images))
    assert np.array_equal(loaded.predict(images), model.predict(images))


def test_metadata_round_trip(tmp_path, model):
    loaded = modelfile.load(modelfile.save(model, tmp_path / "m.safetensors"))
    for key in ("config", "metrics", "history", "preset", "class_names"):
        assert loaded.meta[key] == model.meta[key]
    assert loaded.meta["architecture"]["sizes"] == [784, 10, 10]
    assert loaded.meta["preprocessing"] == {"scale": 1 / 255, "mean": 0.13, "std": 0.31}
    assert loaded.meta["weights_sha256"] == modelfile.weights_sha256(model.params)
    assert "digitnet_version" in loaded.meta
    # Saving what was loaded keeps everything.
    again = modelfile.from_bytes(modelfile.to_bytes(loaded))
    assert again.meta == loaded.meta and same_arrays(again, model)


def test_two_hidden_layers_round_trip(tmp_path, images):
    params = network.init_params((784, 16, 12, 10), np.random.default_rng(0))
    model = Model(params)
    loaded = modelfile.load(modelfile.save(model, tmp_path / "deep.safetensors"))
    assert loaded.sizes == (784, 16, 12, 10)
    assert same_arrays(model, loaded)
    assert np.array_equal(loaded.predict(images), model.predict(images))


def test_numpy_values_and_missing_figures_in_metadata(tmp_path, model):
    model.meta["metrics"] = {"dev_accuracy": float("nan"), "epochs": np.int64(3),
                             "loss": np.float32(0.5), "inf": float("inf")}
    model.meta["history"] = {"val_loss": [float("nan"), 0.25]}
    loaded = modelfile.load(modelfile.save(model, tmp_path / "m.safetensors"))
    assert loaded.meta["metrics"] == {"dev_accuracy": None, "epochs": 3, "loss": 0.5,
                                      "inf": None}
    assert loaded.meta["history"] == {"val_loss": [None, 0.25]}


def test_metadata_that_json_cannot_hold_is_refused(tmp_path, model):
    model.meta["config"] = {"callback": object()}
    with pytest.raises(TypeError, match="cannot store object"):
        modelfile.save(model, tmp_path / "m.safetensors")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------
# Atomic writes


def test_save_leaves_no_temporary_files(tmp_path, model):
    modelfile.save(model, tmp_path / "m.safetensors")
    modelfile.save(model, tmp_path / "m.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_save_creates_missing_folders(tmp_path, model):
    path = modelfile.save(model, tmp_path / "a" / "b" / "m.safetensors")
    assert modelfile.load(path).sizes == (784, 10, 10)


def test_an_existing_file_is_replaced_whole(tmp_path, images):
    path = tmp_path / "m.safetensors"
    big, small = make_model(hidden=64, seed=1), make_model(hidden=10, seed=2)
    modelfile.save(big, path)
    modelfile.save(small, path)
    assert path.stat().st_size == len(modelfile.to_bytes(small))
    loaded = modelfile.load(path)
    assert loaded.sizes == (784, 10, 10) and same_arrays(small, loaded)


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_a_failing_write_leaves_the_previous_file_intact(tmp_path, monkeypatch, where):
    path = tmp_path / "m.safetensors"
    first = make_model(seed=1)
    modelfile.save(first, path)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if where == "write":
        real_fdopen = os.fdopen

        class HalfWritten:
            """Writes half of what it is given, then fails."""

            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                self.f.write(data[:len(data) // 2])
                raise OSError(28, "No space left on device")

        monkeypatch.setattr(guard.os, "fdopen", lambda fd, mode: HalfWritten(
            real_fdopen(fd, mode)))
    else:
        monkeypatch.setattr(guard.os, where, disk_full)

    with pytest.raises(ModelFileError, match="cannot be written .*No space left on device"):
        modelfile.save(make_model(seed=2), path)
    assert path.read_bytes() == before
    assert same_arrays(modelfile.load(path), first)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_save_to_a_directory_is_refused(tmp_path, model):
    with pytest.raises(ModelFileError, match="is a directory"):
        modelfile.save(model, tmp_path)


# ------------------------------------------------------------------------------------------
# Files that are refused


def refused(tmp_path, data: bytes, match: str, name: str = "bad.safetensors") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ModelFileError, match=match) as caught:
        modelfile.load(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


def test_a_safetensors_file_from_something_else(tmp_path):
    data = st_save({"weight": np.ones((3, 3), np.float32)}, metadata={"format": "pt"})
    refused(tmp_path, data, "not a digitnet model")
    refused(tmp_path, st_save({"weight": np.ones(3, np.float32)}), "not a digitnet model")


@pytest.mark.parametrize("keep", [0, 4, 8, 100, -1, -100])
def test_a_truncated_file(tmp_path, model, keep):
    data = modelfile.to_bytes(model)
    cut = data[:keep] if keep >= 0 else data[:keep]
    refused(tmp_path, cut, "truncated|damaged|not a safetensors")


def test_an_empty_file(tmp_path):
    refused(tmp_path, b"", r"truncated or empty \(0 bytes\)")


def test_a_pickle_renamed(tmp_path, model):
    data = pickle.dumps({"W1": model.params.W[0], "b1": model.params.b[0]})
    refused(tmp_path, data, "not a safetensors model file")


def test_other_files_renamed(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + bytes(100)
    refused(tmp_path, png, "not a safetensors model file")
    refused(tmp_path, b'{"W1": [1, 2, 3]}', "not a safetensors model file")
    refused(tmp_path, np.zeros(10).tobytes(), "not a safetensors model file")


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path, seed):
    data = np.random.default_rng(seed).integers(0, 256, 5000).astype(np.uint8).tobytes()
    refused(tmp_path, data, "not a safetensors model file")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_are_a_model_or_a_model_file_error(data):
    try:
        modelfile.from_bytes(data)
    except ModelFileError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_damaged_model_file_is_a_model_file_error(data):
    original = modelfile.to_bytes(make_model(hidden=3))
    position = data.draw(st.integers(0, len(original) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != original[position]))
    damaged = original[:position] + bytes([value]) + original[position + 1:]
    try:
        loaded = modelfile.from_bytes(damaged)
    except ModelFileError:
        return
    # A changed byte that still loads sits in metadata that is not checked, never in weights.
    assert same_arrays(loaded, make_model(hidden=3))


def test_shapes_that_disagree_with_the_metadata(tmp_path, model):
    header, arrays = parts(modelfile.to_bytes(model))
    header["digitnet"]["architecture"]["sizes"] = [784, 20, 10]
    refused(tmp_path, rebuilt(header, arrays),
            r"W1 has shape \(784, 10\), the metadata says \(784, 20\)")

    header, arrays = parts(modelfile.to_bytes(model))
    arrays["b2"] = np.zeros(7, np.float32)
    refused(tmp_path, rebuilt(header, arrays), r"b2 has shape \(7,\), the metadata says \(10,\)")


def test_missing_or_extra_arrays(tmp_path, model):
    header, arrays = parts(modelfile.to_bytes(model))
    del arrays["W2"]
    refused(tmp_path, rebuilt(header, arrays), "missing array W2")
    header, arrays = parts(modelfile.to_bytes(model))
    arrays["W3"] = np.zeros((10, 10), np.float32)
    refused(tmp_path, rebuilt(header, arrays), "unexpected arrays W3")


def test_integer_weights(tmp_path, model):
    header, arrays = parts(modelfile.to_bytes(model))
    arrays["b1"] = np.zeros(10, np.int32)
    refused(tmp_path, rebuilt(header, arrays),
            "array .b1. has tensor type .I32.; digitnet reads F32 or F64")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(tmp_path, model, bad):
    model.params.W[1][3, 4] = bad
    # to_bytes records the SHA-256 of the bad weights, so only the finiteness check stops it.
    refused(tmp_path, modelfile.to_bytes(model), r"W2 holds non-finite values \(NaN or inf\)")


@pytest.mark.parametrize("key", ["architecture", "preprocessing", "weights_sha256"])
def test_missing_metadata_keys(tmp_path, model, key):
    header, arrays = parts(modelfile.to_bytes(model))
    del header["digitnet"][key]
    refused(tmp_path, rebuilt(header, arrays), f"digitnet metadata lacks '{key}'")


@pytest.mark.parametrize(
    ("edit", "match"),
    [({"sizes": "784-10-10"}, "no valid layer sizes"),
     ({"sizes": [784]}, "no valid layer sizes"),
     ({"sizes": [784, 0, 10]}, "no valid layer sizes"),
     ({"sizes": [784, 10.5, 10]}, "no valid layer sizes")],
)
def test_bad_architecture(tmp_path, model, edit, match):
    header, arrays = parts(modelfile.to_bytes(model))
    header["digitnet"]["architecture"].update(edit)
    refused(tmp_path, rebuilt(header, arrays), match)


@pytest.mark.parametrize("preprocessing", [{"scale": 1}, {"scale": 1, "mean": 0, "std": 0},
                                           {"scale": 1, "mean": 0, "std": "wide"}, [1, 0, 1]])
def test_bad_preprocessing(tmp_path, model, preprocessing):
    header, arrays = parts(modelfile.to_bytes(model))
    header["digitnet"]["preprocessing"] = preprocessing
    refused(tmp_path, rebuilt(header, arrays), "preprocessing")


def test_metadata_that_is_not_json(tmp_path, model):
    header, arrays = parts(modelfile.to_bytes(model))
    refused(tmp_path, st_save(arrays, metadata=dict(header, digitnet="{not json")),
            r"damaged digitnet metadata \(not JSON\)")
    refused(tmp_path, st_save(arrays, metadata=dict(header, digitnet="[1, 2]")),
            r"damaged digitnet metadata \(not an object\)")


def test_a_future_format_version(tmp_path, model):
    header, arrays = parts(modelfile.to_bytes(model))
    header["format_version"] = str(modelfile.FORMAT_VERSION + 1)
    message = refused(tmp_path, rebuilt(header, arrays), "newer digitnet")
    assert "model format 2" in message and "upgrade digitnet" in message
    header["format_version"] = "one"
    refused(tmp_path, rebuilt(header, arrays), "unreadable format_version 'one'")


def test_modified_weights(tmp_path, model):
    header, arrays = parts(modelfile.to_bytes(model))
    arrays["W1"] = arrays["W1"].copy()
    arrays["W1"][0, 0] += 0.001
    refused(tmp_path, rebuilt(header, arrays), "modified or corrupted")


def test_a_flipped_bit_in_the_weights(tmp_path, model):
    data = bytearray(modelfile.to_bytes(model))
    data[-5] ^= 0x01  # inside the last array, b2
    refused(tmp_path, bytes(data), "modified or corrupted")


def test_a_directory(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory"):
        modelfile.load(tmp_path)


def test_a_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        modelfile.load(tmp_path / "absent.safetensors")


def test_a_file_too_large_to_be_a_model(tmp_path, monkeypatch, model):
    path = modelfile.save(model, tmp_path / "m.safetensors")
    monkeypatch.setattr(modelfile, "MAX_BYTES", 1000)
    with pytest.raises(ModelFileError, match="larger than any model file digitnet reads"):
        modelfile.load(path)
