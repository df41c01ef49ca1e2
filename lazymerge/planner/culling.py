"""Occlusion culling for first-valid compositing.

Each (chunk, source) pair gets two 8 x 8 cell masks over the chunk (a uint64 each), from the same lattice of
exactly transformed pixel centres that bounds its source window: ``cover`` (cells whose four corners all
fall at least one source pixel inside the source's grid, so the whole cell is covered) and ``touch`` (cells
with any corner on the grid). In priority order within a chunk, a source is dropped when the sources before
it already cover the whole chunk, or every cell it touches and their neighbours. This uses each source's
real pixel footprint in the target grid, not a bbox in another CRS; it assumes a source is valid over its
whole grid, so it is opt-in (``cull=True``): sources with nodata inside keep every pair without it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

CELLS = 8  # cells per chunk side; CELLS * CELLS bits fill a uint64
FULL = np.uint64(0xFFFFFFFFFFFFFFFF)
_BITS = np.left_shift(np.uint64(1), np.arange(CELLS * CELLS, dtype=np.uint64))
_NOT_LEFT = np.uint64(sum(1 << (8 * i) for i in range(8)) * 0xFE)  # every cell but column 0
_NOT_RIGHT = np.uint64(sum(1 << (8 * i) for i in range(8)) * 0x7F)  # every cell but column 7


def _pack(cells: np.ndarray) -> np.ndarray:
    """(n, 8, 8) booleans -> (n,) uint64, bit 8 * row + col."""
    return np.bitwise_or.reduce(np.where(cells.reshape(len(cells), -1), _BITS, np.uint64(0)), axis=1)


def cell_masks(
    cols: np.ndarray, rows: np.ndarray, width: np.ndarray, height: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(cover, touch) masks from (n, k * k) source pixel coordinates of a chunk's k x k lattice."""
    step = (k - 1) // CELLS
    c = cols.reshape(-1, k, k)[:, ::step, ::step]
    r = rows.reshape(-1, k, k)[:, ::step, ::step]
    w, h = width[:, None, None], height[:, None, None]
    with np.errstate(invalid="ignore"):
        deep = (c >= 1) & (c <= w - 1) & (r >= 1) & (r <= h - 1)
        on = (c >= 0) & (c < w) & (r >= 0) & (r < h)
    cover = deep[:, :-1, :-1] & deep[:, 1:, :-1] & deep[:, :-1, 1:] & deep[:, 1:, 1:]
    touch = on[:, :-1, :-1] | on[:, 1:, :-1] | on[:, :-1, 1:] | on[:, 1:, 1:]
    return _pack(cover), _pack(touch)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Cells and their 8 neighbours."""
    one = np.uint64(1)
    row = mask | ((mask << one) & _NOT_LEFT) | ((mask >> one) & _NOT_RIGHT)
    return row | (row << np.uint64(CELLS)) | (row >> np.uint64(CELLS))


def _covered_before(cover: np.ndarray, segment_start: np.ndarray) -> np.ndarray:
    """For each row, the OR of ``cover`` over the earlier rows of its segment (one bit at a time)."""
    out = np.zeros(len(cover), dtype=np.uint64)
    base = np.maximum.accumulate(np.where(segment_start, np.arange(len(cover)), 0))
    for b in range(CELLS * CELLS):
        bit = ((cover >> np.uint64(b)) & np.uint64(1)).astype(np.int32)
        before = np.cumsum(bit, dtype=np.int64) - bit
        any_before = (before - before[base]) > 0
        out |= np.where(any_before, _BITS[b], np.uint64(0))
    return out


def cull_mask(table: pa.Table, keys: list[str]) -> np.ndarray:
    """Rows to keep. ``table`` is sorted by ``keys`` (the chunk's segment) then priority and has
    ``_cover``/``_touch`` columns."""
    n = table.num_rows
    if n == 0:
        return np.ones(0, dtype=bool)
    start = np.zeros(n, dtype=bool)
    start[0] = True
    for key in keys:
        v = table[key].to_numpy()
        start[1:] |= v[1:] != v[:-1]
    cover = table["_cover"].to_numpy()
    touch = table["_touch"].to_numpy()
    before = _covered_before(cover, start)
    hidden = (before == FULL) | ((touch != 0) & ((_dilate(touch) & ~before) == 0))
    return ~hidden
