"""The code paths chosen by the CPU: each one held to the reference on this machine too."""

from __future__ import annotations

import numpy as np
import pytest

from digitnet import fast, network
from digitnet.fast import cpu
from digitnet.model import Model, Preprocessing

NUMBA = pytest.mark.skipif(not fast.numba_available(), reason="numba is not installed")
PRE = Preprocessing(1 / 255, 0.13, 0.31)


def digits(n: int, n_in: int = 784, seed: int = 0, lit: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    on = rng.random((n, n_in)) < lit
    return (on * rng.integers(1, 256, (n, n_in))).astype(np.uint8)


def test_features_are_read_from_numba_settings(monkeypatch):
    cpu.features.cache_clear()
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+avx2,-avx512f,+avx512vbmi2,+avx512bw,+avx512vl")
    try:
        assert cpu.vector_compress()
        assert "avx2" in cpu.vector_features() and "avx512f" not in cpu.vector_features()
        monkeypatch.setenv("NUMBA_CPU_FEATURES", "+avx2,+fma")
        cpu.features.cache_clear()
        assert not cpu.vector_compress()
        assert cpu.vector_features() == ["avx2", "fma"]
    finally:
        cpu.features.cache_clear()


def test_host_features_and_model_are_named():
    assert cpu.cpu_model()
    assert set(cpu.vector_features()) <= set(cpu.VECTOR_FEATURES)
    ident = cpu.cpu_id()
    assert set(ident) <= {"vendor", "family", "model"}
    assert all(value.isdigit() for key, value in ident.items() if key != "vendor")
    assert set(cpu.paths()) == {"non_zero_pixels", "inference_first_layer",
                                "training_first_layer", "full_batch"}


@NUMBA
@pytest.mark.parametrize("n_in", [784, 64, 100, 30])
def test_compress_and_bit_scan_find_the_same_pixels(n_in):
    from digitnet.fast.numba_engine import compiled, readonly

    images = digits(40, n_in, lit=0.3)
    images[3] = 0        # an empty image
    images[4] = 255      # a full one
    csr = compiled().csr
    by_compress = csr(readonly(images), True)
    by_scan = csr(readonly(images), False)
    indptr = by_scan[0]
    rows, cols = np.nonzero(images)
    assert np.array_equal(indptr, by_compress[0])
    assert np.array_equal(np.diff(indptr), np.bincount(rows, minlength=len(images)))
    for ours in (by_compress, by_scan):
        assert np.array_equal(ours[1][:indptr[-1]], cols)
        assert np.array_equal(ours[2][:indptr[-1]], images[rows, cols])


@NUMBA
@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize(("n_in", "hidden"), [(784, 10), (784, 17), (100, 5), (128, 16),
                                             (30, 3)])
def test_each_inference_path_matches_the_model(monkeypatch, compress, n_in, hidden):
    monkeypatch.setattr("digitnet.fast.predictor.vector_compress", lambda: compress)
    images = digits(150, n_in, seed=3)
    images[7] = 0    # no pixel lit
    images[8] = 255  # every pixel lit: every bit of every mask
    params = network.init_params((n_in, hidden, 10), np.random.default_rng(8))
    model = Model(params, PRE)
    predictor = fast.Predictor(params, PRE, "numba")
    assert predictor.backend == "numba"
    np.testing.assert_allclose(predictor.predict_proba(images), model.predict_proba(images),
                               rtol=1e-5, atol=1e-5)
    assert np.array_equal(predictor.predict(images), model.predict(images))


@NUMBA
def test_the_paths_train_to_the_same_weights(monkeypatch):
    from digitnet import training

    images = digits(300, seed=5)
    labels = np.random.default_rng(5).integers(0, 10, 300)
    config = training.make_config("default", epochs=2, val_size=50, batch_size=32)
    weights = []
    for compress in (True, False):
        monkeypatch.setattr("digitnet.fast.numba_engine.vector_compress", lambda c=compress: c)
        model = training.Trainer(config, images, labels, backend="numba").run()
        weights.append(model.params.W[0])
    assert np.array_equal(weights[0], weights[1])  # the same lists, so the same sums
