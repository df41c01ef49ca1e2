"""A run's stop event, seen by its tasks: the local threads executor sets it at the first failure, and the
kernel checks it before each block and each source read (``check_cancelled``).

Each pool thread is bound to the run it works for (``bind_stop``); reader threads are bound by the read
they do. Outside the threads executor nothing is bound and the checks do nothing.
"""

from __future__ import annotations

import threading

from lazymerge.errors import RunCancelledError

_current = threading.local()


def check_cancelled() -> None:
    """Raise RunCancelledError when the run this thread's task belongs to has failed elsewhere."""
    stop = getattr(_current, "stop", None)
    if stop is not None and stop.is_set():
        raise RunCancelledError("the run failed in another task; this task stopped at its next step")


def current_stop() -> threading.Event | None:
    """The stop event of the run this thread works for (None outside the threads executor); pass it to
    helper threads, which do not inherit it."""
    return getattr(_current, "stop", None)


def bind_stop(stop: threading.Event | None) -> None:
    """Make ``stop`` this thread's stop event (for helper threads working for a task)."""
    _current.stop = stop
