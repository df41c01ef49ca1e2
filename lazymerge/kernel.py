"""The stateless chunk kernel: plan rows -> read windows -> warp -> composite -> block.

``render_chunk`` is the pure kernel; ``merge_block`` is the Cubed task around it, which fetches only its
own rows from the saved plan by block id. The same code runs on every executor.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from lazymerge import jit
from lazymerge.composite import First, Last, parse_method, valid_mask
from lazymerge.faults import maybe_fail
from lazymerge.grid import TargetGrid
from lazymerge.planner.table import TaskRow, read_task_rows
from lazymerge.resampling import sample
from lazymerge.transform import THRESHOLD, source_xy

_arrays: dict[tuple[int, str], zarr.Array] = {}
_arrays_lock = threading.Lock()


def open_source(store: Any, path: str) -> zarr.Array:
    """A source array, opened once per worker process."""
    key = (id(store), path)
    with _arrays_lock:
        arr = _arrays.get(key)
        if arr is None:
            arr = _arrays[key] = zarr.open_array(store, path=path, mode="r")
        return arr


def render_chunk(
    rows: list[TaskRow],
    grid: TargetGrid,
    row: int,
    col: int,
    store: Any,
    dtype: np.dtype,
    options: KernelOptions | None = None,
) -> np.ndarray:
    """One target chunk from its plan rows (priority order): each source sampled with the plan's
    resampling, combined by its compositing method, ``nodata`` (NaN for floats) where nothing is. With
    ``options.provenance``: the int32 source table row each pixel's value came from (-1: none)."""
    opts = options or KernelOptions()
    r0, r1, c0, c1 = grid.chunk_window(row, col)
    shape = (r1 - r0, c1 - c0)
    fill = np.nan if opts.nodata is None else opts.nodata
    out = np.full(shape, -1 if opts.provenance else fill, dtype="i4" if opts.provenance else dtype)
    if not rows:
        return out
    method = parse_method(opts.method)(shape)
    finest: dict[str, float] = {}
    for task in rows:  # the interpolation tolerance is in pixels of the finest source of each CRS
        res = abs(task.level.transform.a * task.level.transform.e) ** 0.5
        finest[task.level.crs] = min(finest.get(task.level.crs, res), res)
    xy: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    corners: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    area = opts.resampling in jit.AREA
    for index, task in enumerate(rows):
        level = task.level
        if level.crs not in xy:
            tolerance = opts.threshold * finest[level.crs]
            xy[level.crs] = source_xy(
                grid.crs, grid.transform, (r0, r1), (c0, c1), level.crs, tolerance, opts.exact
            )
            if area:  # pixel corners: the footprints that area resamplings average over
                corners[level.crs] = source_xy(
                    grid.crs,
                    grid.transform,
                    (r0, r1 + 1),
                    (c0, c1 + 1),
                    level.crs,
                    tolerance,
                    opts.exact,
                    0.0,
                )
        sx, sy = xy[level.crs]
        inv = ~level.transform
        coef = np.array([inv.a, inv.b, inv.c, inv.d, inv.e, inv.f])
        window = np.array(task.window, dtype="f8")
        fused = type(method) in (First, Last)  # the compiled path writes straight into the method
        only_empty = type(method) is First
        if not jit.any_inside(sx, sy, coef, window, method.count, only_empty):
            continue
        data = open_source(store, level.path)[slice(*task.window[:2]), slice(*task.window[2:])]
        nodata = np.nan if level.nodata is None else level.nodata
        if area:
            target = method if fused else First(shape)
            cx, cy = corners[level.crs]
            jit.average_into(
                data,
                nodata,
                level.nodata is not None,
                cx,
                cy,
                coef,
                window,
                target.values,
                target.count,
                target.winner,
                index,
                only_empty and fused,
                jit.AREA[opts.resampling],
            )
            if not fused:
                method.add(target.values, target.count > 0, index)
        elif fused:
            jit.sample_into(
                data,
                nodata,
                level.nodata is not None,
                sx,
                sy,
                coef,
                window,
                jit.CODES[opts.resampling],
                method.values,
                method.count,
                method.winner,
                index,
                only_empty,
            )
        else:
            col_f = coef[0] * sx + coef[1] * sy + coef[2]
            row_f = coef[3] * sx + coef[4] * sy + coef[5]
            w0, w1, v0, v1 = task.window
            with np.errstate(invalid="ignore"):
                inside = (row_f >= w0) & (row_f < w1) & (col_f >= v0) & (col_f < v1)
            values, ok = sample(data, valid_mask(data, level.nodata), (w0, v0), col_f, row_f, opts.resampling)
            method.add(values, ok & inside, index)
        if method.full():
            break
    if opts.provenance:  # the source table row each pixel came from, -1 where none
        sources = np.array([task.level.source for task in rows], dtype="i4")
        return np.where(method.winner >= 0, sources[np.maximum(method.winner, 0)], -1).astype("i4")
    values, has = method.result()
    out[has] = values[has].astype(dtype, copy=False)
    return out


@dataclass(frozen=True)
class KernelOptions:
    """How pixels are computed: resampling, compositing method, exact transform, the nodata fill."""

    resampling: str = "nearest"
    method: Any = "first"
    exact: bool = False
    threshold: float = THRESHOLD
    nodata: float | None = None
    provenance: bool = False  # return each pixel's source (its source table row) instead of its value


@dataclass(frozen=True)
class KernelTask:
    """What every task carries: where the plan and the sources are, and the target grid. Small and
    the same size whatever the number of sources."""

    plan_path: str
    store: Any
    grid: TargetGrid
    dtype: str
    band_dim: bool
    time_dim: bool = False
    n_bands: int = 1
    options: KernelOptions = KernelOptions()


def merge_block(x: np.ndarray, *, task: KernelTask, block_id: tuple[int, ...]) -> np.ndarray:
    """Cubed task: fetch this block's rows from the saved plan and render it.

    Blocks are indexed ``([time,] [band,] row, col)``; the plan's rows are keyed by layer and chunk.
    """
    maybe_fail(block_id)  # off unless LAZYMERGE_FAULT_RATE is set (tests and drills only)
    *lead, row, col = block_id
    time = lead.pop(0) if task.time_dim else 0
    band = lead.pop(0) if task.band_dim else 0
    rows = read_task_rows(task.plan_path, time * task.n_bands + band, row, col)
    block = render_chunk(rows, task.grid, row, col, task.store, np.dtype(task.dtype), task.options)
    return block.reshape((1,) * (len(block_id) - 2) + block.shape)
