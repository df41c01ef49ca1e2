"""Reading source windows: only the chunks a window touches, each decoded once per worker while it is hot.

Neighbouring target blocks read overlapping windows: a 1024-pixel block over 512-pixel source chunks
touches 3 x 3 chunks, of which it shares a row or column with each neighbour, so reading windows straight
through zarr decodes most chunks two to four times, where GDAL's block cache decodes each tile once. Here
each worker process keeps an LRU of opened arrays and one of decoded chunks (``SOURCE_CACHE_BYTES``, counted
in the merge's ``reserved_mem``); the chunks a window still needs are fetched concurrently through the
array's zarr store (``kernel.chunkio`` for plain arrays, zarr's reads for any other), then the window is
assembled from them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import product
from typing import Any

import numpy as np
import zarr

from lazymerge.aio import zarr_gather
from lazymerge.contract.budget import SOURCE_CACHE_BYTES
from lazymerge.contract.tasks import TaskRow
from lazymerge.errors import SourceReadError
from lazymerge.kernel.chunkio import codec, get_chunks

ARRAY_CACHE_SIZE = 256  # opened source arrays kept per worker process


_arrays: OrderedDict[tuple[int, str], tuple[Any, zarr.Array]] = OrderedDict()
_chunks: OrderedDict[tuple[str, int, str, tuple[int, int]], tuple[Any, np.ndarray]] = OrderedDict()
_chunk_bytes = 0
_lock = threading.Lock()


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
    with _lock:
        for key in keys:
            full = (scope, id(store), task.level.path, key)
            hit = _chunks.get(full)
            if hit is not None and hit[0] is store:
                _chunks.move_to_end(full)
                found[key] = hit[1]
    missing = [key for key in keys if key not in found]
    if missing:  # fetched concurrently
        compressor = codec(arr)
        if compressor is not None:  # decoded here (lazymerge.kernel.chunkio), else through zarr
            fetched = get_chunks(arr, compressor, missing)
        else:
            sels = [(slice(i * ch, (i + 1) * ch), slice(j * cw, (j + 1) * cw)) for i, j in missing]
            with _decoding(arr, task.window):
                gathered = zarr_gather([arr._async_array.getitem(sel) for sel in sels])
            fetched = [np.asarray(b) for b in gathered]
        found.update(zip(missing, fetched, strict=True))
        _remember(scope, store, task.level.path, dict(zip(missing, fetched, strict=True)))
    out = np.empty((r1 - r0, c1 - c0), dtype=arr.dtype)
    for (i, j), chunk in found.items():
        top, left = i * ch, j * cw
        a0, a1 = max(r0, top), min(r1, top + chunk.shape[0])
        b0, b1 = max(c0, left), min(c1, left + chunk.shape[1])
        out[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0] = chunk[a0 - top : a1 - top, b0 - left : b1 - left]
    return out


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
