"""Local executors that stop at the first failure: ``threads`` and ``processes``.

Cubed 0.27's local executors shut their pool down with ``wait=False`` but leave its queue alone: after a
task fails, every queued task still runs (against a dead endpoint, each until its reads time out), and the
interpreter's exit waits for them all. These subclasses, on any failure:

- cancel every queued task (``shutdown(cancel_futures=True)``);
- threads: set the run's stop event, which the running tasks check before each block and each source
  read (``lazymerge.kernel.cancel``), so they end at their next step with ``RunCancelledError``;
- processes: terminate the worker processes (blocks are written whole or not at all, so a killed write
  leaves no partial block: ``resume=True`` renders it again).

Each task's measured peak memory is its worker's own (``VmHWM`` on Linux, see ``own_peak_rss``).

A worker process that dies (SIGKILL, the OOM killer) breaks the whole process pool: its tasks, and the
others in flight, are resubmitted to a new pool, up to ``retries`` times (default 2), then the run fails
with ``WorkerLostError``. Errors that a retry cannot fix (``SourceReadError``, already retried read by
read, ``RunCancelledError``, invalid requests) are not retried.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any

import cloudpickle
import cubed.runtime.executors.local as cubed_local
from cubed.runtime.asyncio import async_map_dag
from cubed.runtime.backup import use_backups_default
from tenacity import Retrying, retry_if_exception, stop_after_attempt

from lazymerge.errors import (
    InvalidRequestError,
    RunCancelledError,
    SourceReadError,
    WorkerLostError,
)
from lazymerge.kernel.cancel import run_bound

FINAL_ERRORS = (SourceReadError, RunCancelledError, InvalidRequestError)  # retrying cannot fix these


def _options(kwargs: dict[str, Any], spec: Any) -> int:
    """Pop ``max_workers`` (default: CPU count) and switch backups on as Cubed does."""
    max_workers = kwargs.pop("max_workers", os.cpu_count())
    if spec is not None:
        cubed_local.check_runtime_memory(spec, max_workers)
        if "use_backups" not in kwargs and use_backups_default(spec):
            kwargs["use_backups"] = True
    return max_workers


_run_thread_task = run_bound  # a task in a pool thread, bound to its run's stop event


class _StopsAtFirstFailure:
    """The DAG loop of Cubed's local executors, around a pool that ``_pool`` makes: ``(create_futures,
    close)``, ``close(failed)`` called once the run ended."""

    async def _async_execute_dag(
        self,
        dag: Any,
        callbacks: Any = None,
        spec: Any = None,
        compute_arrays_in_parallel: bool | None = None,
        **kwargs: Any,
    ) -> None:
        create_futures, close = self._pool(_options(kwargs, spec), kwargs)
        failed = True
        try:
            await async_map_dag(
                create_futures,
                dag=dag,
                callbacks=callbacks,
                compute_arrays_in_parallel=compute_arrays_in_parallel,
                **kwargs,
            )
            failed = False
        finally:
            close(failed)

    def _pool(self, max_workers: int, kwargs: dict[str, Any]) -> tuple[Callable, Callable[[bool], None]]:
        raise NotImplementedError


class ThreadsExecutor(_StopsAtFirstFailure, cubed_local.ThreadsExecutor):
    """Cubed's threads executor (``max_workers``, ``retries``), stopping the whole run at the first
    failure instead of running every queued task first."""

    def _pool(self, max_workers: int, kwargs: dict[str, Any]) -> tuple[Callable, Callable[[bool], None]]:
        retries = int(kwargs.pop("retries", 2))
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="lazymerge-task")
        retry = retry_if_exception(lambda exc: not isinstance(exc, FINAL_ERRORS) and not stop.is_set())
        retryer = Retrying(reraise=True, stop=stop_after_attempt(retries + 1), retry=retry)
        task = partial(_run_thread_task, stop, partial(retryer, cubed_local.run_func_threads))

        def create_futures(inputs: Any, **kw: Any) -> list[tuple[Any, asyncio.Future]]:
            return [(i, asyncio.wrap_future(pool.submit(task, i, **kw))) for i in inputs]

        def close(failed: bool) -> None:  # nothing else starts; running tasks stop at their next step
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

        return create_futures, close


def own_peak_rss() -> int:
    """This process's own peak resident set size in bytes: Linux's ``VmHWM``, which starts afresh at exec.

    ``ru_maxrss`` (what Cubed reads) does not: a spawned worker inherits its parent's peak, so each task
    would report at least the driver's memory. Elsewhere, Cubed's own measure."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    from cubed.utils import peak_measured_mem

    return peak_measured_mem()


def _measure_own_peak() -> None:
    """Worker initializer: Cubed's per-task peak is this worker's own (``own_peak_rss``)."""
    import cubed.runtime.utils

    cubed.runtime.utils.peak_measured_mem = own_peak_rss


class _ProcessPool:
    """A process pool that is replaced when a worker dies, so the tasks it lost can run again."""

    def __init__(self, max_workers: int, context: Any, max_tasks_per_child: int | None, retries: int):
        self._make = partial(
            ProcessPoolExecutor,
            max_workers=max_workers,
            mp_context=context,
            max_tasks_per_child=max_tasks_per_child,
            initializer=_measure_own_peak,
        )
        self.retries = retries
        self.pool = self._make()
        self._lock = threading.Lock()
        self._old: list[ProcessPoolExecutor] = []
        self.closed = False

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self.pool is broken:  # the first of its lost tasks to notice replaces it
                self._old.append(broken)
                self.pool = self._make()

    async def run(self, function: bytes, item: Any, kwargs: dict[str, bytes]) -> Any:
        """The task in a worker process; resubmitted to a new pool when a worker died under it."""
        for attempt in range(self.retries + 1):
            pool = self.pool
            try:
                future = pool.submit(
                    cubed_local.unpickle_and_call, function, cloudpickle.dumps(item), **kwargs
                )
                return await asyncio.wrap_future(future)
            except BrokenProcessPool as exc:
                if self.closed:  # ended on purpose: the run failed elsewhere
                    raise RunCancelledError("the run failed in another task") from exc
                self._replace(pool)
                if attempt == self.retries:
                    raise WorkerLostError(
                        f"a worker process died (killed, or out of memory) under task {item!r}, "
                        f"{self.retries + 1} times; check the workers' memory (allowed_mem) and logs, "
                        "then run again with resume=True"
                    ) from exc
        raise AssertionError("unreachable")

    def close(self, failed: bool) -> None:
        """Cancel queued tasks; after a failure, first kill the workers and let the pool fail its queued
        tasks itself (cancelling them as well would race with that: InvalidStateError on Python 3.11)."""
        self.closed = True
        for pool in [*self._old, self.pool]:
            if failed:
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    proc.kill()
            pool.shutdown(wait=failed, cancel_futures=not failed)  # waits only for the killed workers


class ProcessesExecutor(_StopsAtFirstFailure, cubed_local.ProcessesExecutor):
    """Cubed's processes executor (``max_workers``, ``use_processes``, ``max_tasks_per_child``), with
    ``retries`` resubmissions of the tasks a dead worker took with it, ending its workers at the first
    failure instead of running every queued task first."""

    def _pool(self, max_workers: int, kwargs: dict[str, Any]) -> tuple[Callable, Callable[[bool], None]]:
        import multiprocessing

        method = kwargs.pop("use_processes", True)
        context = multiprocessing.get_context(method if isinstance(method, str) else "spawn")
        pool = _ProcessPool(
            max_workers, context, kwargs.pop("max_tasks_per_child", None), int(kwargs.pop("retries", 2))
        )
        function = cloudpickle.dumps(cubed_local.run_func_processes)

        def create_futures(inputs: Any, **kw: Any) -> list[tuple[Any, asyncio.Future]]:
            pickled = {k: cloudpickle.dumps(v) for k, v in kw.items()}
            return [(i, asyncio.ensure_future(pool.run(function, i, pickled))) for i in inputs]

        return create_futures, pool.close


LOCAL = {"threads": ThreadsExecutor, "processes": ProcessesExecutor}


def stopping_spec(spec: Any) -> Any:
    """``spec``, with lazymerge's local executor in place of Cubed's when it names none, ``threads`` or
    ``processes`` (so that ``result.array.compute()`` also stops at the first failure)."""
    import cubed

    name = spec.executor_name
    if (name is None and spec.executor is not None) or (name is not None and name not in LOCAL):
        return spec  # the caller's own executor
    executor = LOCAL[name or "threads"](**(spec.executor_options or {}))
    return cubed.Spec(
        spec.work_dir,
        intermediate_store=spec.intermediate_store,
        allowed_mem=spec.allowed_mem,
        reserved_mem=spec.reserved_mem,
        executor=executor,
        storage_options=spec.storage_options,
        zarr_compressor=spec.zarr_compressor,
    )
