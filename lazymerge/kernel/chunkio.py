"""Whole chunks of plain zarr arrays, encoded and decoded with numcodecs, moved through the array's store.

zarr's per-chunk codec pipeline costs CPU beyond the (de)compression itself: ``benchmarks/chunk_io.py``
measures 0.4-1.2 ms more per 1 MB chunk read and 5-11 ms more per 4 MB block written. For "plain" arrays
(zarr v3, a ``bytes`` serializer in native byte order and at most one zstd, blosc or gzip compressor: zarr's
default encoding) lazymerge therefore moves whole chunks itself, with the same numcodecs codecs zarr uses
and the same store API (``get``/``set``, atomic on local and object stores). Every other array goes through
zarr: ``codec(arr)`` returns None for it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import LocalStore

from lazymerge.aio import zarr_gather
from lazymerge.errors import SourceReadError

_COMPRESSORS = {ZstdCodec: numcodecs.Zstd, BloscCodec: numcodecs.Blosc, GzipCodec: numcodecs.GZip}
RAW = "raw"  # codec() of a plain array stored uncompressed


def codec(arr: zarr.Array) -> Any:
    """The numcodecs compressor of a plain array's chunks (``RAW``: uncompressed); None if not plain."""
    meta = arr.metadata
    if meta.zarr_format != 3 or arr.shards is not None or arr.dtype.kind not in "biuf":
        return None
    codecs = list(meta.codecs)
    if not 1 <= len(codecs) <= 2 or not isinstance(codecs[0], BytesCodec):
        return None
    endian = codecs[0].endian
    if arr.dtype.itemsize > 1 and endian is not None and endian.value != sys.byteorder:
        return None
    if len(codecs) == 1:
        return RAW
    compressor = codecs[1]
    cls = _COMPRESSORS.get(type(compressor))
    if cls is None:
        return None
    if isinstance(compressor, ZstdCodec):
        return cls(level=compressor.level, checksum=compressor.checksum)
    if isinstance(compressor, GzipCodec):
        return cls(level=compressor.level)
    assert isinstance(compressor, BloscCodec)  # the one compressor _COMPRESSORS has left
    return cls(
        cname=compressor.cname.value,
        clevel=compressor.clevel,
        shuffle=["noshuffle", "shuffle", "bitshuffle"].index(compressor.shuffle.value),
        blocksize=compressor.blocksize,
    )


def chunk_key(arr: zarr.Array, index: tuple[int, ...]) -> str:
    prefix, name = arr.store_path.path, arr.metadata.encode_chunk_key(index)
    return f"{prefix}/{name}" if prefix else name


def get_chunks(arr: zarr.Array, compressor: Any, indices: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """The chunks at ``indices``, fetched concurrently and decoded (the fill value where one was never
    written). Read-only arrays of the full chunk shape.

    Only the fetch runs on zarr's event loop (a local store's files are read here, without the loop's
    two thread hops per chunk); decoding runs in the calling thread. numcodecs releases the GIL, so
    workers decode in parallel, where decoding on the loop would queue every worker's chunks on its one
    thread. A chunk that does not decode to the chunk shape (truncated, corrupt) raises
    SourceReadError naming the array and the chunk's key."""
    store = arr.store_path.store
    if type(store) is LocalStore:  # not a subclass: it may read differently
        raws = [_read_file(store, chunk_key(arr, i)) for i in indices]
    else:
        proto = default_buffer_prototype()
        bufs = zarr_gather([store.get(chunk_key(arr, i), prototype=proto) for i in indices])
        raws = [None if b is None else b.as_numpy_array() for b in bufs]
    out = []
    for index, raw in zip(indices, raws, strict=True):
        if raw is None:
            out.append(np.full(arr.chunks, arr.fill_value, dtype=arr.dtype))
            continue
        try:
            data = raw if compressor is RAW else compressor.decode(raw)
            out.append(np.frombuffer(data, dtype=arr.dtype).reshape(arr.chunks))
        except Exception as exc:  # numcodecs raises RuntimeError/ValueError/TypeError by codec
            raise SourceReadError(
                f"source array {arr.path!r}: chunk {chunk_key(arr, index)!r} ({len(raw)} bytes) cannot be "
                f"decoded ({type(exc).__name__}: {exc}); it is truncated or corrupt: rewrite it from the "
                "original"
            ) from exc
    return out


def _read_file(store: LocalStore, key: str) -> np.ndarray | None:
    """The bytes of a local store's chunk file (None where it was never written), as zarr's LocalStore
    reads them."""
    try:
        return np.frombuffer((store.root / key).read_bytes(), dtype="u1")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def set_chunk(arr: zarr.Array, compressor: Any, index: tuple[int, ...], block: np.ndarray) -> None:
    """Write ``block`` as the whole chunk at ``index`` (padded with the fill value past the array's end),
    encoded in the calling thread (as ``get_chunks`` decodes)."""
    if block.shape != arr.chunks:
        full = np.full(arr.chunks, arr.fill_value, dtype=arr.dtype)
        full[tuple(slice(0, n) for n in block.shape)] = block
        block = full
    data = np.ascontiguousarray(block, dtype=arr.dtype)
    encoded = data.tobytes() if compressor is RAW else compressor.encode(data)
    buf = default_buffer_prototype().buffer.from_bytes(encoded)
    zarr_gather([arr.store_path.store.set(chunk_key(arr, index), buf)])
