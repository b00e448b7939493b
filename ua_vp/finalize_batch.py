"""Missions that end within a few milliseconds of each other are finalized in ONE
statement (each still fenced by its own lease token): at concurrency 8 on short
missions that is most of them, and a statement per mission was the worker's cost."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ua_vp.missions import Mission
from ua_vp.store.store import Outcome

WINDOW_SECONDS = 0.002
"""How long the first outcome waits for others to join its statement."""

Run = Callable[..., Awaitable[Any]]


@dataclass
class FinalizeBatcher:
    finalize_many: Callable[[Sequence[Outcome]], list[Mission | None]]
    run: Run
    """How a blocking store call is run (the worker's retrying ``_db``)."""
    alone: Callable[[], bool] = lambda: False
    """True when no other mission is running, so none could join: then no window is waited."""
    window: float = WINDOW_SECONDS
    _pending: list[tuple[Outcome, asyncio.Future[Mission | None]]] = field(default_factory=list)
    _flush: asyncio.Task[None] | None = None

    async def finalize(self, outcome: Outcome) -> Mission | None:
        future: asyncio.Future[Mission | None] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, future))
        if self._flush is None:
            self._flush = asyncio.create_task(self._after_window())
        # shield: a cancelled mission task must not lose the answer of a batch in flight.
        return await asyncio.shield(future)

    async def _after_window(self) -> None:
        # At concurrency 1 the window would add its whole length to every mission.
        await asyncio.sleep(0 if self.alone() else self.window)
        batch, self._pending, self._flush = self._pending, [], None
        try:
            answers = await self.run(self.finalize_many, [o for o, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            # One bad outcome must not fail the others: each on its own.
            for outcome, future in batch:
                try:
                    (answer,) = await self.run(self.finalize_many, [outcome])
                    future.set_result(answer)
                except Exception as exc:
                    future.set_exception(exc)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            future.set_result(answer)
