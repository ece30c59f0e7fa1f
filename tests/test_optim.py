"""Optimizers against their textbook formulas; schedules at start, middle and end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from digitnet.optim import Adam, GradientDescent, Momentum, Schedule, make_optimizer

W0 = np.array([[0.5, -1.0], [2.0, 0.25]])
B0 = np.array([0.1, -0.3])
GRADS = [  # three steps' gradients for W and b
    (np.array([[0.2, -0.4], [1.0, 0.0]]), np.array([0.5, -0.1])),
    (np.array([[-0.1, 0.3], [0.5, 2.0]]), np.array([0.05, 0.2])),
    (np.array([[0.3, 0.1], [-1.5, 0.01]]), np.array([-0.2, 0.0])),
]


class Net(list):
    """The parameters as optimizers take them, a list of arrays, with the seed's names."""

    @property
    def W(self) -> list[np.ndarray]:
        return [self[0]]

    @property
    def b(self) -> list[np.ndarray]:
        return [self[1]]

    def copy(self) -> Net:
        return Net(a.copy() for a in self)


def fresh() -> Net:
    return Net([W0.copy(), B0.copy()])


def grads(k: int) -> list[np.ndarray]:
    dW, db = GRADS[k]
    return [dW.copy(), db.copy()]


def test_gradient_descent_is_w_minus_alpha_dw():
    params = fresh()
    GradientDescent().step(params, grads(0), 0.1)
    np.testing.assert_allclose(params.W[0], W0 - 0.1 * GRADS[0][0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(params.b[0], B0 - 0.1 * GRADS[0][1], rtol=0, atol=1e-15)
    assert GradientDescent().state() == {}


def test_momentum_two_steps():
    mu, alpha = 0.9, 0.1
    params = fresh()
    opt = Momentum(mu)
    opt.step(params, grads(0), alpha)
    opt.step(params, grads(1), alpha)
    for p0, k in ((W0, 0), (B0, 1)):
        g1, g2 = GRADS[0][k], GRADS[1][k]
        v1 = mu * 0 + g1           # v <- mu v + g, from v = 0
        p1 = p0 - alpha * v1       # W <- W - alpha v
        v2 = mu * v1 + g2
        p2 = p1 - alpha * v2
        got = params.W[0] if k == 0 else params.b[0]
        np.testing.assert_allclose(got, p2, rtol=0, atol=1e-15)
    # Written out for one entry: W[0,0] = 0.5 - 0.1·0.2 - 0.1·(0.9·0.2 - 0.1) = 0.472.
    assert params.W[0][0, 0] == pytest.approx(0.472, abs=1e-15)


@pytest.mark.parametrize("eps", [1e-8, 0.1])
def test_adam_three_steps_with_bias_correction(eps):
    beta1, beta2, alpha = 0.9, 0.999, 0.01
    params = fresh()
    opt = Adam(beta1, beta2, eps)
    for k in range(3):
        opt.step(params, grads(k), alpha)
    for p0, j, got in ((W0, 0, params.W[0]), (B0, 1, params.b[0])):
        p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
        for t in (1, 2, 3):
            g = GRADS[t - 1][j]
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            m_hat = m / (1 - beta1 ** t)
            v_hat = v / (1 - beta2 ** t)
            p = p - alpha * m_hat / (np.sqrt(v_hat) + eps)
        np.testing.assert_allclose(got, p, rtol=1e-12, atol=1e-15)
    assert opt.t == 3


def test_adam_first_step_moves_each_weight_by_alpha():
    # With m̂ = g and v̂ = g², the first step is alpha·sign(g) (for |g| much larger than eps).
    params = fresh()
    Adam().step(params, grads(0), 0.01)
    g = GRADS[0][0]
    expected = W0 - 0.01 * np.sign(g)
    np.testing.assert_allclose(params.W[0], expected, atol=1e-8)


@pytest.mark.parametrize("name", ["gd", "momentum", "adam"])
def test_state_round_trip_continues_identically(name):
    first = make_optimizer(name)
    params = fresh()
    for k in range(2):
        first.step(params, grads(k), 0.05)
    state = first.state()
    kept = {key: value.copy() for key, value in state.items()}
    resumed_params = params.copy()

    first.step(params, grads(2), 0.05)
    first.step(params, grads(0), 0.05)
    # The state taken earlier is a snapshot: later steps do not change it.
    assert all(np.array_equal(state[key], kept[key]) for key in kept)

    second = make_optimizer(name)
    second.load_state(state)
    second.step(resumed_params, grads(2), 0.05)
    second.step(resumed_params, grads(0), 0.05)
    for a, b in zip((*params.W, *params.b), (*resumed_params.W, *resumed_params.b),
                    strict=True):
        assert np.array_equal(a, b)
    assert second.state().keys() == first.state().keys()


def test_state_names():
    momentum, adam = Momentum(), Adam()
    assert momentum.state() == {} and adam.state() == {}
    momentum.step(fresh(), grads(0), 0.1)
    adam.step(fresh(), grads(0), 0.1)
    assert sorted(momentum.state()) == ["velocity.0", "velocity.1"]
    assert sorted(adam.state()) == ["m.0", "m.1", "t", "v.0", "v.1"]
    assert int(adam.state()["t"]) == 1


def test_float32_parameters_stay_float32():
    for name in ("gd", "momentum", "adam"):
        params = [W0.astype(np.float32), B0.astype(np.float32)]
        g = [GRADS[0][0].astype(np.float32), GRADS[0][1].astype(np.float32)]
        make_optimizer(name).step(params, g, 0.1)
        assert params[0].dtype == np.float32 and params[1].dtype == np.float32


def test_make_optimizer():
    assert isinstance(make_optimizer("gd"), GradientDescent)
    momentum = make_optimizer("momentum", momentum=0.5)
    assert isinstance(momentum, Momentum) and momentum.momentum == 0.5
    assert isinstance(make_optimizer("adam"), Adam)
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        make_optimizer("sgd")


# ------------------------------------------------------------------------------------------
# Schedules


def test_constant_schedule():
    schedule = Schedule("constant", 0.1, 100)
    assert [schedule(t) for t in (0, 50, 99, 100)] == [0.1, 0.1, 0.1, 0.1]


def test_cosine_schedule():
    schedule = Schedule("cosine", 0.1, 100)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(50) == pytest.approx(0.05)
    assert schedule(25) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert schedule(100) == pytest.approx(0.0, abs=1e-15)
    assert schedule(150) == pytest.approx(0.0, abs=1e-15)  # stays at the end
    values = [schedule(t) for t in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_onecycle_schedule():
    lr = 0.01
    schedule = Schedule("onecycle", lr, 100, warmup=0.3)  # 30 steps up, 70 down
    assert schedule(0) == pytest.approx(lr / 25)
    assert schedule(15) == pytest.approx(lr / 25 + (lr - lr / 25) / 2)
    assert schedule(30) == pytest.approx(lr)                         # the peak
    low = lr / 1e4
    assert schedule(65) == pytest.approx(low + (lr - low) / 2)       # halfway down
    assert schedule(100) == pytest.approx(low)                      # the end
    values = [schedule(t) for t in range(101)]
    assert max(values) == pytest.approx(lr)
    assert all(a <= b for a, b in zip(values[:31], values[1:31], strict=False))
    assert all(a >= b for a, b in zip(values[30:], values[31:], strict=False))


def test_onecycle_with_a_single_step():
    schedule = Schedule("onecycle", 0.5, 1)
    assert schedule(0) == pytest.approx(0.5 / 25)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        Schedule("step", 0.1, 10)
