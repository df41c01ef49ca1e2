"""Dask: Cubed's dask executor on a ``distributed`` cluster (a LocalCluster or any scheduler address)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lazymerge.errors import ExecutorUnavailableError


def dask_executor(
    address: str | None = None, compute_kwargs: dict[str, Any] | None = None, **options: Any
) -> Any:
    """Cubed's DaskExecutor stopping at the first failure; ``address`` is the scheduler to connect to
    (``distributed.Client(address)``). At a failure Cubed closes its client, so the scheduler releases the
    queued tasks; the tasks running on workers stop at their next block (lazymerge.executors.stopping)."""
    try:
        from cubed.runtime.executors.dask import DaskExecutor
    except ImportError as exc:
        raise ExecutorUnavailableError(
            f"the dask executor needs distributed<2024.12: pip install 'lazymerge[dask]' ({exc})"
        ) from exc
    kwargs = dict(compute_kwargs or {})
    if address is not None:
        kwargs["address"] = address
    from lazymerge.executors.stopping import StopsAtFirstFailure

    stopping = type("StoppingDaskExecutor", (StopsAtFirstFailure, DaskExecutor), {})
    return stopping(compute_kwargs=kwargs, **options)


@contextmanager
def local_cluster(n_workers: int = 2, memory_limit: str = "2GB", **options: Any) -> Iterator[Any]:
    """A loopback ``distributed.LocalCluster`` (one thread per worker, no dashboard) for the dask executor.

    Keep ``allowed_mem`` <= ``memory_limit`` (one task per worker thread).
    """
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        memory_limit=memory_limit,
        dashboard_address=None,
        host="127.0.0.1",
        **options,
    ) as cluster:
        yield cluster
