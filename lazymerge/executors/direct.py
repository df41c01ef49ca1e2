"""Computing a merge on local threads straight into the numpy result (and, for ``to_zarr``, writing its
blocks from local threads: ``lazymerge.output.write``).

Cubed's ``compute()`` of a ``map_blocks`` array runs every block into a temporary Zarr array under the
spec's ``work_dir`` and then reads the whole array back: for a 64 Mpix uint16 mosaic that is 128 MB
compressed, written and decoded again, with nothing gained when the result is wanted in this process
anyway. ``MergeArray`` (the class of ``merge(...).array``) therefore renders the blocks with a pool of
threads into one ``np.empty`` result when the computation is local threads (the spec's default executor or
a ``threads`` executor) with no callbacks and no resume; anything else goes through Cubed unchanged.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from itertools import accumulate
from typing import Any

import numpy as np
from cubed.array_api.array_object import Array

from lazymerge.contract.tasks import KernelTask
from lazymerge.executors.local import FINAL_ERRORS, _run_thread_task
from lazymerge.kernel.block import merge_block


def run_blocks(work: Callable[[Any], None], ids: list[Any], max_workers: int | None = None) -> None:
    """``work(id)`` for every block id on a pool of ``max_workers`` threads (default: CPU count); the first
    failure cancels the blocks not yet started and stops the running ones at their next step
    (``lazymerge.kernel.cancel``), then is raised."""
    workers = max(1, min(max_workers or os.cpu_count() or 1, len(ids)))
    stop = threading.Event()  # set at the first failure: running blocks stop at their next step
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lazymerge-block")
    futures = [pool.submit(_run_thread_task, stop, work, block_id) for block_id in ids]
    try:
        for done in as_completed(futures):
            done.result()  # re-raises the first failure
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)  # queued blocks never start
        raise
    pool.shutdown()


def render_into(
    task: KernelTask,
    chunks: tuple[tuple[int, ...], ...],
    dtype: np.dtype,
    max_workers: int | None = None,
    retries: int = 2,
) -> np.ndarray:
    """Every block of the merge, rendered on ``max_workers`` threads (``run_blocks``) into one array; a
    failing block is retried ``retries`` times, as the threads executor does."""
    out = np.empty(tuple(sum(c) for c in chunks), dtype=dtype)
    starts = [list(accumulate(c, initial=0)) for c in chunks]

    def render(block_id: tuple[int, ...]) -> None:
        sel = tuple(slice(s[i], s[i + 1]) for s, i in zip(starts, block_id, strict=True))
        for attempt in range(retries + 1):
            try:
                out[sel] = merge_block(None, task=task, block_id=block_id)
                return
            except FINAL_ERRORS:
                raise
            except Exception:
                if attempt == retries:
                    raise

    run_blocks(render, list(np.ndindex(*(len(c) for c in chunks))), max_workers)
    return out


def local_threads(array: Array, executor: Any, callbacks: Any, resume: Any, kwargs: dict) -> dict | None:
    """The threads executor's options when this run of ``array``'s blocks can go on local threads without
    Cubed (no callbacks, no resume, no executor chosen by config, ``executor`` or the spec's the threads
    one); else None."""
    from cubed import config
    from cubed.runtime.executors.local import ThreadsExecutor
    from cubed.runtime.types import Callback

    if callbacks or Callback.active or resume or kwargs or "executor_name" in config:
        return None
    executor = executor if executor is not None else array.spec.executor
    if executor is None:
        return dict(array.spec.executor_options or {})
    return dict(executor.kwargs) if isinstance(executor, ThreadsExecutor) else None


class MergeArray(Array):
    """The Cubed array of a merge. The same array; ``compute()`` on local threads skips Cubed's temporary
    Zarr round trip (module docstring). Arrays derived from it are plain Cubed arrays."""

    _lazymerge_task: KernelTask

    def compute(self, *, executor=None, callbacks=None, optimize_graph=True, optimize_function=None,
                resume=None, **kwargs):  # fmt: skip
        options = local_threads(self, executor, callbacks, resume, kwargs)
        if options is None:
            return super().compute(
                executor=executor,
                callbacks=callbacks,
                optimize_graph=optimize_graph,
                optimize_function=optimize_function,
                resume=resume,
                **kwargs,
            )
        return render_into(
            self._lazymerge_task,
            self.chunks,
            self.dtype,
            options.get("max_workers"),
            options.get("retries", 2),
        )


def as_merge_array(array: Array, task: KernelTask) -> MergeArray:
    """``array`` (from ``cubed.map_blocks`` over ``merge_block`` with ``task``) as a MergeArray."""
    array.__class__ = MergeArray
    array._lazymerge_task = task
    return array
