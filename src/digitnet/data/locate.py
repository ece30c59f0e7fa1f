"""Finding, fetching and verifying the named datasets' files, and loading a split."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from digitnet.data.idx import (
    _check_images,
    _check_labels,
    _check_pair,
    _decompress,
    parse_idx,
    read_bytes_and_key,
)
from digitnet.data.registry import (
    DATASETS,
    FILES,
    DatasetInfo,
    SplitFiles,
    _check_name,
    _check_split,
)
from digitnet.errors import DataError

SYSTEM_DIR = Path("/usr/share/datasets")


def _read_split(files: SplitFiles) -> tuple[np.ndarray, np.ndarray]:
    info = DATASETS[files.name]
    contents = []
    for path, stem in zip((files.images, files.labels), FILES[files.split], strict=True):
        data, key = read_bytes_and_key(path)
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

