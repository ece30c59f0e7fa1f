"""``digitnet bench``: digitnet beside scikit-learn, PyTorch and the original notebook.

Everything runs in one process, one peer after another on the same data, so that the ratios are
fair on a noisy machine: the same MNIST images, the same 784-10-10 network, the same batch sizes,
the same number of threads (one by default: BLAS through threadpoolctl, ``torch.set_num_threads``,
and digitnet's kernels are single-threaded). Each time is the median of several repeats after a
warm-up. :func:`run` returns a :class:`~digitnet.bench.results.BenchResult`; the command line
renders it, and its ``to_dict()`` is the ``--json`` output.

Figures:

- seconds per training epoch over the 60,000 training images at batch 128 and 64;
- seconds from scratch to 93 % and 94 % test accuracy, each peer with its best settings found
  on this machine (:data:`RACE_SETTINGS`), test accuracy evaluated after every epoch (the
  evaluation is not counted), capped (:mod:`.races`);
- the ``seed`` preset (full-batch gradient descent) against :mod:`.naive_notebook`, the original
  notebook's NumPy written as it is, from the same starting weights and split;
- inference: images per second over the 10,000 test images, and one image's latency;
- peak resident memory of ``digitnet train --preset default`` in a child process;
- the machine's floors: a large float32 matmul's FLOP rate and a large copy's bandwidth.

The modules: :mod:`.peers` (the implementations and their epochs), :mod:`.races`,
:mod:`.machine` (floors, memory, what the machine is), :mod:`.suite` (the order of it all) and
:mod:`.results` (the typed result).
"""

from digitnet.bench.machine import machine, peak_rss
from digitnet.bench.peers import INSTALL_HINT, RACE_SETTINGS, MissingPeerError, check_peers
from digitnet.bench.results import BenchResult, Ratios
from digitnet.bench.suite import BenchSettings, run

__all__ = ["BenchSettings", "BenchResult", "Ratios", "MissingPeerError", "RACE_SETTINGS",
           "INSTALL_HINT", "run", "check_peers", "peak_rss", "machine"]
