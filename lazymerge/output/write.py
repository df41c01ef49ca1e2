"""Writing a merge result to Zarr: block by block, resumable, never reported done when half-written.

Every task renders one block with the kernel and writes it straight into the target array (no whole-array
compute). A block's chunk exists in the store only once it is fully written (zarr's local and object
stores write atomically, and empty blocks are written too), so ``resume=True`` renders only the blocks whose
chunk is missing. Overview levels are built from the finished base level afterwards; with an Icechunk session
the commit happens only after every block and level succeeded.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cubed
import numpy as np
import zarr
from zarr.core.array import _shards_initialized
from zarr.core.sync import sync

from lazymerge.catalog.conventions import (
    Overview,
    ProjAttrs,
    SpatialAttrs,
    write_multiscales,
    write_proj,
    write_spatial,
)
from lazymerge.catalog.stores import zarr_location
from lazymerge.errors import OutputError
from lazymerge.kernel.block import KernelTask, merge_block
from lazymerge.kernel.chunkio import codec, set_chunk
from lazymerge.output.progress import run_callbacks

if TYPE_CHECKING:
    from lazymerge.result import MergeResult

# Kernel working set per output pixel (target coords, source coords, indices, masks, values), for Cubed's
# memory projection of the write tasks.
KERNEL_BYTES_PER_PIXEL = 96
TASK_PIXELS = 4 << 20  # pixels a write task renders (several blocks when they are small)


@dataclass(frozen=True)
class BlockWriter:
    """What each write task carries: the kernel task, the target array and the block grid. Small."""

    task: KernelTask
    target: zarr.Array
    nblocks: tuple[int, ...]
    chunks: tuple[int, ...]
    retries: int = 2


def write_blocks(ids: np.ndarray, *, writer: BlockWriter) -> np.ndarray:
    """Cubed task: render the blocks named by ``ids`` (flat block indices) and write each into the target."""
    for flat in ids.ravel():
        block_id = tuple(int(i) for i in np.unravel_index(int(flat), writer.nblocks))
        for attempt in range(writer.retries + 1):
            try:
                _write_block(block_id, writer)
                break
            except Exception:
                if attempt == writer.retries:
                    raise
    return ids


def _write_block(block_id: tuple[int, ...], writer: BlockWriter) -> None:
    block = merge_block(None, task=writer.task, block_id=block_id)
    compressor = codec(writer.target)
    if compressor is not None and tuple(writer.target.chunks) == tuple(writer.chunks):  # one whole chunk
        set_chunk(writer.target, compressor, block_id, block)
        return
    sel = tuple(slice(b * c, b * c + n) for b, c, n in zip(block_id, writer.chunks, block.shape, strict=True))
    writer.target[sel] = block


def _decimate(block: np.ndarray) -> np.ndarray:
    return block[..., ::2, ::2]


def missing_blocks(arr: zarr.Array) -> np.ndarray:
    """Flat indices of the blocks of ``arr`` whose chunk is not in the store (all of them for a new array)."""
    present = set(sync(_shards_initialized(arr._async_array)))
    grid = tuple(-(-s // c) for s, c in zip(arr.shape, arr.chunks, strict=True))
    keys = (arr.metadata.encode_chunk_key(tuple(int(i) for i in idx)) for idx in np.ndindex(*grid))
    return np.array([i for i, k in enumerate(keys) if k not in present], dtype="i8")


def _store_of(target: Any) -> tuple[Any, Any]:
    """(zarr store, icechunk session or None) for a path, a zarr Store or an Icechunk Session."""
    if type(target).__module__.startswith("icechunk") and hasattr(target, "store"):
        return target.store, target
    return (zarr_location(target) if isinstance(target, str) else target), None


def open_output(store: Any, path: str, shape, chunks, dtype, resume: bool) -> zarr.Array:
    """The output array at ``path`` in ``store``: reopened to resume (same shape/chunks/dtype), else new."""
    if resume:
        try:
            arr = zarr.open_array(store, path=path, mode="r+")
        except (FileNotFoundError, zarr.errors.ArrayNotFoundError, zarr.errors.NodeTypeValidationError):
            arr = None
        if arr is not None:
            if arr.shape != tuple(shape) or arr.chunks != tuple(chunks) or arr.dtype != np.dtype(dtype):
                raise OutputError(
                    f"cannot resume into {path or 'the target root'!r}: it has shape {arr.shape}, chunks "
                    f"{arr.chunks}, dtype {arr.dtype}, the merge has {tuple(shape)}, {tuple(chunks)}, "
                    f"{np.dtype(dtype)}; write to a new target or pass resume=False"
                )
            return arr
    return zarr.create_array(
        store,
        name=path or None,
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        fill_value=float("nan"),
        overwrite=True,
        config={"write_empty_chunks": True},  # an all-NaN block is written too: presence == done
    )


def blocks_per_task(n_blocks: int, block_pixels: int) -> int:
    """How many blocks one write task renders, one after another: about 4 Mpix per task (a task's fixed
    cost, Cubed's and zarr's bookkeeping, is ~10 ms), at most 16, and at least 8 tasks when there are
    as many blocks (so that workers share the run)."""
    return max(1, min(16, TASK_PIXELS // max(block_pixels, 1), -(-n_blocks // 8)))


def _ids_array(ids: np.ndarray, spec: cubed.Spec, per_task: int) -> cubed.Array:
    """The pending block ids as a Cubed array stored once, ``per_task`` ids per task (tasks read only
    their own)."""
    base = str(spec.work_dir) if spec.work_dir else None
    if base is None:
        base = tempfile.mkdtemp(prefix="lazymerge-ids-")
        atexit.register(shutil.rmtree, base, ignore_errors=True)
    path = f"{base.rstrip('/')}/lazymerge-ids-{uuid.uuid4().hex}.zarr"
    zarr.create_array(zarr_location(path), data=ids, chunks=(per_task,))
    return cubed.from_zarr(path, spec=spec)


def _level_attrs(spatial: SpatialAttrs, factor: int, shape: tuple[int, int]) -> SpatialAttrs:
    assert spatial.transform is not None  # a MergeResult's spatial always has its grid's transform
    a, b, c, d, e, f = spatial.transform
    return SpatialAttrs(spatial.dimensions, (a * factor, b, c, d, e * factor, f), spatial.bbox, shape)


def write_zarr(
    result: MergeResult,
    target: Any,
    *,
    executor: Any = None,
    resume: bool = False,
    overviews: int = 0,
    band: str = "data",
    progress: bool | None = None,
    callbacks: list[Any] | None = None,
    commit_message: str = "lazymerge to_zarr",
    report: list[Any] | None = None,
    retries: int = 2,
) -> zarr.Array:
    """Stream ``result`` into Zarr at ``target`` (path, zarr Store or Icechunk Session); returns the base.

    ``overviews=0`` writes one array at the target root. ``overviews=n`` writes a group: ``<band>/`` with a
    ``multiscales`` layout over levels ``0`` (the mosaic) .. ``n`` (each 2x coarser), all with spatial:/proj:,
    so the output is itself a lazymerge source. ``resume=True`` renders only blocks missing from an earlier,
    interrupted write to the same target. spatial:/proj: are written last, so an output without them is an
    unfinished one. An Icechunk session is committed only when everything succeeded.
    ``report``, when a list, receives the run's MemoryReport. A failing block is retried ``retries`` times
    inside its task (Cubed's processes executor does not retry; threads, Lithops and Dask also retry tasks).
    """
    store, session = _store_of(target)
    arr = result.array
    spec = arr.spec
    chunks = arr.chunksize
    if overviews < 0:
        raise OutputError(f"overviews={overviews}; pass 0 (no overview levels) or a positive number")
    if overviews and any(c % 2**overviews for c in chunks[-2:]):
        raise OutputError(
            f"overviews={overviews} needs chunk sizes divisible by {2**overviews}; chunk_size is "
            f"{chunks[-2:]}: pick a chunk_size that is, or fewer levels"
        )
    effective = executor if executor is not None else spec.executor  # what Cubed will run on
    if session is not None and effective is not None and getattr(effective, "name", "threads") != "threads":
        raise OutputError(
            f"writing into an Icechunk session runs on the threads executor only, not {effective.name!r} "
            "(from executor= or the Spec's executor): the session's changes must stay in this process until "
            "the commit"
        )
    if overviews:
        zarr.open_group(store, mode="a" if resume else "w")
    base_path = f"{band}/0" if overviews else ""
    out = open_output(store, base_path, arr.shape, chunks, arr.dtype, resume)
    ids = missing_blocks(out) if resume else np.arange(int(np.prod(arr.numblocks)), dtype="i8")
    cbs, memory = run_callbacks(progress)
    cbs = [*cbs, *(callbacks or [])]
    if report is not None:
        report.append(memory)
    if len(ids):
        writer = BlockWriter(result.task, out, tuple(arr.numblocks), tuple(chunks), retries)
        pixels = int(np.prod(chunks))
        written = cubed.map_blocks(
            write_blocks,
            _ids_array(ids, spec, blocks_per_task(len(ids), pixels)),
            dtype="i8",
            writer=writer,
            extra_projected_mem=pixels * (KERNEL_BYTES_PER_PIXEL + arr.dtype.itemsize),
        )
        written.compute(executor=executor, callbacks=cbs, optimize_graph=False)
    _write_attrs(out, result.spatial, result.proj)
    if overviews:
        _write_overviews(store, band, result, overviews, executor, cbs)
    if session is not None:
        session.commit(commit_message)
    return out


def _write_attrs(node: Any, spatial: SpatialAttrs, proj: ProjAttrs) -> None:
    write_spatial(node, spatial)
    write_proj(node, proj)


def _write_overviews(
    store: Any, band: str, result: MergeResult, n: int, executor: Any, cbs: list[Any]
) -> None:
    """Levels 1..n, each the previous decimated 2x (nearest, as the mosaic), plus the multiscales layout."""
    group = zarr.open_group(store, path=band, mode="a")
    spec = result.array.spec
    levels = [Overview("0", (1.0, 1.0))]
    for k in range(1, n + 1):
        src = cubed.from_zarr(store, path=f"{band}/{k - 1}", spec=spec)
        shape = (*src.shape[:-2], -(-src.shape[-2] // 2), -(-src.shape[-1] // 2))
        chunks = (*src.chunksize[:-2], src.chunksize[-2] // 2, src.chunksize[-1] // 2)
        lvl = cubed.map_blocks(_decimate, src, dtype=src.dtype, chunks=_regular(shape, chunks))
        out = open_output(store, f"{band}/{k}", shape, chunks, src.dtype, resume=False)
        cubed.store(lvl, out, executor=executor, callbacks=cbs)
        _write_attrs(out, _level_attrs(result.spatial, 2**k, shape[-2:]), result.proj)
        levels.append(Overview(str(k), (float(2**k), float(2**k)), derived_from=str(k - 1)))
    write_proj(group, result.proj)
    write_multiscales(group, levels)


def _regular(shape: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    out = []
    for n, c in zip(shape, chunks, strict=True):
        sizes = [c] * (n // c) + ([n % c] if n % c else [])
        out.append(tuple(sizes))
    return tuple(out)
