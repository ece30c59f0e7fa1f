"""Optimizers and learning-rate schedules.

An optimizer owns its state (velocities, moments, step count) and takes the gradients in one
method, :meth:`Optimizer.step`, which updates the parameters in place. Its state can be read and
restored as named arrays, so a checkpoint can continue exactly where training stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from digitnet.network import Gradients, Params

__all__ = ["OPTIMIZERS", "SCHEDULES", "Optimizer", "GradientDescent", "Momentum", "Adam",
           "Schedule", "make_optimizer"]

OPTIMIZERS = ("gd", "momentum", "adam")
SCHEDULES = ("constant", "cosine", "onecycle")


class Optimizer:
    """Base class: ``step(params, grads, lr)`` updates ``params`` in place."""

    def step(self, params: Params, grads: Gradients, lr: float) -> None:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        """The optimizer's state as named arrays (empty for plain gradient descent)."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned."""


class GradientDescent(Optimizer):
    """W ← W − α dW: the seed's update."""

    def step(self, params: Params, grads: Gradients, lr: float) -> None:
        for p, g in zip((*params.W, *params.b), (*grads.dW, *grads.db), strict=True):
            p -= lr * g


def _zeros_like(params: Params) -> list[np.ndarray]:
    return [np.zeros_like(p) for p in (*params.W, *params.b)]


def _named(prefix: str, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    # Copies: the optimizer goes on updating its arrays in place after a checkpoint is taken.
    return {f"{prefix}.{k}": a.copy() for k, a in enumerate(arrays)}


def _unnamed(prefix: str, state: dict[str, np.ndarray]) -> list[np.ndarray]:
    keys = sorted((k for k in state if k.startswith(prefix + ".")),
                  key=lambda k: int(k.rsplit(".", 1)[1]))
    return [np.array(state[k]) for k in keys]


class Momentum(Optimizer):
    """SGD with momentum: v ← μ v + dW; W ← W − α v."""

    def __init__(self, momentum: float = 0.9) -> None:
        self.momentum = momentum
        self.velocity: list[np.ndarray] | None = None

    def step(self, params: Params, grads: Gradients, lr: float) -> None:
        if self.velocity is None:
            self.velocity = _zeros_like(params)
        for p, g, v in zip((*params.W, *params.b), (*grads.dW, *grads.db), self.velocity,
                           strict=True):
            v *= self.momentum
            v += g
            p -= lr * v

    def state(self) -> dict[str, np.ndarray]:
        return _named("velocity", self.velocity) if self.velocity is not None else {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.velocity = _unnamed("velocity", state) or None


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015).

    m ← β1 m + (1 − β1) g;  v ← β2 v + (1 − β2) g²;
    W ← W − α m̂ / (√v̂ + ε) with m̂ = m / (1 − β1ᵗ), v̂ = v / (1 − β2ᵗ).
    """

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.t = 0
        self.m: list[np.ndarray] | None = None
        self.v: list[np.ndarray] | None = None

    def step(self, params: Params, grads: Gradients, lr: float) -> None:
        if self.m is None or self.v is None:
            self.m, self.v = _zeros_like(params), _zeros_like(params)
        self.t += 1
        # Fold both bias corrections into the step size: one scalar instead of two arrays.
        step_size = lr * math.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        eps_hat = self.eps * math.sqrt(1 - self.beta2**self.t)
        for p, g, m, v in zip((*params.W, *params.b), (*grads.dW, *grads.db), self.m, self.v,
                              strict=True):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= step_size * m / (np.sqrt(v) + eps_hat)

    def state(self) -> dict[str, np.ndarray]:
        if self.m is None or self.v is None:
            return {}
        return {**_named("m", self.m), **_named("v", self.v), "t": np.array(self.t)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.m = _unnamed("m", state) or None
        self.v = _unnamed("v", state) or None
        self.t = int(np.asarray(state["t"]).item()) if "t" in state else 0


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
