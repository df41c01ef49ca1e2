"""From (chunk, source) candidate pairs to plan rows: overview level and source pixel window.

Shared by both discovery paths, so the same candidates always give the same table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from affine import Affine
from pyproj import CRS, Transformer

from lazymerge.grid import TargetGrid
from lazymerge.planner.culling import cell_masks
from lazymerge.sources import Band, Level, level_bounds, select_overview

LATTICE = 17  # samples per chunk side used to bound the source window
MARGIN = 1  # source pixels added around the window, clipped to the source


@dataclass(frozen=True)
class Candidates:
    """Sources of one discovery path: row index order, with priority and CRS per row."""

    ids: list[str]
    crs: list[str]
    priority: np.ndarray  # rank per source row, 0 = highest priority
    datetime: np.ndarray | None = None  # datetime64[us] per source row (NaT: none), when the table has one


def target_res_in_source(grid: TargetGrid, src_crs: CRS, level: Level) -> float:
    """The target pixel size expressed in the source CRS's units, at the centre of the source.

    Compares like with like when the target is in metres and the source in degrees (or vice versa).
    """
    to_tgt = Transformer.from_crs(src_crs, grid.crs, always_xy=True)
    to_src = Transformer.from_crs(grid.crs, src_crs, always_xy=True)
    x0, y0, x1, y1 = level_bounds(level)
    cx, cy = to_tgt.transform((x0 + x1) / 2, (y0 + y1) / 2, errcheck=False)
    if not (np.isfinite(cx) and np.isfinite(cy)):
        gx0, gy0, gx1, gy1 = grid.bbox
        cx, cy = (gx0 + gx1) / 2, (gy0 + gy1) / 2
    r = grid.resolution
    xs, ys = to_src.transform(np.array([cx, cx + r, cx]), np.array([cy, cy, cy + r]), errcheck=False)
    ux, uy = xs[1] - xs[0], ys[1] - ys[0]
    vx, vy = xs[2] - xs[0], ys[2] - ys[0]
    area = abs(ux * vy - uy * vx)
    return float(np.sqrt(area)) if np.isfinite(area) and area > 0 else r


def chunk_lattice(grid: TargetGrid, chunks: np.ndarray, k: int = LATTICE) -> tuple[np.ndarray, np.ndarray]:
    """Target CRS x, y of a k x k lattice of pixel centres spanning each chunk (first to last pixel)."""
    nr, nc = grid.nchunks
    ch, cw = grid.chunk_size
    rows, cols = np.divmod(chunks, nc)
    r0 = rows * ch
    c0 = cols * cw
    r1 = np.minimum(r0 + ch, grid.shape[0])
    c1 = np.minimum(c0 + cw, grid.shape[1])
    t = np.linspace(0.0, 1.0, k)
    pr = (r0[:, None] + 0.5) + t[None, :] * (r1 - r0 - 1)[:, None]
    pc = (c0[:, None] + 0.5) + t[None, :] * (c1 - c0 - 1)[:, None]
    px = grid.transform.c + pc * grid.transform.a  # (n, k)
    py = grid.transform.f + pr * grid.transform.e  # (n, k)
    xs = np.broadcast_to(px[:, None, :], (len(chunks), k, k)).reshape(len(chunks), -1)
    ys = np.broadcast_to(py[:, :, None], (len(chunks), k, k)).reshape(len(chunks), -1)
    return xs, ys


def _pole_chunks(grid: TargetGrid, chunks: np.ndarray) -> dict[float, np.ndarray]:
    """For each pole inside the target grid: which of ``chunks`` contain it."""
    out = {}
    to_tgt = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    bounds = grid.chunk_bounds[chunks]
    for lat in (90.0, -90.0):
        px, py = to_tgt.transform(0.0, lat, errcheck=False)
        if np.isfinite(px) and np.isfinite(py):
            inside = (bounds[:, 0] <= px) & (px <= bounds[:, 2]) & (bounds[:, 1] <= py) & (py <= bounds[:, 3])
            if inside.any():
                out[lat] = inside
    return out


def resolve_windows(
    grid: TargetGrid,
    chunk: np.ndarray,
    source: np.ndarray,
    cands: Candidates,
    bands: list[str | None],
    band_of: Callable[[int, str | None], Band],
    masks: bool = False,
) -> pa.Table:
    """Plan rows for candidate pairs (already ordered by chunk, then priority).

    For every band, each source uses the coarsest level still at least as fine as the target, and the
    window of that level that the chunk's pixel centres map into. Pairs with an empty window are dropped.
    With ``masks``, the rows also get the ``_cover``/``_touch`` cell masks that culling uses.
    """
    tables = []
    for b, band in enumerate(bands):
        level_idx = np.zeros(len(source), dtype="i2")
        coef = np.zeros((len(source), 6))
        shape = np.zeros((len(source), 2), dtype="i8")
        for s in np.unique(source):
            levels = band_of(int(s), band).levels
            crs = CRS.from_user_input(cands.crs[s])
            lv = select_overview(levels, target_res_in_source(grid, crs, levels[0]), levels[0].resolution)
            sel = source == s
            level_idx[sel] = levels.index(lv)
            inv = ~Affine(*lv.transform)
            coef[sel] = (inv.a, inv.b, inv.c, inv.d, inv.e, inv.f)
            shape[sel] = lv.shape
        window = np.zeros((len(source), 4), dtype="i8")
        cover = np.zeros(len(source), dtype=np.uint64)
        touch = np.zeros(len(source), dtype=np.uint64)
        for code in sorted({cands.crs[s] for s in np.unique(source)}):
            sel = np.nonzero(np.array([cands.crs[s] == code for s in source], dtype=bool))[0]
            uchunks, inverse = np.unique(chunk[sel], return_inverse=True)
            xs, ys = chunk_lattice(grid, uchunks)
            crs = CRS.from_user_input(code)
            sx, sy = Transformer.from_crs(grid.crs, crs, always_xy=True).transform(xs, ys, errcheck=False)
            sx, sy = sx[inverse], sy[inverse]
            c = coef[sel]
            cols = c[:, 0:1] * sx + c[:, 1:2] * sy + c[:, 2:3]
            rows = c[:, 3:4] * sx + c[:, 4:5] * sy + c[:, 5:6]
            ok = np.isfinite(cols) & np.isfinite(rows)
            with np.errstate(all="ignore"):
                c0 = np.floor(np.nanmin(np.where(ok, cols, np.nan), axis=1))
                c1 = np.floor(np.nanmax(np.where(ok, cols, np.nan), axis=1)) + 1
                r0 = np.floor(np.nanmin(np.where(ok, rows, np.nan), axis=1))
                r1 = np.floor(np.nanmax(np.where(ok, rows, np.nan), axis=1)) + 1
            if crs.is_geographic:  # a chunk holding a pole needs every longitude, up to that pole
                for lat, inside in _pole_chunks(grid, uchunks).items():
                    hit = inside[inverse]
                    pr = c[hit, 3] * 0.0 + c[hit, 4] * lat + c[hit, 5]
                    c0[hit], c1[hit] = 0, shape[sel][hit, 1]
                    r0[hit] = np.minimum(np.nan_to_num(r0[hit], nan=np.inf), np.floor(pr))
                    r1[hit] = np.maximum(np.nan_to_num(r1[hit], nan=-np.inf), np.floor(pr) + 1)
            h, w = shape[sel, 0], shape[sel, 1]
            if masks:
                cover[sel], touch[sel] = cell_masks(cols, rows, w, h, LATTICE)
            empty = ~(np.isfinite(c0) & np.isfinite(r0)) | (c1 <= 0) | (r1 <= 0) | (c0 >= w) | (r0 >= h)
            win = np.stack([r0 - MARGIN, r1 + MARGIN, c0 - MARGIN, c1 + MARGIN], axis=1)
            win = np.nan_to_num(win, nan=0.0, posinf=0.0, neginf=0.0)
            win[:, 0:2] = np.clip(win[:, 0:2], 0, h[:, None])
            win[:, 2:4] = np.clip(win[:, 2:4], 0, w[:, None])
            win[empty] = -1
            window[sel] = win.astype("i8")
        keep = window[:, 0] >= 0
        nr, nc = grid.nchunks
        crow, ccol = np.divmod(chunk[keep], nc)
        extra = {"_cover": pa.array(cover[keep]), "_touch": pa.array(touch[keep])} if masks else {}
        tables.append(
            pa.table(
                {
                    "band": pa.array(np.full(int(keep.sum()), b, dtype="i2")),
                    "chunk_row": pa.array(crow.astype("i4")),
                    "chunk_col": pa.array(ccol.astype("i4")),
                    "source": pa.array(source[keep].astype("i4")),
                    "source_id": pa.array([cands.ids[s] for s in source[keep]], pa.string()),
                    "priority": pa.array(cands.priority[source[keep]].astype("i4")),
                    "level": pa.array(level_idx[keep]),
                    "src_row0": pa.array(window[keep, 0]),
                    "src_row1": pa.array(window[keep, 1]),
                    "src_col0": pa.array(window[keep, 2]),
                    "src_col1": pa.array(window[keep, 3]),
                    **extra,
                }
            )
        )
    return pa.concat_tables(tables) if tables else empty_plan_table()


def empty_plan_table() -> pa.Table:
    return pa.table(
        {
            "band": pa.array([], pa.int16()),
            "chunk_row": pa.array([], pa.int32()),
            "chunk_col": pa.array([], pa.int32()),
            "source": pa.array([], pa.int32()),
            "source_id": pa.array([], pa.string()),
            "priority": pa.array([], pa.int32()),
            "level": pa.array([], pa.int16()),
            "src_row0": pa.array([], pa.int64()),
            "src_row1": pa.array([], pa.int64()),
            "src_col0": pa.array([], pa.int64()),
            "src_col1": pa.array([], pa.int64()),
        }
    )
