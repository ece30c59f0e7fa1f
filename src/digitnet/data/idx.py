"""IDX files (raw or gzip-compressed), read through the guarded reader, and the checks that
images and labels of any format pass."""

from __future__ import annotations

import gzip
import io
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from digitnet.data.registry import IMAGE_SHAPE, N_CLASSES, N_PIXELS
from digitnet.errors import DataError
from digitnet.guard import read_file

# The largest file read, before and after decompression. EMNIST's largest IDX file is 547 MB; a
# file or a gzip bomb beyond this is refused before it can exhaust memory.
MAX_FILE_BYTES = 1 << 30


# The IDX type byte and the dtype it stands for (big-endian, as the format says).
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _decompress(data: bytes, source: str) -> bytes | bytearray:
    """Decompress a file's bytes if they are gzip; a file named .gz must be."""
    if not data:
        raise DataError(f"{source}: empty file")
    if source.endswith(".gz") and data[:2] != _GZIP_MAGIC:
        raise DataError(f"{source}: not a gzip file (it is named .gz but does not start "
                        "with the gzip signature)")
    return _gunzip(data, source)


def _gunzip(data: bytes | bytearray, source: str) -> bytes | bytearray:
    if data[:2] != _GZIP_MAGIC:
        return data
    # Inflate into one buffer sized from the gzip trailer (ISIZE), not into chunks joined at the
    # end: the 47 MB training images are then held once, not twice. One spare byte tells
    # whether more follows than the trailer said (several members, or a lie); then it grows.
    hint = int.from_bytes(data[-4:], "little") if len(data) >= 18 else 0
    # deflate shrinks by at most 1032:1, so a larger claim is a lie not worth allocating for
    out = bytearray(min(hint, 1032 * len(data), MAX_FILE_BYTES) + 1)
    size = 0
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            while True:
                if size == len(out):
                    # Growing in steps, so a small file that inflates without end stops here.
                    if size > MAX_FILE_BYTES:
                        raise DataError(f"{source}: decompresses to more than "
                                        f"{_size(MAX_FILE_BYTES)}; not an MNIST-format file")
                    out.extend(bytes(min(max(size, 1 << 20), 1 << 24)))
                with memoryview(out) as view:  # 1 MiB at a time: readinto copies via bytes
                    n = f.readinto(view[size:size + (1 << 20)])
                if n == 0:
                    break
                size += n
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{source}: damaged gzip file ({exc}); delete it and fetch it again") \
            from None
    del out[size:]
    return out


def _size(n: int) -> str:
    return f"{n / 2**30:g} GiB" if n >= 2**30 else f"{n / 2**20:g} MiB"


def parse_idx(data: bytes | bytearray, source: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an IDX file (raw or gzip-compressed) into an array.

    Everything the header claims is checked: the magic number, the type byte, the number of
    dimensions and that the byte count matches their product. The result is a read-only view
    of the bytes for ``uint8`` data, with no copy and no per-pixel Python objects.

    Raises
    ------
    DataError
        Naming ``source`` and what is wrong.
    """
    data = _gunzip(data, source)
    if len(data) == 0:
        raise DataError(f"{source}: empty file")
    if len(data) < 4:
        raise DataError(f"{source}: truncated IDX header ({len(data)} bytes, expected at least 4)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{source}: wrong magic number 0x{data[:4].hex()} (an IDX file starts "
                        "with two zero bytes; is this an MNIST-format file?)")
    dtype = _IDX_DTYPES.get(data[2])
    if dtype is None:
        raise DataError(f"{source}: unknown IDX type byte 0x{data[2]:02x}")
    ndim = data[3]
    if ndim == 0:
        raise DataError(f"{source}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: truncated IDX header ({len(data)} bytes, "
                        f"{ndim} dimensions need {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    # Python integers: four 32-bit dimensions can overflow int64.
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "too long"
        raise DataError(f"{source}: {kind}: dimensions {'x'.join(map(str, shape))} need "
                        f"{expected} bytes, the file holds {len(data)}")
    try:
        return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    except ValueError:  # a zero dimension beside others whose product NumPy cannot index
        raise DataError(f"{source}: dimensions {'x'.join(map(str, shape))} are too large for "
                        "an array") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) from disk; see :func:`parse_idx`."""
    return parse_idx(_decompress(read_bytes(path), str(path)), str(path))



def read_bytes(path: str | Path) -> bytes:
    """A data file's bytes, through the guarded reader; see :func:`read_bytes_and_key`."""
    return read_bytes_and_key(path)[0]


def read_bytes_and_key(path: str | Path) -> tuple[bytes, str]:
    """A file's bytes and its verification-memo key, taken from the same open file.

    Taking the key (path, size, modification time) from the descriptor that was read, rather
    than by a later ``stat``, means a file replaced in between is never remembered as verified.
    """
    path = Path(path)
    found = read_file(path, what="data file", limit=MAX_FILE_BYTES, error=DataError)
    st = found.stat
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        resolved = path.absolute()
    return found.data, f"{resolved}|{st.st_size}|{st.st_mtime_ns}"


def _check_images(images: np.ndarray, source: str) -> np.ndarray:
    if images.dtype != np.uint8:
        raise DataError(f"{source}: images must be unsigned bytes, found {images.dtype}")
    if images.ndim == 2 and images.shape[1] == N_PIXELS:
        images = images.reshape(-1, *IMAGE_SHAPE)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{source}: images must be n x 28 x 28, found {_shape(images.shape)}")
    return images


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(map(str, shape)) if shape else "a single number (a 0-dimensional array)"


def _check_labels(labels: np.ndarray, source: str) -> np.ndarray:
    if labels.ndim != 1:
        raise DataError(f"{source}: labels must be one-dimensional, found "
                        f"{_shape(labels.shape)}")
    # Floats would be truncated by the cast below (3.7 -> 3, NaN -> anything): refuse them.
    if labels.dtype.kind not in "iu":
        raise DataError(f"{source}: labels must be integers, found {labels.dtype}")
    bad = np.flatnonzero((labels < 0) | (labels >= N_CLASSES))
    if bad.size:
        raise DataError(f"{source}: label {labels[bad[0]]} (item {bad[0] + 1}) out of range 0-9")
    return labels.astype(np.uint8, copy=False)


def _check_pair(images: np.ndarray, labels: np.ndarray, source: str) -> None:
    if len(images) != len(labels):
        raise DataError(f"{source}: {len(images)} images but {len(labels)} labels")

