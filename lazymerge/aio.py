"""Running coroutines from synchronous code: on the library's own event loop, on its own thread, so sync
calls work inside a running loop (Jupyter); or on zarr's loop, where zarr's async arrays and stores live."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from zarr.core.sync import sync

T = TypeVar("T")
_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="lazymerge-loop", daemon=True).start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on lazymerge's loop thread and wait for its result, from any thread or loop."""
    return asyncio.run_coroutine_threadsafe(coro, _get_loop()).result()


def zarr_gather(awaitables: list[Awaitable[T]]) -> list[T]:
    """Await zarr's async calls (store gets and sets, async-array reads) concurrently on zarr's event loop,
    from any thread; their results in order."""

    async def gather() -> list[T]:
        return list(await asyncio.gather(*awaitables))

    return sync(gather())
