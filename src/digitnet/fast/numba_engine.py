"""The numba engine: a whole run of training steps in one compiled call.

The first layer works on the non-zero pixels only, because ``X @ W1`` over an image is the sum
of ``p * W1[k]`` over its non-zero pixels ``p`` at ``k`` (an MNIST digit has about 150 of 784),
and standardising is folded in: with ``x = a p + c``, ``X @ W1 = a (P @ W1) + c sum(W1)`` and
``X.T @ dZ1 = a (P.T @ dZ1) + c sum(dZ1)``. The training images stay uint8; a compact list of
their non-zero pixels is built once. One hidden layer, float32.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from digitnet.errors import ConfigError
from digitnet.fast.cpu import vector_compress
from digitnet.fast.engines import Engine, Steps
from digitnet.network import Gradients
from digitnet.optim import Adam, GradientDescent, LossWatch, Momentum, Optimizer

__all__ = ["NumbaEngine", "numba_supports", "LANES", "blocks", "readonly", "compiled"]

LANES = 16  # float32 values in one AVX-512 register: the kernels work 16 units at a time


def blocks(n_in: int, units: int) -> np.ndarray:
    """Zeroed first-layer weights in blocks of 16 units: (ceil(units / 16), n_in, 16)."""
    return np.zeros((-(-units // LANES), n_in, LANES), np.float32)


def readonly(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


@contextlib.contextmanager
def _slp_vectorize() -> Iterator[None]:
    # numba leaves LLVM's SLP vectorizer off by default; it is what turns the 16 accumulators
    # into one vector register. Only these kernels are compiled with it.
    import numba

    config: Any = numba.config
    before = config.SLP_VECTORIZE
    config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        config.SLP_VECTORIZE = before


@functools.cache
def compiled() -> SimpleNamespace:
    """The kernels' entry points, compiled for their argument types, once per process.

    A process that compiles the kernels itself rounds some sums differently from one that loads
    them from numba's on-disk cache, so the first run on a machine would train other weights
    than every run after it. When the cache is cold, a child process compiles the kernels into
    it first; this process then loads them from the cache like every later one, and a seed
    gives the same weights in every run.
    """
    from digitnet.fast import kernels, pixels

    with _cache_lock(kernels):  # one process at a time checks and fills the cache
        if not _cache_is_warm(kernels):
            _compile_in_child(kernels)
    _compile()  # from the cache (compiled here only if the child could not write it)
    return SimpleNamespace(csr=pixels._nb_csr, prepare=kernels._nb_prepare,
                           train=kernels._nb_train, logits=kernels._nb_logits)


def _compile_in_child(kernels: Any) -> None:
    """Compile the kernels into numba's cache in a child process."""
    package_root = str(Path(kernels.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    subprocess.run([sys.executable, "-c",
                    "from digitnet.fast import numba_engine; numba_engine._compile()"],
                   env=env, capture_output=True, check=False, timeout=900)


@contextlib.contextmanager
def _cache_lock(kernels: Any) -> Iterator[None]:
    """Hold an exclusive lock on numba's cache folder (where the system offers ``flock``), so
    that a second process never loads, or removes, what the first is still compiling."""
    try:
        import fcntl

        folder = Path(kernels._nb_train._cache._cache_file._index_path).parent
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / "digitnet-compile.lock", "a")  # noqa: SIM115 (held below)
    except (ImportError, AttributeError, OSError):
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


STAMP = "digitnet-sources.sha256"  # beside numba's index: the sources the cache was built from


def _cache_is_warm(kernels: Any) -> bool:
    """Whether numba's cache holds the training kernel, compiled from the sources as they are.

    numba checks a cached function against its own file only, so an edit to a module whose
    kernels it inlines (``sparse.py``, ``listed.py``) would leave the old machine code in use.
    A digest of every source in this package, kept beside the cache, catches that.
    """
    try:
        index = Path(kernels._nb_train._cache._cache_file._index_path)
    except AttributeError:  # another numba's internals: let this process compile
        return True
    return _cache_matches(index, sources_digest())


def sources_digest(folder: Path | None = None) -> str:
    """A SHA-256 over the names and bytes of the ``.py`` files in ``folder`` (this package's)."""
    digest = hashlib.sha256()
    for path in sorted((folder or Path(__file__).resolve().parent).glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _cache_matches(index: Path, digest: str) -> bool:
    """Whether ``index`` exists and was compiled from sources with ``digest``; when not, the
    compiled files beside it are removed, so that nothing stale is loaded."""
    stamp = index.parent / STAMP
    with contextlib.suppress(OSError):
        if index.exists() and stamp.read_text() == digest:
            return True
    for path in [*index.parent.glob("*.nbi"), *index.parent.glob("*.nbc")]:
        with contextlib.suppress(OSError):
            path.unlink()
    return False


def _stamp_cache(kernels: Any) -> None:
    """Record beside numba's index the sources its kernels were just compiled from."""
    with contextlib.suppress(AttributeError, OSError):
        index = Path(kernels._nb_train._cache._cache_file._index_path)
        if index.exists():
            _atomic_text(index.parent / STAMP, sources_digest())


def _atomic_text(path: Path, text: str) -> None:
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        part.write_text(text)
        os.replace(part, path)
    finally:
        with contextlib.suppress(OSError):
            part.unlink()


def _compile() -> None:
    """Compile the entry points (the helpers they call compile with them, inside the same
    vectorizer setting)."""
    from numba import types as T

    from digitnet.fast.kernels import _nb_logits, _nb_prepare, _nb_train
    from digitnet.fast.pixels import _nb_csr

    # Images arrive read-only (straight from the data files) or not: typed read-only always,
    # so each kernel is compiled once.
    u8m = T.Array(T.uint8, 2, "C", readonly=True)
    f32v, f32m, f32b = T.float32[::1], T.float32[:, ::1], T.float32[:, :, ::1]
    f64v, i64v = T.float64[::1], T.int64[::1]
    with _slp_vectorize():
        _nb_csr.compile(T.Tuple((i64v, T.uint16[::1], T.uint8[::1]))(u8m, T.boolean))
        _nb_prepare.compile(T.void(f32m, f32v, T.float32, f32b, f32v))
        _nb_train.compile(T.void(i64v, T.uint16[::1], T.uint8[::1], i64v, i64v, T.int64, f64v,
                                 f64v, i64v, f32v, f32v, T.int64, f32v, f32v, f64v, T.int64,
                                 T.float64, T.float64, f32b, f32b, f64v, f64v))
        _nb_logits.compile(T.void(u8m, f32b, f32v, T.float32, T.int64, f32m, f32v, f32m, i64v,
                                  T.boolean))
    from digitnet.fast import kernels

    _stamp_cache(kernels)


def numba_supports(layers: int, dtype: str | np.dtype | type, n_inputs: int,
                   pixels: str | np.dtype | type = np.uint8) -> bool:
    """Whether the numba kernels cover this case: one hidden layer, float32 parameters, uint8
    pixels, fewer than 65,536 inputs."""
    return (layers == 1 and np.dtype(dtype) == np.float32 and n_inputs < 2**16
            and np.dtype(pixels) == np.uint8)


def _rule(optimizer: Optimizer, theta: np.ndarray) -> tuple[int, np.ndarray, np.ndarray,
                                                          np.ndarray]:
    """The optimizer as the kernel reads it: its rule's number, its two state arrays (over the
    flat parameters) and its constants beta1, beta2, eps, momentum."""
    from digitnet.fast import kernels

    optimizer.init_state([theta])
    unused = np.zeros_like(theta)
    kind = type(optimizer)  # exactly these: a subclass may step differently
    if kind is Adam and isinstance(optimizer, Adam):
        assert optimizer.m is not None and optimizer.v is not None
        constants = [optimizer.beta1, optimizer.beta2, optimizer.eps, 0.0]
        return kernels.ADAM, optimizer.m[0], optimizer.v[0], np.array(constants)
    if kind is Momentum and isinstance(optimizer, Momentum):
        assert optimizer.velocity is not None
        constants = [0.0, 0.0, 0.0, optimizer.momentum]
        return kernels.MOMENTUM, optimizer.velocity[0], unused, np.array(constants)
    if kind is GradientDescent:
        return kernels.GD, unused, unused, np.zeros(4)
    raise ConfigError(f"the numba backend has no update rule for {kind.__name__} (use numpy)")


class NumbaEngine(Engine):
    """Training steps as one compiled call per run; the n_in-H-C network in float32."""

    name = "numba"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        sizes = self.params.sizes
        if not numba_supports(len(sizes) - 2, self.flat.dtype, sizes[0], self.images.dtype):
            raise ConfigError("the numba backend covers one hidden layer in float32 on uint8 "
                              "pixels")
        if self.targets is not None:
            raise ConfigError("the numba backend learns from labels only; use numpy for "
                              "soft targets")
        self.kernels = compiled()
        self.indptr, self.indices, self.values = self.kernels.csr(readonly(self.images),
                                                                  vector_compress())
        self.dims = np.array(sizes, np.int64)
        self.W1p = blocks(sizes[0], sizes[1])
        self.G1p = np.zeros_like(self.W1p)
        p = self.preprocessing
        self.pre = np.array([p.scale / p.std, -p.mean / p.std])
        self.out = np.zeros(6)

    def _call(self, order: np.ndarray, batch_size: int, lrs: np.ndarray, theta: np.ndarray,
              optimizer: Optimizer, watch: LossWatch | None) -> Steps:
        kind, s1, s2, constants = _rule(optimizer, theta)
        t = optimizer.t if isinstance(optimizer, Adam) else 0
        state = np.array([math.nan, math.inf, 0.0, math.inf, 1.0])
        if watch is not None:  # the loss watch runs inside the kernel
            smoothed = math.nan if watch.smoothed is None else watch.smoothed
            state[:] = smoothed, watch.limit, watch.floor, watch.RISE, watch.EXAMPLES
        self.kernels.train(
            self.indptr, self.indices, self.values, self.labels,
            np.ascontiguousarray(order, dtype=np.int64), int(batch_size),
            np.ascontiguousarray(lrs, dtype=np.float64), self.pre, self.dims, theta,
            self.flat.grad, kind, s1, s2, constants, t, self.l2, self.label_smoothing,
            self.W1p, self.G1p, state, self.out)
        if watch is not None and not math.isnan(state[0]):
            watch.smoothed, watch.limit = float(state[0]), float(state[1])
        loss_sum, correct, seen, steps, diverged, last_loss = self.out
        optimizer.advance(int(steps))
        return Steps(float(loss_sum), int(correct), int(seen), int(steps), bool(diverged),
                     float(last_loss))

    def run(self, order: np.ndarray, lrs: np.ndarray, watch: LossWatch | None = None,
            should_stop: Callable[[], bool] | None = None) -> Steps:
        """As :meth:`Engine.run`, in one call: ``should_stop`` is asked once, before it."""
        if should_stop is not None and should_stop():
            return Steps(0.0, 0, 0, 0)
        return self._call(order, self.batch_size, lrs, self.flat.theta, self.optimizer, watch)

    def gradients(self, rows: np.ndarray) -> tuple[float, Gradients]:
        """The batch's loss and gradients, read off one plain gradient step of rate 1 taken on
        a copy of the parameters: g = theta - (theta - g)."""
        rows = np.asarray(rows)
        theta = self.flat.theta.copy()
        steps = self._call(rows, len(rows), np.ones(1), theta, GradientDescent(), None)
        grads = self.flat.theta - theta
        views = self.flat.views(grads)
        n = self.flat.n_layers
        return steps.loss_sum / steps.seen, Gradients(views[:n], views[n:])
