"""Writing a merge result to Zarr: block by block, resumable, never reported done when half-written.

Every task renders one block with the kernel and writes it straight into the target array (no whole-array
compute). A block's chunk exists in the store only once it is fully written (zarr's local and object
stores write atomically, and empty blocks are written too), so ``resume=True`` renders only the blocks whose
chunk is missing. Overview levels are built from the finished base level afterwards; with an Icechunk session
the commit happens only after every block and level succeeded. The guards that keep a write from
destroying anything (existing targets, the request fingerprint, the writer lease) are in
lazymerge.output.target; the root's ``lazymerge:complete`` attribute is set last.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
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
from lazymerge.contract.cost import task_memory
from lazymerge.errors import (
    LazymergeError,
    OutputError,
    OutputExistsError,
    OutputIncompleteError,
    OutputWriteError,
)
from lazymerge.executors.direct import local_threads, run_blocks
from lazymerge.executors.local import FINAL_ERRORS
from lazymerge.kernel.block import KernelTask, merge_block
from lazymerge.kernel.cancel import check_cancelled
from lazymerge.kernel.chunkio import codec, set_chunk
from lazymerge.kernel.faults import maybe_delay
from lazymerge.kernel.reads import warn_skipped
from lazymerge.output.progress import run_callbacks
from lazymerge.output.target import (
    COMPLETE,
    FINGERPRINT,
    MARK,
    Lease,
    check_holder,
    check_outside,
    digest,
    fingerprint,
    open_target,
    prepare,
)

if TYPE_CHECKING:
    from lazymerge.result import MergeResult

TASK_PIXELS = 4 << 20  # pixels a write task renders (several blocks when they are small)


@dataclass(frozen=True)
class BlockWriter:
    """What each write task carries: the kernel task, the target array and the block grid. Small."""

    task: KernelTask
    target: zarr.Array
    nblocks: tuple[int, ...]
    chunks: tuple[int, ...]
    retries: int = 2
    lease: str | None = None  # the run holding the target's lease: tasks write only while it does


def render_with_cubed(writer: BlockWriter, ids: np.ndarray, result: MergeResult, executor: Any,
                      cbs: list[Any]) -> None:  # fmt: skip
    """Render and write the blocks ``ids`` as Cubed tasks on ``executor``, several per task."""
    arr = result.array
    pixels = int(np.prod(arr.chunksize))
    # a task renders its blocks one after another: its largest block's projection (contract/cost.py), plus
    # that block encoded for the store
    largest = int(task_memory(result.plan)[1].max(initial=0))
    written = cubed.map_blocks(
        write_blocks,
        _ids_array(ids, arr.spec, blocks_per_task(len(ids), pixels)),
        dtype="i8",
        writer=writer,
        extra_projected_mem=max(largest, pixels * arr.dtype.itemsize) + pixels * arr.dtype.itemsize,
    )
    written.compute(executor=executor, callbacks=cbs, optimize_graph=False)


def render_locally(writer: BlockWriter, ids: np.ndarray, max_workers: int | None = None) -> None:
    """Render and write the blocks ``ids`` from local threads (``executors.direct.run_blocks``), as many
    per ``write_blocks`` call as a Cubed task takes (one lease check each, as there): what a threads
    executor's run does, without Cubed's plan, its task array of block ids on disk and its scheduling (the
    write's callbacks and memory report need Cubed)."""
    per_task = blocks_per_task(len(ids), int(np.prod(writer.chunks)))
    groups = np.array_split(ids, -(-len(ids) // per_task))

    def write(group: np.ndarray) -> None:
        write_blocks(group, writer=writer)

    run_blocks(write, groups, max_workers)


def write_blocks(ids: np.ndarray, *, writer: BlockWriter) -> np.ndarray:
    """Cubed task: render the blocks named by ``ids`` (flat block indices) and write each into the target,
    only while the target's lease is held by the writer's run (OutputLockedError otherwise)."""
    if writer.lease is not None:
        check_holder(writer.target.store, writer.lease, str(writer.target.store))
    for flat in ids.ravel():
        block_id = tuple(int(i) for i in np.unravel_index(int(flat), writer.nblocks))
        for attempt in range(writer.retries + 1):
            check_cancelled()  # the run failed in another task: stop before the next block
            try:
                _write_block(block_id, writer)
                break
            except FINAL_ERRORS:  # already retried read by read, or cancelled: retrying cannot help
                raise
            except Exception:
                if attempt == writer.retries:
                    raise
    return ids


def _write_block(block_id: tuple[int, ...], writer: BlockWriter) -> None:
    block = merge_block(None, task=writer.task, block_id=block_id)
    try:
        compressor = codec(writer.target)
        if compressor is not None and tuple(writer.target.chunks) == tuple(writer.chunks):  # one whole chunk
            set_chunk(writer.target, compressor, block_id, block)
            return
        sel = tuple(
            slice(b * c, b * c + n) for b, c, n in zip(block_id, writer.chunks, block.shape, strict=True)
        )
        writer.target[sel] = block
    except Exception as exc:
        if not _is_store_error(exc):
            raise
        raise OutputWriteError(
            f"writing block {block_id} of {writer.target.store_path} failed: {exc}; free space or fix the "
            "store's permissions, then run again with resume=True"
        ) from exc


def _decimate(block: np.ndarray) -> np.ndarray:
    maybe_delay()
    return block[..., ::2, ::2]


def _drop_partial_writes(store: Any) -> None:
    """Delete what a killed write left half-done in a local target: zarr's LocalStore writes each chunk to
    ``<key>.<uuid>.partial`` and renames it, so a kill in between leaves that file (never a chunk)."""
    if isinstance(store, zarr.storage.LocalStore):
        store = store.root
    if isinstance(store, (str, Path)) and "://" not in str(store):
        for leftover in Path(store).rglob("*.partial"):
            leftover.unlink(missing_ok=True)


def missing_blocks(arr: zarr.Array) -> np.ndarray:
    """Flat indices of the blocks of ``arr`` whose chunk is not in the store (all of them for a new array)."""
    present = set(sync(_shards_initialized(arr._async_array)))
    grid = tuple(-(-s // c) for s, c in zip(arr.shape, arr.chunks, strict=True))
    keys = (arr.metadata.encode_chunk_key(tuple(int(i) for i in idx)) for idx in np.ndindex(*grid))
    return np.array([i for i, k in enumerate(keys) if k not in present], dtype="i8")


def open_output(
    store: Any,
    path: str,
    shape,
    chunks,
    dtype,
    resume: bool,
    *,
    fill_value: float | None = None,
    attributes: dict[str, Any] | None = None,
    dims: tuple[str, ...] | None = None,
) -> zarr.Array:
    """The output array at ``path`` in ``store``: reopened to resume (same shape/chunks/dtype), else
    created (never over an existing node: OutputExistsError). ``fill_value`` None: NaN. ``dims``: its
    dimension names (default: ``y, x`` after ``dim_0 ...``)."""
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
    try:
        return zarr.create_array(
            store,
            name=path or None,
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            fill_value=float("nan") if fill_value is None else fill_value,
            attributes=attributes,
            overwrite=False,
            dimension_names=dims or (*(f"dim_{i}" for i in range(len(shape) - 2)), "y", "x"),
            config={"write_empty_chunks": True},  # an all-nodata block is written too: presence == done
        )
    except (zarr.errors.ContainsArrayError, zarr.errors.ContainsGroupError) as exc:
        raise OutputExistsError(
            f"output node {path or 'at the target root'!r} already exists and is not lazymerge's ({exc}); "
            "write to a new or empty target"
        ) from exc


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
    overwrite: bool = False,
    overviews: int = 0,
    band: str = "data",
    progress: bool | None = None,
    callbacks: list[Any] | None = None,
    commit_message: str = "lazymerge to_zarr",
    report: list[Any] | None = None,
    retries: int = 2,
    render: Callable[[BlockWriter, np.ndarray], Any] | None = None,
) -> zarr.Array:
    """Stream ``result`` into Zarr at ``target`` (path/URL, obstore store, zarr Store or Icechunk Session);
    returns the base array.

    ``overviews=0`` writes one array at the target root. ``overviews=n`` writes a group: ``<band>/`` with a
    ``multiscales`` layout over levels ``0`` (the mosaic) .. ``n`` (each 2x coarser), all with spatial:/proj:,
    so the output is itself a lazymerge source. The output's fill value is the merge's nodata (NaN if none).

    Nothing is ever overwritten by accident: a target that holds anything raises OutputExistsError, unless
    it is a lazymerge output and ``overwrite=True`` (only the arrays and groups lazymerge wrote are deleted)
    or ``resume=True`` with the same request (checked against the ``lazymerge:fingerprint`` attribute;
    OutputResumeError otherwise), which renders only blocks missing from the interrupted write. A target
    inside the source store is refused. A lease (``.lazymerge-lock``) makes a second concurrent writer fail
    with OutputLockedError. The root's ``lazymerge:complete`` attribute turns true only after every block
    and overview level is written; an interrupted or failed run leaves it false. An Icechunk session is
    committed only when everything succeeded. ``report``, when a list, receives the run's MemoryReport,
    then with ``on_error="skip"`` the list of SkippedRead records (also warned about, SkippedReadWarning). A
    failing block is retried ``retries`` times inside its task (Cubed's processes executor does not retry;
    threads, Lithops and Dask also retry tasks); a store that refuses writes raises OutputWriteError.
    ``render(writer, ids)``, when given, renders and writes the pending blocks instead of Cubed (e.g. Modal
    functions calling ``write_blocks``: infra/modal/app.py); the writer names the lease's run, so its tasks
    refuse a target whose lease another run holds.
    """
    arr = result.array
    chunks = arr.chunksize
    if overviews < 0:
        raise OutputError(f"overviews={overviews}; pass 0 (no overview levels) or a positive number")
    if overviews and any(c % 2**overviews for c in chunks[-2:]):
        raise OutputError(
            f"overviews={overviews} needs chunk sizes divisible by {2**overviews}; chunk_size is "
            f"{chunks[-2:]}: pick a chunk_size that is, or fewer levels"
        )
    if resume and overwrite:
        raise OutputError("resume=True and overwrite=True: pass one (resume finishes, overwrite replaces)")
    out_target = open_target(target)
    session = out_target.session
    effective = executor if executor is not None else arr.spec.executor  # what Cubed will run on
    if session is not None and effective is not None and getattr(effective, "name", "threads") != "threads":
        raise OutputError(
            f"writing into an Icechunk session runs on the threads executor only, not {effective.name!r} "
            "(from executor= or the Spec's executor): the session's changes must stay in this process until "
            "the commit"
        )
    check_outside(out_target, result.task.store)
    fp = fingerprint(result, overviews, band)
    desc = out_target.description
    store = out_target.store
    lease = Lease(out_target) if session is None else contextlib.nullcontext()
    with lease:
        with _store_errors(desc):
            resuming = prepare(out_target, fp, resume=resume, overwrite=overwrite)
            if resuming:
                _drop_partial_writes(store)
            out, mark = _create(result, store, fp, resuming, overviews, band)
        cbs, memory = run_callbacks(progress)
        cbs = [*cbs, *(callbacks or [])]
        if report is not None:
            report.append(memory)
        ids = missing_blocks(out) if resuming else np.arange(int(np.prod(arr.numblocks)), dtype="i8")
        if len(ids):
            run = lease.run if isinstance(lease, Lease) else None
            writer = BlockWriter(result.task, out, tuple(arr.numblocks), tuple(arr.chunksize), retries, run)
            local = None
            if render is None and report is None and cbs == [memory, *(callbacks or [])]:  # no progress bar
                local = local_threads(arr, executor, callbacks, None, {})
            if render is not None:
                render(writer, ids)
            elif local is not None:
                render_locally(writer, ids, local.get("max_workers"))
            else:
                render_with_cubed(writer, ids, result, executor, cbs)
        if result.task.options.on_error == "skip":
            skipped = warn_skipped(result.task.plan_path)
            if report is not None:
                report.append(skipped)
        with _store_errors(desc):
            lost = missing_blocks(out)  # one listing: an executor that dropped tasks never looks finished
        if len(lost):
            raise OutputIncompleteError(
                f"{desc!r}: the run ended without an error but {len(lost)} of {out.nchunks} blocks were not "
                f"written (flat block ids {lost[:8].tolist()}{' ...' if len(lost) > 8 else ''}); the output "
                "is not marked complete: rerun with resume=True (CLI: --resume) to write only those blocks"
            )
        with _store_errors(desc):
            _write_attrs(out, result.spatial, result.proj)
            if overviews:
                _write_overviews(store, band, result, overviews, executor, cbs, resuming, mark)
            if isinstance(lease, Lease):
                lease.check()
            root = zarr.open_group(store, mode="r+") if overviews else out
            root.attrs[COMPLETE] = True  # last: every block and level is there
    if session is not None:
        session.commit(commit_message)
    return out


def _is_store_error(exc: BaseException) -> bool:
    """An error of the output store itself (disk full, permissions, object store refusal)."""
    if isinstance(exc, LazymergeError):
        return False
    return isinstance(exc, OSError) or type(exc).__module__.startswith("obstore")


@contextlib.contextmanager
def _store_errors(description: str) -> Iterator[None]:
    """Store failures while writing metadata or overviews, as OutputWriteError naming the target."""
    try:
        yield
    except Exception as exc:
        if not _is_store_error(exc):
            raise
        raise OutputWriteError(
            f"writing {description!r} failed: {exc}; the output is not complete (free space or fix the "
            "store's permissions, then run again with resume=True)"
        ) from exc


def _create(
    result: MergeResult, store: Any, fp: dict[str, Any], resuming: bool, overviews: int, band: str
) -> tuple[zarr.Array, dict[str, Any]]:
    """The output's base array (created, or reopened when resuming) and the marker of its nodes; with
    overviews, the root and band groups too. The root carries the fingerprint and ``complete: false``."""
    arr = result.array
    mark = {MARK: digest(fp)}
    root_attrs = {**mark, FINGERPRINT: fp, COMPLETE: False}
    if overviews:
        _group(store, "", root_attrs)
        _group(store, band, mark)
    out = open_output(
        store,
        f"{band}/0" if overviews else "",
        arr.shape,
        arr.chunksize,
        arr.dtype,
        resuming,
        fill_value=result.plan.nodata,
        attributes=mark if overviews else root_attrs,
        dims=output_dims(result),
    )
    return out, mark


def _group(store: Any, path: str, attrs: dict[str, Any]) -> zarr.Group:
    """The group at ``path``, created with ``attrs`` (kept as they are when it exists: a resumed run)."""
    group = zarr.open_group(store, path=path, mode="a")
    if MARK not in group.attrs:
        group.update_attributes(attrs)
    return group


def output_dims(result: MergeResult) -> tuple[str, ...]:
    """The output's dimension names: ``([time,] [band,] y, x)``, as ``to_xarray`` names them."""
    plan = result.plan
    return ("time",) * (plan.time_coords is not None) + ("band",) * plan.band_dim + ("y", "x")


def _write_attrs(node: Any, spatial: SpatialAttrs, proj: ProjAttrs) -> None:
    """spatial: and proj: (declared in ``zarr_conventions``, what GDAL >= 3.13 reads) and GDAL's own
    ``_CRS`` attribute (what its Zarr driver reads for the CRS before 3.13)."""
    from pyproj import CRS

    write_spatial(node, spatial)
    write_proj(node, proj)
    node.update_attributes({"_CRS": {"wkt": CRS.from_user_input(proj.crs_input).to_wkt()}})


def _write_overviews(
    store: Any,
    band: str,
    result: MergeResult,
    n: int,
    executor: Any,
    cbs: list[Any],
    resuming: bool,
    mark: dict[str, Any],
) -> None:
    """Levels 1..n, each the previous decimated 2x (nearest, as the mosaic), plus the multiscales layout.
    A resumed run writes every level again (they are cheap next to the base)."""
    group = zarr.open_group(store, path=band, mode="r+")
    spec = result.array.spec
    levels = [Overview("0", (1.0, 1.0))]
    for k in range(1, n + 1):
        src = cubed.from_zarr(store, path=f"{band}/{k - 1}", spec=spec)
        shape = (*src.shape[:-2], -(-src.shape[-2] // 2), -(-src.shape[-1] // 2))
        chunks = (*src.chunksize[:-2], src.chunksize[-2] // 2, src.chunksize[-1] // 2)
        lvl = cubed.map_blocks(_decimate, src, dtype=src.dtype, chunks=_regular(shape, chunks))
        out = open_output(
            store,
            f"{band}/{k}",
            shape,
            chunks,
            src.dtype,
            resuming,
            fill_value=result.plan.nodata,
            attributes=mark,
            dims=output_dims(result),
        )
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
