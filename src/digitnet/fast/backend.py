"""Which engine trains and predicts: the backend choice, and BLAS held to one thread."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import warnings
from collections.abc import Iterator

import numpy as np

from digitnet.errors import ConfigError
from digitnet.fast.engines import Engine, NumpyEngine, ReferenceEngine
from digitnet.fast.flat import FlatParams
from digitnet.fast.numba_engine import NumbaEngine, compiled, numba_supports
from digitnet.optim import Optimizer
from digitnet.preprocessing import Preprocessing

__all__ = ["BACKENDS", "AUTO_NUMBA_EXAMPLES", "NUMBA_VERSIONS", "numba_available",
           "numba_supports", "numba_fails", "resolve_backend", "blas_threads", "make_engine"]

# The kernels' LLVM intrinsics (opaque pointers, llvm.experimental.vector.compress) need the
# LLVM 20 or later that llvmlite 0.45 brought, with numba 0.62; the same range is declared in
# pyproject.toml's fast extra.
NUMBA_VERSIONS = ">=0.62"

BACKENDS = ("auto", "numba", "numpy", "reference")

# ``auto`` trains with numba from this many examples (steps times batch size) on. Below it the
# numba kernels' fixed cost, about half a second to load them and 130 MiB of memory for LLVM,
# outweighs what they save over the NumPy engine (measured: benchmarks/RESULTS.md). The choice
# depends on the config and the data alone, so a seed still gives the same weights every time.
AUTO_NUMBA_EXAMPLES = 2_000_000

def numba_available() -> bool:
    """Whether numba can be imported (checked without importing it)."""
    return importlib.util.find_spec("numba") is not None


@functools.cache
def numba_fails() -> str | None:
    """None when the numba kernels compile on this machine (they are compiled now, once),
    else why not, in one line: a numba outside :data:`NUMBA_VERSIONS`, or an LLVM that lacks
    what the kernels use."""
    try:
        compiled()
    except Exception as exc:  # any failure to build them means: use NumPy
        message = " ".join(str(exc).split())
        return f"{type(exc).__name__}: {message[:200]}"
    return None


def resolve_backend(name: str | None, layers: int = 1, dtype: str = "float32",
                    n_inputs: int = 784, pixels: str | np.dtype | type = np.uint8,
                    examples: int | None = None) -> str:
    """The backend to train with: ``numba``, ``numpy`` or ``reference``.

    ``name`` None means the ``DIGITNET_BACKEND`` environment variable, else ``auto``: numba
    when it is installed, covers the case (see :func:`numba_supports`) and the run trains on
    at least :data:`AUTO_NUMBA_EXAMPLES` ``examples`` (None: any run); otherwise numpy.

    Raises
    ------
    ConfigError
        For an unknown name, or ``numba`` asked for where it is missing or does not apply.
    """
    name = name or os.environ.get("DIGITNET_BACKEND") or "auto"
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    fits = numba_supports(layers, dtype, n_inputs, pixels)
    if name == "auto":
        long_enough = examples is None or examples >= AUTO_NUMBA_EXAMPLES
        if not (fits and long_enough and numba_available()):
            return "numpy"
        why = numba_fails()
        if why is not None:
            warnings.warn(f"the numba kernels do not compile here ({why}); training with "
                          "NumPy instead", RuntimeWarning, stacklevel=2)
            return "numpy"
        return "numba"
    if name == "numba" and not numba_available():
        raise ConfigError("backend 'numba' needs numba: pip install numba (or use numpy)")
    if name == "numba" and (why := numba_fails()) is not None:
        raise ConfigError(f"backend 'numba': the kernels do not compile here ({why}); "
                          f"install numba {NUMBA_VERSIONS} or use numpy")
    if name == "numba" and not fits:
        raise ConfigError(f"backend 'numba' covers one hidden layer in float32 on uint8 pixels; "
                          f"this is {layers} hidden layer(s) in {np.dtype(dtype).name} on "
                          f"{np.dtype(pixels).name} inputs (use numpy)")
    return name


@contextlib.contextmanager
def blas_threads(n: int = 1) -> Iterator[None]:
    """Limit BLAS to ``n`` threads inside the block (with threadpoolctl when it is installed).

    The network's matrices are tiny ((128, 784) @ (784, 10) per step): on a 2-core machine a
    second BLAS thread costs more in hand-offs than it brings, so training runs on one. Without
    threadpoolctl this does nothing; set ``OPENBLAS_NUM_THREADS`` before starting Python.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def make_engine(backend: str, flat: FlatParams, optimizer: Optimizer, images: np.ndarray,
                labels: np.ndarray, preprocessing: Preprocessing, batch_size: int,
                l2: float = 0.0, label_smoothing: float = 0.0,
                targets: np.ndarray | None = None) -> Engine:
    """The engine for ``backend``: ``reference``, ``numpy`` or ``numba``."""
    engines: dict[str, type[Engine]] = {"reference": ReferenceEngine, "numpy": NumpyEngine,
                                        "numba": NumbaEngine}
    if backend not in engines:
        raise ConfigError(f"no engine for backend {backend!r}; choose reference, numpy or "
                          "numba")
    return engines[backend](flat, optimizer, images, labels, preprocessing, batch_size, l2,
                            label_smoothing, targets)
