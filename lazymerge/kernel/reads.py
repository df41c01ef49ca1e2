"""Reading source windows: only the chunks a window touches, each decoded once per worker while it is hot.

Neighbouring target blocks read overlapping windows: a 1024-pixel block over 512-pixel source chunks
touches 3 x 3 chunks, of which it shares a row or column with each neighbour, so reading windows straight
through zarr decodes most chunks two to four times, where GDAL's block cache decodes each tile once. Here
each worker process keeps an LRU of opened arrays and one of decoded chunks (``SOURCE_CACHE_BYTES``, counted
in the merge's ``reserved_mem``); the chunks a window still needs are fetched concurrently through the
array's zarr store (``kernel.chunkio`` for plain arrays, zarr's reads for any other), then the window is
assembled from them. A chunk another thread is already fetching is waited for, not fetched twice.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import product
from typing import Any

import numpy as np
import zarr

from lazymerge.aio import zarr_gather
from lazymerge.contract.budget import SOURCE_CACHE_BYTES
from lazymerge.contract.tasks import TaskRow
from lazymerge.errors import LazymergeError, RunCancelledError, SourceReadError
from lazymerge.kernel.cancel import bind_stop, check_cancelled, current_stop
from lazymerge.kernel.chunkio import codec, get_chunks

ARRAY_CACHE_SIZE = 256  # opened source arrays kept per worker process


_arrays: OrderedDict[tuple[int, str], tuple[Any, zarr.Array]] = OrderedDict()
_chunks: OrderedDict[tuple[str, int, str, tuple[int, int]], tuple[Any, np.ndarray]] = OrderedDict()
_chunk_bytes = 0
_fetching: dict[tuple[str, int, str, tuple[int, int]], Future] = {}  # chunks being fetched: their result
_lock = threading.Lock()


def _after_fork() -> None:
    """A forked child has none of its parent's threads: nothing is being fetched, and no one holds the lock
    (a parent's fetch in flight at the fork would otherwise be waited for forever)."""
    global _lock
    _lock = threading.Lock()
    _fetching.clear()


os.register_at_fork(after_in_child=_after_fork)


def open_source(store: Any, path: str) -> zarr.Array:
    """A source array, opened once per worker process (an LRU of opened arrays)."""
    key = (id(store), path)
    with _lock:
        hit = _arrays.get(key)
        if hit is not None and hit[0] is store:
            _arrays.move_to_end(key)
            return hit[1]
    try:
        arr = zarr.open_array(store, path=path, mode="r")
    except (ValueError, TypeError, KeyError) as exc:  # a torn or hand-edited zarr.json
        raise SourceReadError(
            f"source array {path!r} cannot be opened: its zarr.json cannot be read ({type(exc).__name__}: "
            f"{exc}); restore it, or re-index the store without that source"
        ) from exc
    with _lock:
        _arrays[key] = (store, arr)
        while len(_arrays) > ARRAY_CACHE_SIZE:
            _arrays.popitem(last=False)
    return arr


def read_window(store: Any, task: TaskRow, scope: str = "") -> np.ndarray:
    """The task's source window, from the decoded chunks it touches; chunks cached under the same
    ``scope`` (one merge: its plan's path) are not read again. No scope: nothing is cached."""
    arr = open_source(store, task.level.path)
    r0, r1, c0, c1 = task.window
    if not scope or SOURCE_CACHE_BYTES <= 0:
        with _decoding(arr, task.window):
            return np.asarray(arr[r0:r1, c0:c1])
    ch, cw = arr.chunks[-2:]
    keys = list(product(range(r0 // ch, -(-r1 // ch)), range(c0 // cw, -(-c1 // cw))))
    found: dict[tuple[int, int], np.ndarray] = {}
    mine: dict[tuple[int, int], Future] = {}  # chunks this call fetches
    theirs: dict[tuple[int, int], Future] = {}  # chunks another thread is fetching: waited for
    with _lock:
        for key in keys:
            full = (scope, id(store), task.level.path, key)
            hit = _chunks.get(full)
            if hit is not None and hit[0] is store:
                _chunks.move_to_end(full)
                found[key] = hit[1]
            elif full in _fetching:
                theirs[key] = _fetching[full]
            else:
                mine[key] = _fetching[full] = Future()
    if mine:
        try:
            fetched = _fetch(arr, task.window, list(mine))
        except BaseException as exc:
            _settle(scope, store, task.level.path, mine, exc)
            raise
        found.update(fetched)
        _remember(scope, store, task.level.path, fetched)
        _settle(scope, store, task.level.path, mine, fetched)
    for key, pending in theirs.items():
        found[key] = pending.result()  # their error is raised here, and retried as ours
    out = np.empty((r1 - r0, c1 - c0), dtype=arr.dtype)
    for (i, j), chunk in found.items():
        top, left = i * ch, j * cw
        a0, a1 = max(r0, top), min(r1, top + chunk.shape[0])
        b0, b1 = max(c0, left), min(c1, left + chunk.shape[1])
        out[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0] = chunk[a0 - top : a1 - top, b0 - left : b1 - left]
    return out


def _fetch(
    arr: zarr.Array, window: tuple[int, int, int, int], keys: list[tuple[int, int]]
) -> dict[tuple[int, int], np.ndarray]:
    """The decoded chunks at ``keys``, fetched concurrently (plain arrays: ``kernel.chunkio``; else zarr)."""
    compressor = codec(arr)
    if compressor is not None:
        return dict(zip(keys, get_chunks(arr, compressor, keys), strict=True))
    ch, cw = arr.chunks[-2:]
    sels = [(slice(i * ch, (i + 1) * ch), slice(j * cw, (j + 1) * cw)) for i, j in keys]
    with _decoding(arr, window):
        gathered = zarr_gather([arr._async_array.getitem(sel) for sel in sels])
    return {key: np.asarray(b) for key, b in zip(keys, gathered, strict=True)}


def _settle(scope: str, store: Any, path: str, mine: dict[tuple[int, int], Future], result: Any) -> None:
    """Hand the chunks this thread fetched (or its error) to the threads waiting for them."""
    with _lock:
        for key, pending in mine.items():
            _fetching.pop((scope, id(store), path, key), None)
            if isinstance(result, BaseException):
                pending.set_exception(result)
            else:
                pending.set_result(result[key])


@contextmanager
def _decoding(arr: zarr.Array, window: tuple[int, int, int, int]) -> Iterator[None]:
    """Reads through zarr's codec pipeline: a chunk that fails to decode (zarr names neither the array nor
    the chunk) raises SourceReadError naming the array, the window and the chunks it spans. Store and
    network errors pass unchanged (retried by the caller)."""
    try:
        yield
    except (RuntimeError, ValueError, TypeError) as exc:
        if type(exc).__module__.startswith("obstore"):
            raise
        r0, r1, c0, c1 = window
        ch, cw = arr.chunks[-2:]
        first, last = (r0 // ch, c0 // cw), ((r1 - 1) // ch, (c1 - 1) // cw)
        keys = f"{arr.metadata.encode_chunk_key(first)!r} .. {arr.metadata.encode_chunk_key(last)!r}"
        raise SourceReadError(
            f"source array {arr.path!r}: rows {r0}:{r1} cols {c0}:{c1} cannot be decoded (chunks {keys}; "
            f"{type(exc).__name__}: {exc}); a chunk is truncated or corrupt: rewrite it from the original"
        ) from exc


def _remember(scope: str, store: Any, path: str, chunks: dict[tuple[int, int], np.ndarray]) -> None:
    """Add decoded chunks to the LRU (holding their store, so its id is not reused while they are kept),
    evicting the least recently used beyond ``SOURCE_CACHE_BYTES``."""
    global _chunk_bytes
    with _lock:
        for key, chunk in chunks.items():
            full = (scope, id(store), path, key)
            old = _chunks.pop(full, None)
            _chunk_bytes += chunk.nbytes - (old[1].nbytes if old is not None else 0)
            _chunks[full] = (store, chunk)
        while _chunk_bytes > SOURCE_CACHE_BYTES and _chunks:
            _chunk_bytes -= _chunks.popitem(last=False)[1][1].nbytes


ON_ERROR = ("raise", "skip")
READ_RETRIES = 2  # a failed window read is tried again this many times (transient errors only) ...
READ_BACKOFF = 0.25  # ... after this many seconds, doubling each time


@dataclass(frozen=True)
class SkippedRead:
    """A source window that could not be read with ``on_error="skip"``: it rendered as nodata."""

    array: str  # the source array's path in the store
    source: int  # its row of the source table
    chunk: tuple[int, ...]  # the target block: ([time,] [band,] row, col)
    window: tuple[int, int, int, int]  # source rows and columns (row0, row1, col0, col1)
    error: str

    def __str__(self) -> str:
        r0, r1, c0, c1 = self.window
        return f"{self.array} rows {r0}:{r1} cols {c0}:{c1} for target block {self.chunk}: {self.error}"


def parse_on_error(on_error: Any) -> str:
    """``"raise"`` or ``"skip"``; anything else is an InvalidRequestError naming both."""
    from lazymerge.errors import InvalidRequestError

    if on_error not in ON_ERROR:
        raise InvalidRequestError(
            f"on_error={on_error!r}: pass 'raise' (a source that cannot be read fails the run) or 'skip' "
            "(its window renders as nodata and the run lists it)"
        )
    return on_error


def transient(exc: BaseException) -> bool:
    """Whether reading again may succeed: connection failures and timeouts, not a missing object or a
    permission error. obstore's errors are final: obstore has already retried the request
    (``lazymerge.stores.RETRY_CONFIG``), and retrying here would multiply its bounded time."""
    if isinstance(exc, (FileNotFoundError, PermissionError, LazymergeError)):
        return False
    if type(exc).__module__.startswith("obstore"):
        return False
    return isinstance(exc, (OSError, TimeoutError))


def _message(exc: BaseException) -> str:
    """The error's first lines, without obstore's debug dump."""
    text = str(exc).split("Debug source:")[0].strip() or type(exc).__name__
    return text if isinstance(exc, LazymergeError) else f"{type(exc).__name__}: {text}"


def guarded(
    read: Callable[[Any, TaskRow], np.ndarray],
    block: tuple[int, ...],
    on_error: str = "raise",
    skipped: list[SkippedRead] | None = None,
    retries: int = READ_RETRIES,
    backoff: float = READ_BACKOFF,
) -> Callable[[Any, TaskRow], np.ndarray | None]:
    """``read`` with the per-source error policy of target block ``block``: transient errors are tried
    again ``retries`` times (``backoff`` seconds, doubling); then ``on_error="raise"`` raises
    SourceReadError naming the source array, its window and the block, and ``"skip"`` appends a
    SkippedRead to ``skipped`` and returns None (the window renders as nodata). Each attempt first checks
    that the run has not failed elsewhere (``RunCancelledError``), also from reader threads."""
    stop = current_stop()

    def read_or_skip(store: Any, task: TaskRow) -> np.ndarray | None:
        bind_stop(stop)  # reader threads work for this task's run
        for attempt in range(retries + 1):
            check_cancelled()
            try:
                return read(store, task)
            except RunCancelledError:
                raise
            except Exception as exc:
                if attempt < retries and transient(exc):
                    time.sleep(backoff * 2**attempt)
                    continue
                r0, r1, c0, c1 = task.window
                cause = _message(exc)
                if on_error == "skip":
                    if skipped is not None:
                        skipped.append(SkippedRead(task.level.path, task.source, block, task.window, cause))
                    return None
                if isinstance(exc, LazymergeError) and not isinstance(exc, SourceReadError):
                    raise  # a decode error (SourceReadError naming the chunk) gains the window and block
                tries = f" (tried {attempt + 1} times)" if attempt else ""
                raise SourceReadError(
                    f"cannot read source array {task.level.path!r} rows {r0}:{r1} cols {c0}:{c1} for target "
                    f"block {block}{tries}: {cause}. Check that the store is reachable (endpoint, "
                    "credentials, network), or pass on_error='skip' to render this source as nodata there"
                ) from exc
        raise AssertionError("unreachable")

    return read_or_skip


def _skip_location(plan_path: str) -> tuple[Any, str]:
    """(zarr store, key prefix) of the skipped-read records kept next to the saved plan."""
    group = zarr.open_group(plan_path, mode="r")
    prefix = f"{group.store_path.path}/" if group.store_path.path else ""
    return group.store, f"{prefix}skipped/"


def record_skipped(plan_path: str, records: list[SkippedRead]) -> None:
    """Save ``records`` (one block's skipped reads) next to the plan, where every worker can write."""
    from zarr.core.buffer import default_buffer_prototype

    store, prefix = _skip_location(plan_path)
    if store.read_only:
        store = store.with_read_only(False)
    data = json.dumps([asdict(r) for r in records]).encode()
    buf = default_buffer_prototype().buffer.from_bytes(data)
    zarr_gather([store.set(f"{prefix}{uuid.uuid4().hex}.json", buf)])


def skipped_reads(plan_path: str) -> list[SkippedRead]:
    """Every read skipped so far by the tasks of the plan at ``plan_path``, once each, in block order."""
    from zarr.core.buffer import default_buffer_prototype

    try:
        store, prefix = _skip_location(plan_path)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):  # never saved: no task skipped a read
        return []

    async def load() -> list[bytes]:
        keys = [k async for k in store.list_prefix(prefix)]
        bufs = [await store.get(k, prototype=default_buffer_prototype()) for k in keys]
        return [b.to_bytes() for b in bufs if b is not None]

    seen: dict[tuple, SkippedRead] = {}
    for data in zarr_gather([load()])[0]:
        for item in json.loads(data):
            record = SkippedRead(
                item["array"], item["source"], tuple(item["chunk"]), tuple(item["window"]), item["error"]
            )
            seen.setdefault((record.array, record.chunk, record.window), record)  # retried blocks repeat
    return sorted(seen.values(), key=lambda r: (r.chunk, r.source, r.array))


def warn_skipped(plan_path: str) -> list[SkippedRead]:
    """The reads the run skipped (``skipped_reads``), with a SkippedReadWarning naming the first ones."""
    import warnings

    from lazymerge.errors import SkippedReadWarning

    skipped = skipped_reads(plan_path)
    if skipped:
        shown = "; ".join(str(s) for s in skipped[:5])
        more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
        warnings.warn(
            f"{len(skipped)} source window(s) could not be read and rendered as nodata (on_error='skip'): "
            f"{shown}{more}. result.skipped_reads() lists them all",
            SkippedReadWarning,
            stacklevel=3,
        )
    return skipped
