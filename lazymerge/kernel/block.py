"""The stateless chunk kernel: plan rows -> read windows -> warp -> composite -> block.

``render_chunk`` is the pure kernel; ``merge_block`` is the Cubed task around it, which fetches only its
own rows from the saved plan by block id. The same code runs on every executor.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import lru_cache, partial
from typing import Any

import numpy as np
from affine import Affine
from pyproj import CRS

from lazymerge.contract.budget import GREEN, READ_AHEAD
from lazymerge.contract.tasks import KernelOptions, KernelTask, TaskRow, read_task_rows, save_once
from lazymerge.grid import TargetGrid
from lazymerge.kernel import loops as jit
from lazymerge.kernel.cancel import check_cancelled
from lazymerge.kernel.composite import First, Last, parse_method
from lazymerge.kernel.faults import maybe_fail
from lazymerge.kernel.loops import LINEAR, evaluate
from lazymerge.kernel.mapping import Mapping, pixel_mapping
from lazymerge.kernel.masks import source_masks
from lazymerge.kernel.reads import SkippedRead, guarded, read_window, record_skipped

_readers: tuple[int, ThreadPoolExecutor] | None = None


def _start(
    read: Callable[[Any, TaskRow], np.ndarray | None], store: Any, task: TaskRow, inline: bool
) -> Future:
    """Start reading ``task``'s window: in a reader thread, or here when there is nothing to overlap it
    with (a block with one source: no thread handoff)."""
    if not inline:
        return _reader_pool().submit(read, store, task)
    done: Future = Future()
    try:
        done.set_result(read(store, task))
    except Exception as exc:  # raised where the result is taken, as from a thread
        done.set_exception(exc)
    return done


def _reader_pool() -> ThreadPoolExecutor:
    """This process's pool of reader threads (a forked worker gets its own, not its parent's)."""
    global _readers
    if _readers is None or _readers[0] != os.getpid():
        _readers = (os.getpid(), ThreadPoolExecutor(max_workers=8, thread_name_prefix="lazymerge-read"))
    return _readers[1]


def kernel_scale(m: Mapping, inv: Affine) -> np.ndarray:
    """The (x, y) kernel scale for one source, as GDAL's XSCALE/YSCALE: target pixels per source pixel
    along each source axis, at most 1, snapped to 1/n within 0.05 of it; kernels widen by its inverse.
    From the block's corners as a Jacobian, so a rotation alone (UTM zone to zone) keeps scale 1 where
    GDAL's bounding-box estimate widens the kernel. Where that disagrees by more than 2x with the median
    of the Jacobians of a 4 x 4 lattice of cells over the block, the median: a seam of the source's
    projection (Web Mercator's ±180) inside the block makes its corners' Jacobian meaningless (a kernel
    tens of thousands of pixels wide)."""
    h, w = m.shape
    if m.kind == LINEAR:  # one Jacobian: the corners only
        ys, xs = np.array([0, h - 1]), np.array([0, w - 1])
    else:
        ys, xs = (np.array(sorted({0, (n - 1) // 4, (n - 1) // 2, 3 * (n - 1) // 4, n - 1})) for n in (h, w))
    x, y = evaluate(m.jit, h, w, ys, xs)  # the corners' values are those of the corners alone
    col = inv.a * x + inv.b * y + inv.c  # in source pixels
    row = inv.d * x + inv.e * y + inv.f
    ends = slice(None, None, max(len(ys) - 1, 1)), slice(None, None, max(len(xs) - 1, 1))  # the corners
    pixels = _pixels(col[ends], row[ends], ys[ends[0]], xs[ends[1]])[:, 0]
    local = _pixels(col, row, ys, xs)
    local = local[:, np.isfinite(local).all(axis=0)]
    typical = np.sort(local, axis=1)[:, local.shape[1] // 2] if local.shape[1] else np.full(2, np.nan)
    off = ~((pixels <= 2 * typical) & (pixels >= typical / 2))  # NaN: off
    pixels = np.where(off & np.isfinite(typical), typical, pixels)
    scale = []
    for px in pixels:
        s = 1 / px if np.isfinite(px) and px > 0 else 1.0
        if s < 1:
            k = int(1 / s + 0.5)
            s = 1 / k if abs(1 / s - k) < 0.05 else s
        scale.append(min(s, 1.0))
    return np.array(scale)


def _pixels(col: np.ndarray, row: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(2, cells) source pixels per target pixel along the source's x and y axes, for each cell of a
    lattice of block rows ``ys`` x columns ``xs`` whose source pixel coordinates are ``col``, ``row``: the
    norm of the gradient of the source column (and row) in target pixels, from the cell's corners, each
    axis's difference averaged over the cell's two sides."""
    dy, dx = np.maximum(np.diff(ys), 1)[:, None], np.maximum(np.diff(xs), 1)[None, :]
    out = []
    for a in (col, row):  # d(col)/d(target x), d(col)/d(target y); then the row's
        along_x = ((a[:-1, 1:] - a[:-1, :-1]) + (a[1:, 1:] - a[1:, :-1])) / 2 / dx
        along_y = ((a[1:, :-1] - a[:-1, :-1]) + (a[1:, 1:] - a[:-1, 1:])) / 2 / dy
        out.append(np.hypot(along_x, along_y).ravel())
    return np.array(out)


def render_chunk(
    rows: list[TaskRow],
    grid: TargetGrid,
    row: int,
    col: int,
    store: Any,
    dtype: np.dtype,
    options: KernelOptions | None = None,
    read: Callable[[Any, TaskRow], np.ndarray | None] = read_window,
    quality_rows: list[TaskRow] | None = None,
    mask_rows: list[list[TaskRow]] | None = None,
) -> np.ndarray:
    """One target chunk from its plan rows (priority order): each source sampled with the plan's
    resampling, combined by its compositing method, ``nodata`` (NaN for floats) where nothing is. With
    ``options.provenance``: the int32 source table row each pixel's value came from (-1: none).

    Windows are read with ``read`` ahead of use (``READ_AHEAD`` in flight) while earlier sources are
    warped; ``first`` stops reading once every pixel has a value. ``quality_rows``: each source's quality
    band (method ``quality:<band>``), sampled nearest and handed to the method with the values.
    ``mask_rows``: each of ``options.masks``' band rows; a source's masked pixels count as nodata."""
    opts = options or KernelOptions()
    assert isinstance(opts.resampling, str), "merge_block picks the block's band's resampling"
    rows = wrapped_rows(rows, grid, row, col)
    r0, r1, c0, c1 = grid.chunk_window(row, col)
    shape = (r1 - r0, c1 - c0)
    fill = np.nan if opts.nodata is None else opts.nodata
    out = np.full(shape, -1 if opts.provenance else fill, dtype="i4" if opts.provenance else dtype)
    if not rows:
        return out
    method_cls = parse_method(opts.method)
    mask_of = source_masks(opts.masks, mask_rows)
    rescale = opts.rescale and any(t.level.scale_factor != 1 or t.level.add_offset != 0 for t in rows)
    fused = method_cls in (First, Last) and not mask_of and not rescale  # loops write into the method
    only_empty = method_cls is First
    # first/last straight into the output (no float buffer, no winner) unless integers need rounding
    direct = fused and not opts.provenance and (out.dtype.kind == "f" or opts.resampling == "nearest")
    if direct:
        buffers = (out, np.zeros(shape, dtype="u1"), _NO_WINNER)
    else:
        method = method_cls(shape)
        buffers = (method.values, method.count, method.winner)  # unused unless fused
    has = buffers[1]
    area = opts.resampling in jit.AREA
    finest: dict[str, tuple[float, float]] = {}
    aux = [*(quality_rows or []), *(t for pairs in mask_of.values() for _, t in pairs)]
    for task in [*rows, *aux]:  # the tolerance is in pixels of each CRS's finest source, along each axis
        t = task.level.affine
        x, y = finest.get(task.level.crs, (np.inf, np.inf))
        finest[task.level.crs] = min(x, abs(t.a) + abs(t.b)), min(y, abs(t.d) + abs(t.e))
    mappings: dict[tuple[str, bool], Mapping] = {}

    def build(crs: str, rows_: tuple[int, int], cols_: tuple[int, int], corners: bool) -> Mapping:
        """The mapping of grid rows ``rows_`` and columns ``cols_`` into ``crs``: of the pixel corners for
        area resamplings, else of the centres; its lattice follows the grid, not the chunk."""
        ext, off = (1, 0.0) if corners else (0, 0.5)  # one more line of corners than of centres
        tol = (opts.threshold * finest[crs][0], opts.threshold * finest[crs][1])
        extent = (max(grid.shape[0] + ext, rows_[1]), max(grid.shape[1] + ext, cols_[1]))
        return pixel_mapping(grid.crs, grid.transform, rows_, cols_, crs, tol, opts.exact, off, extent)

    def mapping(crs: str, corners: bool = area) -> Mapping:
        if (crs, corners) not in mappings:
            ext = 1 if corners else 0
            mappings[crs, corners] = build(crs, (r0, r1 + ext), (c0, c1 + ext), corners)
        return mappings[crs, corners]

    def scale_of(crs: str, inv: Affine) -> np.ndarray:
        """``kernel_scale`` from the block's mapping; a block one pixel wide or tall takes a neighbouring
        line too (its Jacobian needs two), inside the grid where it has one."""
        if shape[0] > 1 and shape[1] > 1:
            return kernel_scale(mapping(crs, False), inv)
        rows_ = (r0, r1) if shape[0] > 1 else (r0 - 1, r1) if r0 > 0 else (r0, r1 + 1)
        cols_ = (c0, c1) if shape[1] > 1 else (c0 - 1, c1) if c0 > 0 else (c0, c1 + 1)
        return kernel_scale(build(crs, rows_, cols_, False), inv)

    quality_of = {task.source: task for task in quality_rows or []}

    def nearest(task: TaskRow, data: np.ndarray, nodata: float | None) -> np.ndarray:
        """``data`` (the window of ``task``) sampled nearest at each pixel (NaN where it has none)."""
        q = First(shape)
        level = task.level
        jit.sample_into(
            data,
            np.nan if nodata is None else nodata,
            nodata is not None,
            mapping(level.crs, False).jit,
            _coef(level.affine),
            np.array(task.window, "f8"),
            jit.NEAREST,
            _ONE,
            (q.values, q.count, _NO_WINNER),
            0,
            False,
        )
        return np.where(q.count > 0, q.values, np.nan)

    def quality(source: int) -> np.ndarray | None:
        """The source's quality band at each pixel (NaN where it has none, or where it was skipped)."""
        task = quality_of.get(source)
        if task is None:
            return None
        data = read(store, task)
        return np.full(shape, np.nan) if data is None else nearest(task, data, task.level.nodata)

    def masked(source: int) -> np.ndarray:
        """Where the source's masks drop its pixels."""
        out = np.zeros(shape, dtype=bool)
        for mask, task in mask_of.get(source, ()):
            data = read(store, task)
            if data is None:  # the mask band was skipped (on_error="skip"): mask the source's pixels
                out[:] = True
                continue
            bad = mask.masked(data, task.level.nodata)
            if bad.any():
                out |= nearest(task, bad.astype("u1"), None) > 0
        return out

    dry = fused and not area  # the sampling's own loop answers (``jit.any_inside``)
    # the kernel's arguments by type (their values do not matter to a dry run)
    kernel = (
        None if not dry or opts.resampling == "nearest" else (jit.CODES[opts.resampling], True, _ONE, 1, 1)
    )

    def needed(task: TaskRow, empty_only: bool) -> bool:
        if area:  # a footprint meets the window with none of its corners inside (near a pole): read it
            return True
        inv = _coef(task.level.affine)
        like = (np.dtype(task.level.dtype), buffers, kernel) if dry else None
        m = mapping(task.level.crs).jit
        return jit.any_inside(m, inv, np.array(task.window, "f8"), has, empty_only, like)

    pending: dict[int, Future] = {}
    checked: set[int] = set()
    wrote = False  # whether any source has written yet; until then every pixel is empty, no need to check
    for index, task in enumerate(rows):
        for ahead in range(index, min(index + 1 + READ_AHEAD, len(rows))):  # keep reads in flight
            if ahead not in checked:
                checked.add(ahead)
                if needed(rows[ahead], False):
                    pending[ahead] = _start(read, store, rows[ahead], inline=len(rows) == 1)
        if index not in pending:
            continue
        if only_empty and wrote and not needed(task, True):  # filled meanwhile: drop the read
            pending.pop(index).cancel()
            continue
        data = pending.pop(index).result()
        if data is None:  # skipped (on_error="skip"): nodata from this source
            continue
        level = task.level
        m = mapping(level.crs)
        inv = _coef(level.affine)
        window = np.array(task.window, dtype="f8")
        nodata = np.nan if level.nodata is None else level.nodata
        use_nodata = level.nodata is not None
        empty = only_empty and wrote
        if not fused:  # one source at a time, then the method combines it
            one = First(shape)
            buffers = (one.values, one.count, _NO_WINNER)
        if area:
            stat = jit.AREA[opts.resampling]
            room = jit.green_room(data.shape) if opts.resampling in GREEN else None
            n = jit.average_into(
                data, nodata, use_nodata, m.jit, inv, window, stat, buffers, index, empty, True, room
            )
        else:
            scale = scale_of(level.crs, ~level.affine) if opts.resampling != "nearest" else _ONE
            code = jit.CODES[opts.resampling]
            n = jit.sample_into(
                data, nodata, use_nodata, m.jit, inv, window, code, scale, buffers, index, empty
            )
        wrote |= n > 0
        if not fused:
            valid = one.count > 0
            if rescale:  # physical values, after nodata was found on the stored ones
                one.values *= level.scale_factor
                one.values += level.add_offset
            if mask_of and n:
                valid &= ~masked(task.source)
            if quality_rows is not None:
                method.add(one.values, valid, index, quality=quality(task.source))
            else:
                method.add(one.values, valid, index)
        if only_empty and n and has.all():  # first: the block is full
            break
    for future in pending.values():
        future.cancel()
    if opts.provenance:  # the source table row each pixel came from, -1 where none
        sources = np.array([task.source for task in rows], dtype="i4")
        return np.where(method.winner >= 0, sources[np.maximum(method.winner, 0)], -1).astype("i4")
    if direct:
        return out
    values, has = method.result() if not fused else (method.values, method.count > 0)
    if out.dtype.kind in "iu":  # GDAL rounds to the nearest integer and clamps to the type's range
        info = np.iinfo(out.dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    np.copyto(out, values, casting="unsafe", where=has)
    return out


def wrapped_rows(rows: list[TaskRow], grid: TargetGrid, row: int, col: int) -> list[TaskRow]:
    """In a geographic target, longitudes wrap: a geographic source also lies 360 degrees east and west of
    its own georeferencing, so a chunk at 170..190 takes a source at -180..-170 too. Each row of a
    geographic source is followed by a copy shifted by a turn for every shift whose window meets the
    chunk (a global source under a chunk across its seam needs two); other rows stay as they are."""
    if not grid.crs.is_geographic:
        return rows
    _, _, c0, c1 = grid.chunk_window(row, col)
    tx0, tx1 = grid.transform.c + c0 * grid.transform.a, grid.transform.c + c1 * grid.transform.a
    out = []
    for task in rows:
        out.append(task)
        if not _geographic(task.level.crs):
            continue
        r0, r1, w0, w1 = task.window
        xs = [(task.level.affine @ (c, r))[0] for c in (w0, w1) for r in (r0, r1)]
        for turn in (-360.0, 360.0):
            if min(xs) + turn < tx1 and max(xs) + turn > tx0:
                shifted = Affine.translation(turn, 0.0) @ task.level.affine
                out.append(replace(task, level=replace(task.level, transform=tuple(shifted)[:6])))
    return out


@lru_cache(maxsize=256)
def _geographic(code: str) -> bool:
    return CRS.from_user_input(code).is_geographic


_NO_WINNER = np.zeros((0, 0), dtype="i4")  # no block has its shape: the loops record no source into it
_ONE = np.ones(2)


@lru_cache(maxsize=1024)
def _coef(transform: Affine) -> np.ndarray:
    """The inverse affine's six coefficients (source CRS -> source pixel); cached: not to be modified."""
    inv = ~transform
    return np.array([inv.a, inv.b, inv.c, inv.d, inv.e, inv.f])


def merge_block(x: np.ndarray | None, *, task: KernelTask, block_id: tuple[int, ...]) -> np.ndarray:
    """Cubed task: fetch this block's rows from the saved plan and render it.

    Blocks are indexed ``([time,] [band,] row, col)``; the plan's rows are keyed by layer and chunk.
    """
    check_cancelled()  # the run failed in another task: stop here
    maybe_fail(block_id)  # off unless LAZYMERGE_FAULT_RATE is set (tests and drills only)
    *lead, row, col = block_id
    time = lead.pop(0) if task.time_dim else 0
    band = lead.pop(0) if task.band_dim else 0
    if getattr(parse_method(task.options.method), "multiband", False):
        block = medoid_block(task, time, row, col)
        return block.reshape((1,) * (len(block_id) - 2 - task.band_dim) + block.shape[1 - task.band_dim :])
    rows = read_task_rows(task.plan_path, time * task.n_bands + band, row, col, task.local_plan)
    quality = None
    if task.quality_layer is not None:
        layer = time * task.n_bands + task.quality_layer
        quality = read_task_rows(task.plan_path, layer, row, col, task.local_plan)
    masks = [
        read_task_rows(task.plan_path, time * task.n_bands + k, row, col, task.local_plan)
        for k in task.mask_layers
    ]
    skipped: list[SkippedRead] = []
    read = guarded(  # decoded source chunks shared within this merge
        partial(read_window, scope=task.plan_path), tuple(block_id), task.options.on_error, skipped
    )
    options = task.options
    if not isinstance(options.resampling, str):  # one resampling per band: this block's band's
        options = replace(options, resampling=options.resampling[band])
    block = render_chunk(
        rows, task.grid, row, col, task.store, np.dtype(task.dtype), options, read, quality, masks
    )
    if skipped:
        if task.local_plan is not None:  # the records are kept next to the saved plan
            save_once(task.local_plan, task.plan_path)
        record_skipped(task.plan_path, skipped)
    return block.reshape((1,) * (len(block_id) - 2) + block.shape)


def medoid_block(task: KernelTask, time: int, row: int, col: int) -> np.ndarray:
    """Every output band of one block for a multi-band method (``medoid``): each source rendered alone,
    band by band (its masks applied, with that band's resampling), stacked (sources, bands, y, x) and
    handed to the method's ``pick``."""
    read = guarded(partial(read_window, scope=task.plan_path), (time, row, col), task.options.on_error)
    layer = time * task.n_bands
    masks = [read_task_rows(task.plan_path, layer + k, row, col, task.local_plan) for k in task.mask_layers]
    alone = replace(task.options, method="first", provenance=False, nodata=None)
    per_band: list[dict[int, np.ndarray]] = []
    order: dict[int, int] = {}  # source -> its position in priority order
    for b in range(task.out_bands):
        resampling = alone.resampling if isinstance(alone.resampling, str) else alone.resampling[b]
        opts = replace(alone, resampling=resampling)
        layers = {}
        for r in read_task_rows(task.plan_path, layer + b, row, col, task.local_plan):
            order.setdefault(r.source, len(order))
            own = [[m for m in rows if m.source == r.source] for rows in masks]
            f8 = np.dtype("f8")
            layers[r.source] = render_chunk([r], task.grid, row, col, task.store, f8, opts, read, None, own)
        per_band.append(layers)
    r0, r1, c0, c1 = task.grid.chunk_window(row, col)
    fill = np.nan if task.options.nodata is None else task.options.nodata
    out = np.full((task.out_bands, r1 - r0, c1 - c0), fill, dtype=task.dtype)
    if not order:
        return out
    missing = np.full((r1 - r0, c1 - c0), np.nan)
    stack = np.stack([np.stack([layers.get(s, missing) for layers in per_band]) for s in order])
    method: Any = parse_method(task.options.method)
    values, has = method.pick(stack)
    if out.dtype.kind in "iu":
        info = np.iinfo(out.dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    np.copyto(out, values, casting="unsafe", where=has[None])
    return out
