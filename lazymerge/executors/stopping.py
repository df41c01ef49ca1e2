"""Stopping a distributed run (Lithops, Dask, Modal) at its first failure.

Each backend's own cancellation ends what it can: Lithops drops the queued calls of its jobs and, on the
``localhost`` backend, kills the running ones (``FunctionExecutor``'s exit, ``compute_handler.clear``);
Dask's scheduler releases the queued tasks of the futures of the client Cubed closes; Modal stops the
ephemeral app Cubed runs, and with it its containers. What no backend can take back (a Lambda or a Dask
worker thread already running a task) is stopped by a ``StopMarker`` in the run's ``work_dir``: every
task runs bound to it (``lazymerge.kernel.cancel.run_bound``), so it stops at its next block or source
read once the driver has written the marker, and a task that starts after that does nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from functools import partial
from typing import Any

from lazymerge.kernel.cancel import StopMarker, run_bound


def stop_marker(spec: Any) -> StopMarker:
    """A new run's StopMarker under the spec's ``work_dir`` (the system temp directory when it has none:
    enough for workers on this machine)."""
    work_dir = getattr(spec, "work_dir", None) or tempfile.gettempdir()
    return StopMarker(str(work_dir))


def bound_dag(dag: Any, stop: StopMarker) -> Any:
    """A copy of Cubed's ``dag`` whose every task runs bound to ``stop``."""
    dag = dag.copy()
    for _, data in dag.nodes(data=True):
        pipeline = data.get("pipeline")
        if pipeline is not None:
            bound = partial(run_bound, stop, pipeline.function)
            data["pipeline"] = dataclasses.replace(pipeline, function=bound)
    return dag


class StopsAtFirstFailure:
    """Mixin for a Cubed ``DagExecutor``: its tasks run bound to a StopMarker that is written when the
    run fails, after the backend's own cancellation (module docstring)."""

    def execute_dag(self, dag: Any, callbacks: Any = None, spec: Any = None, compute_id: Any = None,
                    **kwargs: Any) -> None:  # fmt: skip
        stop = stop_marker(spec)
        try:
            super().execute_dag(  # type: ignore[misc]
                bound_dag(dag, stop), callbacks=callbacks, spec=spec, compute_id=compute_id, **kwargs
            )
        except BaseException:
            # a work_dir gone or unwritable leaves the backend's own cancellation
            with contextlib.suppress(Exception):
                stop.set()
            raise
