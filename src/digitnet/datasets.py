"""Find, fetch, verify and parse MNIST-format data.

The named datasets (``mnist`` and ``fashion-mnist``) come as four IDX files, gzip-compressed or
raw. :func:`load` looks for them, in order, in

1. the ``data_dir`` argument, then the ``DIGITNET_DATA`` variable: a folder whose sub-folder
   ``<name>/`` holds the files;
2. the user cache (pooch's OS cache for ``digitnet``, or ``DIGITNET_CACHE``);
3. the system folder ``/usr/share/datasets/<name>/`` (where Debian installs Fashion-MNIST);
4. a download from the dataset's mirrors into the cache, each file's hash checked.

Whatever the source, the *decompressed* content of each file is checked against the published
SHA-256, so recompressed copies pass and damaged ones do not. A verified hash is remembered
(keyed by path, size and modification time), so a second load does not hash 47 MB again.

Other formats people have are read by :func:`load_file`: the Kaggle "digit-recognizer" CSV, the
headerless ``label,784 pixels`` CSV, keras' ``mnist.npz`` and single IDX files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitnet.errors import DataError

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "SplitFiles",
    "class_balance",
    "load",
    "load_file",
    "load_split",
    "locate",
    "parse_csv",
    "parse_idx",
    "parse_npz",
    "read_idx",
    "cache_dir",
]

SPLITS = ("train", "test")
IMAGE_SHAPE = (28, 28)
N_PIXELS = 28 * 28
N_CLASSES = 10
SYSTEM_DIR = Path("/usr/share/datasets")
# The largest file read, before and after decompression. EMNIST's largest IDX file is 547 MB; a
# file or a gzip bomb beyond this is refused before it can exhaust memory.
MAX_FILE_BYTES = 1 << 30


@dataclass(frozen=True)
class DatasetInfo:
    """What is published about one named dataset.

    ``sha256`` holds the hash of each file's decompressed IDX content; ``gz_md5`` the hash of the
    canonical ``.gz`` file on the mirrors, which is what a download is checked against.
    """

    name: str
    title: str
    mirrors: tuple[str, ...]
    sha256: dict[str, str]
    gz_md5: dict[str, str]
    class_names: tuple[str, ...] = tuple(str(d) for d in range(10))


# The four files of a dataset, by split.
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        title="MNIST",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        sha256={
            "train-images-idx3-ubyte": (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
            ),
            "train-labels-idx1-ubyte": (
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
            ),
            "t10k-images-idx3-ubyte": (
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
            ),
            "t10k-labels-idx1-ubyte": (
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
            ),
        },
        gz_md5={
            "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        title="Fashion-MNIST",
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        sha256={
            "train-images-idx3-ubyte": (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
            ),
            "train-labels-idx1-ubyte": (
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
            ),
            "t10k-images-idx3-ubyte": (
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
            ),
            "t10k-labels-idx1-ubyte": (
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
            ),
        },
        gz_md5={
            "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
    ),
}


@dataclass
class SplitFiles:
    """Where one split of a named dataset was found."""

    name: str
    split: str
    images: Path
    labels: Path
    source: str  # "data_dir", "DIGITNET_DATA", "cache", "system" or "download"
    verified: bool = False
    sha256: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# IDX


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
    return parse_idx(_decompress(_read_bytes(path), str(path)), str(path))


def _read_bytes(path: str | Path) -> bytes:
    return _read_bytes_and_key(path)[0]


def _read_bytes_and_key(path: str | Path) -> tuple[bytes, str]:
    """A file's bytes and its verification-memo key, taken from the same open file.

    Taking the key (path, size, modification time) from the descriptor that was read, rather
    than by a later ``stat``, means a file replaced in between is never remembered as verified.
    """
    path = Path(path)
    try:
        # Checked before opening: opening a FIFO blocks, and a device can be read without end.
        if not stat.S_ISREG(path.stat().st_mode) and not path.is_dir():
            raise DataError(f"{path}: is not a regular file")
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size > MAX_FILE_BYTES:
                raise DataError(f"{path}: {st.st_size:,} bytes is larger than any MNIST-format "
                                f"file digitnet reads (at most {_size(MAX_FILE_BYTES)})")
            data = f.read(MAX_FILE_BYTES + 1)
        return data, f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _check_images(images: np.ndarray, source: str) -> np.ndarray:
    if images.dtype != np.uint8:
        raise DataError(f"{source}: images must be unsigned bytes, found {images.dtype}")
    if images.ndim == 2 and images.shape[1] == N_PIXELS:
        images = images.reshape(-1, *IMAGE_SHAPE)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{source}: images must be n x 28 x 28, found "
                        f"{' x '.join(map(str, images.shape))}")
    return images


def _check_labels(labels: np.ndarray, source: str) -> np.ndarray:
    if labels.ndim != 1:
        raise DataError(f"{source}: labels must be one-dimensional, found shape {labels.shape}")
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


def _read_split(files: SplitFiles) -> tuple[np.ndarray, np.ndarray]:
    info = DATASETS[files.name]
    contents = []
    for path, stem in zip((files.images, files.labels), FILES[files.split], strict=True):
        data, key = _read_bytes_and_key(path)
        raw = _decompress(data, str(path))
        if not raw:  # say so, rather than that its (empty) content differs
            raise DataError(f"{path}: empty file; delete it and fetch it again")
        files.sha256[stem] = _verify(path, key, raw, info.sha256[stem], info.title)
        contents.append(raw)
    images_raw, labels_raw = contents
    files.verified = True
    images = _check_images(parse_idx(images_raw, str(files.images)), str(files.images))
    labels = _check_labels(parse_idx(labels_raw, str(files.labels)), str(files.labels))
    _check_pair(images, labels, f"{files.images.parent}")
    return images, labels


# --------------------------------------------------------------------------------------------
# Verification, remembered across loads


def cache_dir() -> Path:
    """The user cache folder (``DIGITNET_CACHE`` or pooch's OS cache for ``digitnet``)."""
    env = os.environ.get("DIGITNET_CACHE")
    if env:
        return Path(env).expanduser()
    import pooch  # imported here: it is only needed to find the cache

    return Path(pooch.os_cache("digitnet"))


def _hash_memo_path() -> Path:
    return cache_dir() / "verified.json"


def _read_memo() -> dict[str, str]:
    try:
        memo = json.loads(_hash_memo_path().read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _write_memo(memo: dict[str, str]) -> None:
    # The memo only saves time; a cache we cannot write to is no reason to fail a load.
    from digitnet._atomic import atomic_write_bytes

    try:
        atomic_write_bytes(_hash_memo_path(), json.dumps(memo, indent=0).encode())
    except OSError:
        pass


def _verify(path: Path, key: str, content: bytes | bytearray, expected: str, title: str) -> str:
    """Check ``content`` (read from ``path``, memo ``key``) against the published SHA-256."""
    memo = _read_memo()
    if memo.get(key) == expected:
        return expected
    digest = hashlib.sha256(content).hexdigest()
    if digest != expected:
        raise DataError(f"{path}: content differs from the published {title} "
                        f"(SHA-256 {digest[:12]}…, expected {expected[:12]}…); "
                        "the file is damaged or is another dataset")
    # Entries for earlier versions of the same file can never match again: drop them.
    resolved = key.rsplit("|", 2)[0]
    memo = {k: v for k, v in memo.items() if k.rsplit("|", 2)[0] != resolved}
    memo[key] = digest
    _write_memo(memo)
    return digest


# --------------------------------------------------------------------------------------------
# Finding a named dataset


def _candidates(stem: str) -> tuple[str, ...]:
    # Files as published (".gz"), decompressed, or with the dot some copies use.
    dotted = stem.replace("-idx", ".idx")
    return (f"{stem}.gz", stem, f"{dotted}.gz", dotted)


def _find_in(folder: Path, stem: str) -> Path | None:
    for candidate in _candidates(stem):
        path = folder / candidate
        if path.exists() or path.is_symlink():
            return path
    return None


# Folders a person points at: holding part of a dataset there is a mistake worth reporting.
# The cache and the system folder may hold part of one (a download stopped half-way, or only
# one split fetched so far); the missing files are then downloaded into the cache.
_USER_SOURCES = ("data_dir", "DIGITNET_DATA")


def _split_in(folder: Path, name: str, split: str, source: str) -> SplitFiles | None:
    """The split's two files in ``folder``; None if the folder does not hold them all.

    Raises
    ------
    DataError
        If a folder the user named holds some of the dataset's files but not the split's two.
    """
    if not folder.is_dir():
        return None
    found = {stem: _find_in(folder, stem) for stems in FILES.values() for stem in stems}
    if not any(found.values()):
        return None
    images, labels = (found[stem] for stem in FILES[split])
    if images is None or labels is None:
        if source not in _USER_SOURCES:
            return None
        missing = [stem for stem in FILES[split] if found[stem] is None]
        raise DataError(f"{folder}: holds only some of the {DATASETS[name].title} files; "
                        f"missing {', '.join(missing)} (.gz or raw) for the {split} split")
    return SplitFiles(name, split, images, labels, source)


def _folders(name: str, data_dir: str | Path | None) -> list[tuple[Path, str]]:
    folders: list[tuple[Path, str]] = []
    for root, source in ((data_dir, "data_dir"), (os.environ.get("DIGITNET_DATA"),
                                                  "DIGITNET_DATA")):
        if root:
            root = Path(root).expanduser()
            # A folder named on purpose that is not there is a typo, not a reason to download.
            where = "--data-dir" if source == "data_dir" else "DIGITNET_DATA"
            try:
                root.stat()
            except FileNotFoundError:
                raise DataError(f"{root}: no such folder (given by {where})") from None
            except OSError as exc:  # a symbolic link loop, a path through a file
                raise DataError(f"{root}: cannot be searched ({exc.strerror or exc}; given by "
                                f"{where})") from None
            if not root.is_dir():
                raise DataError(f"{root}: is a file, expected a folder holding <name>/ "
                                f"with the IDX files (given by {where})")
            folders += [(root / name, source), (root, source)]
    folders.append((cache_dir() / name, "cache"))
    folders.append((SYSTEM_DIR / name, "system"))
    return folders


def _check_name(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of: "
                        f"{', '.join(DATASETS)} (or give a file)") from None


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose 'train' or 'test'")


def locate(
    name: str = "mnist",
    split: str = "train",
    data_dir: str | Path | None = None,
    download: bool = True,
    progressbar: Any = None,
) -> SplitFiles:
    """Find (or download) one split of a named dataset without reading it.

    Parameters
    ----------
    progressbar
        Passed to pooch's downloader: any object with ``total``, ``update``, ``reset`` and
        ``close``, or None for no progress display.

    Raises
    ------
    DataError
        If the files are nowhere and cannot be downloaded, saying where it looked.
    """
    info = _check_name(name)
    _check_split(split)
    try:
        folders = _folders(name, data_dir)
    except OSError as exc:
        raise DataError(f"{exc.filename}: cannot be searched ({exc.strerror or exc})") from None
    for folder, source in folders:
        try:
            found = _split_in(folder, name, split, source)
        except OSError as exc:
            raise DataError(f"{folder}: cannot be searched ({exc.strerror or exc})") from None
        if found is not None:
            return found
    looked = ", ".join(dict.fromkeys(str(f) for f, _ in folders))
    if not download:
        raise DataError(f"{info.title} {split} files not found (looked in {looked}); "
                        "point --data-dir or DIGITNET_DATA at a folder holding "
                        f"{name}/ with the IDX files")
    return _download(info, split, progressbar, looked)


def _download(info: DatasetInfo, split: str, progressbar: Any, looked: str) -> SplitFiles:
    import pooch  # the downloader is only needed here

    folder = cache_dir() / info.name
    pooch.get_logger().setLevel("WARNING")  # the caller shows progress; the library stays quiet
    paths = []
    for stem in FILES[split]:
        errors = []
        for mirror in info.mirrors:
            try:
                downloader = pooch.HTTPDownloader(progressbar=progressbar or False, timeout=30)
                path = pooch.retrieve(
                    url=f"{mirror}{stem}.gz",
                    known_hash=f"md5:{info.gz_md5[stem]}",
                    fname=f"{stem}.gz",
                    path=folder,
                    downloader=downloader,
                )
                paths.append(Path(path))
                break
            except Exception as exc:  # noqa: BLE001 - any failure means: try the next mirror
                errors.append(f"{mirror}: {_download_failure(exc)}")
        else:
            raise DataError(f"{info.title} {split} files not found (looked in {looked}) and "
                            f"the download of {stem}.gz failed from every mirror "
                            f"({'; '.join(errors)}); point --data-dir or DIGITNET_DATA at a "
                            f"folder holding {info.name}/ with the IDX files")
    return SplitFiles(info.name, split, paths[0], paths[1], "download")


def _download_failure(exc: Exception) -> str:
    """A few words on why one download failed, for the list of mirrors tried."""
    text = str(exc)
    if isinstance(exc, ValueError) and "hash" in text.lower():
        return "MD5 hash of the downloaded file differs from the published one"
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first[:120]}" if first else type(exc).__name__


def load(
    name: str = "mnist",
    split: str = "train",
    data_dir: str | Path | None = None,
    download: bool = True,
    progressbar: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a named dataset, verified against the published content.

    Parameters
    ----------
    name
        ``"mnist"`` or ``"fashion-mnist"``.
    split
        ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
    data_dir
        A folder whose sub-folder ``<name>/`` holds the four IDX files; searched first.
    download
        Whether to fetch the files from the dataset's mirrors when found nowhere.

    Returns
    -------
    images : ndarray of uint8, shape (n, 28, 28)
    labels : ndarray of uint8, shape (n,)
        In the file's order. Both are read-only views of the file's bytes (no copy); copy
        them before changing them in place.

    Raises
    ------
    DataError
        If the files are nowhere, malformed, or differ from the published content.
    """
    return _read_split(locate(name, split, data_dir, download, progressbar))


def load_split(
    name: str = "mnist",
    split: str = "train",
    data_dir: str | Path | None = None,
    download: bool = True,
    progressbar: Any = None,
) -> tuple[np.ndarray, np.ndarray, SplitFiles]:
    """Like :func:`load`, also returning where the files were found and their hashes."""
    files = locate(name, split, data_dir, download, progressbar)
    images, labels = _read_split(files)
    return images, labels, files


# --------------------------------------------------------------------------------------------
# Other formats: CSV, npz, single IDX files


def parse_csv(
    data: bytes | bytearray, source: str = "<bytes>"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Parse an MNIST CSV: Kaggle's (with a header) or headerless ``label,784 pixels``.

    A Kaggle ``test.csv`` (header ``pixel0..pixel783``, no label) gives images only, and so does
    a headerless file of 784 columns. Quoted cells, a byte-order mark, CRLF line ends and blank
    lines are accepted; every cell must be an integer, pixels 0-255 and labels 0-9.

    Returns
    -------
    images : ndarray of uint8, shape (n, 28, 28)
    labels : ndarray of uint8, shape (n,), or None when the file has no label column

    Raises
    ------
    DataError
        Naming ``source``, the line and what is wrong.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{source}: not a text CSV file (undecodable bytes)") from None
    # (line number, line) for each non-blank line, so messages point at the file's own lines.
    rows = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not rows:
        raise DataError(f"{source}: empty CSV file")
    first = _cells(rows[0][1])
    # A header names its columns: Kaggle's start with "label" or "pixel0". A first line that
    # starts with a number is data, and a non-number later in it a bad cell; one that numbers
    # the columns 0, 1, 2, ... is the header pandas writes for unnamed columns.
    numbered = len(first) in (N_PIXELS, N_PIXELS + 1) and first == [
        str(k) for k in range(len(first))]
    has_header = numbered or not _is_number(first[0])
    if has_header:
        has_label = len(first) == N_PIXELS + 1 if numbered else _check_header(first, source)
        rows = rows[1:]
        if not rows:
            raise DataError(f"{source}: no rows after the header")
    else:
        if len(first) not in (N_PIXELS, N_PIXELS + 1):
            raise DataError(f"{source}: {len(first)} columns in line {rows[0][0]}, expected 785 "
                            "(label and 784 pixels) or 784 (pixels only)")
        has_label = len(first) == N_PIXELS + 1
    values = _csv_values(rows, has_label, has_header, source)
    pixels = values[:, 1:] if has_label else values
    outside = (pixels < 0) | (pixels > 255)
    if outside.any():
        row, col = np.argwhere(outside)[0]
        raise DataError(f"{source}: pixel value {pixels[row, col]} on line {rows[row][0]} "
                        f"(column {col + 1 + has_label}) outside 0-255")
    images = pixels.astype(np.uint8).reshape(-1, *IMAGE_SHAPE)
    if not has_label:
        return images, None
    bad = np.flatnonzero((values[:, 0] < 0) | (values[:, 0] >= N_CLASSES))
    if bad.size:
        raise DataError(f"{source}: label {values[bad[0], 0]} on line {rows[bad[0]][0]} "
                        "out of range 0-9")
    return images, values[:, 0].astype(np.uint8)


def _cells(line: str) -> list[str]:
    return [cell.strip().strip('"').strip().lower() for cell in line.split(",")]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _check_header(header: list[str], source: str) -> bool:
    """Check a Kaggle header and say whether it has a label column."""
    has_label = header[0] == "label"
    if not has_label and header[0] != "pixel0":
        raise DataError(f"{source}: header starts with {header[0]!r}, expected 'label' (or "
                        "'pixel0' for a file without labels)")
    pixels = header[1:] if has_label else header
    if len(pixels) != N_PIXELS:
        raise DataError(f"{source}: {len(pixels)} pixel columns in the header, expected 784")
    return has_label


def _csv_values(
    rows: list[tuple[int, str]], has_label: bool, has_header: bool, source: str
) -> np.ndarray:
    columns = N_PIXELS + has_label
    for number, line in rows:
        found = line.count(",") + 1
        if found != columns:
            hint = ""
            if has_header and not has_label and found == columns + 1:
                hint = " (the header has no 'label' column but the rows have one more cell)"
            raise DataError(f"{source}: line {number} has {found} columns, expected "
                            f"{columns}{hint}")
    try:
        # int32: a Kaggle train.csv (42,000 rows) takes 130 MB, not 260; any value int32
        # cannot hold is out of range anyway.
        return np.loadtxt([line for _, line in rows], delimiter=",", dtype=np.int32,
                          quotechar='"', comments=None, ndmin=2)
    except (ValueError, OverflowError) as exc:
        raise DataError(_bad_cell(rows, source, exc)) from None


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _bad_cell(rows: list[tuple[int, str]], source: str, exc: Exception) -> str:
    """Find the cell NumPy could not read, to name its line and column."""
    for number, line in rows:
        for column, cell in enumerate(line.split(","), start=1):
            text = cell.strip().strip('"').strip()
            if not _INTEGER.fullmatch(text):
                return (f"{source}: cell {cell.strip()[:20]!r} on line {number}, column "
                        f"{column} is not an integer")
            if abs(int(text)) >= 2**31:
                return (f"{source}: value {text[:20]} on line {number}, column {column} "
                        "is far out of range")
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{source}: malformed CSV ({detail})"


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def parse_npz(
    data: bytes, source: str = "<bytes>", split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Parse keras' ``mnist.npz`` (``x_train, y_train, x_test, y_test``).

    Never unpickles: an archive holding object arrays is refused before they are read, and so
    is an array whose header claims more data than the archive holds.

    Returns
    -------
    images : ndarray of uint8, shape (n, 28, 28)
    labels : ndarray of uint8, shape (n,)
    """
    _check_split(split)
    if data[:4] not in _ZIP_MAGIC:
        raise DataError(f"{source}: not an npz file (it does not start with the zip signature)")
    x_key, y_key = f"x_{split}", f"y_{split}"
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            missing = [k for k in (x_key, y_key) if k not in archive.files]
            if missing:
                raise DataError(f"{source}: npz file lacks {', '.join(missing)} (has "
                                f"{', '.join(archive.files) or 'no arrays'})")
            images, labels = (_npz_array(archive, key, source) for key in (x_key, y_key))
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, zlib.error,
            NotImplementedError, RuntimeError) as exc:
        raise DataError(f"{source}: not a readable npz file ({type(exc).__name__})") from None
    images = _check_images(images, source)
    labels = _check_labels(labels, source)
    _check_pair(images, labels, source)
    return np.ascontiguousarray(images), labels


def _npz_array(archive: Any, key: str, source: str) -> np.ndarray:
    """Read one array of an npz after checking its header: no objects, no inflated sizes."""
    member = f"{key}.npy" if f"{key}.npy" in archive.zip.namelist() else key
    with archive.zip.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise DataError(f"{source}: {key} uses .npy format version {version}, "
                            "expected 1.0 or 2.0")
        header_size = f.tell()
    if dtype.hasobject:
        raise DataError(f"{source}: {key} is an array of Python objects, which would have to "
                        "be unpickled; refusing to load it")
    size = archive.zip.getinfo(member).file_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"{source}: {key} holds {size:,} bytes, more than any MNIST-format "
                        f"array digitnet reads (at most {_size(MAX_FILE_BYTES)})")
    if header_size + math.prod(shape) * dtype.itemsize > size:
        raise DataError(f"{source}: {key} is truncated (shape {shape} of {dtype} needs more "
                        f"than the {size} bytes stored)")
    return archive[key]


def load_file(
    path: str | Path, split: str = "test"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Load digits from a file, choosing the reader by its content.

    Reads a CSV (Kaggle or headerless), keras' ``mnist.npz`` (``split`` picks ``x_train`` or
    ``x_test``), an IDX images file (labels are taken from the IDX labels file beside it when
    there is one), or an IDX labels file.

    Returns
    -------
    images : ndarray of uint8, shape (n, 28, 28)
    labels : ndarray of uint8, shape (n,), or None when the file has no labels

    Raises
    ------
    DataError
        If the file cannot be read or is malformed, naming the file and the problem.
    """
    path = Path(path)
    data = _read_bytes(path)
    if not data:
        raise DataError(f"{path}: empty file")
    if data[:4] in _ZIP_MAGIC:
        return parse_npz(data, str(path), split)
    raw = _decompress(data, str(path))
    if raw[:2] == b"\x00\x00" or _is_idx_name(path.name):
        array = parse_idx(raw, str(path))
        if array.ndim == 1:
            raise DataError(f"{path}: holds labels only; give the images file")
        images = _check_images(array, str(path))
        labels = _labels_beside(path)
        if labels is not None:
            _check_pair(images, labels, str(path))
        return images, labels
    return parse_csv(raw, str(path))


def _is_idx_name(name: str) -> bool:
    # Named like an IDX file: a damaged one should get the IDX reader's message, not the CSV's.
    name = name.lower().removesuffix(".gz")
    return "ubyte" in name or name.endswith((".idx", "-idx1", "-idx3"))


def _labels_beside(images_path: Path) -> np.ndarray | None:
    """The labels file that goes with an IDX images file, compressed or not, if present."""
    name = images_path.name
    if "images" not in name:
        return None
    twin = name.replace("images", "labels").replace("idx3", "idx1")
    stem = twin.removesuffix(".gz")
    for candidate in (twin, f"{stem}.gz", stem):
        path = images_path.with_name(candidate)
        if path.is_file():
            return _check_labels(read_idx(path), str(path))
    return None


def class_balance(labels: np.ndarray) -> list[int]:
    """How many examples each of the 10 classes has."""
    return np.bincount(labels, minlength=N_CLASSES).tolist()


def names() -> Sequence[str]:
    """The named datasets :func:`load` knows."""
    return tuple(DATASETS)
