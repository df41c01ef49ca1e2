"""The chunks near any source, found without a footprint for every chunk of the grid.

A chunk's EPSG:4326 footprint costs ~40 transformed points; a continental grid that the sources cover
sparsely would spend most of its planning memory on chunks nothing touches. A coarse pass first: the grid is
cut into at most ``COARSE`` x ``COARSE`` cells of whole chunks, each cell's footprint (padded by
``PAD`` of its size) is tested against the sources' footprint parts, and only the chunks of cells that meet
a source -- or whose footprint is not finite, as outside a projection's valid area -- get their own.
"""

from __future__ import annotations

import math

import numpy as np
import shapely

from lazymerge.catalog.footprints import grid_lonlat_bounds, split_parts
from lazymerge.grid import TargetGrid

COARSE = 64  # coarse cells per side, at most
PAD = 0.01  # coarse footprints grow by this fraction of their size (edges densified more sparsely)
RUN_CHUNKS = 100_000  # chunks per footprint call, at most (bounds its densified edges' memory)


def nearby_chunks(grid: TargetGrid, source_parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(chunk ids, their EPSG:4326 footprints) of the chunks that may meet a source part: every chunk of
    a coarse cell whose footprint meets one. Row-major ids, ascending."""
    nr, nc = grid.nchunks
    fr, fc = math.ceil(nr / COARSE), math.ceil(nc / COARSE)
    xs, ys = grid.chunk_edges()
    if fr == 1 and fc == 1:  # a small grid: every chunk
        return np.arange(nr * nc, dtype="i8"), grid_lonlat_bounds(grid.crs, xs, ys)
    cx, cy = np.append(xs[::fc], xs[-1]), np.append(ys[::fr], ys[-1])
    cx, cy = cx[np.r_[True, np.diff(cx) != 0]], cy[np.r_[True, np.diff(cy) != 0]]  # the last edge once
    ncc = len(cx) - 1
    coarse = grid_lonlat_bounds(grid.crs, cx, cy)
    unknown = np.nonzero(~np.all(np.isfinite(coarse), axis=1))[0]
    index, parts = split_parts(coarse)
    pad = PAD * np.maximum(parts[:, 2] - parts[:, 0], parts[:, 3] - parts[:, 1])[:, None] + 1e-9
    parts = parts + np.array([-1.0, -1.0, 1.0, 1.0]) * pad
    hit = np.zeros(0, dtype="i8")
    if len(source_parts) and len(parts):
        tree = shapely.STRtree(shapely.box(*np.asarray(source_parts).T))
        q, _ = tree.query(shapely.box(*parts.T))
        hit = index[q]
    hit = np.unique(np.concatenate([hit, unknown]))
    ids, footprints = [np.zeros(0, dtype="i8")], [np.zeros((0, 4))]
    for crows, (c0, c1) in _runs(hit, ncc, fc, nc, fr):
        r0, r1 = crows[0] * fr, min((crows[-1] + 1) * fr, nr)
        rows, cols = np.arange(r0, r1), np.arange(c0, c1)
        fp = grid_lonlat_bounds(grid.crs, xs[c0 : c1 + 1], ys[r0 : r1 + 1])
        keep = np.isin((rows[:, None] // fr) * ncc + cols[None, :] // fc, hit).ravel()
        ids.append((rows[:, None] * nc + cols[None, :]).ravel()[keep])
        footprints.append(fp[keep])
    return np.concatenate(ids), np.concatenate(footprints)


def _runs(hit: np.ndarray, ncc: int, fc: int, nc: int, fr: int) -> list[tuple[list[int], tuple[int, int]]]:
    """Consecutive coarse rows whose hit cells span the same chunk columns, each run of at most
    ``RUN_CHUNKS`` chunks: one footprint call per run (each call transforms its shared edges once)."""
    runs: list[tuple[list[int], tuple[int, int]]] = []
    for crow in np.unique(hit // ncc).tolist():
        ccols = hit[hit // ncc == crow] % ncc
        span = (int(ccols.min()) * fc, min((int(ccols.max()) + 1) * fc, nc))
        last = runs[-1] if runs else None
        joins = last is not None and last[1] == span and last[0][-1] == crow - 1
        if last and joins and (len(last[0]) + 1) * fr * (span[1] - span[0]) <= RUN_CHUNKS:
            last[0].append(crow)
        else:
            runs.append(([crow], span))
    return runs
