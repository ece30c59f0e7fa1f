"""ONNX export: a valid graph whose outputs equal digitnet's, and the ``export`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from digitnet import __version__, modelfile, network, training  # noqa: E402
from digitnet.cli import app  # noqa: E402
from digitnet.errors import ConfigError, ModelFileError  # noqa: E402
from digitnet.export import IR_VERSION, OPSET, to_onnx, to_onnx_model  # noqa: E402
from digitnet.model import Model, Preprocessing  # noqa: E402

TOLERANCE = 1e-5


def synthetic_model(sizes=(784, 16, 12, 10), dtype=np.float32) -> Model:
    """Random weights, scaled up so that the probabilities are far from uniform."""
    params = network.init_params(sizes, np.random.default_rng(0), "he", dtype)
    params.b = [b + np.random.default_rng(1).normal(0, 0.5, b.shape).astype(dtype)
                for b in params.b]
    return Model(params, Preprocessing(1 / 255, 0.1307, 0.3081), {"preset": "default"})


def run(path_or_proto, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    source = path_or_proto.SerializeToString() if hasattr(path_or_proto, "SerializeToString") \
        else str(path_or_proto)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    probabilities, label = session.run(["probabilities", "label"], {"pixels": pixels})
    return probabilities, label


def images(n: int = 500, n_inputs: int = 784) -> np.ndarray:
    return np.random.default_rng(2).integers(0, 256, size=(n, n_inputs), dtype=np.uint8)


def test_graph_is_valid_and_described() -> None:
    model = synthetic_model()
    proto = to_onnx_model(model)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", OPSET)]
    graph = proto.graph
    assert [i.name for i in graph.input] == ["pixels"]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [o.name for o in graph.output] == ["probabilities", "label"]
    assert graph.output[1].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [n.op_type for n in graph.node] == ["Cast", "Mul", "Sub", "Div", "Gemm", "Relu",
                                              "Gemm", "Relu", "Gemm", "Softmax", "ArgMax"]
    assert "uint8 [N, 784]" in graph.doc_string
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["digitnet_version"] == __version__
    assert props["preset"] == "default"
    assert json.loads(props["sizes"]) == [784, 16, 12, 10]
    assert props["weights_sha256"] == modelfile.weights_sha256(model.params)
    assert props["input_type"] == "uint8"
    assert json.loads(props["preprocessing"]) == model.preprocessing.to_dict()


def test_outputs_equal_digitnet_on_a_synthetic_model() -> None:
    model = synthetic_model()
    pixels = images()
    probabilities, label = run(to_onnx_model(model), pixels)
    assert probabilities.dtype == np.float32 and probabilities.shape == (500, 10)
    assert label.dtype == np.int64 and label.shape == (500,)
    np.testing.assert_allclose(probabilities, model.predict_proba(pixels), rtol=0,
                               atol=TOLERANCE)
    np.testing.assert_array_equal(label, model.predict(pixels))
    assert len(np.unique(label)) > 1  # the comparison is not between constant outputs


def test_float_input_and_float64_weights() -> None:
    model = synthetic_model((20, 8, 3), dtype=np.float64)
    pixels = images(200, 20)
    proto = to_onnx_model(model, input_type="float32")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    probabilities, label = run(proto, pixels.astype(np.float32))
    np.testing.assert_allclose(probabilities, model.predict_proba(pixels), rtol=0,
                               atol=TOLERANCE)
    np.testing.assert_array_equal(label, model.predict(pixels))


def test_an_estimator_exports_too(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from digitnet.estimator import DigitNetClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, size=(120, 5)).astype(np.float32)
    y = (X[:, 0] > 3).astype(int) + (X[:, 1] > 3)
    clf = DigitNetClassifier(epochs=30, random_state=0).fit(X, y)
    probabilities, label = run(to_onnx(clf, tmp_path / "clf.onnx", "float32"), X)
    np.testing.assert_allclose(probabilities, clf.predict_proba(X), rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(clf.classes_[label], clf.predict(X))


def test_write_is_atomic_and_creates_folders(tmp_path: Path) -> None:
    target = tmp_path / "new" / "folder" / "model.onnx"
    assert to_onnx(synthetic_model(), target) == target
    assert onnx.load(target).graph.name == "digitnet"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.onnx"]  # no leftovers


def test_bad_targets_and_options(tmp_path: Path) -> None:
    model = synthetic_model()
    with pytest.raises(ModelFileError, match="is a directory"):
        to_onnx(model, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelFileError, match="not a folder"):
        to_onnx(model, tmp_path / "file" / "model.onnx")
    with pytest.raises(ConfigError, match="input type"):
        to_onnx(model, tmp_path / "model.onnx", input_type="int8")
    with pytest.raises(TypeError, match="Model"):
        to_onnx("model.safetensors", tmp_path / "model.onnx")


# -- the command ---------------------------------------------------------------------------


def test_export_command(tmp_path: Path) -> None:
    model = synthetic_model((784, 10, 10))
    source = modelfile.save(model, tmp_path / "model.safetensors")
    target = tmp_path / "out" / "model.onnx"
    result = CliRunner().invoke(app, ["export", str(source), str(target), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["onnx"] == str(target) and report["sizes"] == [784, 10, 10]
    assert report["opset"] == OPSET and report["bytes"] == target.stat().st_size
    probabilities, _ = run(target, images())
    np.testing.assert_allclose(probabilities, model.predict_proba(images()), atol=TOLERANCE)


@pytest.mark.parametrize("content", [b"", b"plain text, not a model", b"\x00" * 64])
def test_export_command_refuses_non_models(tmp_path: Path, content: bytes) -> None:
    source = tmp_path / "model.safetensors"
    source.write_bytes(content)
    result = CliRunner().invoke(app, ["export", str(source), str(tmp_path / "m.onnx")])
    assert result.exit_code == 1
    assert result.stderr.startswith("error:") and result.stderr.count("\n") == 1
    assert "model.safetensors" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "m.onnx").exists()


# -- real MNIST ----------------------------------------------------------------------------


@pytest.mark.mnist
def test_onnx_matches_digitnet_on_the_mnist_test_set(mnist_dir: Path, tmp_path: Path) -> None:
    from digitnet import datasets

    config = training.make_config("default", epochs=1)
    train_images, train_labels = datasets.load("mnist", "train", mnist_dir)
    model = training.train(config, train_images, train_labels)
    test_images, test_labels = datasets.load("mnist", "test", mnist_dir)
    pixels = test_images.reshape(len(test_images), 784)
    probabilities, label = run(to_onnx(model, tmp_path / "mnist.onnx"), pixels)
    expected = model.predict_proba(test_images)
    assert np.abs(probabilities - expected).max() <= TOLERANCE
    np.testing.assert_array_equal(label, model.predict(test_images))
    assert np.mean(label == test_labels) > 0.9
