"""The seed network's math: a hand-worked step, gradient checks, properties, references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from digitnet import gradcheck, network
from digitnet.network import Params
from digitnet.optim import GradientDescent


def tiny_network(dtype=np.float64) -> tuple[Params, np.ndarray, np.ndarray]:
    """2 inputs, 2 hidden ReLU units, 2 softmax outputs and two examples, one per class."""
    W1 = np.array([[0.1, -0.2],
                   [0.3, 0.4]], dtype=dtype)
    b1 = np.array([0.0, 0.1], dtype=dtype)
    W2 = np.array([[0.5, -0.5],
                   [0.2, 0.1]], dtype=dtype)
    b2 = np.array([0.1, -0.1], dtype=dtype)
    X = np.array([[1.0, 2.0],     # example 0, class 0
                  [2.0, -0.5]],   # example 1, class 1
                 dtype=dtype)
    y = np.array([0, 1])
    return Params([W1, W2], [b1, b2]), X, y


# ------------------------------------------------------------------------------------------
# A single gradient-descent step, worked by hand


def test_one_gradient_descent_step_worked_by_hand():
    params, X, y = tiny_network()
    alpha = 0.5
    m = 2

    # Forward. Z1 = X @ W1 + b1, element by element.
    Z1 = [[1.0 * 0.1 + 2.0 * 0.3 + 0.0, 1.0 * -0.2 + 2.0 * 0.4 + 0.1],
          [2.0 * 0.1 + -0.5 * 0.3 + 0.0, 2.0 * -0.2 + -0.5 * 0.4 + 0.1]]
    np.testing.assert_allclose(Z1, [[0.7, 0.7], [0.05, -0.5]], atol=1e-15)
    A1 = [[max(z, 0.0) for z in row] for row in Z1]  # relu: example 1's second unit is off
    assert A1[1][1] == 0.0
    # Z2 = A1 @ W2 + b2
    Z2 = [[A1[i][0] * 0.5 + A1[i][1] * 0.2 + 0.1, A1[i][0] * -0.5 + A1[i][1] * 0.1 - 0.1]
          for i in range(2)]
    np.testing.assert_allclose(Z2, [[0.59, -0.38], [0.125, -0.125]], atol=1e-15)
    # softmax of two logits: p0 = e^z0 / (e^z0 + e^z1) = 1 / (1 + e^(z1 - z0))
    p00 = 1 / (1 + math.exp(Z2[0][1] - Z2[0][0]))
    p10 = 1 / (1 + math.exp(Z2[1][1] - Z2[1][0]))
    A2 = [[p00, 1 - p00],
          [p10, 1 - p10]]
    loss = -(math.log(p00) + math.log(1 - p10)) / m  # true classes 0 and 1

    # Backward. dZ2 = A2 - Y with Y = [[1, 0], [0, 1]].
    dZ2 = [[p00 - 1, 1 - p00],
           [p10, (1 - p10) - 1]]
    # dW2[j][k] = (A1[0][j] dZ2[0][k] + A1[1][j] dZ2[1][k]) / m
    dW2 = [[(A1[0][j] * dZ2[0][k] + A1[1][j] * dZ2[1][k]) / m for k in range(2)]
           for j in range(2)]
    db2 = [(dZ2[0][k] + dZ2[1][k]) / m for k in range(2)]
    # dZ1[i][j] = (dZ2[i][0] W2[j][0] + dZ2[i][1] W2[j][1]) * (Z1[i][j] > 0)
    W2 = [[0.5, -0.5], [0.2, 0.1]]
    dZ1 = [[(dZ2[i][0] * W2[j][0] + dZ2[i][1] * W2[j][1]) * (Z1[i][j] > 0) for j in range(2)]
           for i in range(2)]
    assert dZ1[1][1] == 0.0
    # dW1[a][j] = (X[0][a] dZ1[0][j] + X[1][a] dZ1[1][j]) / m
    Xs = [[1.0, 2.0], [2.0, -0.5]]
    dW1 = [[(Xs[0][a] * dZ1[0][j] + Xs[1][a] * dZ1[1][j]) / m for j in range(2)]
           for a in range(2)]
    db1 = [(dZ1[0][j] + dZ1[1][j]) / m for j in range(2)]

    # The update W <- W - alpha dW.
    W1_new = [[w - alpha * g for w, g in zip(row, grow, strict=True)]
              for row, grow in zip([[0.1, -0.2], [0.3, 0.4]], dW1, strict=True)]
    b1_new = [b - alpha * g for b, g in zip([0.0, 0.1], db1, strict=True)]
    W2_new = [[w - alpha * g for w, g in zip(row, grow, strict=True)]
              for row, grow in zip(W2, dW2, strict=True)]
    b2_new = [b - alpha * g for b, g in zip([0.1, -0.1], db2, strict=True)]

    # Spot values, worked on paper: p00 = 1 / (1 + e^-0.97) ≈ 0.725119,
    # p10 = 1 / (1 + e^-0.25) ≈ 0.562177.
    assert p00 == pytest.approx(0.725119, abs=1e-6)
    assert p10 == pytest.approx(0.562177, abs=1e-6)
    assert dW2[1][0] == pytest.approx((0.7 * (p00 - 1) + 0.0) / 2)

    fwd = network.forward(params, X)
    Y = network.one_hot(y, 2, np.float64)
    np.testing.assert_allclose(fwd.Z[1], Z1, atol=1e-15)
    np.testing.assert_allclose(fwd.A[1], A1, atol=1e-15)
    np.testing.assert_allclose(fwd.Z[2], Z2, atol=1e-15)
    np.testing.assert_allclose(fwd.A[2], A2, atol=1e-15)
    assert network.cross_entropy(fwd.A[2], Y) == pytest.approx(loss, abs=1e-15)

    grads = network.backward(params, fwd, Y)
    np.testing.assert_allclose(grads.dW[1], dW2, atol=1e-15)
    np.testing.assert_allclose(grads.db[1], db2, atol=1e-15)
    np.testing.assert_allclose(grads.dW[0], dW1, atol=1e-15)
    np.testing.assert_allclose(grads.db[0], db1, atol=1e-15)

    GradientDescent().step([*params.W, *params.b], [*grads.dW, *grads.db], alpha)
    np.testing.assert_allclose(params.W[0], W1_new, atol=1e-15)
    np.testing.assert_allclose(params.b[0], b1_new, atol=1e-15)
    np.testing.assert_allclose(params.W[1], W2_new, atol=1e-15)
    np.testing.assert_allclose(params.b[1], b2_new, atol=1e-15)

    # The step went downhill.
    after = network.cross_entropy(network.forward(params, X).probabilities, Y)
    assert after < loss


def test_hand_worked_step_in_float32_stays_float32_and_agrees():
    p64, X64, y = tiny_network(np.float64)
    p32, X32, _ = tiny_network(np.float32)
    for params, X, dtype in ((p64, X64, np.float64), (p32, X32, np.float32)):
        fwd = network.forward(params, X)
        grads = network.backward(params, fwd, network.one_hot(y, 2, dtype))
        GradientDescent().step([*params.W, *params.b], [*grads.dW, *grads.db], 0.5)
    assert all(a.dtype == np.float32 for a in (*p32.W, *p32.b))
    for a32, a64 in zip((*p32.W, *p32.b), (*p64.W, *p64.b), strict=True):
        np.testing.assert_allclose(a32, a64, atol=1e-6)


def test_l2_adds_lambda_w_to_weight_gradients_only():
    params, X, y = tiny_network()
    Y = network.one_hot(y, 2, np.float64)
    fwd = network.forward(params, X)
    plain = network.backward(params, fwd, Y)
    penalised = network.backward(params, fwd, Y, l2=0.3)
    for k in range(2):
        np.testing.assert_allclose(penalised.dW[k], plain.dW[k] + 0.3 * params.W[k], atol=1e-15)
        np.testing.assert_array_equal(penalised.db[k], plain.db[k])
    squares = sum(w * w for W in params.W for w in W.ravel())
    assert network.l2_penalty(params, 0.3) == pytest.approx(0.5 * 0.3 * squares)
    assert network.l2_penalty(params, 0.0) == 0.0


# ------------------------------------------------------------------------------------------
# Gradient check: backpropagation against float64 central differences


@pytest.mark.parametrize(
    ("sizes", "l2"),
    [((12, 6, 5), 0.0), ((12, 6, 5), 1e-2), ((12, 6, 6, 5), 0.0), ((12, 6, 6, 5), 0.5),
     ((7, 4, 3), 1.0)],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_check_agrees_with_central_differences(sizes, l2, seed):
    result = gradcheck.gradient_check(sizes, batch=8, l2=l2, seed=seed)
    assert result.max_relative_error < 1e-6, result.per_parameter
    names = {f"{p}{k}" for k in range(1, len(sizes)) for p in "Wb"}
    assert set(result.per_parameter) == names
    assert result.sizes == sizes


def test_gradient_check_catches_a_wrong_backward(monkeypatch):
    right = network.backward

    def without_relu_mask(params, fwd, Y, l2=0.0):
        grads = right(params, fwd, Y, l2)
        grads.dW[0] = grads.dW[0] * 1.01
        return grads

    monkeypatch.setattr(network, "backward", without_relu_mask)
    result = gradcheck.gradient_check((6, 4, 3))
    assert result.max_relative_error > 1e-3
    assert result.per_parameter["W1"] > 1e-3
    assert result.per_parameter["W2"] < 1e-6


# ------------------------------------------------------------------------------------------
# The same forward and backward as PyTorch's autograd


@pytest.mark.parametrize(("sizes", "l2"), [((784, 10, 10), 0.0), ((784, 10, 10), 1e-3),
                                           ((20, 8, 6, 4), 0.1)])
def test_forward_and_backward_match_pytorch(sizes, l2):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    params = network.init_params(sizes, rng, "he", np.float64)
    params.b = [rng.normal(0, 0.1, b.shape) for b in params.b]
    X = rng.normal(size=(32, sizes[0]))
    y = rng.integers(0, sizes[-1], 32)

    Ws = [torch.tensor(W, requires_grad=True) for W in params.W]
    bs = [torch.tensor(b, requires_grad=True) for b in params.b]
    a = torch.tensor(X)
    for k, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        z = a @ W + b
        a = torch.relu(z) if k < len(Ws) - 1 else z
    logits = a
    loss = torch.nn.CrossEntropyLoss()(logits, torch.tensor(y))
    loss = loss + l2 / 2 * sum((W ** 2).sum() for W in Ws)
    loss.backward()

    fwd = network.forward(params, X)
    Y = network.one_hot(y, sizes[-1], np.float64)
    ours = network.cross_entropy(fwd.probabilities, Y) + network.l2_penalty(params, l2)
    assert ours == pytest.approx(loss.item(), abs=1e-10)
    np.testing.assert_allclose(fwd.probabilities, torch.softmax(logits, 1).detach().numpy(),
                               atol=1e-12)
    grads = network.backward(params, fwd, Y, l2)
    for k in range(len(Ws)):
        np.testing.assert_allclose(grads.dW[k], Ws[k].grad.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(grads.db[k], bs[k].grad.numpy(), atol=1e-5, rtol=0)
        # In float64 the two agree far more closely than the bound asks.
        np.testing.assert_allclose(grads.dW[k], Ws[k].grad.numpy(), atol=1e-12)


# ------------------------------------------------------------------------------------------
# Softmax and cross-entropy: properties


def logit_rows(max_abs: float = 1e4):
    return st.integers(1, 8).flatmap(lambda m: st.integers(1, 12).flatmap(
        lambda k: arrays(np.float64, (m, k),
                         elements=st.floats(-max_abs, max_abs, allow_nan=False))))


@settings(max_examples=200, deadline=None)
@given(logit_rows())
def test_softmax_rows_are_probabilities(Z):
    P = network.softmax(Z)
    assert np.isfinite(P).all()
    assert ((P >= 0) & (P <= 1)).all()
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # The largest logit gets the largest probability.
    np.testing.assert_array_equal(P[np.arange(len(Z)), np.argmax(Z, axis=1)], P.max(axis=1))


@settings(max_examples=200, deadline=None)
@given(logit_rows(1e3), st.data())
def test_softmax_ignores_a_constant_added_to_each_row(Z, data):
    shift = data.draw(arrays(np.float64, (len(Z), 1), elements=st.floats(-1e3, 1e3)))
    np.testing.assert_allclose(network.softmax(Z + shift), network.softmax(Z), rtol=0,
                               atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_of_huge_logits_is_finite(dtype):
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # not even a warning
        P = network.softmax(Z)
    assert P.dtype == dtype
    np.testing.assert_allclose(P, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0]], atol=1e-7)


def probability_rows():
    """Rows of probabilities, some holding exact zeros (softmax of logits far apart)."""
    return logit_rows(1e4).map(network.softmax)


@settings(max_examples=200, deadline=None)
@given(probability_rows(), st.data())
def test_cross_entropy_is_finite_and_not_negative(P, data):
    y = data.draw(arrays(np.int64, len(P), elements=st.integers(0, P.shape[1] - 1)))
    loss = network.cross_entropy(P, network.one_hot(y, P.shape[1], np.float64))
    assert math.isfinite(loss)
    assert loss >= 0


def test_cross_entropy_of_a_zero_probability_is_large_but_finite():
    P = np.array([[0.0, 1.0], [1.0, 0.0]])
    Y = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert network.cross_entropy(P, Y) == pytest.approx(-math.log(1e-12) / 2)
    assert network.cross_entropy(np.eye(3), np.eye(3)) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_cross_entropy_matches_scikit_learn_log_loss(seed):
    log_loss = pytest.importorskip("sklearn.metrics").log_loss
    rng = np.random.default_rng(seed)
    P = network.softmax(rng.normal(0, 3, (50, 10)))
    y = rng.integers(0, 10, 50)
    ours = network.cross_entropy(P, network.one_hot(y, 10, np.float64))
    assert ours == pytest.approx(log_loss(y, P, labels=range(10)), rel=1e-12)


# ------------------------------------------------------------------------------------------
# Parameters, dtypes, initialisation, prediction


def test_parameters_are_float32_by_default_and_float64_on_request():
    rng = np.random.default_rng(0)
    p32 = network.init_params((784, 10, 10), rng)
    assert p32.dtype == np.float32 and all(a.dtype == np.float32 for a in (*p32.W, *p32.b))
    assert p32.sizes == (784, 10, 10)
    assert [W.shape for W in p32.W] == [(784, 10), (10, 10)]
    assert [b.shape for b in p32.b] == [(10,), (10,)]
    X = rng.random((5, 784), dtype=np.float32)
    fwd = network.forward(p32, X)
    assert all(a.dtype == np.float32 for a in fwd.A)
    grads = network.backward(p32, fwd, network.one_hot(np.arange(5), 10))
    assert all(a.dtype == np.float32 for a in (*grads.dW, *grads.db))

    p64 = network.init_params((784, 10, 10), rng, dtype=np.float64)
    assert all(a.dtype == np.float64 for a in (*p64.W, *p64.b))
    assert network.forward(p64, X.astype(np.float64)).probabilities.dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_init_lies_in_half_open_interval(dtype):
    params = network.init_params((784, 100, 10), np.random.default_rng(1), "uniform", dtype)
    values = np.concatenate([a.ravel() for a in (*params.W, *params.b)])
    assert values.min() >= -0.5
    assert values.max() < 0.5
    assert values.min() < -0.49 and values.max() > 0.49  # it fills the interval
    assert abs(values.mean()) < 0.01


class _LargestDraws:
    """A generator stand-in whose every draw is the largest double below 1."""

    def random(self, size):
        return np.full(size, np.nextafter(1.0, 0.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_init_never_rounds_up_to_one_half(dtype):
    params = network.init_params((3, 2, 2), _LargestDraws(), "uniform", dtype)
    for array in (*params.W, *params.b):
        assert (array < 0.5).all()
        assert (array > 0.49).all()


def test_he_and_glorot_scales():
    rng = np.random.default_rng(2)
    he = network.init_params((784, 400, 10), rng, "he", np.float64)
    assert he.W[0].std() == pytest.approx(math.sqrt(2 / 784), rel=0.02)
    assert all((b == 0).all() for b in he.b)
    glorot = network.init_params((784, 400, 10), rng, "glorot", np.float64)
    limit = math.sqrt(6 / (784 + 400))
    assert np.abs(glorot.W[0]).max() <= limit
    assert glorot.W[0].std() == pytest.approx(limit / math.sqrt(3), rel=0.02)


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="unknown initialisation 'zeros'"):
        network.init_params((4, 2, 2), np.random.default_rng(0), "zeros")


def test_initialisation_depends_only_on_the_generator():
    a = network.init_params((784, 10, 10), np.random.default_rng(7))
    b = network.init_params((784, 10, 10), np.random.default_rng(7))
    c = network.init_params((784, 10, 10), np.random.default_rng(8))
    assert all(np.array_equal(x, y) for x, y in zip(a.W, b.W, strict=True))
    assert not np.array_equal(a.W[0], c.W[0])


def test_predict_is_the_argmax_of_the_probabilities():
    rng = np.random.default_rng(4)
    params = network.init_params((20, 8, 5), rng, dtype=np.float64)
    X = rng.normal(size=(100, 20))
    P = network.forward(params, X).probabilities
    predicted = network.predict(params, X)
    assert predicted.shape == (100,)
    np.testing.assert_array_equal(predicted, np.argmax(P, axis=1))
    assert len(set(predicted)) > 1


def test_predict_on_a_network_wired_by_hand():
    # One hidden unit per input copies it; the output picks the input that is on.
    eye = np.eye(3)
    params = Params([eye, eye * 10], [np.zeros(3), np.zeros(3)])
    X = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=np.float64)
    np.testing.assert_array_equal(network.predict(params, X), [2, 0, 1])


def test_one_hot():
    Y = network.one_hot(np.array([2, 0]), 3)
    np.testing.assert_array_equal(Y, [[0, 0, 1], [1, 0, 0]])
    assert Y.dtype == np.float32


def test_params_arrays_and_copy():
    params, _, _ = tiny_network()
    assert list(params.arrays()) == ["W1", "b1", "W2", "b2"]
    copy = params.copy()
    copy.W[0][0, 0] = 99.0
    assert params.W[0][0, 0] == 0.1
    assert params.all_finite()
    copy.b[1][0] = np.nan
    assert not copy.all_finite()
