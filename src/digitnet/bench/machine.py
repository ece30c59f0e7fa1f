"""The machine under the benchmark: what it is, its floors (matmul FLOP rate and copy
bandwidth), and the peak memory of a default training run in a child process."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from digitnet.bench.peers import FAST
from digitnet.bench.results import Floors, Machine, MemoryRun
from digitnet.errors import DigitnetError
from digitnet.fast import cpu as processor

__all__ = ["floors", "peak_rss", "machine"]


def floors(size: int, copy_mib: int) -> Floors:
    """A ``size`` x ``size`` float32 matmul's rate and a ``copy_mib`` MiB copy's bandwidth."""
    n = size
    rng = np.random.default_rng(0)
    A = rng.random((n, n), dtype=np.float32)
    B = rng.random((n, n), dtype=np.float32)
    C = np.empty_like(A)
    seconds = min(_timed(lambda: np.matmul(A, B, out=C)) for _ in range(3))
    flops = 2 * n**3 / seconds
    count = copy_mib * 2**20 // 4
    src = np.ones(count, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    copy = min(_timed(lambda: np.copyto(dst, src)) for _ in range(3))
    bandwidth = 2 * src.nbytes / copy  # read and write
    # One epoch of the 784-10-10 network over 60,000 images: X @ W1 forward and X.T @ dZ1
    # backward dominate (the layers above are 100 times smaller).
    epoch_flops = 60_000 * (2 * 784 * 10 * 2 + 2 * 10 * 10 * 3)
    return Floors(matmul_gflops=flops / 1e9, copy_gb_per_s=bandwidth / 1e9,
                  epoch_gflop=epoch_flops / 1e9, epoch_flop_floor_s=epoch_flops / flops,
                  epoch_stream_floor_s=60_000 * 784 * 4 / bandwidth)


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# Run the command line in a child, writing its VmHWM (peak resident set, KiB) at exit.
_REPORT_HWM = """
import atexit, sys
from pathlib import Path

def report(path=Path(sys.argv[1])):
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                path.write_text(line.split()[1])

atexit.register(report)
sys.argv = ["digitnet", *sys.argv[2:]]
from digitnet.cli import main
main()
"""


def peak_rss(data_dir: str | Path | None, epochs: int | None = None,
             backend: str = "auto") -> MemoryRun:
    """Run ``digitnet train --preset default`` in a child process and read its peak RSS.

    Returns the peak resident set size in MiB, the command, and figures of the run's own
    JSON report.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        args = ["train", "--preset", "default", "--json", "--quiet",
                "--out", str(folder / "model.safetensors")]
        if data_dir is not None:
            args += ["--data-dir", str(data_dir)]
        if epochs is not None:
            args += ["--epochs", str(epochs)]
        env = {**os.environ, "DIGITNET_BACKEND": backend, "OPENBLAS_NUM_THREADS": "1"}
        hwm = folder / "hwm"
        with open(folder / "out", "wb") as out, open(folder / "err", "wb") as err:
            child = subprocess.Popen([sys.executable, "-c", _REPORT_HWM, str(hwm), *args],
                                     stdout=out, stderr=err, env=env)
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            last = (folder / "err").read_text(errors="replace").strip().splitlines()[-1:]
            raise DigitnetError(f"digitnet train failed in the memory measurement: {last}")
        report = json.loads((folder / "out").read_text())
        # The child's own high-water mark. Its rusage is a fallback only: Linux carries the
        # parent's peak across fork and exec into it, and this process is large.
        peak_kib = int(hwm.read_text()) if hwm.exists() else usage.ru_maxrss
    shown = " ".join(a if a != str(data_dir) else "DATA" for a in args)
    return MemoryRun(peak_rss_mib=peak_kib / 1024, backend=backend,
                     command=f"DIGITNET_BACKEND={backend} digitnet {shown}",
                     test_accuracy=report.get("test_accuracy"),
                     train_seconds=report.get("train_seconds"))


def machine(threads: int) -> Machine:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    blas = None
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_info

        found = [f"{i.get('internal_api')} {i.get('version')}" for i in threadpool_info()
                 if i.get("user_api") == "blas"]
        blas = ", ".join(sorted(set(found)))
    versions = {name: __import__(name).__version__
                for name in ("numba", "sklearn", "torch", "onnxruntime")
                if importlib.util.find_spec(name) is not None}
    return Machine(cpu=cpu, cores=os.cpu_count(), threads=threads,
                   python=platform.python_version(), numpy=np.__version__, backend=FAST,
                   blas=blas, **versions, cpu_id=processor.cpu_id(),
                   vector_features=tuple(processor.vector_features()), paths=processor.paths())
