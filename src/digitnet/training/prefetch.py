"""Building the next epoch's data on a background thread while this epoch trains.

An augmented epoch's images are deformed (a compiled warp that releases the GIL) and indexed
for the engine before it can train; training the epoch itself takes a fraction of that. A
:class:`Prefetch` builds epoch ``e + 1`` on a second thread while ``e`` trains, so the two
overlap on a machine with two cores. What is built depends on the epoch alone (its random
draws come from the seed and the epoch), never on when or where it was built, so a run gives
the same weights as one built in turn.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["Prefetch"]

T = TypeVar("T")


class Prefetch(Generic[T]):
    """``get(epoch)`` returns ``build(epoch)``; ``ahead(epoch)`` starts building it on a
    background thread so that a later ``get`` of that epoch only waits for what is left."""

    def __init__(self, build: Callable[[int], T]) -> None:
        self._build = build
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[int, Future[T]] | None = None

    def get(self, epoch: int) -> T:
        """What ``build(epoch)`` returns: the one started ahead, or built now."""
        pending, self._pending = self._pending, None
        if pending is not None:
            ahead, future = pending
            if ahead == epoch:
                return future.result()  # raises what the build raised
            future.cancel()
            _settle(future)
        return self._build(epoch)

    def ahead(self, epoch: int) -> None:
        """Start building ``epoch`` in the background (dropping one started for another)."""
        if self._pending is not None:
            if self._pending[0] == epoch:
                return
            self.discard()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._pending = (epoch, self._pool.submit(self._build, epoch))

    def discard(self) -> None:
        """Forget what was started ahead (after the state it was built from changed)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[1].cancel()
            _settle(pending[1])

    def close(self) -> None:
        """Drop anything pending and stop the thread; a later ``ahead`` starts a new one."""
        self.discard()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _settle(future: Future[T]) -> None:
    """Wait for a dropped build to end, its result and any error ignored: it was not needed."""
    if not future.cancelled():
        future.exception()
