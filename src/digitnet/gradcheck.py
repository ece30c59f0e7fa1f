"""Check backpropagation against central differences, in float64."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitnet import network

__all__ = ["GradCheck", "gradient_check"]


@dataclass
class GradCheck:
    """The largest relative error between backprop and numerical gradients, per parameter."""

    max_relative_error: float
    per_parameter: dict[str, float]
    sizes: tuple[int, ...]
    batch: int


def gradient_check(
    sizes: tuple[int, ...] = (12, 6, 5),
    batch: int = 8,
    l2: float = 1e-2,
    seed: int = 0,
    h: float = 1e-6,
) -> GradCheck:
    """Compare :func:`network.backward` with central differences on a small random network.

    Every parameter is nudged by ±h and the loss (cross-entropy plus L2) recomputed; the
    relative error |a - n| / max(|a| + |n|, 1e-12) is taken elementwise.
    """
    rng = np.random.default_rng(seed)
    params = network.init_params(sizes, rng, "glorot", np.float64)
    params.b = [rng.normal(0, 0.1, b.shape) for b in params.b]  # non-zero biases test db too
    X = rng.normal(size=(batch, sizes[0]))
    Y = network.one_hot(rng.integers(0, sizes[-1], batch), sizes[-1], np.float64)

    def loss() -> float:
        P = network.forward(params, X).probabilities
        return network.cross_entropy(P, Y, eps=1e-300) + network.l2_penalty(params, l2)

    grads = network.backward(params, network.forward(params, X), Y, l2)
    errors = {}
    for name, p, g in zip(
        [f"W{k}" for k in range(1, len(sizes))] + [f"b{k}" for k in range(1, len(sizes))],
        [*params.W, *params.b], [*grads.dW, *grads.db], strict=True,
    ):
        numeric = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            keep = p[i]
            p[i] = keep + h
            up = loss()
            p[i] = keep - h
            down = loss()
            p[i] = keep
            numeric[i] = (up - down) / (2 * h)
        rel = np.abs(g - numeric) / np.maximum(np.abs(g) + np.abs(numeric), 1e-12)
        errors[name] = float(rel.max())
    return GradCheck(max(errors.values()), errors, tuple(sizes), batch)
