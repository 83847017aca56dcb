"""A coroutine served on an event loop of its own thread, as a relay process runs it: the test goes on beside
it, and leaving the block sets its stop event and waits for its finally blocks to run."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def serving(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]], *,
            join_s: float = 15) -> Iterator[None]:
    """Run ``main(stop)`` on a new loop in a daemon thread until the block ends."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(stop),), daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=join_s)
        loop.close()
