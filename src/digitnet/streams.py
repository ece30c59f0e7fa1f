"""The terminal and the output streams, as the command line meets them.

Text from files and paths is shown with its control characters escaped; standard output that
is closed, full or unable to encode a character, and a terminal of no width, are dealt with
before or as they happen; SIGTERM unwinds like Ctrl-C, so temporary files are removed.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from collections.abc import Callable
from typing import Any

__all__ = ["Terminated", "shown", "terminate", "prepare_streams", "stdout_failed",
           "drop_stdout"]


class Terminated(BaseException):
    """SIGTERM outside training: unwinds like Ctrl-C, so temporary files are removed."""


def shown(text: object) -> str:
    """``text`` for the terminal: control and format characters (escape sequences, newlines,
    bidirectional overrides) replaced by their escapes, so text from a file is shown as text."""
    text = str(text)
    if all(ch.isprintable() or ch == " " for ch in text):
        return text
    return "".join(ch if ch.isprintable() or ch == " " else escaped(ch) for ch in text)


def escaped(ch: str) -> str:
    if unicodedata.category(ch) == "Zs":  # a no-break or other visible space
        return ch
    return ascii(ch)[1:-1]


def terminate(signum: int, frame: Any) -> None:
    """A SIGTERM handler: raise :class:`Terminated` where the program is."""
    raise Terminated


def prepare_streams(consoles: list[Any], refuse: Callable[[str], None]) -> None:
    """Make the output streams safe to print anything to, or refuse a missing one at once."""
    if sys.stdout is None:  # started with stdout closed: output would vanish
        refuse("standard output is closed; run digitnet with it open, or send it to a file "
               "(> out.txt) or to /dev/null")
        return
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:  # a terminal that cannot show a character shows its escape
            reconfigure(errors="backslashreplace")
    for shell in consoles:
        if not 40 <= shell.width <= 1000:  # COLUMNS=0 or absurd: Rich would print nothing
            shell.width = min(max(shell.width, 80), 1000)


def stdout_failed(exc: OSError) -> bool:
    """Whether ``exc`` is a failed write to standard output (a full disk, a closed pipe)."""
    return exc.filename is None and (isinstance(exc, BrokenPipeError)
                                     or exc.errno in (28, 5, 27, 32))  # ENOSPC EIO EFBIG EPIPE


def drop_stdout() -> None:
    """Whatever is still buffered cannot be written either: drop it, so exiting stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
