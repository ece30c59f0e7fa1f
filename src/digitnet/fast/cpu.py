"""What the processor offers: its model and the vector features the kernels' paths depend on.

The kernels choose between code paths by these features, never by a constant tuned on one
machine. The features are those numba compiles for (its ``NUMBA_CPU_NAME`` and
``NUMBA_CPU_FEATURES`` settings, else the host's, as LLVM reports them), so that a path is
chosen only where the compiled code can use the instructions it relies on.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from pathlib import Path

__all__ = ["VECTOR_FEATURES", "cpu_model", "cpu_id", "features", "vector_features",
           "vector_compress", "paths"]

# The features worth recording beside a measurement: vector widths, byte compress, dot-product
# and matrix units (LLVM's names; /proc/cpuinfo spells some differently, see _CPUINFO_NAMES).
VECTOR_FEATURES = ("sse4.2", "avx", "avx2", "fma", "bmi2", "avx512f", "avx512bw", "avx512vl",
                   "avx512vbmi2", "avx512vnni", "avxvnni", "avx512bf16", "avx512fp16",
                   "amx-tile", "amx-int8", "amx-bf16")
_CPUINFO_NAMES = {"sse4.2": "sse4_2", "amx-tile": "amx_tile", "amx-int8": "amx_int8",
                  "amx-bf16": "amx_bf16", "avxvnni": "avx_vnni", "avx512vbmi2": "avx512_vbmi2",
                  "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16",
                  "avx512fp16": "avx512_fp16"}


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_id() -> dict[str, str]:
    """The vendor, family and model numbers of ``/proc/cpuinfo`` (empty where it is absent):
    they tell apart processors that a virtual machine names alike ("AMD EPYC")."""
    wanted = {"vendor_id": "vendor", "cpu family": "family", "model": "model"}
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in wanted and wanted[key] not in found:
                found[wanted[key]] = value.strip()
            if not key:  # the first processor's block has ended
                break
    return found


@functools.cache
def features() -> frozenset[str]:
    """The CPU features the compiled kernels target, in LLVM's names (``avx2``,
    ``avx512vbmi2``, ...): numba's settings where given, else the host's from LLVM, else the
    kernel's flags in ``/proc/cpuinfo``."""
    from_numba = _numba_features()
    if from_numba is not None:
        return from_numba
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return frozenset(name for name in VECTOR_FEATURES
                                 if _CPUINFO_NAMES.get(name, name) in flags)
    return frozenset()


def _numba_features() -> frozenset[str] | None:
    configured = os.environ.get("NUMBA_CPU_FEATURES")
    if configured is not None:
        return _parse(configured)
    if os.environ.get("NUMBA_CPU_NAME") not in (None, "", "host"):
        return frozenset()  # a named generic CPU without features: assume none
    try:
        import llvmlite.binding as llvm
    except ImportError:
        return None
    try:
        return _parse(llvm.get_host_cpu_features().flatten())
    except RuntimeError:  # LLVM cannot tell on this platform
        return None


def _parse(spec: str) -> frozenset[str]:
    return frozenset(item[1:] for item in spec.split(",") if item.startswith("+"))


def vector_features() -> list[str]:
    """The vector features of :data:`VECTOR_FEATURES` this CPU has, in that order."""
    have = features()
    return [name for name in VECTOR_FEATURES if name in have]


def vector_compress() -> bool:
    """Whether the CPU compresses bytes in one instruction (AVX-512 VBMI2's ``vpcompressb``):
    then the kernels find an image's non-zero pixels with it; elsewhere LLVM would expand the
    compress into dozens of instructions, and listing a compare mask's set bits eight at a
    time, through a table, is faster."""
    return {"avx512vbmi2", "avx512bw", "avx512vl"} <= features()


def paths() -> dict[str, str]:
    """Which code path each kernel takes on this CPU, and why, in words (for the bench's
    record and the docs)."""
    compress = vector_compress()
    vector = "AVX-512" if "avx512f" in features() else "AVX2" if "avx2" in features() else \
        "SSE"
    return {
        "non_zero_pixels": ("vector compress (vpcompressb, AVX-512 VBMI2)" if compress else
                            "a compare mask's set bits listed a byte at a time through a "
                            "table (no one-instruction byte compress)"),
        "inference_first_layer": ("over compressed pixel lists" if compress else
                                  "over index lists of 8 images, values read from the images, "
                                  "four pixels a step"),
        "training_first_layer": (f"sparse, over pixel lists built once, in {vector}: blocks of "
                                 "16 units, of which 12 are summed when the layer has 12 "
                                 "or fewer (784-10-10)"),
        "full_batch": "the same sparse kernel (it beat float32 BLAS over uint8 chunks)",
    }
