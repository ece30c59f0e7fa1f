"""Optimizers, the loss watch and learning-rate schedules: the one update rule of every engine.

An optimizer owns its state (velocities, moments, step count) and takes the gradients in one
method, :meth:`Optimizer.step`, which updates a list of parameter arrays in place without
allocating: the readable reference passes one array per weight and bias, the fast engines pass
all parameters as one flat array (the way tinygrad fuses its buffers), and both run exactly
these lines. Its state can be read and restored as named arrays, so a checkpoint can continue
exactly where training stopped. The numba kernel repeats the rules in compiled form: that is
the one documented copy, held to these by the parity tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["OPTIMIZERS", "SCHEDULES", "Optimizer", "GradientDescent", "Momentum", "Adam",
           "Schedule", "make_optimizer", "add_l2", "LossWatch"]

OPTIMIZERS = ("gd", "momentum", "adam")
SCHEDULES = ("constant", "cosine", "onecycle")

Arrays = Sequence[np.ndarray]


def _zeros_like(arrays: Arrays) -> list[np.ndarray]:
    return [np.zeros_like(a) for a in arrays]


def _named(prefix: str, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    # Copies: the optimizer goes on updating its arrays in place after a checkpoint is taken.
    return {f"{prefix}.{k}": a.copy() for k, a in enumerate(arrays)}


def _unnamed(prefix: str, state: dict[str, np.ndarray]) -> list[np.ndarray] | None:
    keys = sorted((k for k in state if k.startswith(prefix + ".")),
                  key=lambda k: int(k.rsplit(".", 1)[1]))
    return [np.array(state[k]) for k in keys] or None


def _matching(arrays: list[np.ndarray] | None, params: Arrays) -> list[np.ndarray]:
    """``arrays`` when they match ``params`` one for one in shape and dtype, else zeros."""
    if arrays is not None and len(arrays) == len(params) and all(
            a.shape == p.shape for a, p in zip(arrays, params, strict=True)):
        return [a.astype(p.dtype, copy=False) for a, p in zip(arrays, params, strict=True)]
    if arrays is not None:
        raise ValueError(f"optimizer state of shapes {[a.shape for a in arrays]} does not fit "
                         f"parameters of shapes {[p.shape for p in params]}")
    return _zeros_like(params)


class Optimizer:
    """Base class: ``step(params, grads, lr)`` updates the arrays ``params`` in place.

    ``params`` and ``grads`` are lists of arrays of matching shapes; the same list (the same
    arrays) is passed at every step, since the state is kept one array per parameter array.
    """

    name = ""

    def __init__(self) -> None:
        self._work: list[np.ndarray] | None = None  # scratch, one per parameter array

    def init_state(self, params: Arrays) -> None:
        """Allocate the state for ``params`` if it is missing (a no-op for plain descent)."""

    def step(self, params: Arrays, grads: Arrays, lr: float) -> None:
        raise NotImplementedError

    def advance(self, steps: int) -> None:
        """Count ``steps`` taken by a compiled kernel with this rule (Adam's t)."""

    def state(self) -> dict[str, np.ndarray]:
        """The optimizer's state as named arrays (empty for plain gradient descent)."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned."""

    def _scratch(self, params: Arrays) -> list[np.ndarray]:
        if self._work is None or len(self._work) != len(params) or any(
                w.shape != p.shape or w.dtype != p.dtype
                for w, p in zip(self._work, params, strict=True)):
            self._work = _zeros_like(params)
        return self._work


class GradientDescent(Optimizer):
    """W <- W - lr dW: the seed's update."""

    name = "gd"

    def step(self, params: Arrays, grads: Arrays, lr: float) -> None:
        for p, g, work in zip(params, grads, self._scratch(params), strict=True):
            np.multiply(g, lr, out=work)
            p -= work


class Momentum(Optimizer):
    """SGD with momentum: v <- mu v + dW; W <- W - lr v."""

    name = "momentum"

    def __init__(self, momentum: float = 0.9) -> None:
        super().__init__()
        self.momentum = momentum
        self.velocity: list[np.ndarray] | None = None

    def init_state(self, params: Arrays) -> None:
        self.velocity = _matching(self.velocity, params)

    def step(self, params: Arrays, grads: Arrays, lr: float) -> None:
        if self.velocity is None:
            self.init_state(params)
        assert self.velocity is not None
        for p, g, v, work in zip(params, grads, self.velocity, self._scratch(params),
                                 strict=True):
            v *= self.momentum
            v += g
            np.multiply(v, lr, out=work)
            p -= work

    def state(self) -> dict[str, np.ndarray]:
        return _named("velocity", self.velocity) if self.velocity is not None else {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.velocity = _unnamed("velocity", state)


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015).

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    W <- W - lr m_hat / (sqrt(v_hat) + eps) with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t).
    """

    name = "adam"

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        super().__init__()
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.t = 0
        self.m: list[np.ndarray] | None = None
        self.v: list[np.ndarray] | None = None

    def init_state(self, params: Arrays) -> None:
        self.m, self.v = _matching(self.m, params), _matching(self.v, params)

    def step(self, params: Arrays, grads: Arrays, lr: float) -> None:
        if self.m is None or self.v is None:
            self.init_state(params)
        assert self.m is not None and self.v is not None
        self.t += 1
        # Both bias corrections folded into the step size: one scalar instead of two arrays.
        step_size = lr * math.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        eps_hat = self.eps * math.sqrt(1 - self.beta2**self.t)
        for p, g, m, v, work in zip(params, grads, self.m, self.v, self._scratch(params),
                                    strict=True):
            np.subtract(g, m, out=work)      # m <- m + (1 - b1)(g - m) = b1 m + (1 - b1) g
            work *= 1 - self.beta1
            m += work
            np.multiply(g, g, out=work)      # v <- v + (1 - b2)(g^2 - v)
            work -= v
            work *= 1 - self.beta2
            v += work
            np.sqrt(v, out=work)
            work += eps_hat
            np.divide(m, work, out=work)
            work *= step_size
            p -= work

    def advance(self, steps: int) -> None:
        self.t += steps

    def state(self) -> dict[str, np.ndarray]:
        if self.m is None or self.v is None:
            return {}
        return {**_named("m", self.m), **_named("v", self.v), "t": np.array(self.t)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.m = _unnamed("m", state)
        self.v = _unnamed("v", state)
        self.t = int(np.asarray(state["t"]).item()) if "t" in state else 0


def add_l2(grads: np.ndarray, weights: np.ndarray, l2: float, work: np.ndarray) -> None:
    """The gradient of the penalty l2/2 sum(W^2), l2 W, added to the weights' gradient in place
    (``work`` is scratch of the same shape). Biases are not penalised."""
    if l2:
        np.multiply(weights, l2, out=work)
        grads += work


class LossWatch:
    """Tells when the loss has run away although it stays finite.

    ``cross_entropy`` clips probabilities, so a run whose steps overshoot keeps a finite loss: it
    climbs toward -log(1e-12) = 27.6 while the hidden units die. The watch averages the data loss
    over about the last ``EXAMPLES`` examples (one hard minibatch must not count) and reports a
    rise above ``RISE`` times its start, or times log(n_classes), the loss of a uniform guess, if
    that is larger.
    """

    RISE = 2.0
    EXAMPLES = 1000

    def __init__(self, n_classes: int) -> None:
        self.floor = math.log(n_classes)
        self.smoothed: float | None = None
        self.limit = math.inf

    def rose(self, data_loss: float, batch: int) -> bool:
        if self.smoothed is None:
            self.smoothed = data_loss
            self.limit = self.RISE * max(data_loss, self.floor)
        self.smoothed += min(1.0, batch / self.EXAMPLES) * (data_loss - self.smoothed)
        return self.smoothed > self.limit

    def state_dict(self) -> dict[str, Any]:
        return {"smoothed": self.smoothed, "limit": self.limit}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.smoothed = None if state["smoothed"] is None else float(state["smoothed"])
        self.limit = math.inf if state["limit"] is None else float(state["limit"])


def make_optimizer(name: str, momentum: float = 0.9) -> Optimizer:
    """The optimizer called ``name``: ``gd``, ``momentum`` or ``adam``."""
    if name == "gd":
        return GradientDescent()
    if name == "momentum":
        return Momentum(momentum)
    if name == "adam":
        return Adam()
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


@dataclass(frozen=True)
class Schedule:
    """The learning rate at each step of a run of ``total`` steps.

    ``constant``: α throughout. ``cosine``: α · ½(1 + cos(π t / total)), from α down to 0.
    ``onecycle``: linear warm-up from α/25 to α over the first ``warmup`` fraction of the steps,
    then cosine down to α/10⁴.
    """

    kind: str
    lr: float
    total: int
    warmup: float = 0.3

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; choose one of "
                             f"{', '.join(SCHEDULES)}")

    def __call__(self, t: int) -> float:
        if self.kind == "constant":
            return self.lr
        if self.kind == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * min(t, self.total) / self.total))
        up = max(1, int(self.warmup * self.total))
        if t < up:
            return self.lr / 25 + (self.lr - self.lr / 25) * t / up
        frac = min(1.0, (t - up) / max(1, self.total - up))
        low = self.lr / 1e4
        return low + (self.lr - low) * 0.5 * (1 + math.cos(math.pi * frac))
