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

from lazymerge.composite import first_valid, valid_mask
from lazymerge.faults import maybe_fail
from lazymerge.grid import TargetGrid
from lazymerge.planner.table import TaskRow, read_task_rows
from lazymerge.warp import sample_nearest, source_pixels, transformer

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
    rows: list[TaskRow], grid: TargetGrid, row: int, col: int, store: Any, dtype: np.dtype
) -> np.ndarray:
    """One target chunk from its plan rows (priority order): nearest, first valid wins, NaN elsewhere."""
    r0, r1, c0, c1 = grid.chunk_window(row, col)
    out = np.full((r1 - r0, c1 - c0), np.nan, dtype=dtype)
    if not rows:
        return out
    filled = np.zeros(out.shape, dtype=bool)
    tx, ty = grid.pixel_centres(row, col)
    target = grid.crs.to_wkt()
    in_source_crs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for task in rows:
        level = task.level
        if level.crs not in in_source_crs:
            in_source_crs[level.crs] = transformer(target, level.crs).transform(tx, ty, errcheck=False)
        ri, ci = source_pixels(~level.transform, *in_source_crs[level.crs])
        w0, w1, v0, v1 = task.window
        need = ~filled & (ri >= w0) & (ri < w1) & (ci >= v0) & (ci < v1)
        if not need.any():
            continue
        data = open_source(store, level.path)[w0:w1, v0:v1]
        values, inside = sample_nearest(data, (w0, v0), ri, ci)
        if first_valid(out, filled, values, inside & need & valid_mask(values, level.nodata)):
            break
    return out


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


def merge_block(x: np.ndarray, *, task: KernelTask, block_id: tuple[int, ...]) -> np.ndarray:
    """Cubed task: fetch this block's rows from the saved plan and render it.

    Blocks are indexed ``([time,] [band,] row, col)``; the plan's rows are keyed by layer and chunk.
    """
    maybe_fail(block_id)  # off unless LAZYMERGE_FAULT_RATE is set (tests and drills only)
    *lead, row, col = block_id
    time = lead.pop(0) if task.time_dim else 0
    band = lead.pop(0) if task.band_dim else 0
    rows = read_task_rows(task.plan_path, time * task.n_bands + band, row, col)
    block = render_chunk(rows, task.grid, row, col, task.store, np.dtype(task.dtype))
    return block.reshape((1,) * (len(block_id) - 2) + block.shape)

