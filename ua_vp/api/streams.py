"""How many event streams may be open at once: in total and per client.

Each open stream costs the server work for as long as it is open (today a read of
the events table every poll), so an unbounded number of idle streams is a way to
pin the CPU. :class:`StreamLimits` counts them; a stream over either cap is
refused with 429 ``too_many_streams`` before it starts. The cap wraps whatever
iterator produces the stream's messages, so it holds whichever way streams are fed.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ua_vp.errors import UaVpError

T = TypeVar("T")

RETRY_AFTER_SECONDS = 5


class TooManyStreams(UaVpError):
    code = "too_many_streams"
    http_status = 429


@dataclass
class StreamLimits:
    total: int
    per_client: int
    open: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def open_total(self) -> int:
        return sum(self.open.values())

    def acquire(self, client: str) -> Callable[[], None]:
        """Count one more stream for ``client``; the returned function (idempotent) gives it back.
        The lock: a stream dropped unstarted is given back by the garbage collector, in any thread."""
        with self._lock:
            return self._acquire(client)

    def _acquire(self, client: str) -> Callable[[], None]:
        if self.open_total >= self.total:
            raise TooManyStreams(
                f"the server already serves {self.total} event streams (UA_VP_MAX_EVENT_STREAMS); "
                f"close one or retry in {RETRY_AFTER_SECONDS} s, or poll the JSON events instead",
                limit=self.total,
                scope="total",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        if self.open[client] >= self.per_client:
            raise TooManyStreams(
                f"this client already has {self.per_client} event streams open "
                "(UA_VP_MAX_EVENT_STREAMS_PER_CLIENT); close one first",
                limit=self.per_client,
                scope="client",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        self.open[client] += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if not released:
                    released = True
                    self.open[client] -= 1
                    if self.open[client] <= 0:
                        del self.open[client]

        return release

    def wrap(self, client: str, stream: AsyncIterator[T]) -> AsyncIterator[T]:
        """``stream``, counted against ``client`` until it ends, fails or is dropped unstarted."""
        release = self.acquire(client)

        async def counted() -> AsyncIterator[T]:
            try:
                async for item in stream:
                    yield item
            finally:
                release()

        wrapped = counted()
        # A response that never starts iterating (the client left first) never runs the
        # finally above; the generator being collected gives the slot back instead.
        weakref.finalize(wrapped, release)
        return wrapped
