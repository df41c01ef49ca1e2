"""Executors: ``get_executor(name, **options)`` -> what ``cubed``'s ``compute(executor=...)`` takes.

Every name runs the same stateless chunk kernel (``lazymerge.kernel.merge_block``).

``threads`` (default, embedded)
    ``max_workers`` (default: CPU count), ``retries`` (default 2: a failed task is retried twice).
``processes``
    ``max_workers``, ``retries`` (default 2: tasks lost with a dead worker process are resubmitted to a
    new pool twice), ``use_processes`` ("spawn" default, "fork", "forkserver"), ``max_tasks_per_child``.

Both local executors stop at the first failure: queued tasks are cancelled, running ones stop at their
next block or read (threads) or are terminated (processes); see :mod:`lazymerge.executors.local`.
``lithops``
    ``config`` (a Lithops config dict; default: the offline ``localhost`` compute+storage config from
    :func:`lazymerge.executors.lithops.localhost_config`), ``config_file`` (a Lithops YAML config, e.g. one of
    ``infra/lithops/*.yaml``), ``worker_processes``, ``preload`` (pre-import numpy/zarr/cubed in the localhost
    runner, default True), ``wait_dur_sec``, ``use_backups``.
``modal``
    ``region`` (required), ``memory`` (e.g. "2GB"), ``secret`` (Modal secret with object-store credentials),
    ``retries``, ``timeout``, ``cloud``. Needs a Modal token (``modal token new`` or ``MODAL_TOKEN_ID`` +
    ``MODAL_TOKEN_SECRET``) and an object-store ``work_dir``.
``dask``
    ``address`` (a ``distributed`` scheduler address; without it distributed starts a LocalCluster per
    compute), ``compute_kwargs`` (passed to ``distributed.Client``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lazymerge.errors import UnknownExecutorError


def _threads(**options: Any) -> Any:
    from lazymerge.executors.local import ThreadsExecutor

    return ThreadsExecutor(**options)


def _processes(**options: Any) -> Any:
    from lazymerge.executors.local import ProcessesExecutor

    return ProcessesExecutor(**options)


def _lithops(**options: Any) -> Any:
    from lazymerge.executors.lithops import lithops_executor

    return lithops_executor(**options)


def _modal(**options: Any) -> Any:
    from lazymerge.executors.modal import modal_executor

    return modal_executor(**options)


def _dask(**options: Any) -> Any:
    from lazymerge.executors.dask import dask_executor

    return dask_executor(**options)


EXECUTORS: dict[str, Callable[..., Any]] = {
    "threads": _threads,
    "processes": _processes,
    "lithops": _lithops,
    "modal": _modal,
    "dask": _dask,
}


def get_executor(name: str | None = "threads", **options: Any) -> Any:
    """The Cubed executor called ``name`` (default ``threads``), built with ``options``.

    Raises UnknownExecutorError listing the valid names, ExecutorConfigError for a bad config and
    ExecutorUnavailableError when the executor's package or credentials are missing.
    """
    name = name or "threads"
    try:
        make = EXECUTORS[name]
    except KeyError:
        raise UnknownExecutorError(
            f"unknown executor {name!r}; valid executors: {', '.join(EXECUTORS)}"
        ) from None
    return make(**options)
