"""From (chunk, source) candidate pairs to plan rows: overview level and source pixel window.

Shared by both discovery paths, so the same candidates always give the same table.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from affine import Affine
from pyproj import CRS, Transformer

from lazymerge import arrow
from lazymerge.catalog.footprints import WGS84_WKT
from lazymerge.catalog.sources import Level, level_bounds, select_overview
from lazymerge.contract.schema import empty_plan_table
from lazymerge.crs import composed_transformer, crs_from, transformer
from lazymerge.grid import TargetGrid
from lazymerge.kernel.resampling import halo_pixels
from lazymerge.planner.culling import cell_masks

LATTICE = 9  # samples per chunk side used to bound the source window (8 x 8 culling cells)
BATCH = 100_000  # pairs (or chunks) per vectorised lattice step (bounds the lattice arrays' memory)
PAIR_BATCH = 250_000  # pairs per plan table batch (bounds the memory of a batch's windows)
MARGIN = 1  # source pixels added around the window, clipped to the source
LATTICE_TOL = 1e-3  # source pixels: the culling lattice's largest error where it is interpolated
JUMP = 8.0  # a lattice step this many times its lower quartile step crosses a seam of the source CRS


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
    return target_sizes_in_sources(grid, src_crs, levels)[0]


def target_sizes_in_sources(
    grid: TargetGrid, src_crs: CRS, levels: list[Level]
) -> tuple[np.ndarray, np.ndarray]:
    """``target_res_in_sources`` (the square root of a target pixel's area in the source CRS), and the
    largest extent of a target pixel along either source axis: far larger where the mapping stretches
    one axis (a geographic source at 85 degrees: ten times as many longitude pixels as latitude ones),
    which is how far a footprint or a widened kernel reaches."""
    to_src = composed_transformer(grid.crs.to_wkt(), src_crs.to_wkt())  # and back: its inverse (one to build)
    b = np.array([level_bounds(lv) for lv in levels]).reshape(-1, 4)
    cx, cy = to_src.transform(
        (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, errcheck=False, direction="INVERSE"
    )
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
    span = np.maximum(np.abs(ux) + np.abs(vx), np.abs(uy) + np.abs(vy))
    res = np.where(ok, np.sqrt(np.where(ok, area, 1.0)), r)
    return res, np.where(ok & np.isfinite(span), np.maximum(span, res), res)


def target_res_in_source(grid: TargetGrid, src_crs: CRS, level: Level) -> float:
    """``target_res_in_sources`` for one source."""
    return float(target_res_in_sources(grid, src_crs, [level])[0])


def chunk_lattice(
    grid: TargetGrid, chunks: np.ndarray, k: int = LATTICE, step: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Target CRS x, y of a k x k lattice of pixel centres spanning each chunk (first to last pixel);
    with ``step``, every step-th row and column of it (the same points)."""
    r0, r1, c0, c1 = grid.chunk_windows(chunks)
    t = np.linspace(0.0, 1.0, k)[::step]
    m = len(t)
    pr = (r0[:, None] + 0.5) + t[None, :] * (r1 - r0 - 1)[:, None]
    pc = (c0[:, None] + 0.5) + t[None, :] * (c1 - c0 - 1)[:, None]
    px = grid.transform.c + pc * grid.transform.a  # (n, m)
    py = grid.transform.f + pr * grid.transform.e  # (n, m)
    xs = np.broadcast_to(px[:, None, :], (len(chunks), m, m)).reshape(len(chunks), -1)
    ys = np.broadcast_to(py[:, :, None], (len(chunks), m, m)).reshape(len(chunks), -1)
    return xs, ys


# the 3 x 3 sub-lattice's biquadratic on every lattice line: the Lagrange weights of t = 0, 1/2, 1 at
# k / (LATTICE - 1)
_T = np.linspace(0.0, 1.0, LATTICE)
_QUAD = np.stack([2 * (_T - 0.5) * (_T - 1), -4 * _T * (_T - 1), 2 * _T * (_T - 0.5)], axis=1)
_QUAD2 = np.kron(_QUAD, _QUAD).T  # (9, LATTICE ** 2): a flat 3 x 3 sub-lattice to the whole lattice
_SUB = np.arange(0, LATTICE, (LATTICE - 1) // 2)  # the 3 x 3 sub-lattice's lines
_CHECK = [  # where the quadratic errs most: t = 1/4, 3/4 on any sub-lattice line, and between them
    (a, b)
    for a in range(LATTICE)
    for b in range(LATTICE)
    if {a, b} <= {0, 2, 4, 6, 8} and (a in (2, 6) or b in (2, 6))  # (LATTICE = 9)
]


def source_lattice(
    grid: TargetGrid, crs: CRS, chunks: np.ndarray, tol: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each chunk's LATTICE x LATTICE lattice (``chunk_lattice``) in ``crs``, as two (n, LATTICE ** 2) arrays,
    and which chunks' lattices were interpolated (monotonic: no seam crosses them, as in ``lattice_extents``).

    With ``tol`` > 0 (CRS units), a chunk's lattice is the biquadratic through its 3 x 3 sub-lattice,
    transformed together with the points between where that errs most (``_CHECK``), wherever those miss it
    by at most ``tol`` along each axis and both coordinates are monotonic (``_monotonic``: no seam, pole or
    turn); the points transformed keep their exact values. Other chunks, and every chunk in a geographic
    ``crs`` (longitudes wrap), transform every point: 25 points instead of 81 for most chunks."""
    to_src = composed_transformer(grid.crs.to_wkt(), crs.to_wkt())
    xs, ys = chunk_lattice(grid, chunks)
    if tol <= 0 or crs.is_geographic or not len(chunks):
        sx, sy = to_src.transform(xs, ys, errcheck=False)
        return np.asarray(sx, dtype="f8"), np.asarray(sy, dtype="f8"), np.zeros(len(chunks), dtype=bool)
    k = LATTICE
    sub = (_SUB[:, None] * k + _SUB[None, :]).ravel()
    check = np.array([a * k + b for a, b in _CHECK])
    picked = np.concatenate([sub, check])
    px, py = to_src.transform(xs[:, picked], ys[:, picked], errcheck=False)
    px, py = np.asarray(px, dtype="f8"), np.asarray(py, dtype="f8")
    out = []
    easy = np.ones(len(chunks), dtype=bool)
    for v in (px, py):
        corners = v[:, : len(sub)].reshape(-1, 3, 3)
        full = np.einsum("nj,jk->nk", v[:, : len(sub)], _QUAD2)  # (not ``@``: BLAS threads spin on CPU)
        with np.errstate(invalid="ignore"):
            easy &= _monotonic(corners) & (np.abs(full[:, check] - v[:, len(sub) :]) <= tol).all(axis=1)
        full[:, picked] = v
        out.append(full)
    hard = np.flatnonzero(~easy)
    if len(hard):
        hx, hy = to_src.transform(xs[hard], ys[hard], errcheck=False)
        out[0][hard], out[1][hard] = hx, hy
    return out[0], out[1], easy


def _pole_chunks(grid: TargetGrid, chunks: np.ndarray) -> dict[float, np.ndarray]:
    """For each pole inside the target grid: which of ``chunks`` contain it."""
    out = {}
    to_tgt = transformer(WGS84_WKT, grid.crs.to_wkt())
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
    levels_of: Callable[[int, str | None], tuple[Level, ...]],
    masks: bool = False,
    resampling: str | Sequence[str] = "nearest",
    halo: Sequence[int] | None = None,
) -> pa.Table:
    """Plan rows for candidate pairs (already ordered by chunk, then priority): ``window_batches`` in one
    table."""
    tables = list(window_batches(grid, chunk, source, cands, bands, levels_of, masks, resampling, halo))
    return pa.concat_tables(tables) if tables else empty_plan_table()


def window_batches(
    grid: TargetGrid,
    chunk: np.ndarray,
    source: np.ndarray,
    cands: Candidates,
    bands: list[str | None],
    levels_of: Callable[[int, str | None], tuple[Level, ...]],
    masks: bool = False,
    resampling: str | Sequence[str] = "nearest",
    halo: Sequence[int] | None = None,
    batch: int | None = None,
) -> Iterator[pa.Table]:
    """Plan rows for candidate pairs (already ordered by chunk, then priority), band by band, ``batch``
    pairs at a time (default PAIR_BATCH; in plan order: memory stays bounded however many pairs there are).

    ``levels_of(source, band)`` gives a source's levels of a band, read for their grids only. For every
    band, each source uses the coarsest level still at least as fine as the target, and the window of that
    level that the chunk's pixel centres map into. Pairs with an empty window are dropped.
    With ``masks``, the rows also get the ``_cover``/``_touch`` cell masks that culling uses; every
    window is widened by its band's ``resampling`` (one name, or one per band) reach in that source
    (``halo_pixels``), and by ``halo`` more pixels of that band's level (one per band: a mask's dilation).
    """
    batch = batch or PAIR_BATCH
    per_band = [resampling] * len(bands) if isinstance(resampling, str) else list(resampling)
    widen = list(halo) if halo is not None else [0] * len(bands)
    used = np.unique(source)
    crs_of_used = np.asarray(cands.crs, dtype=object)[used].astype(str)
    unique_codes, used_crs = np.unique(crs_of_used, return_inverse=True)
    codes = [str(c) for c in unique_codes]  # pyproj misreads numpy strings
    ids = arrow.strings(cands.ids)
    target_wkt, wkts = grid.crs.to_wkt(), tuple(crs_from(c).to_wkt() for c in codes)
    used_index = np.zeros(len(cands.ids), dtype="i8")
    used_index[used] = np.arange(len(used))
    for b, band in enumerate(bands):
        level_idx, coef, shape, reach, group = _levels_for(
            grid, [levels_of(int(s), band) for s in used], codes, used_crs, per_band[b]
        )
        per = _PerSource(level_idx, coef, shape, reach + widen[b], used_crs, codes, group, target_wkt, wkts)
        for lo in range(0, max(len(source), 1), batch):  # one (empty) table for no pairs
            part = slice(lo, lo + batch)
            pair_src = used_index[source[part]]  # each pair's used-source index
            c = chunk[part].astype("i8")  # pixel offsets from int32 ids stay exact
            yield _band_rows(grid, b, c, source[part], pair_src, per, cands, ids, masks)


@dataclass(frozen=True)
class _PerSource:
    """One band's level, inverse affine, shape, reach and CRS (index into ``codes``) of each used source,
    and its group: the sources of one group share all of these (``_levels_for``)."""

    level_idx: np.ndarray
    coef: np.ndarray
    shape: np.ndarray
    reach: np.ndarray
    crs: np.ndarray
    codes: list[str]
    group: np.ndarray
    target_wkt: str = ""  # the target CRS's WKT, and each code's (transformers are cached by WKT)
    wkt: tuple[str, ...] = ()


def _band_rows(
    grid: TargetGrid,
    b: int,
    chunk: np.ndarray,
    source: np.ndarray,
    pair_src: np.ndarray,
    src: _PerSource,
    cands: Candidates,
    ids: pa.Array,
    masks: bool,
) -> pa.Table:
    """The plan rows of band ``b`` for these pairs (``pair_src``: each pair's used-source index)."""
    coef, shape, reach = src.coef, src.shape, src.reach
    window = np.full((4, len(source)), -1, dtype="i8")  # row0, row1, col0, col1: each a contiguous column
    cover = np.zeros(len(source) if masks else 0, dtype=np.uint64)
    touch = np.zeros(len(source) if masks else 0, dtype=np.uint64)
    pair_crs = src.crs[pair_src]
    for c in np.flatnonzero(np.bincount(pair_crs, minlength=len(src.codes))):
        crs = crs_from(src.codes[c])
        sel = np.nonzero(pair_crs == c)[0]
        box = np.zeros(len(sel), dtype=bool) if masks else box_ok(grid.crs, crs, coef)[pair_src[sel]]
        fast, slow = sel[box], sel[~box]
        if len(fast):  # per (chunk, CRS) lattice extents, then per (chunk, group) in pixel space
            reps, inverse = _per_group(chunk, pair_src, src.group, fast)
            s = pair_src[reps]
            to_src = composed_transformer(src.target_wkt, src.wkt[c])
            window[:, fast] = box_windows(
                grid, crs, chunk[reps], coef[s], shape[s], MARGIN + reach[s], to_src
            )[inverse].T
        if len(slow):  # every lattice point, per (chunk, group)
            reps, inverse = _per_group(chunk, pair_src, src.group, slow)
            win = np.zeros((len(reps), 4), dtype="i8")
            cv, tc = np.zeros(len(reps), dtype=np.uint64), np.zeros(len(reps), dtype=np.uint64)
            for part in np.array_split(np.arange(len(reps)), max(1, len(reps) // BATCH)):
                s = pair_src[reps[part]]
                m = MARGIN + reach[s]
                win[part], cv[part], tc[part] = _windows(
                    grid, crs, chunk[reps[part]], coef[s], shape[s], masks, m
                )
            window[:, slow] = win[inverse].T
            if masks:
                cover[slow], touch[slow] = cv[inverse], tc[inverse]
    ok = window[0] >= 0
    keep: np.ndarray | slice = slice(None) if ok.all() else ok  # all: no copies (the common case)
    crow, ccol = np.divmod(chunk[keep], grid.nchunks[1])
    extra = {"_cover": arrow.column(cover[keep]), "_touch": arrow.column(touch[keep])} if masks else {}
    kept_src = source[keep]
    kept = window[:, keep]
    return pa.table(
        {
            "band": arrow.column(np.full(len(kept_src), b, dtype="i2")),
            "chunk_row": arrow.column(crow.astype("i4")),
            "chunk_col": arrow.column(ccol.astype("i4")),
            "source": arrow.column(kept_src.astype("i4")),
            "source_id": ids.take(arrow.column(kept_src)),
            "priority": arrow.column(cands.priority[kept_src].astype("i4")),
            "level": arrow.column(src.level_idx[pair_src[keep]]),
            "src_row0": arrow.column(kept[0]),
            "src_row1": arrow.column(kept[1]),
            "src_col0": arrow.column(kept[2]),
            "src_col1": arrow.column(kept[3]),
            **extra,
        }
    )


def _per_group(
    chunk: np.ndarray, pair_src: np.ndarray, group: np.ndarray, pairs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One pair of ``pairs`` per (chunk, group), and each pair's index among those: the sources of a group
    (revisits of one tile) share their level, grid and reach, hence their window and cell masks."""
    key = chunk[pairs] * (int(group.max()) + 1) + group[pair_src[pairs]]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return pairs[first], inverse.reshape(-1)


def _levels_for(
    grid: TargetGrid,
    levels: list[tuple[Level, ...]],
    codes: list[str],
    crs_of: np.ndarray,
    resampling: str = "nearest",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per source: the level to read (index), its inverse affine coefficients, its shape, how many of
    that level's pixels the resampling reaches beyond a target pixel centre's, and its group. Sources
    sharing a CRS and their levels' grids (revisits of one tile) are one group, sharing the answer: it is
    found once per group."""
    groups: dict[tuple, int] = {}
    seen: dict[tuple[int, int], int] = {}  # (CRS, id of a levels tuple): revisits often share one tuple
    group = np.zeros(len(levels), dtype="i8")
    for i, (c, lvs) in enumerate(zip(crs_of.tolist(), levels, strict=True)):
        known = seen.get((c, id(lvs)))  # ``levels`` holds every tuple alive: their ids stay theirs
        if known is None:
            key = (c, *[(lv.transform, lv.shape) for lv in lvs])
            known = seen[c, id(lvs)] = groups.setdefault(key, len(groups))
        group[i] = known
    first = np.zeros(len(groups), dtype="i8")
    first[group[::-1]] = np.arange(len(levels))[::-1]  # a representative source per group
    n = len(groups)
    level_idx = np.zeros(n, dtype="i2")
    coef = np.zeros((n, 6))
    shape = np.zeros((n, 2), dtype="i8")
    reach = np.zeros(n, dtype="i8")
    rep_crs = np.asarray(crs_of)[first] if n else np.zeros(0, dtype="i8")
    for c, code in enumerate(codes):
        members = np.nonzero(rep_crs == c)[0]
        if not len(members):
            continue
        res, span = target_sizes_in_sources(grid, crs_from(code), [levels[first[g]][0] for g in members])
        for g, r, extent in zip(members, res, span, strict=True):
            lvs = levels[first[g]]
            lv = select_overview(lvs, r, lvs[0].resolution)
            level_idx[g] = lvs.index(lv)
            inv = ~Affine(*lv.transform)
            coef[g] = (inv.a, inv.b, inv.c, inv.d, inv.e, inv.f)
            shape[g] = lv.shape
            reach[g] = halo_pixels(resampling, extent / lv.resolution)  # along the longer axis
    return level_idx[group], coef[group], shape[group], reach[group], group


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
    scale = np.hypot(coef[:, [0, 3]], coef[:, [1, 4]]).max(initial=0.0)  # source pixels per CRS unit
    tol = LATTICE_TOL / scale if np.isfinite(scale) and scale > 0 else 0.0
    sx, sy, smooth = source_lattice(grid, crs, uchunks, tol)
    jumps = np.zeros((len(uchunks), 2), dtype=bool)
    if not smooth.all():  # (a seam is never monotonic)
        jumps[~smooth] = _seams(sx[~smooth], sy[~smooth])
    jumps = jumps[inverse]
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
    rotated = (coef[:, 1] != 0) | (coef[:, 3] != 0)  # x and y both move columns and rows
    seam |= jumps[:, 0] | rotated & jumps[:, 1]
    c0[seam], c1[seam] = np.fmin(c0[seam], 0), np.fmax(c1[seam], shape[seam, 1])  # both ends of the source
    down = jumps[:, 1] | rotated & jumps[:, 0]
    r0[down], r1[down] = np.fmin(r0[down], 0), np.fmax(r1[down], shape[down, 0])
    win = _clipped(grid, crs, uchunks, inverse, coef, shape, (r0, r1, c0, c1), margin)
    if masks:
        cover, touch = cell_masks(cols, rows, shape[:, 1], shape[:, 0], LATTICE)
    else:
        cover = touch = np.zeros(len(chunk), dtype=np.uint64)
    return win, cover, touch


def _clipped(
    grid: TargetGrid,
    crs: CRS,
    uchunks: np.ndarray,
    inverse: np.ndarray,
    coef: np.ndarray,
    shape: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    margin: int | np.ndarray,
) -> np.ndarray:
    """(n, 4) windows from the lattice's pixel bounds (r0, r1, c0, c1) of each pair (chunk
    ``uchunks[inverse]``): a chunk holding a pole reaches it, then widened by ``margin`` and clipped to
    the source; -1 rows where the lattice misses the source."""
    r0, r1, c0, c1 = bounds
    if crs.is_geographic:  # a chunk holding a pole needs every longitude, up to that pole
        for lat, inside in _pole_chunks(grid, uchunks).items():
            hit = inside[inverse]
            pr = coef[hit, 4] * lat + coef[hit, 5]
            c0[hit], c1[hit] = 0, shape[hit, 1]
            r0[hit] = np.minimum(np.nan_to_num(r0[hit], nan=np.inf), np.floor(pr))
            r1[hit] = np.maximum(np.nan_to_num(r1[hit], nan=-np.inf), np.floor(pr) + 1)
    h, w = shape[:, 0], shape[:, 1]
    empty = ~(np.isfinite(c0) & np.isfinite(r0)) | (c1 <= 0) | (r1 <= 0) | (c0 >= w) | (r0 >= h)
    win = np.stack([r0 - margin, r1 + margin, c0 - margin, c1 + margin], axis=1)
    win = np.nan_to_num(win, nan=0.0, posinf=0.0, neginf=0.0)
    win[:, 0:2] = np.clip(win[:, 0:2], 0, h[:, None])
    win[:, 2:4] = np.clip(win[:, 2:4], 0, w[:, None])
    win[empty] = -1
    return win.astype("i8")


def box_ok(target: CRS, crs: CRS, coef: np.ndarray) -> np.ndarray:
    """Pairs whose window ``box_windows`` computes: north-up source grids (no rotation or shear), unless
    both CRSs are geographic (longitudes wrap: ``_nearest_turn`` needs every lattice point)."""
    if target.is_geographic and crs.is_geographic:
        return np.zeros(len(coef), dtype=bool)
    return (coef[:, 1] == 0) & (coef[:, 3] == 0)


def lattice_extents(
    grid: TargetGrid, crs: CRS, chunks: np.ndarray, to_src: Transformer | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) xmin, xmax, ymin, ymax in ``crs`` of each chunk's LATTICE x LATTICE lattice (the points
    where both coordinates are finite; NaN where none is), and (n, 2) whether x, and y, jump across a
    seam of ``crs`` between lattice points (``_seams``).

    Each chunk's 3 x 3 sub-lattice (corners, edge midpoints, centre) is transformed first. Where both
    source coordinates are monotonic along both lattice axes (``_monotonic``), the extremes are corners,
    which the sub-lattice holds; only the other chunks (near a pole, a seam, a 90 degree turn, outside the
    projection) transform the whole lattice. ``to_src``: the grid-to-``crs`` transformer, when at hand.
    """
    out = np.full((len(chunks), 4), np.nan)
    seams = np.zeros((len(chunks), 2), dtype=bool)
    to_src = to_src or composed_transformer(grid.crs.to_wkt(), crs.to_wkt())
    for part in np.array_split(np.arange(len(chunks)), max(1, len(chunks) // BATCH)):
        xs, ys = chunk_lattice(grid, chunks[part], step=(LATTICE - 1) // 2)  # LATTICE is odd: 3 x 3
        sx, sy = to_src.transform(xs, ys, errcheck=False)
        sx, sy = sx.reshape(-1, 3, 3), sy.reshape(-1, 3, 3)
        easy = _monotonic(sx) & _monotonic(sy)
        if crs.is_geographic:  # longitudes near a seam: the whole lattice decides
            easy &= sx.max(axis=(1, 2)) - sx.min(axis=(1, 2)) < 90
        cx, cy = sx[easy][:, ::2, ::2].reshape(-1, 4), sy[easy][:, ::2, ::2].reshape(-1, 4)  # the corners
        out[part[easy]] = np.stack([cx.min(axis=1), cx.max(axis=1), cy.min(axis=1), cy.max(axis=1)], axis=1)
        hard = part[~easy]
        if len(hard):  # a seam is never monotonic: it jumps back
            out[hard], seams[hard] = _full_extents(to_src, grid, chunks[hard])
    return out, seams


def _monotonic(v: np.ndarray) -> np.ndarray:
    """Per (n, 3, 3) sub-lattice of one coordinate: finite, and monotonic along both axes of the whole
    lattice with a wide margin. Along each sampled line the coordinate is, to second order,
    ``a t + b t^2`` (t in [0, 1]), monotonic when the span ``a + b`` exceeds twice the second difference
    ``b / 2``; asking for 16 times leaves room for higher orders and the unsampled lines between. A
    coordinate exactly constant along an axis (the same CRS, Mercator and geographic) is too."""
    ok = np.isfinite(v.reshape(len(v), -1)).all(axis=1)
    with np.errstate(invalid="ignore"):
        for w in (v, v.transpose(0, 2, 1)):  # along rows, then along columns
            w0, w1, w2 = w[:, :, 0], w[:, :, 1], w[:, :, 2]  # (n, 3) each: the three lines' samples
            span = w2 - w0
            bend = np.abs(w0 - 2 * w1 + w2)
            tol = 1e-9 * np.maximum(np.maximum(np.abs(w0), np.abs(w1)), np.abs(w2))  # a span lost in rounding
            margin = 16 * bend + tol  # is no direction
            up, down, flat = span > margin, span < -margin, (w0 == w1) & (w1 == w2)
            ok &= (
                (up[:, 0] & up[:, 1] & up[:, 2])
                | (down[:, 0] & down[:, 1] & down[:, 2])
                | (flat[:, 0] & flat[:, 1] & flat[:, 2])
            )
    return ok


def _full_extents(to_src: Transformer, grid: TargetGrid, chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``lattice_extents`` from every point of each chunk's lattice."""
    xs, ys = chunk_lattice(grid, chunks)
    sx, sy = to_src.transform(xs, ys, errcheck=False)
    ok = np.isfinite(sx) & np.isfinite(sy)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        sx, sy = np.where(ok, sx, np.nan), np.where(ok, sy, np.nan)
        ext = np.stack(
            [np.nanmin(sx, axis=1), np.nanmax(sx, axis=1), np.nanmin(sy, axis=1), np.nanmax(sy, axis=1)],
            axis=1,
        )
    return ext, _seams(sx, sy)


def _seams(sx: np.ndarray, sy: np.ndarray, k: int = LATTICE) -> np.ndarray:
    """(n, 2) per chunk lattice (n, k * k) in a source CRS: whether x, and whether y, jumps between
    neighbouring lattice points by JUMP times the lattice's lower quartile step (|dx| + |dy|), as where the
    ±180 seam of a Mercator, sinusoidal or other world projection crosses the chunk. Pixels between two
    lattice points across a seam reach the source's far edge, which no lattice point shows: the window
    takes both ends."""
    x, y = sx.reshape(-1, k, k), sy.reshape(-1, k, k)
    steps = [(np.abs(np.diff(x, axis=a)), np.abs(np.diff(y, axis=a))) for a in (1, 2)]
    with np.errstate(all="ignore"):
        length = np.concatenate([(dx + dy).reshape(len(x), -1) for dx, dy in steps], axis=1)
        quarter = length.shape[1] // 4  # the lower quartile (NaN sorts last): a few jumps do not move it
        limit = JUMP * np.partition(length, quarter, axis=1)[:, quarter, None, None]
        return np.stack(
            [
                np.any(steps[0][0] > limit, axis=(1, 2)) | np.any(steps[1][0] > limit, axis=(1, 2)),
                np.any(steps[0][1] > limit, axis=(1, 2)) | np.any(steps[1][1] > limit, axis=(1, 2)),
            ],
            axis=1,
        )


def box_windows(
    grid: TargetGrid,
    crs: CRS,
    chunk: np.ndarray,
    coef: np.ndarray,
    shape: np.ndarray,
    margin: int | np.ndarray = MARGIN,
    to_src: Transformer | None = None,
) -> np.ndarray:
    """The windows ``_windows`` gives pairs with north-up source grids (``box_ok``), from each chunk's
    lattice extent in ``crs`` (one transform per chunk and CRS) instead of every lattice point per pair
    (``to_src``: see ``lattice_extents``).

    For a north-up grid, a pixel column is ``a * x + c``: rounding is monotonic, so the smallest column
    of the lattice is exactly that of its smallest x (largest where ``a < 0``), and likewise for rows.
    """
    uchunks, inverse = _unique(chunk)
    ext, seams = lattice_extents(grid, crs, uchunks, to_src)
    ext, seams = ext[inverse], seams[inverse]
    a, c, e, f = coef[:, 0], coef[:, 2], coef[:, 4], coef[:, 5]
    xlo, xhi, ylo, yhi = ext[:, 0], ext[:, 1], ext[:, 2], ext[:, 3]
    with np.errstate(invalid="ignore"):
        c0 = np.floor(np.where(a > 0, a * xlo, a * xhi) + c)
        c1 = np.floor(np.where(a > 0, a * xhi, a * xlo) + c) + 1
        r0 = np.floor(np.where(e > 0, e * ylo, e * yhi) + f)
        r1 = np.floor(np.where(e > 0, e * yhi, e * ylo) + f) + 1
        seam, down = seams[:, 0], seams[:, 1]  # a seam crosses the chunk: both ends of the source
        if crs.is_geographic:  # (as ``_windows``)
            seam |= xhi - xlo > 180
        c0[seam], c1[seam] = np.fmin(c0[seam], 0), np.fmax(c1[seam], shape[seam, 1])
        r0[down], r1[down] = np.fmin(r0[down], 0), np.fmax(r1[down], shape[down, 0])
    return _clipped(grid, crs, uchunks, inverse, coef, shape, (r0, r1, c0, c1), margin)


def _unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``, without a sort where ``values`` are sorted already
    (the pairs' chunks are)."""
    if len(values) and not (values[1:] >= values[:-1]).all():
        uniq, inverse = np.unique(values, return_inverse=True)
        return uniq, inverse.reshape(-1)
    new = np.empty(len(values), dtype=bool)
    new[:1] = True
    np.not_equal(values[1:], values[:-1], out=new[1:])
    return values[new], np.cumsum(new) - 1


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
