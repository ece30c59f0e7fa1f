"""Guarded file reading and writing: the one place digitnet touches a user's paths.

:func:`read_file` reads a file a person named (a dataset, model, checkpoint or image), refusing
what cannot be one before reading it: a missing path, a folder, a FIFO or device (opened
without blocking, so a FIFO with no writer cannot hang the program), or a file over the
caller's size limit. :func:`check_output` refuses, before any work, an output that cannot be
written or that is the same file as one of the inputs. :func:`atomic_write_bytes` writes
through a temporary file and a rename, so a reader sees the old file or the new one, and
removes the temporary file on every way out, a signal included.
"""

from __future__ import annotations

import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from digitnet.errors import DigitnetError

__all__ = ["FileRead", "OutputError", "read_file", "check_output", "same_file",
           "atomic_write_bytes"]


class OutputError(DigitnetError):
    """An output path cannot be written, or is one of the inputs."""


@dataclass(frozen=True)
class FileRead:
    """A file's bytes and the status of the descriptor they were read from."""

    data: bytes
    stat: os.stat_result


def read_file(path: str | os.PathLike[str], *, what: str, limit: int,
              error: type[DigitnetError] = DigitnetError) -> FileRead:
    """Read a regular file of at most ``limit`` bytes.

    Parameters
    ----------
    path
        The file to read.
    what
        What the file is called in messages ("model file", "image file", ...).
    limit
        The largest size accepted, in bytes.
    error
        The exception class raised.

    Raises
    ------
    error
        Naming ``path``: missing, a folder, not a regular file, too large, no permission, or
        unreadable for another reason (a link loop, a path through a file).
    """
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting forever;
        # the status of the open descriptor then decides, with no gap for a swap in between.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, expected a {what}") from None
    except PermissionError:
        raise error(f"{path}: permission denied") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{path}: is a directory, expected a {what}")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: is not a regular file (a FIFO, device or socket); give a "
                        f"{what}")
        if st.st_size > limit:
            raise error(_too_large(path, st.st_size, what, limit))
        data = _read_at_most(fd, limit + 1)  # one byte more tells a file that grew past it
        if len(data) > limit:
            raise error(_too_large(path, len(data), what, limit))
        return FileRead(data, st)
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _too_large(path: Path, size: int, what: str, limit: int) -> str:
    return (f"{path}: {size:,} bytes is larger than any {what} digitnet reads (the limit is "
            f"{limit:,} bytes)")


def _read_at_most(fd: int, n: int) -> bytes:
    os.set_blocking(fd, True)
    chunks, size = [], 0
    while size < n:
        chunk = os.read(fd, min(n - size, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file: the same resolved path, or the same inode."""
    a, b = Path(a), Path(b)
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):  # a link loop: compare what can be compared below
        pass
    try:
        sa, sb = a.stat(), b.stat()
    except (OSError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def check_output(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None]
                 = (), *, what: str = "", example: str = "out.safetensors",
                 error: type[DigitnetError] = OutputError) -> Path:
    """Refuse an output that cannot be written or is one of ``inputs``, before any work.

    Parameters
    ----------
    path
        The file to be written.
    inputs
        The files the same run reads (None entries are skipped).
    what
        How the output is named in messages (an option such as "--out"), or "" for none.
    example
        A file name that would work, for the message.
    error
        The exception class raised.

    Raises
    ------
    error
        If ``path`` is empty or a folder, lies under a file, or is the same file as an input
        (by resolved path or by inode, so a hard or symbolic link to an input is caught too).
    """
    path = Path(path)
    named = f"{what} {_quoted(path)}" if what else _quoted(path)
    if not path.name or path.name in (".", "..") or path.is_dir():
        raise error(f"{named}: is a directory, not a file name; give a file name like "
                    f"{example}")
    blocked = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise error(f"{named}: cannot be written, {blocked} is a file, not a folder")
    for source in inputs:
        if source is not None and same_file(path, source):
            raise error(f"{named}: is the same file as the input {source}; writing it would "
                        "destroy that input, so give another file name")
    return path


def _quoted(path: Path) -> str:
    text = str(path)
    return repr(text) if not text or text.strip() != text else text


# Signals that would end the process while the temporary file exists: they wait until it is
# renamed or removed, then take effect as they would have.
_DEFERRED = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The temporary file is removed on every way out: an error, an exception, or a SIGINT,
    SIGTERM or SIGHUP arriving during the write, which is held back until the file is renamed
    or removed and then takes effect.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    masked = threading.current_thread() is threading.main_thread()
    if masked:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
    try:
        _write_and_rename(path, data)
    finally:
        if masked:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _write_and_rename(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
