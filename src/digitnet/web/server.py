"""Running the web app with uvicorn, guarded against clients that hold connections open.

uvicorn closes a keep-alive connection that stays idle after a response, but not one that
never sends a request, or sends half its headers and stops. Enough of those exhaust the file
descriptors, after which every accept fails and asyncio logs a traceback each time. Here:

* a connection has ``header_timeout`` seconds to send its request's headers (the first one and
  each one after), or it is closed;
* at most ``max_connections`` are open at once, fewer than the descriptor limit allows; when a
  new one would pass that, the oldest connection with no request in progress is closed to
  make room (or, when every one is busy, the new one is);
* that is logged once a minute, as one line, never per connection; so is a failed accept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
import time
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from digitnet.errors import DigitnetError

__all__ = ["run", "GuardedH11", "ServeError", "connection_limit", "HEADER_TIMEOUT",
           "KEEP_ALIVE"]

HEADER_TIMEOUT = 10.0
"""Seconds a connection has to send the headers of its next request."""
KEEP_ALIVE = 5.0
"""Seconds an idle keep-alive connection stays open after a response."""
MAX_CONNECTIONS = 1000
"""Open connections at most, whatever the descriptor limit."""
RESERVED_FDS = 64
"""Descriptors kept free for everything but connections: files, the log, worker threads."""
QUIET_SECONDS = 60.0

log = logging.getLogger("digitnet.web")


class ServeError(DigitnetError):
    """The server cannot listen where it was asked to."""


def check_address(host: str, port: int) -> None:
    """Refuse, in one line, an address the server could not listen on (before it starts)."""
    where = f"--host {host} --port {port}"
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ServeError(f"{where}: not an address of this machine ({exc}); give an IP "
                         "address such as 127.0.0.1 or a name that resolves") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ServeError(f"{where}: cannot listen there ({exc.strerror or exc}); choose "
                             "another port, or --port 0 for any free one") from None


def connection_limit(maximum: int = MAX_CONNECTIONS) -> int:
    """How many connections may be open: ``maximum``, or fewer under a low descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return maximum
    return max(8, min(maximum, soft - RESERVED_FDS))


class _Once:
    """A warning logged at most once per ``QUIET_SECONDS``, with a count of what it stood for."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.last = -float("inf")
        self.count = 0

    def note(self) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= QUIET_SECONDS:
            log.warning("%s (%d since the last note; noted once a minute)", self.text,
                        self.count)
            self.last, self.count = now, 0


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and a bound on open connections."""

    max_connections = MAX_CONNECTIONS
    header_timeout = HEADER_TIMEOUT
    _crowded: _Once | None = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._opened = time.monotonic()
        self._header_timer: asyncio.TimerHandle | None = None
        self._wait_for_headers()
        if len(self.connections) > self.max_connections:
            self._make_room()

    def _make_room(self) -> None:
        cls = type(self)
        if cls._crowded is None:
            cls._crowded = _Once(f"{self.max_connections} connections are open, the limit: "
                                 "closing idle ones to make room")
        cls._crowded.note()
        idle = [c for c in self.connections
                if c is not self and isinstance(c, GuardedH11) and c._idle()]
        victim = min(idle, key=lambda c: c._opened) if idle else self
        victim._drop()

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _drop(self) -> None:
        self._cancel_header_timer()
        self.transport.abort()
        self.connections.discard(self)

    def _wait_for_headers(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._idle() and not self.transport.is_closing():
            self.transport.close()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before and self.cycle is not None:  # a request's headers came
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._wait_for_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A request that is not HTTP gets a JSON error like every other, not plain text."""
        import h11

        body = json.dumps({"error": f"malformed HTTP request ({msg.rstrip('.')}); send "
                                    "HTTP/1.1"}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                   (b"content-length", str(len(body)).encode())]
        try:
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                          h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # the connection cannot take a response any more
            pass
        self.transport.close()


class _AcceptFailures(logging.Filter):
    """asyncio logs a traceback for every failed accept (out of descriptors): one line a
    minute instead."""

    def __init__(self) -> None:
        super().__init__()
        self.once = _Once("accepting a connection failed: out of file descriptors")

    def filter(self, record: logging.LogRecord) -> bool:
        if "socket.accept() out of system resource" in str(record.msg):
            self.once.note()
            return False
        return True


def _return_large_blocks() -> None:
    """Have glibc give each large block (an image being decoded) back to the system when it is
    freed. By default its threshold grows with the blocks seen, and images decoded in worker
    threads are then kept in per-thread arenas: 8 uploads of the largest accepted image took
    the server to 600-700 MB of peak memory, this way under 400."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt"):
            libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: blocks of 1 MiB and more
    except OSError:  # not glibc: its allocator decides
        pass


def run(app: Any, host: str, port: int, *, max_connections: int | None = None,
        header_timeout: float = HEADER_TIMEOUT, log_level: str = "info",
        timeout_graceful_shutdown: float | None = None,
        announce: Callable[[], None] | None = None) -> None:
    """Serve ``app`` on ``host:port`` until stopped (Ctrl-C or SIGTERM).

    Raises
    ------
    ServeError
        If the address cannot be listened on (checked before ``announce`` is called).
    """
    import uvicorn

    check_address(host, port)
    if announce is not None:
        announce()
    _return_large_blocks()
    protocol = type("GuardedH11", (GuardedH11,), {
        "max_connections": max_connections or connection_limit(),
        "header_timeout": header_timeout,
    })
    logging.getLogger("asyncio").addFilter(_AcceptFailures())
    # The lifespan runs the app's shutdown: a training run in the page is stopped and joined.
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, http=protocol,
                            timeout_keep_alive=int(KEEP_ALIVE), lifespan="auto",
                            timeout_graceful_shutdown=(None if timeout_graceful_shutdown is None
                                                       else int(timeout_graceful_shutdown)))
    uvicorn.Server(config).run()
