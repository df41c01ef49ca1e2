"""From (chunk, source) candidate pairs to plan rows: overview level and source pixel window.

Shared by both discovery paths, so the same candidates always give the same table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from affine import Affine
from pyproj import CRS, Transformer

from lazymerge.catalog.sources import Band, Level, level_bounds, select_overview
from lazymerge.contract.schema import empty_plan_table
from lazymerge.crs import transformer
from lazymerge.grid import TargetGrid
from lazymerge.kernel.resampling import halo_pixels
from lazymerge.planner.culling import cell_masks

LATTICE = 9  # samples per chunk side used to bound the source window (8 x 8 culling cells)
BATCH = 100_000  # pairs per vectorised step (bounds the lattice arrays' memory)
MARGIN = 1  # source pixels added around the window, clipped to the source


@dataclass(frozen=True)
class Candidates:
    """Sources of one discovery path: row index order, with priority and CRS per row."""

    ids: list[str]
    crs: list[str]
    priority: np.ndarray  # rank per source row, 0 = highest priority
    datetime: np.ndarray | None = None  # datetime64[us] per source row (NaT: none), when the table has one
    transform: np.ndarray | None = None  # (n, 6) affine of each source's base level
    shape: np.ndarray | None = None  # (n, 2) rows, cols of each source's base level


def target_res_in_sources(grid: TargetGrid, src_crs: CRS, levels: list[Level]) -> np.ndarray:
    """The target pixel size in the source CRS's units, at the centre of each source (one CRS).

    Compares like with like when the target is in metres and the sources in degrees (or vice versa).
    """
    to_tgt = transformer(src_crs.to_wkt(), grid.crs.to_wkt())
    to_src = transformer(grid.crs.to_wkt(), src_crs.to_wkt())
    b = np.array([level_bounds(lv) for lv in levels]).reshape(-1, 4)
    cx, cy = to_tgt.transform((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, errcheck=False)
    gx0, gy0, gx1, gy1 = grid.bbox
    bad = ~(np.isfinite(cx) & np.isfinite(cy))
    cx[bad], cy[bad] = (gx0 + gx1) / 2, (gy0 + gy1) / 2
    r = grid.resolution
    xs, ys = to_src.transform(
        np.stack([cx, cx + r, cx], axis=1), np.stack([cy, cy, cy + r], axis=1), errcheck=False
    )
    ux, uy = xs[:, 1] - xs[:, 0], ys[:, 1] - ys[:, 0]
    vx, vy = xs[:, 2] - xs[:, 0], ys[:, 2] - ys[:, 0]
    area = np.abs(ux * vy - uy * vx)
    ok = np.isfinite(area) & (area > 0)
    return np.where(ok, np.sqrt(np.where(ok, area, 1.0)), r)


def target_res_in_source(grid: TargetGrid, src_crs: CRS, level: Level) -> float:
    """``target_res_in_sources`` for one source."""
    return float(target_res_in_sources(grid, src_crs, [level])[0])


def chunk_lattice(grid: TargetGrid, chunks: np.ndarray, k: int = LATTICE) -> tuple[np.ndarray, np.ndarray]:
    """Target CRS x, y of a k x k lattice of pixel centres spanning each chunk (first to last pixel)."""
    r0, r1, c0, c1 = grid.chunk_windows(chunks)
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
    bounds = grid.chunk_boxes(chunks)
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
    resampling: str | Sequence[str] = "nearest",
    halo: Sequence[int] | None = None,
) -> pa.Table:
    """Plan rows for candidate pairs (already ordered by chunk, then priority).

    For every band, each source uses the coarsest level still at least as fine as the target, and the
    window of that level that the chunk's pixel centres map into. Pairs with an empty window are dropped.
    With ``masks``, the rows also get the ``_cover``/``_touch`` cell masks that culling uses; every
    window is widened by its band's ``resampling`` (one name, or one per band) reach in that source
    (``halo_pixels``), and by ``halo`` more pixels of that band's level (one per band: a mask's dilation).
    """
    per_band = [resampling] * len(bands) if isinstance(resampling, str) else list(resampling)
    widen = list(halo) if halo is not None else [0] * len(bands)
    used, pair_src = np.unique(source, return_inverse=True)
    crs_of_used = np.asarray(cands.crs, dtype=object)[used].astype(str)
    unique_codes, used_crs = np.unique(crs_of_used, return_inverse=True)
    codes = [str(c) for c in unique_codes]  # pyproj misreads numpy strings
    pair_crs = used_crs[pair_src]
    ids = np.asarray(cands.ids, dtype=object)
    tables = []
    for b, band in enumerate(bands):
        level_idx, coef, shape, reach = _levels_for(
            grid, [band_of(int(s), band).levels for s in used], codes, used_crs, per_band[b]
        )
        reach = reach + widen[b]
        window = np.full((len(source), 4), -1, dtype="i8")
        cover = np.zeros(len(source), dtype=np.uint64)
        touch = np.zeros(len(source), dtype=np.uint64)
        for c, code in enumerate(codes):
            sel = np.nonzero(pair_crs == c)[0]
            for part in np.array_split(sel, max(1, len(sel) // BATCH)):
                window[part], cover[part], touch[part] = _windows(
                    grid,
                    CRS.from_user_input(code),
                    chunk[part],
                    coef[pair_src[part]],
                    shape[pair_src[part]],
                    masks,
                    MARGIN + reach[pair_src[part]],
                )
        keep = window[:, 0] >= 0
        crow, ccol = np.divmod(chunk[keep], grid.nchunks[1])
        extra = {"_cover": pa.array(cover[keep]), "_touch": pa.array(touch[keep])} if masks else {}
        kept_src = source[keep]
        tables.append(
            pa.table(
                {
                    "band": pa.array(np.full(int(keep.sum()), b, dtype="i2")),
                    "chunk_row": pa.array(crow.astype("i4")),
                    "chunk_col": pa.array(ccol.astype("i4")),
                    "source": pa.array(kept_src.astype("i4")),
                    "source_id": pa.array(ids[kept_src], pa.string())
                    if len(kept_src)
                    else pa.array([], pa.string()),
                    "priority": pa.array(cands.priority[kept_src].astype("i4")),
                    "level": pa.array(level_idx[pair_src[keep]]),
                    "src_row0": pa.array(window[keep, 0]),
                    "src_row1": pa.array(window[keep, 1]),
                    "src_col0": pa.array(window[keep, 2]),
                    "src_col1": pa.array(window[keep, 3]),
                    **extra,
                }
            )
        )
    return pa.concat_tables(tables) if tables else empty_plan_table()


def _levels_for(
    grid: TargetGrid,
    levels: list[tuple[Level, ...]],
    codes: list[str],
    crs_of: np.ndarray,
    resampling: str = "nearest",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per source: the level to read (index), its inverse affine coefficients, its shape, and how many of
    that level's pixels the resampling reaches beyond a target pixel centre's."""
    n = len(levels)
    level_idx = np.zeros(n, dtype="i2")
    coef = np.zeros((n, 6))
    shape = np.zeros((n, 2), dtype="i8")
    reach = np.zeros(n, dtype="i8")
    for c, code in enumerate(codes):
        members = np.nonzero(crs_of == c)[0]
        res = target_res_in_sources(grid, CRS.from_user_input(code), [levels[i][0] for i in members])
        for i, r in zip(members, res, strict=True):
            lv = select_overview(levels[i], r, levels[i][0].resolution)
            level_idx[i] = levels[i].index(lv)
            inv = ~Affine(*lv.transform)
            coef[i] = (inv.a, inv.b, inv.c, inv.d, inv.e, inv.f)
            shape[i] = lv.shape
            reach[i] = halo_pixels(resampling, r / lv.resolution)
    return level_idx, coef, shape, reach


def _windows(
    grid: TargetGrid,
    crs: CRS,
    chunk: np.ndarray,
    coef: np.ndarray,
    shape: np.ndarray,
    masks: bool,
    margin: int | np.ndarray = MARGIN,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(window, cover, touch) of pairs in one source CRS: the source pixels that the chunk's lattice maps
    into, widened by MARGIN and clipped to the source (-1 rows where empty)."""
    uchunks, inverse = np.unique(chunk, return_inverse=True)
    xs, ys = chunk_lattice(grid, uchunks)
    sx, sy = transformer(grid.crs.to_wkt(), crs.to_wkt()).transform(xs, ys, errcheck=False)
    sx, sy = sx[inverse], sy[inverse]
    seam = np.zeros(len(chunk), dtype=bool)
    if grid.crs.is_geographic and crs.is_geographic:  # longitudes wrap: 190 is -170 for a source there
        sx, seam = _nearest_turn(sx, sy, coef, shape)
    elif crs.is_geographic:  # longitudes both sides of +-180: the seam crosses the chunk (between points)
        seam = np.fmax.reduce(sx, axis=1) - np.fmin.reduce(sx, axis=1) > 180
    cols = coef[:, 0:1] * sx + coef[:, 1:2] * sy + coef[:, 2:3]
    rows = coef[:, 3:4] * sx + coef[:, 4:5] * sy + coef[:, 5:6]
    ok = np.isfinite(cols) & np.isfinite(rows)
    with np.errstate(all="ignore"):
        c0 = np.floor(np.nanmin(np.where(ok, cols, np.nan), axis=1))
        c1 = np.floor(np.nanmax(np.where(ok, cols, np.nan), axis=1)) + 1
        r0 = np.floor(np.nanmin(np.where(ok, rows, np.nan), axis=1))
        r1 = np.floor(np.nanmax(np.where(ok, rows, np.nan), axis=1)) + 1
    if crs.is_geographic:  # a chunk holding a pole needs every longitude, up to that pole
        for lat, inside in _pole_chunks(grid, uchunks).items():
            hit = inside[inverse]
            pr = coef[hit, 4] * lat + coef[hit, 5]
            c0[hit], c1[hit] = 0, shape[hit, 1]
            r0[hit] = np.minimum(np.nan_to_num(r0[hit], nan=np.inf), np.floor(pr))
            r1[hit] = np.maximum(np.nan_to_num(r1[hit], nan=-np.inf), np.floor(pr) + 1)
    h, w = shape[:, 0], shape[:, 1]
    c0[seam], c1[seam] = np.fmin(c0[seam], 0), np.fmax(c1[seam], w[seam])  # both ends of the source
    empty = ~(np.isfinite(c0) & np.isfinite(r0)) | (c1 <= 0) | (r1 <= 0) | (c0 >= w) | (r0 >= h)
    win = np.stack([r0 - margin, r1 + margin, c0 - margin, c1 + margin], axis=1)
    win = np.nan_to_num(win, nan=0.0, posinf=0.0, neginf=0.0)
    win[:, 0:2] = np.clip(win[:, 0:2], 0, h[:, None])
    win[:, 2:4] = np.clip(win[:, 2:4], 0, w[:, None])
    win[empty] = -1
    if masks:
        cover, touch = cell_masks(cols, rows, w, h, LATTICE)
    else:
        cover = touch = np.zeros(len(chunk), dtype=np.uint64)
    return win.astype("i8"), cover, touch


def _nearest_turn(
    sx: np.ndarray, sy: np.ndarray, coef: np.ndarray, shape: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each longitude, or it plus or minus 360, whichever lands nearest the source's columns (the kernel
    reads a source once per turn that meets the chunk: ``lazymerge.kernel.block.wrapped_rows``); and the pairs
    whose lattice points took different turns: the source's seam crosses the chunk, which then reaches
    both ends of the source (between lattice points)."""
    best, dist, turns = sx, None, np.zeros(sx.shape)
    for turn in (0.0, -360.0, 360.0):
        x = sx + turn
        cols = coef[:, 0:1] * x + coef[:, 1:2] * sy + coef[:, 2:3]
        with np.errstate(invalid="ignore"):
            d = np.maximum(np.maximum(-cols, cols - shape[:, 1:2]), 0.0)
        d = np.where(np.isfinite(d), d, np.inf)
        if dist is None:
            best, dist = x, d
        else:
            closer = d < dist
            best, dist = np.where(closer, x, best), np.where(closer, d, dist)
            turns = np.where(closer, turn, turns)
    return best, turns.min(axis=1) != turns.max(axis=1)
