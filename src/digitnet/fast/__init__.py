"""Fast kernels: the network of ``network.py`` trained and run near the machine's limit.

``network.py`` is the readable reference; this package computes the same forward pass,
gradients and optimizer steps (equal to the reference to about 1e-5 in float32 on the same
batches), arranged for speed. Each module has one job:

``backend``
    Which engine runs (``auto``, ``numba``, ``numpy``, ``reference``; ``DIGITNET_BACKEND``
    overrides), and BLAS held to one thread while training.
``flat``
    All parameters in one flat array, the network's arrays as views into it, so that the
    optimizer's one rule (``optim.py``) updates everything in a few whole-array operations.
``engines``
    The one loop of steps; gradients by ``network.py`` as written (``reference``) or by the
    same math on preallocated buffers (``numpy``: any depth, float32 or float64).
``numba_engine``, ``kernels``, ``intrinsics``
    A run of steps in one compiled call over the images' non-zero pixels (one hidden layer,
    float32): the one compiled copy of the math, held to the reference by the parity tests.
``pixels``, ``cpu``
    How the non-zero pixels are found (vector compress or bit scan), chosen by what the CPU
    offers; the CPU's model and vector features.
``predictor``
    The one inference path, from raw images.
"""

from digitnet.fast.backend import (
    AUTO_NUMBA_EXAMPLES,
    BACKENDS,
    blas_threads,
    make_engine,
    numba_available,
    numba_supports,
    resolve_backend,
)
from digitnet.fast.engines import Engine, NumpyEngine, ReferenceEngine, Steps
from digitnet.fast.flat import FlatParams
from digitnet.fast.predictor import Predictor

__all__ = ["AUTO_NUMBA_EXAMPLES", "BACKENDS", "blas_threads", "numba_available",
           "numba_supports", "resolve_backend", "Engine", "NumpyEngine", "ReferenceEngine",
           "Steps", "make_engine", "FlatParams", "Predictor"]
