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

from typing import Any

import numpy as np
import pyarrow as pa
from affine import Affine
from pyproj import CRS

from lazymerge import arrow
from lazymerge.crs import composed_transformer

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
        v = arrow.values(table[key])
        start[1:] |= v[1:] != v[:-1]
    cover = arrow.values(table["_cover"])
    touch = arrow.values(table["_touch"])
    before = _covered_before(cover, start)
    hidden = (before == FULL) | ((touch != 0) & ((_dilate(touch) & ~before) == 0))
    return ~hidden


class CoverCull:
    """First stage, on the streamed join: per (time group, chunk), the best priority among sources that
    cover the whole chunk; pairs behind it are dropped as they arrive, so only survivors are kept.

    A source covers a chunk when the chunk's four corners, transformed exactly into the source's CRS, lie
    at least ``MARGIN_PX`` pixels inside its base grid (chunk edges bend far less than that away from the
    poles; chunks beyond ``MAX_LAT`` are never culled here). Same validity assumption as the cell masks.
    """

    MARGIN_PX = 2.0
    MAX_LAT = 75.0

    def __init__(
        self,
        grid: Any,
        cands: Any,
        chunk_ids: np.ndarray,
        footprints: np.ndarray,
        group_of_source: np.ndarray | None,
    ):
        """``footprints``: the EPSG:4326 footprints of the chunks ``chunk_ids`` (those the join can pair)."""
        self.grid = grid
        self.cands = cands
        self.nchunks = grid.nchunks[0] * grid.nchunks[1]
        self.group = np.zeros(len(cands.ids), dtype="i8") if group_of_source is None else group_of_source
        n_groups = int(self.group.max(initial=0)) + 1
        self.best = np.full(n_groups * self.nchunks, np.iinfo("i4").max, dtype="i4")
        self.polar = np.zeros(self.nchunks, dtype=bool)
        with np.errstate(invalid="ignore"):
            self.polar[chunk_ids] = ~(
                np.maximum(np.abs(footprints[:, 1]), np.abs(footprints[:, 3])) < self.MAX_LAT
            )
        self.codes, self.crs_of = np.unique(
            np.asarray(cands.crs, dtype=object).astype(str), return_inverse=True
        )
        inv = [~Affine(*t) for t in cands.transform]
        self.coef = np.array([(i.a, i.b, i.c, i.d, i.e, i.f) for i in inv]).reshape(-1, 6)
        self._corners: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.seen = 0  # candidate pairs the join produced, before any culling

    def _corner_grid(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """x, y in source CRS ``c`` of every chunk corner: two (nr + 1, nc + 1) arrays, transformed once."""
        if c not in self._corners:
            g = self.grid
            nr, nc = g.nchunks
            rows = np.minimum(np.arange(nr + 1) * g.chunk_size[0], g.shape[0])
            cols = np.minimum(np.arange(nc + 1) * g.chunk_size[1], g.shape[1])
            x, y = np.meshgrid(g.transform.c + cols * g.transform.a, g.transform.f + rows * g.transform.e)
            to_src = composed_transformer(g.crs.to_wkt(), CRS.from_user_input(str(self.codes[c])).to_wkt())
            self._corners[c] = to_src.transform(x, y, errcheck=False)
        return self._corners[c]

    def covers(self, chunk: np.ndarray, source: np.ndarray) -> np.ndarray:
        out = np.zeros(len(chunk), dtype=bool)
        nc = self.grid.nchunks[1]
        crs, open_ = self.crs_of[source], ~self.polar[chunk]
        m = self.MARGIN_PX
        for c in np.unique(crs):
            sel = np.flatnonzero((crs == c) & open_)
            X, Y = (v.ravel() for v in self._corner_grid(int(c)))
            r, q = np.divmod(chunk[sel], nc)
            at = r * (nc + 1) + q  # the chunk's first corner in the flat (nr + 1, nc + 1) corner grid
            s = source[sel]
            k = self.coef[s].T  # six rows
            hi_r, hi_c = self.cands.shape[s, 0] - m, self.cands.shape[s, 1] - m
            inside = np.ones(len(sel), dtype=bool)
            for corner in (0, 1, nc + 1, nc + 2):
                x, y = X[at + corner], Y[at + corner]
                col = k[0] * x + k[1] * y + k[2]
                row = k[3] * x + k[4] * y + k[5]
                with np.errstate(invalid="ignore"):
                    inside &= (col >= m) & (col <= hi_c) & (row >= m) & (row <= hi_r)
            out[sel] = inside
        return out

    def update(self, chunk: np.ndarray, source: np.ndarray) -> np.ndarray:
        """Record this batch's covering sources; the mask of its pairs still in front of every cover."""
        self.seen += len(chunk)
        prio = self.cands.priority[source].astype("i4")
        key = self.group[source] * self.nchunks + chunk
        full = self.covers(chunk, source)
        np.minimum.at(self.best, key[full], prio[full])
        return prio <= self.best[key]

    def final(self, chunk: np.ndarray, source: np.ndarray) -> np.ndarray:
        """Keep mask once every batch has been seen."""
        key = self.group[source] * self.nchunks + chunk
        return self.cands.priority[source] <= self.best[key]
