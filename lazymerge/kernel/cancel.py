"""A run's stop signal, seen by its tasks: the kernel checks it before each block and each source read
(``check_cancelled``), and a task that finds it set ends with ``RunCancelledError``.

Two kinds of signal:

- in one process, a ``threading.Event`` that the local threads executor sets at the first failure;
- across processes and machines (Lithops, Dask, Modal workers), a ``StopMarker``: an empty object in
  the run's ``work_dir`` (``<work_dir>/lazymerge-stop-<run>``) that the driver writes when the run
  fails. Tasks already running on a backend that cannot cancel them stop at their next block or read.

Each worker thread is bound to the run it works for (``bind_stop``); reader threads are bound by the
read they do. With nothing bound the checks do nothing.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from lazymerge.errors import RunCancelledError

_current = threading.local()
STOP_PREFIX = "lazymerge-stop-"
POLL_SECONDS = 0.25  # a StopMarker is looked up at most this often per process


class Stop(Protocol):
    def is_set(self) -> bool: ...


class StopMarker:
    """The stop signal of one run, as an object ``name`` under ``work_dir`` (local path or object-store
    URL). Picklable: it travels with the tasks. Once seen set, it stays set in that process."""

    def __init__(self, work_dir: str, name: str | None = None) -> None:
        self.work_dir = str(work_dir).rstrip("/")
        self.name = name or f"{STOP_PREFIX}{uuid.uuid4().hex}"
        self._seen = False
        self._checked = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {"work_dir": self.work_dir, "name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["work_dir"], state["name"])  # type: ignore[misc]

    def _remote(self) -> bool:
        return "://" in self.work_dir and not self.work_dir.startswith("file://")

    def _path(self) -> Path:
        return Path(self.work_dir.removeprefix("file://")) / self.name

    def set(self) -> None:
        """Write the marker (the driver, when the run failed)."""
        self._seen = True
        if self._remote():
            from obstore.store import from_url

            from_url(self.work_dir).put(self.name, b"")
        else:
            self._path().parent.mkdir(parents=True, exist_ok=True)
            self._path().touch()

    def is_set(self) -> bool:
        """Whether the run failed: the marker exists (looked up at most every POLL_SECONDS)."""
        now = time.monotonic()
        if self._seen or now - self._checked < POLL_SECONDS:
            return self._seen
        self._checked = now
        if self._remote():
            from obstore.store import from_url

            try:
                from_url(self.work_dir).head(self.name)
                self._seen = True
            except FileNotFoundError:
                pass
        else:
            self._seen = os.path.exists(self._path())
        return self._seen


def check_cancelled() -> None:
    """Raise RunCancelledError when the run this thread's task belongs to has failed elsewhere."""
    stop = getattr(_current, "stop", None)
    if stop is not None and stop.is_set():
        raise RunCancelledError("the run failed in another task; this task stopped at its next step")


def current_stop() -> Stop | None:
    """The stop signal of the run this thread works for (None when unbound); pass it to helper threads,
    which do not inherit it."""
    return getattr(_current, "stop", None)


def bind_stop(stop: Stop | None) -> None:
    """Make ``stop`` this thread's stop signal (for helper threads working for a task)."""
    _current.stop = stop


def run_bound(stop: Stop | None, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` bound to the run's stop signal; does not start once the run has
    failed (a task queued on a backend that could not cancel it)."""
    previous = current_stop()
    bind_stop(stop)
    try:
        check_cancelled()
        return function(*args, **kwargs)
    finally:
        bind_stop(previous)
