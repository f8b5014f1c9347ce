"""uvicorn's server loop, which serves Flower's HTTP APIs, waking twice a second instead of ten
times.

uvicorn's `Server.main_loop` sleeps 0.1 s between looks at whether it should exit, renewing its
`Date` header on every tenth. The SuperLink and every SuperNode run one all run long, and on a
small machine each wakeup takes a core from the training threads for a moment: an idle SuperLink
took 0.35-0.42% of a core with uvicorn's loop, 0.12% with this one (BENCHMARKS.md, "Training
speed"). Swapped (engine.flower.internals: UVICORN_LOOP) for one that sleeps TICK_S and counts
its ticks as uvicorn's `on_tick` expects, so the header is still renewed once a second; a server
told to exit ends up to TICK_S later instead of 0.1 s.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from engine.flower import internals

if TYPE_CHECKING:
    from uvicorn import Server

TICK_S = 0.5
UVICORN_TICK_S = 0.1  # `on_tick` renews the header when its counter is a multiple of 10
_COUNTER_WRAP = 864000  # uvicorn's: a multiple of 10, so the wrap keeps the header's rhythm


async def main_loop(server: Server) -> None:
    counter = 0
    should_exit = await server.on_tick(counter)
    while not should_exit:
        counter = (counter + round(TICK_S / UVICORN_TICK_S)) % _COUNTER_WRAP
        await asyncio.sleep(TICK_S)
        should_exit = await server.on_tick(counter)


def tick_less_often() -> None:
    """Every uvicorn server this process starts from now on wakes every TICK_S."""
    internals.swap(internals.UVICORN_LOOP, main_loop)
