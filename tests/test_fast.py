"""The fast kernels against the readable reference (network.py, optim.py) on the same batches."""

from __future__ import annotations

import numpy as np
import pytest

from digitnet import fast, network, optim, training
from digitnet.errors import ConfigError
from digitnet.model import Model, Preprocessing

NUMBA = pytest.mark.skipif(not fast.numba_available(), reason="numba is not installed")
BACKENDS = ["numpy", pytest.param("numba", marks=NUMBA)]
TOL = dict(rtol=1e-5, atol=1e-5)  # float32


def digits(n: int = 256, n_in: int = 784, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images about as sparse as MNIST's (a fifth of the pixels lit) and labels."""
    rng = np.random.default_rng(seed)
    lit = rng.random((n, n_in)) < 0.2
    images = (lit * rng.integers(1, 256, (n, n_in))).astype(np.uint8)
    return images, rng.integers(0, 10, n)


PRE = Preprocessing(1 / 255, 0.13, 0.31)


def reference_gradients(params: network.Params, images: np.ndarray, labels: np.ndarray,
                        l2: float, smoothing: float):
    X = PRE.apply(images, params.dtype)
    Y = network.one_hot(labels, params.sizes[-1], params.dtype)
    if smoothing:
        Y = Y * (1 - smoothing) + smoothing / params.sizes[-1]
    fwd = network.forward(params, X)
    loss = network.cross_entropy(fwd.A[-1], Y) + network.l2_penalty(params, l2)
    return loss, network.backward(params, fwd, Y, l2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("hidden", "l2", "smoothing"),
                         [(10, 0.0, 0.0), (10, 1e-3, 0.1), (12, 1e-4, 0.0), (13, 0.0, 0.0),
                          (20, 1e-4, 0.0), (33, 0.0, 0.05)])
def test_gradients_equal_the_reference(backend, hidden, l2, smoothing):
    images, labels = digits()
    params = network.init_params((784, hidden, 10), np.random.default_rng(1))
    reference = params.copy()
    engine = fast.make_engine(backend, fast.FlatParams(params), optim.make_optimizer("adam"),
                              images, labels, PRE, 64, l2, smoothing)
    params = engine.params
    rows = np.arange(5, 69)
    loss, grads = engine.gradients(rows)
    ref_loss, ref = reference_gradients(reference, images[rows], labels[rows], l2, smoothing)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for ours, theirs in zip((*grads.dW, *grads.db), (*ref.dW, *ref.db), strict=True):
        np.testing.assert_allclose(ours, theirs, **TOL)
    for ours, theirs in zip((*params.W, *params.b), (*reference.W, *reference.b), strict=True):
        assert np.array_equal(ours, theirs)  # gradients() leaves the weights alone


def test_numpy_engine_covers_depth_float64_and_float_pixels():
    images, labels = digits(n=128)
    params = network.init_params((784, 16, 12, 10), np.random.default_rng(2), dtype=np.float64)
    reference = params.copy()
    pixels = images.astype(np.float64)
    engine = fast.make_engine("numpy", fast.FlatParams(params), optim.make_optimizer("gd"),
                              pixels, labels, PRE, 32, 1e-3)
    rows = np.arange(32)
    loss, grads = engine.gradients(rows)
    ref_loss, ref = reference_gradients(reference, images[rows], labels[rows], 1e-3, 0.0)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for ours, theirs in zip((*grads.dW, *grads.db), (*ref.dW, *ref.db), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["gd", "momentum", "adam"])
def test_steps_follow_the_reference_loop(backend, name):
    images, labels = digits(n=200)
    params = network.init_params((784, 10, 10), np.random.default_rng(3))
    reference = params.copy()
    optimizer, ref_optimizer = optim.make_optimizer(name), optim.make_optimizer(name)
    engine = fast.make_engine(backend, fast.FlatParams(params), optimizer, images, labels, PRE,
                              50, 1e-4)
    params = engine.params
    order = np.random.default_rng(4).permutation(200)
    lrs = np.array([0.05, 0.04, 0.03, 0.02]) * (0.1 if name == "adam" else 1)
    steps = engine.run(order, lrs)
    assert (steps.steps, steps.seen, steps.diverged) == (4, 200, False)

    losses, correct = [], 0
    for s, lr in enumerate(lrs):
        rows = order[50 * s:50 * s + 50]
        loss, grads = reference_gradients(reference, images[rows], labels[rows], 1e-4, 0.0)
        P = network.forward(reference, PRE.apply(images[rows])).probabilities
        correct += int(np.sum(np.argmax(P, axis=1) == labels[rows]))
        losses.append(loss)
        ref_optimizer.step([*reference.W, *reference.b], [*grads.dW, *grads.db], float(lr))
    assert steps.loss_sum / steps.seen == pytest.approx(np.mean(losses), rel=1e-5)
    assert steps.correct == correct
    for ours, theirs in zip((*params.W, *params.b), (*reference.W, *reference.b), strict=True):
        np.testing.assert_allclose(ours, theirs, **TOL)
    # The engine's optimizer holds the state over the flat parameters: the same numbers.
    flat_state = optimizer.state()
    for key in ("velocity", "m", "v"):
        ref = [v for k, v in sorted(ref_optimizer.state().items(), key=lambda kv: kv[0])
               if k.startswith(key + ".")]
        if ref:  # the reference's arrays W1, W2, b1, b2 end to end are the flat layout
            np.testing.assert_allclose(flat_state[f"{key}.0"],
                                       np.concatenate([r.ravel() for r in ref]), **TOL)
    if name == "adam":
        assert int(flat_state["t"]) == int(ref_optimizer.state()["t"]) == len(lrs)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_huge_rate_is_reported_as_divergence_at_its_step(backend):
    images, labels = digits(n=100)
    params = network.init_params((784, 10, 10), np.random.default_rng(5))
    engine = fast.make_engine(backend, fast.FlatParams(params), optim.make_optimizer("gd"),
                              images, labels, PRE, 25)
    steps = engine.run(np.arange(100), np.full(4, 1e30))
    assert steps.diverged and steps.steps < 4
    assert steps.steps == 1 or not np.isfinite(steps.last_loss)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_same_seed_gives_bit_identical_weights(backend):
    images, labels = digits(n=300)
    config = training.make_config("default", epochs=2, val_size=50, batch_size=32)
    a = training.Trainer(config, images, labels, backend=backend).run()
    b = training.Trainer(config, images, labels, backend=backend).run()
    for x, y in zip((*a.params.W, *a.params.b), (*b.params.W, *b.params.b), strict=True):
        assert np.array_equal(x, y)
    assert a.meta["history"] == {**b.meta["history"], "seconds": a.meta["history"]["seconds"]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_fast_trainer_stays_close_to_the_reference_trainer(backend):
    images, labels = digits(n=300)
    config = training.make_config("seed", iterations=5, val_size=50)
    ours = training.Trainer(config, images, labels, backend=backend).run()
    theirs = training.Trainer(config, images, labels, backend="reference").run()
    for x, y in zip((*ours.params.W, *ours.params.b), (*theirs.params.W, *theirs.params.b),
                    strict=True):
        np.testing.assert_allclose(x, y, **TOL)
    assert ours.meta["history"]["step"] == theirs.meta["history"]["step"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("hidden", [10, 17])
def test_predictor_matches_the_model(backend, hidden):
    images, labels = digits(n=50)
    params = network.init_params((784, hidden, 10), np.random.default_rng(6))
    model = Model(params, PRE)
    predictor = fast.Predictor(params, PRE, backend)
    np.testing.assert_allclose(predictor.predict_proba(images), model.predict_proba(images),
                               **TOL)
    assert np.array_equal(predictor.predict(images), model.predict(images))
    assert np.array_equal(predictor.predict(images.reshape(50, 28, 28)[:1]),
                          model.predict(images[:1]))
    floats = images.astype(np.float32)  # not uint8: the reference path
    np.testing.assert_allclose(predictor.predict_proba(floats), model.predict_proba(floats),
                               **TOL)


def test_resolve_backend():
    assert fast.resolve_backend("numpy") == "numpy"
    assert fast.resolve_backend("reference") == "reference"
    assert fast.resolve_backend("auto", examples=10) == "numpy"
    assert fast.resolve_backend("auto", layers=2, examples=10**9) == "numpy"
    assert fast.resolve_backend("auto", pixels=np.float32, examples=10**9) == "numpy"
    expected = "numba" if fast.numba_available() else "numpy"
    assert fast.resolve_backend("auto", examples=10**9) == expected
    with pytest.raises(ConfigError, match="unknown backend 'fastest'"):
        fast.resolve_backend("fastest")


@NUMBA
def test_numba_refuses_what_it_does_not_cover():
    with pytest.raises(ConfigError, match="one hidden layer"):
        fast.resolve_backend("numba", layers=2)
    with pytest.raises(ConfigError, match="float64"):
        fast.resolve_backend("numba", dtype="float64")


def test_backend_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DIGITNET_BACKEND", "reference")
    images, labels = digits(n=60)
    trainer = training.Trainer(training.make_config("default", epochs=1, val_size=10), images,
                               labels)
    assert trainer.backend == "reference"
    monkeypatch.setenv("DIGITNET_BACKEND", "nope")
    with pytest.raises(ConfigError, match="unknown backend"):
        training.Trainer(training.make_config("default", epochs=1, val_size=10), images,
                         labels)


def test_kernels_that_do_not_compile_fall_back_to_numpy_with_a_warning(monkeypatch):
    fast.backend.numba_fails.cache_clear()
    monkeypatch.setattr(fast.backend, "numba_available", lambda: True)

    def broken():
        raise RuntimeError("LLVM ERROR: unknown intrinsic\nllvm.experimental.vector.compress")

    monkeypatch.setattr(fast.backend, "compiled", broken)
    try:
        with pytest.warns(RuntimeWarning, match="do not compile here .*training with NumPy"):
            assert fast.resolve_backend("auto", examples=10**9) == "numpy"
        with pytest.raises(ConfigError, match="the kernels do not compile here"):
            fast.resolve_backend("numba")
    finally:
        fast.backend.numba_fails.cache_clear()
