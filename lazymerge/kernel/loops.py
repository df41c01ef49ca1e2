"""Fused, compiled loops for the kernel's hot paths (numba, cached on disk so workers compile once).

Each loop walks the block row by row: ``_row`` turns a ``Mapping`` (``kernel.mapping``) into the source
pixel coordinates of one row (affine, per-axis lookups or the control grid's cubic interpolation), then the
row's pixels are sampled and written in the same pass; the per-pixel coordinates are never materialised.
Rotated rows prefetch the next row's source lines (``_prefetch``); mappings without rotation sample per
column and per row, kernels as a horizontal pass per source row and a vertical pass per block row.

``sample_into``: nearest/bilinear/cubic/cubic_spline/lanczos with GDAL's conventions: pixel ``(i, j)``
covers ``[j, j + 1) x [i, i + 1)``, nearest takes ``floor``, kernels weight the pixel centres around the
point, skip nodata and renormalise, and widen by ``1 / scale`` when downsampling (GDAL's XSCALE/YSCALE).
``average_into``: area statistics over each target pixel's footprint (its four corners in source pixels),
exactly: weighted statistics over rotated footprints by Green's theorem over their edges, the others cell
by cell.

One module on purpose: numba's on-disk cache is invalidated only when the file defining a function
changes, not when a function it calls from another file does, so loops that call each other live here.

A first run compiles only the entry points a request needs (``COMPILED``), and each small: every compiled
unit costs numba and LLVM a fixed time, so what numpy does as fast stays numpy (``row_state``,
``evaluate``), helpers are inlined by LLVM (``forceinline``), no call passes a constant (numba compiles a
function again for each constant), and no unit has wrappers it does not need (``_entry``, ``_helper``;
``benchmarks/first_run.py``).
"""

from __future__ import annotations

import math
import threading
import warnings
from functools import lru_cache
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.caching import FunctionCache
from numba.core.runtime import rtsys
from numba.extending import intrinsic

from lazymerge.contract.budget import GREEN_CELLS

NEAREST, BILINEAR, CUBIC, CUBIC_SPLINE, LANCZOS = 0, 1, 2, 3, 4
CODES = {
    "nearest": NEAREST,
    "bilinear": BILINEAR,
    "cubic": CUBIC,
    "cubic_spline": CUBIC_SPLINE,
    "lanczos": LANCZOS,
}
RADIUS = (0, 1, 2, 2, 3)  # kernel radius in source pixels at scale 1
# area resamplings: statistics of the source pixels under each target pixel's footprint (as GDAL's)
AVERAGE, MINIMUM, MAXIMUM, SUM, RMS, MODE, MEDIAN, Q1, Q3 = range(9)  # from MODE on: ranked, not weighted
AREA = {
    "average": AVERAGE,
    "min": MINIMUM,
    "max": MAXIMUM,
    "sum": SUM,
    "rms": RMS,
    "mode": MODE,
    "med": MEDIAN,
    "q1": Q1,
    "q3": Q3,
}
# a footprint's area in a source pixel below this (in pixels) is rounding, not a touch: the ranked
# statistics and min/max would otherwise take pixels the footprint misses (the exact coverage of a cell
# diagonal to a corner comes out ~3e-17)
MIN_COVER = 1e-10
QUANTILE = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.25, 0.75)  # of MEDIAN, Q1, Q3
LINEAR, SEPARABLE, GRID = 0, 1, 2  # kinds of lazymerge.kernel.mapping.Mapping


_njit: Any = numba.njit  # (its type stubs lack the wrapper options)


class _Cache(FunctionCache):
    """numba's on-disk cache of a loop, loaded without numba's context refresh.

    numba refreshes its typing and target contexts before every load from its cache: the first load of a
    process imports and installs every implementation registry numba has (0.2 s by ``benchmarks/peers.py
    --profile``, under its compiler lock, so another thread's first load waits too), which only a compile
    uses; the loaded machine code needs numba's runtime (NRT)
    alone. A compile (a cache miss) still refreshes them, as numba's compiler does first. A load that
    fails this way is tried again numba's way, and a cache file that cannot be loaded at all (truncated,
    corrupt: numba raises) is a miss, compiled again and rewritten, with a warning."""

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        try:
            rtsys.initialize(target_context)  # the runtime's symbols, which the loops' allocations call
            return self._load_overload(sig, target_context)
        except Exception:
            pass
        try:
            return super().load_overload(sig, target_context)
        except Exception as exc:
            warnings.warn(
                f"numba's cache of {self._name} cannot be loaded ({type(exc).__name__}: {exc}); compiling "
                f"it again, which rewrites it (cache in {self.cache_path})",
                RuntimeWarning,
                stacklevel=2,
            )
            return None


def _cached(dispatcher: Any) -> Any:
    dispatcher._cache = _Cache(dispatcher.py_func)
    return dispatcher


def _entry(**options):
    """``numba.njit`` for a loop called from Python: cached on disk (``_Cache``), without the GIL, and
    without a C callable wrapper (none is taken as a function pointer; each wrapper is one more function
    for LLVM to optimise and emit on a first compile: ``benchmarks/first_run.py``)."""
    jit = _njit(cache=True, nogil=True, no_cfunc_wrapper=True, **options)
    return lambda function: _cached(jit(function))


def _helper(**options):
    """``_entry`` for a function called only from compiled loops: no Python wrapper either. Small ones in
    hot loops take ``forceinline`` (LLVM inlines them; numba's own ``inline="always"`` types them again
    at every call site, which costs more to compile)."""
    jit = _njit(cache=True, nogil=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, **options)
    return lambda function: _cached(jit(function))


def _stencils(lines: np.ndarray) -> np.ndarray:
    """Per control interval a of ``lines``: the cubic's stencil (``_grid_row``, ``_cubics``), two more
    lines j1, j2 at offsets p1, p2 from its start: the lines before and after it, or the next two on one
    side at either end of the grid (j2 = j1 with three lines, none with two). The block's lattice holds
    every line its pixels' intervals use, so each pixel gets the same cubic whichever block holds it. Rows
    of (j1, j2, p1 / s, p2 / s, 1 / (p1 (p1 - s)), 1 / (p2 (p2 - s)), 1 / (p2 - p1), p1, s); numpy
    without warnings (the caller's ``np.errstate``)."""
    n = len(lines)
    g = np.zeros((max(n - 1, 0), 9))
    if n < 2:
        return g
    s = np.diff(lines).astype(np.float64)
    if n < 3:  # two lines (a grid of at most STEP + 1 lines): no cubic, the line through them
        g[:, 0], g[:, 1], g[:, 8] = 1.0, 1.0, s
        return g
    a = np.arange(n - 1)
    j1, j2 = a - 1, a + 2
    j1[0], j2[0], j2[-1] = min(2, n - 1), min(3, n - 1), max(n - 4, 0)
    p1, p2 = (lines[j1] - lines[:-1]).astype(np.float64), (lines[j2] - lines[:-1]).astype(np.float64)
    d1, d2 = p1 * (p1 - s), p2 * (p2 - s)  # 0 where the stencil has no line beyond the interval
    g[:, 0], g[:, 1], g[:, 2], g[:, 3], g[:, 7], g[:, 8] = j1, j2, p1 / s, p2 / s, p1, s
    g[:, 4], g[:, 5], g[:, 6] = 1.0 / d1, 1.0 / d2, 1.0 / (p2 - p1)
    g[d1 == 0, 4], g[d2 == 0, 5], g[p2 == p1, 6] = np.nan, np.nan, 0.0
    return g


def _cubics(v0, v1, v2, v3, g) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, beta) such that ``v0 + (v1 - v0) t / s + t (t - s) (alpha + beta t)`` is the cubic through
    an interval's two control values ``v0``, ``v1`` (at t = 0, s) and its stencil's ``v2``, ``v3`` (at
    p1, p2; ``g``: ``_stencils``, along the last axis, broadcast against the values): the quadratic
    through three where one is missing or NaN, the line where both are. Zero at both ends of the interval,
    so control points stay exact. ``_grid_row`` computes the same along a row, operation for operation."""
    d = v1 - v0
    u = g[..., 4] * (v2 - v0 - g[..., 2] * d)
    v = g[..., 5] * (v3 - v0 - g[..., 3] * d)
    np.copyto(u, v, where=u != u)
    np.copyto(v, u, where=v != v)
    beta = (v - u) * g[..., 6]
    alpha = u - beta * g[..., 7]
    none = u != u
    alpha[none], beta[none] = 0.0, 0.0
    return alpha, beta


_last = threading.local()  # each thread's last control grid's tables (``_tables``) and ``row_state``


def _tables(m) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A control grid's tables: the stencils of its row intervals and of its column intervals
    (``_stencils``), the control values of x and y stacked, and the cubics down each control column,
    (alpha, beta) of x and of y per row interval, stacked likewise ((2, 2, rows - 1, columns)). Kept for
    the thread's last grid: a block checks its mapping (``evaluate``), then checks and samples each source
    of that CRS with it (they depend on the lines' spacing, not on the frame ``evaluate`` shifts them to)."""
    kind, gx, gy, ri, ci = m
    hit = getattr(_last, "tables", None)
    lines = ri - ri[:1], ci - ci[:1]
    if hit is not None and hit[0] is gx and hit[1] is gy and all(map(np.array_equal, hit[2], lines)):
        return hit[3]
    with np.errstate(divide="ignore", invalid="ignore"):
        gr, cg = _stencils_of(_key(lines[0])), _stencils_of(_key(lines[1]))  # none but for GRID
        xy = np.stack((gx, gy)) if kind == GRID else np.zeros((2, 0, gx.shape[1]))
        ab = np.zeros((2, 2, len(gr), gx.shape[1]))
        if len(gr) and gr[:, 8].max() > 1:  # else no row between control rows
            j1, j2, g = gr[:, 0].astype(np.int64), gr[:, 1].astype(np.int64), gr[:, None, :]
            ab[0], ab[1] = _cubics(xy[:, :-1], xy[:, 1:], xy[:, j1], xy[:, j2], g)
    _last.tables = (gx, gy, lines, (gr, cg, xy, ab))
    return gr, cg, xy, ab


def _key(lines: np.ndarray) -> bytes:
    """Control lines as a cache key."""
    return np.ascontiguousarray(lines, dtype=np.int64).tobytes()


@lru_cache(maxsize=64)
def _stencils_of(lines: bytes) -> np.ndarray:
    """``_stencils`` of the lines ``_key`` gave, kept: the blocks of a grid share a few patterns of lines
    (relative to their first), so most blocks find theirs here. Not to be modified."""
    return _stencils(np.frombuffer(lines, dtype=np.int64))


@lru_cache(maxsize=64)
def _block_rows(ri: bytes, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_row_lines`` of every row of an ``h``-row block with control rows ``ri`` (``_key``), kept as
    ``_stencils_of``. Not to be modified."""
    lines = np.frombuffer(ri, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _row_lines(lines, _stencils_of(_key(lines - lines[:1])), np.arange(h))


def _row_lines(ri: np.ndarray, gr: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For block rows ``ys``: each row's control interval and fraction, and the interval's stencil
    (``gr``: ``_tables``) with the row's offset in it (0, no cubic, where there is one control row)."""
    rg = np.zeros((len(ys), 10))
    if len(ri) < 2:
        return np.zeros(len(ys), dtype=np.int64), np.zeros(len(ys)), rg
    rs = np.minimum(np.searchsorted(ri[1:], ys), len(ri) - 2)
    rf = (ys - ri[rs]) / (ri[rs + 1] - ri[rs])
    rg[:, :9] = gr[rs]
    rg[:, 9] = ys - ri[rs]
    return rs, rf, rg


def row_state(m, h: int) -> tuple:
    """What the compiled row loops (``_row``, ``_grid_row``) need for an ``h``-row block, in numpy (nothing
    of it compiled: each compiled unit adds to a first run): ``_row_lines`` of every row, each control
    interval's stencil along a row, scratch of one value per control column, 0, 1, 2 ... as floats, as far
    as the widest control interval (loaded, not converted from the loop index: AVX2 converts int64 to
    float64 a lane at a time), the cubics down each control column, (alpha, beta) of x, then of y, per
    row interval (``_tables``), and scratch for a row's cubics along each control interval (kept for the
    thread's last mapping and ``h``; the compiled loops write only its scratch)."""
    ri, nc = m[3], m[1].shape[1]
    hit = getattr(_last, "state", None)  # a block checks, then samples each source with the same mapping
    if hit is not None and hit[0] is m[1] and hit[1] is ri and hit[2] == h:
        return hit[3]
    _, cg, _, ab = _tables(m)
    widest = int(cg[:, 8].max()) if len(cg) else 0
    scratch = np.empty(nc), np.empty(nc), np.arange(widest + 1.0)
    down = np.stack((ab[0, 0], ab[1, 0], ab[0, 1], ab[1, 1]), axis=-1)
    state = (*_block_rows(_key(ri), h), cg, *scratch, down, np.empty((len(cg), 8)))
    _last.state = (m[1], ri, h, state)
    return state


def evaluate(
    m, h: int, w: int, ys: np.ndarray, xs: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The mapping's source CRS coordinates at the rows ``ys`` and columns ``xs`` (default: every column)
    of an (h, w) block, as (len(ys), len(xs)) arrays: ``_row``'s arithmetic, operation for operation, in
    numpy (nothing to compile; the mapping's checks take a lattice of rows and columns, not whole rows).
    Columns of a control grid beyond its lattice are not defined."""
    x, y = _evaluate(m, w, ys, xs)
    return x, y


def _evaluate(m, w: int, ys: np.ndarray, xs: np.ndarray | None) -> np.ndarray:
    """``evaluate``'s x and y, stacked: computed at once."""
    kind, gx, gy, ri, ci = m
    ys = np.ascontiguousarray(ys, dtype=np.int64)
    xs = np.arange(w) if xs is None else np.ascontiguousarray(xs, dtype=np.int64)
    if kind == LINEAR:  # gx = (a, b, c, first column), gy = (d, e, f, first row): the target affine
        rr, cc = gy[0, 3] + ys[:, None], gx[0, 3] + xs[None, :]
        px, py = gx[0, 2] + cc * gx[0, 0] + rr * gx[0, 1], gy[0, 2] + cc * gy[0, 0] + rr * gy[0, 1]
        return _identity(np.stack(np.broadcast_arrays(px, py)))
    if kind == SEPARABLE:  # x per column, y per row
        return _identity(np.stack(np.broadcast_arrays(gx[0, xs][None, :], gy[0, ys][:, None])))
    # the control grid: cubic down the control columns, then along each control interval (``_grid_row``)
    gr, cg, xy, ab = _tables(m)
    rs, rf, rg = _row_lines(ri, gr, ys)
    a1, fy, t = np.minimum(rs + 1, len(ri) - 1), rf[:, None], rg[:, 9:]
    on = np.where(rf == 0, rs, np.where(rf == 1, a1, -1))  # a control row: its values
    with np.errstate(invalid="ignore", divide="ignore"):
        p = xy[:, rs]
        if len(gr):
            q = t * (t - rg[:, 8:9])
            p = xy[:, rs] * (1 - fy) + xy[:, a1] * fy + q * (ab[0][:, rs] + ab[1][:, rs] * t)
        p[:, on >= 0] = xy[:, on[on >= 0]]
        txy = _identity(p)
        # each column's control interval b (ci[b] < x <= ci[b + 1]) and offset t; a control column's values
        node = np.minimum(np.searchsorted(ci, xs), len(ci) - 1)
        b, at_node = np.clip(node - 1, 0, len(cg) - 1), ci[node] == xs
        if not len(cg) or at_node.all():
            return txy[:, :, node]
        g, tt = cg[b], (xs - ci[b]).astype(np.float64)
        s, j1, j2 = g[:, 8], g[:, 0].astype(np.int64), g[:, 1].astype(np.int64)
        c0, c_end = txy[:, :, b], txy[:, :, b + 1]
        dc = (c_end - c0) / s
        ac, bc = _cubics(c0, c_end, txy[:, :, j1], txy[:, :, j2], g)
        return np.where(at_node, txy[:, :, node], c0 + tt * ((dc - s * ac) + tt * ((ac - s * bc) + tt * bc)))


def _identity(p: np.ndarray) -> np.ndarray:
    """(x, y) stacked, through the identity affine as the compiled loops apply one (NaN where either is)."""
    return 1.0 * p + 0.0 * p[::-1] + 0.0 - 0.0


@_helper()
def _grid_row(m, state, y, inv, x0, y0) -> None:
    """Block row ``y`` of a control grid, into ``state``'s scratch (``row_state``): the source pixel
    coordinates (minus ``x0``, ``y0``) at every control column, cubic down each control column (its
    ``down`` coefficients), then each control interval along the row as two cubics in the offset t from
    its start, ``c0 + t (c1 + t (c2 + t c3))`` for the column, the same for the row (``coef``: c0 .. c3,
    r0 .. r3). Each is the cubic through the interval's two control values and its stencil's (``_cubics``:
    the quadratic through three where one is missing or NaN, the line where both are or where the interval
    holds no pixel), exact at the control points. Scalars indexed in place, no array views (each view
    costs reference counting in a loop run for every row)."""
    gx, gy = m[1], m[2]
    rs, rf, rg, cg, tx, ty, _, down, coef = state
    a, fy = rs[y], rf[y]
    nr = gx.shape[0]
    a1 = min(a + 1, nr - 1)
    t = rg[y, 9]
    q = t * (t - rg[y, 8])
    on = a if fy == 0 else a1 if fy == 1 else -1  # a control row: its values (not 0 x its NaN neighbour)
    i0, i1, i2, i3, i4, i5 = inv[0], inv[1], inv[2], inv[3], inv[4], inv[5]
    for b in range(gx.shape[1]):
        if on >= 0:
            px, py = gx[on, b], gy[on, b]
        else:
            px = gx[a, b] * (1 - fy) + gx[a1, b] * fy + q * (down[a, b, 0] + down[a, b, 1] * t)
            py = gy[a, b] * (1 - fy) + gy[a1, b] * fy + q * (down[a, b, 2] + down[a, b, 3] * t)
        tx[b] = i0 * px + i1 * py + i2 - x0  # source pixels are affine in (px, py)
        ty[b] = i3 * px + i4 * py + i5 - y0
    for b in range(gx.shape[1] - 1):
        s = cg[b, 8]
        j1, j2 = int(cg[b, 0]), int(cg[b, 1])
        v0, e0 = tx[b], ty[b]
        d, e = tx[b + 1] - v0, ty[b + 1] - e0
        alpha = beta = alpha_r = beta_r = 0.0
        if s > 1:  # else no pixel inside: the line, as exact
            f1, f2, g1, g2, g3, p1 = cg[b, 2], cg[b, 3], cg[b, 4], cg[b, 5], cg[b, 6], cg[b, 7]
            alpha, beta = _cubic(f1, f2, g1, g2, g3, p1, v0, d, tx[j1], tx[j2])
            alpha_r, beta_r = _cubic(f1, f2, g1, g2, g3, p1, e0, e, ty[j1], ty[j2])
        coef[b, 0], coef[b, 1], coef[b, 2], coef[b, 3] = v0, d / s - s * alpha, alpha - s * beta, beta
        coef[b, 4], coef[b, 5], coef[b, 6], coef[b, 7] = e0, e / s - s * alpha_r, alpha_r - s * beta_r, beta_r


@_helper(forceinline=True)
def _cubic(f1, f2, g1, g2, g3, p1, v0, d, v1, v2) -> tuple[float, float]:
    """(alpha, beta) of one interval's cubic along a row (``_grid_row``; ``_cubics``' arithmetic): from its
    start value ``v0``, its rise ``d`` and its stencil's values ``v1``, ``v2``, with the stencil's
    p1 / s, p2 / s, 1 / (p1 (p1 - s)), 1 / (p2 (p2 - s)), 1 / (p2 - p1) and p1."""
    u = g1 * (v1 - v0 - f1 * d)
    w = g2 * (v2 - v0 - f2 * d)
    if u != u:
        u = w
    if w != w:
        w = u
    if u != u:
        return 0.0, 0.0
    beta = (w - u) * g3
    return u - beta * p1, beta


@_helper()
def _row(m, state, y, inv, x0, y0, cols, rows) -> None:
    """Source pixel coordinates (``cols``, ``rows``, minus the window origin ``x0``, ``y0``) of every pixel
    of block row ``y`` (``state``: from ``row_state``)."""
    kind, gx, gy = m[0], m[1], m[2]
    w = cols.shape[0]
    if kind == LINEAR:  # gx = (a, b, c, first column), gy = (d, e, f, first row): the target affine
        rr = gy[0, 3] + y
        for x in range(w):
            cc = gx[0, 3] + x
            px = gx[0, 2] + cc * gx[0, 0] + rr * gx[0, 1]
            py = gy[0, 2] + cc * gy[0, 0] + rr * gy[0, 1]
            cols[x] = inv[0] * px + inv[1] * py + inv[2] - x0
            rows[x] = inv[3] * px + inv[4] * py + inv[5] - y0
    elif kind == SEPARABLE:  # x per column, y per row
        py = gy[0, y]
        for x in range(w):
            px = gx[0, x]
            cols[x] = inv[0] * px + inv[1] * py + inv[2] - x0
            rows[x] = inv[3] * px + inv[4] * py + inv[5] - y0
    else:  # the control grid: cubics in each control interval (``_grid_row``)
        ci, ks = m[4], state[6]
        _grid_row(m, state, y, inv, x0, y0)
        tx, ty, coef = state[4], state[5], state[8]
        if ci[0] == 0:  # a control column at the block's first pixel (else the lattice starts before it)
            cols[0], rows[0] = tx[0], ty[0]
        for b in range(len(ci) - 1):
            base, span = ci[b], ci[b + 1] - ci[b]
            k0, k1 = max(1, -base), min(span, w - 1 - base)  # pixels base + 1 .. base + span in the block
            if k1 < k0:  # an interval beyond the block (it holds a cubic's stencil)
                continue
            c = coef[b]  # locals: the loop vectorises
            c0, c1, c2, c3, r0, r1, r2, r3 = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
            seg_c, seg_r = cols[base + k0 : base + k1 + 1], rows[base + k0 : base + k1 + 1]  # starts >= 0:
            offs = ks[k0 : k1 + 1]  # no wraparound, so vector stores
            for k in range(k1 - k0 + 1):
                t = offs[k]
                seg_c[k] = c0 + t * (c1 + t * (c2 + t * c3))
                seg_r[k] = r0 + t * (r1 + t * (r2 + t * r3))
            if k0 <= k1 == span:  # the next control column: its own values
                cols[base + span], rows[base + span] = tx[b + 1], ty[b + 1]


@_helper(forceinline=True)
def _valid(v, nodata: float, use_nodata: bool) -> bool:
    if v != v:  # NaN
        return False
    return not (use_nodata and v == nodata)


@_helper()
def _kernel(mode: int, t: float) -> float:
    """GDAL's resampling kernels (cubic: Keys a = -0.5; cubic_spline: cubic B-spline; lanczos: a = 3)."""
    t = abs(t)
    if mode == BILINEAR:
        return 1.0 - t if t < 1 else 0.0
    if mode == CUBIC:
        if t <= 1:
            return (1.5 * t - 2.5) * t * t + 1
        return ((-0.5 * t + 2.5) * t - 4) * t + 2 if t < 2 else 0.0
    if mode == CUBIC_SPLINE:
        if t < 1:
            return (4 - 6 * t * t + 3 * t * t * t) / 6
        return (2 - t) ** 3 / 6 if t < 2 else 0.0
    if t == 0:
        return 1.0
    if t >= 3:
        return 0.0
    pt = math.pi * t
    return math.sin(pt) * math.sin(pt / 3) / (pt * pt / 3)


@_helper()
def _weights(mode: int, frac: float, scale: float, n: int, out: np.ndarray) -> None:
    """Kernel weights of the taps ``k = 1 - n .. n`` around a point ``frac`` past a pixel centre."""
    if mode == LANCZOS and scale == 1.0 and frac > 0:  # 3 sines per axis instead of 12
        s1, s3, c3 = math.sin(math.pi * frac), math.sin(math.pi * frac / 3), math.cos(math.pi * frac / 3)
        for k in range(-2, 4):  # sin(pi (k - f)) = -(-1)^k sin(pi f); sin(pi (k - f) / 3) by angle sums
            t = math.pi * (k - frac)
            a = -s1 if k % 2 == 0 else s1
            b = math.sin(math.pi * k / 3) * c3 - math.cos(math.pi * k / 3) * s3
            out[k + 2] = a * b / (t * t / 3)
        return
    for k in range(1 - n, n + 1):
        out[k + n - 1] = _kernel(mode, (k - frac) * scale)


@_helper(forceinline=True)
def _four(mode: int, t: float) -> tuple[float, float, float, float]:
    """Closed-form weights of the 4 taps around a point ``t`` past a pixel centre, at scale 1 (cubic:
    Keys, a = -0.5; cubic_spline: the cubic B-spline)."""
    if mode == CUBIC:
        return (
            ((-0.5 * t + 1.0) * t - 0.5) * t,
            (1.5 * t - 2.5) * t * t + 1,
            ((-1.5 * t + 2.0) * t + 0.5) * t,
            (0.5 * t - 0.5) * t * t,
        )
    s = 1 - t
    t3 = t * t * t
    return s * s * s / 6, (3 * t3 - 6 * t * t + 4) / 6, (-3 * t3 + 3 * t * t + 3 * t + 1) / 6, t3 / 6


@_helper(boundscheck=False)
def _full(has) -> bool:
    """Whether every pixel of a block row has a value."""
    empty = 0
    for x in range(has.shape[0]):
        empty += has[x] == 0
    return empty == 0


@_helper(boundscheck=False, forceinline=True)
def _has_value(data, i: int, j: int, n: int, value: float) -> bool:
    """Whether ``value`` is among the n x n pixels from row ``i``, column ``j``."""
    found = False
    for a in range(i, i + n):
        for b in range(j, j + n):
            found |= data[a, b] == value
    return found


@_helper(boundscheck=False, forceinline=True)
def _all_valid(data, i: int, j: int, n: int, nodata: float, use_nodata: bool) -> bool:
    """Whether the n x n pixels from row ``i``, column ``j`` are all inside ``data`` and valid."""
    h, w = data.shape
    if i < 0 or j < 0 or i + n > h or j + n > w:
        return False
    for a in range(i, i + n):
        for b in range(j, j + n):
            if not _valid(data[a, b], nodata, use_nodata):
                return False
    return True


@_helper(boundscheck=False, forceinline=True)
def _dot4(data, i, j, a0, a1, a2, a3) -> float:
    """Row ``i``'s taps ``j - 1 .. j + 2`` weighted by a0 .. a3."""
    return a0 * data[i, j - 1] + a1 * data[i, j] + a2 * data[i, j + 1] + a3 * data[i, j + 2]


@_helper()
def _unit_weights(mode: int, t: float, out: np.ndarray) -> None:
    """Closed-form weights of the taps around a point ``t`` past a pixel centre, at scale 1 (bilinear:
    2 taps; cubic, cubic_spline: 4)."""
    if mode == BILINEAR:
        out[0], out[1] = 1 - t, t
    else:
        out[0], out[1], out[2], out[3] = _four(mode, t)


@_helper()
def _accumulate(data, nodata, use_nodata, i0, j0, wu, wv, nu, nv) -> tuple[float, float]:
    """(weighted sum, total weight) of the valid taps ``1 - n .. n`` around pixel (i0, j0)."""
    h, w = data.shape
    acc = 0.0
    total = 0.0
    for a in range(2 * nv):
        ii = i0 + a + 1 - nv
        if ii < 0 or ii >= h:
            continue
        wa = wv[a]
        for b in range(2 * nu):
            jj = j0 + b + 1 - nu
            if jj < 0 or jj >= w:
                continue
            s = data[ii, jj]
            if _valid(s, nodata, use_nodata):
                acc += wa * wu[b] * s
                total += wa * wu[b]
    return acc, total


@intrinsic
def _prefetch(typingctx, array, index):
    """A hint to the CPU to fetch ``array[index]``'s cache line (LLVM's prefetch: read, keep in all cache
    levels); no effect on results."""

    def codegen(context, builder, signature, args):
        kind = signature.args[0]
        view = context.make_array(kind)(context, builder, args[0])
        at = cgutils.get_item_pointer(context, builder, kind, view, [args[1]], wraparound=False)
        byte = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        hint = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32]), "llvm.prefetch.p0i8"
        )
        builder.call(hint, [builder.bitcast(at, byte), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


@_helper(boundscheck=False)
def _prefetch_row(src, cols, rows, h, w, n) -> None:
    """Prefetch the source lines a block row will read: at every 8th point, its row and ``n`` rows either
    side (a kernel's taps). Rotated rows cross a source row every few pixels, too many streams for the
    hardware prefetcher; issued a row ahead, the lines arrive while the current row is sampled."""
    for x in range(0, cols.shape[0], 8):
        c, r = cols[x], rows[x]
        if r >= 0 and r < h and c >= 0 and c < w:
            for a in range(max(int(r) - n, 0), min(int(r) + n, h - 1) + 1):
                # numba's stubs type @intrinsic as taking its typing context; numba passes it
                _prefetch(src, np.int64(a) * w + np.int64(c))  # type: ignore[call-arg]


@_helper(boundscheck=False)
def _flat_row(cols, rows, h, w, flat) -> None:
    """The flat index of the source pixel containing each point of a row (-1 outside the window);
    branch-free, so it vectorises."""
    for x in range(cols.shape[0]):
        c, r = cols[x], rows[x]
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)  # NaN fails too
        # truncation is floor (>= 0); numba multiplies int32s in int64, so an int64 ``flat`` is exact
        flat[x] = np.int32(r) * np.int32(w) + np.int32(c) if inside else -1


@_helper(boundscheck=False, inline="always")
def _gather_row(src, flat, got, nodata, use_nodata, out, y, index, only_empty, lo, hi) -> int:
    """Write ``src[flat]`` into columns ``lo`` .. ``hi`` - 1 of block row ``y`` of ``out`` = (values, has,
    winner) where ``flat`` >= 0 and the value is valid (``only_empty``: where the row has none yet);
    returns how many it wrote. The gather alone first (into ``got``), then the checks and writes,
    branch-free so that they vectorise; the winner (unless ``out`` has an empty placeholder) in a loop of
    its own, before them."""
    values, has, winner = out[0][y][lo:hi], out[1][y][lo:hi], out[2]
    fl, gv = flat[lo:hi], got[lo:hi]  # views from 0: no wraparound of negative indices, so it vectorises
    for x in range(fl.shape[0]):
        gv[x] = src[max(fl[x], 0)]
    any_value, anywhere = not use_nodata, not only_empty
    if winner.shape == out[0].shape:
        who = winner[y][lo:hi]
        for x in range(fl.shape[0]):
            v = gv[x]
            ok = (fl[x] >= 0) & (v == v) & (any_value | (v != nodata)) & (anywhere | (has[x] == 0))
            who[x] = index if ok else who[x]
    written = 0
    for x in range(fl.shape[0]):
        v = gv[x]
        ok = (fl[x] >= 0) & (v == v) & (any_value | (v != nodata)) & (anywhere | (has[x] == 0))
        values[x] = v if ok else values[x]
        has[x] |= np.uint8(ok)  # a select would not vectorise
        written += np.int32(ok)  # type: ignore[assignment]  # numba keeps int64; numpy stubs: int32
    return written


@_helper(boundscheck=False, inline="always")
def _grid_flat_row(m, state, y, inv, x0, y0, h, w, flat) -> tuple[int, int]:
    """``_row`` and ``_flat_row`` in one, for a control grid: the flat index of the source
    pixel containing each pixel of block row ``y`` (-1 outside the window), without the coordinates.
    Returns the columns (lo, hi) that may map into the window: beyond them ``flat`` is not written.
    A control interval whose cubics stay beyond the window (``_beyond``) is filled with -1 uncomputed."""
    ci, ks, tx, ty = m[4], state[6], state[4], state[5]
    _grid_row(m, state, y, inv, x0, y0)
    n, wi = flat.shape[0], np.int32(w)
    lo, hi = n, 0
    for b in range(len(ci) - 1):
        base, span = ci[b], ci[b + 1] - ci[b]
        k0 = 0 if base == 0 and b == 0 else max(1, -base)  # as ``_row``: the block's pixels only
        k1 = min(span, n - 1 - base)
        if k1 < k0:  # an interval beyond the block (it holds a cubic's stencil)
            continue
        c = state[8][b]
        c0, c1, c2, c3, r0, r1, r2, r3 = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
        seg, offs = flat[base + k0 : base + k1 + 1], ks[k0 : k1 + 1]  # no wraparound: vector stores
        if _beyond(c0, tx[b + 1], c2, c3, span, w) or _beyond(r0, ty[b + 1], r2, r3, span, h):
            seg[:] = -1  # (between intervals that map inside; beyond them the caller does not look)
            continue
        lo, hi = min(lo, base + k0), base + k1 + 1
        if _within(c0, tx[b + 1], c2, c3, span, w) and _within(r0, ty[b + 1], r2, r3, span, h):
            for k in range(k1 - k0 + 1):  # the whole interval inside the window: no checks
                t = offs[k]
                row, col = r0 + t * (r1 + t * (r2 + t * r3)), c0 + t * (c1 + t * (c2 + t * c3))
                seg[k] = np.int32(row) * wi + np.int32(col)  # as ``_flat``
        else:
            for k in range(k1 - k0 + 1):
                t = offs[k]
                seg[k] = _flat(c0 + t * (c1 + t * (c2 + t * c3)), r0 + t * (r1 + t * (r2 + t * r3)), h, w)
        if k0 <= k1 == span:  # the next control column: its own values
            seg[span - k0] = _flat(tx[b + 1], ty[b + 1], h, w)
    return lo, max(lo, hi)


@_helper(boundscheck=False, forceinline=True)
def _span(m, state, h, w, n) -> tuple[int, int]:
    """The columns (lo, hi) of an ``n``-pixel block row of a control grid, just laid out by ``_grid_row``,
    that may map into an (``h``, ``w``) window: those of its control intervals not ``_beyond`` it."""
    ci, coef, tx, ty = m[4], state[8], state[4], state[5]
    lo, hi = n, 0
    for b in range(len(ci) - 1):
        base, span = ci[b], ci[b + 1] - ci[b]
        k0 = 0 if base == 0 and b == 0 else max(1, -base)  # as ``_grid_flat_row``
        k1 = min(span, n - 1 - base)
        c = coef[b]
        if (
            k1 < k0
            or _beyond(c[0], tx[b + 1], c[2], c[3], span, w)
            or _beyond(c[4], ty[b + 1], c[6], c[7], span, h)
        ):
            continue
        lo, hi = min(lo, base + k0), base + k1 + 1
    return lo, max(lo, hi)


@_helper(forceinline=True)
def _beyond(v0: float, v1: float, c2: float, c3: float, s: float, n: int) -> bool:
    """Whether the cubic of ``_within`` stays below 0 or at or above ``n`` over t in [0, s] (False for
    NaN): its chord does, farther than the cubic can leave it."""
    bow = 1e-3 + 0.25 * s * s * (abs(c2 + s * c3) + abs(c3) * s)
    return (v0 + bow < 0 and v1 + bow < 0) or (v0 - bow >= n and v1 - bow >= n)  # each False for NaN


@_helper(forceinline=True)
def _within(v0: float, v1: float, c2: float, c3: float, s: float, n: int) -> bool:
    """Whether the cubic ``v0 + t (c1 + t (c2 + t c3))`` from ``v0`` to ``v1`` over t in [0, s] stays
    within [0, n) (False for NaN): it leaves the chord by t (t - s) (alpha + beta t), alpha = c2 + s c3,
    beta = c3 (``_grid_row``), at most s^2 / 4 (|alpha| + |beta| s), plus a margin for rounding."""
    bow = 1e-3 + 0.25 * s * s * (abs(c2 + s * c3) + abs(c3) * s)
    return v0 - bow >= 0 and v1 - bow >= 0 and v0 + bow < n and v1 + bow < n  # each False for NaN


@_helper(forceinline=True)
def _flat(c: float, r: float, h: int, w: int) -> np.int32:
    """The flat index of the source pixel holding (``c``, ``r``) in an (``h``, ``w``) window, -1 outside."""
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)  # NaN fails too
    return np.int32(r) * np.int32(w) + np.int32(c) if inside else np.int32(-1)


@_helper(boundscheck=False, inline="always")
def _prefetch_flat(src, flat, lo, hi) -> None:
    """Prefetch the source lines of a block row's flat indices ``lo`` .. ``hi`` - 1 (every 8th), as
    ``_prefetch_row``."""
    for x in range(lo, hi, 8):
        if flat[x] >= 0:
            _prefetch(src, flat[x])  # type: ignore[call-arg]  # as in _prefetch_row


@_helper(boundscheck=False)
def _kernel_value(data, nodata, use_nodata, c, r, mode, unit, scale, nu, nv, wu, wv) -> float:
    """An interpolating kernel at source pixel coordinates (c, r), tap by tap, skipping invalid taps and
    renormalising (``unit``: closed-form weights at scale 1); NaN where the containing pixel is invalid
    or outside, or no tap carries weight."""
    h, w = data.shape
    if not (r >= 0 and r < h and c >= 0 and c < w):  # NaN fails too
        return np.nan
    if not _valid(data[np.intp(r), np.intp(c)], nodata, use_nodata):  # truncation is floor: >= 0
        return np.nan
    u, v = c - 0.5, r - 0.5
    j0, i0 = int(math.floor(u)), int(math.floor(v))
    if unit and mode == CUBIC and not _all_valid(data, i0 - 1, j0 - 1, 4, nodata, use_nodata):
        mode, nu, nv = BILINEAR, 1, 1  # GDAL's 4-sample cubic is bilinear where a tap is missing
    if unit:
        _unit_weights(mode, u - j0, wu)
        _unit_weights(mode, v - i0, wv)
    else:
        _weights(mode, u - j0, scale[0], nu, wu)
        _weights(mode, v - i0, scale[1], nv, wv)
    if not use_nodata and i0 >= nv - 1 and i0 + nv < h and j0 >= nu - 1 and j0 + nu < w:  # taps inside
        acc, su, sv = 0.0, 0.0, 0.0
        for b in range(2 * nu):
            su += wu[b]
        for a in range(2 * nv):
            i = i0 + a + 1 - nv
            part = 0.0
            for b in range(2 * nu):
                part += wu[b] * data[i, j0 + b + 1 - nu]
            acc += wv[a] * part
            sv += wv[a]
        if acc == acc and abs(su * sv) > 1e-5:  # else a NaN tap: skip it, below
            return acc / (su * sv)
    acc, weight = _accumulate(data, nodata, use_nodata, i0, j0, wu, wv, nu, nv)
    return acc / weight if abs(weight) > 1e-5 else np.nan


@_helper(boundscheck=False)
def _kernel_row(
    data, nodata, use_nodata, cols, rows, mode, unit, scale, nu, nv, wu, wv, values, has, winner, index,
    only_empty,
) -> int:  # fmt: skip
    """An interpolating kernel for one block row. Points whose taps are all inside the window and valid
    take a closed-form path at scale 1 (bilinear: 2 x 2 taps, cubic and cubic_spline: 4 x 4); a NaN or
    nodata tap, the window's edge or a widened kernel go tap by tap (renormalised over the valid taps)."""
    h, w = data.shape
    track = winner.shape[0] == values.shape[0]
    fast = unit
    lo = float(nu - 1)  # the taps of a point u past a pixel centre: floor(u) + 1 - n .. floor(u) + n
    written = 0
    for x in range(cols.shape[0]):
        if only_empty and has[x] > 0:
            continue
        c, r = cols[x], rows[x]
        u, v = c - 0.5, r - 0.5
        value = np.nan
        if fast and u >= lo and u < w - nu and v >= lo and v < h - nv:  # every tap inside (not NaN)
            j0, i0 = int(u), int(v)  # floor: both >= 0
            fu, fv = u - j0, v - i0
            if mode == BILINEAR:
                p00, p01, p10, p11 = data[i0, j0], data[i0, j0 + 1], data[i0 + 1, j0], data[i0 + 1, j0 + 1]
                if not use_nodata or (p00 != nodata) & (p01 != nodata) & (p10 != nodata) & (p11 != nodata):
                    top = p00 * (1 - fu) + p01 * fu
                    bottom = p10 * (1 - fu) + p11 * fu
                    value = top * (1 - fv) + bottom * fv
            elif use_nodata and _has_value(data, i0 - 1, j0 - 1, 4, nodata):  # a nodata tap: tap by tap
                pass
            else:  # 4 x 4 taps, weights in registers
                a0, a1, a2, a3 = _four(mode, fu)
                b0, b1, b2, b3 = _four(mode, fv)
                value = (
                    b0 * _dot4(data, i0 - 1, j0, a0, a1, a2, a3)
                    + b1 * _dot4(data, i0, j0, a0, a1, a2, a3)
                    + b2 * _dot4(data, i0 + 1, j0, a0, a1, a2, a3)
                    + b3 * _dot4(data, i0 + 2, j0, a0, a1, a2, a3)
                ) / ((a0 + a1 + a2 + a3) * (b0 + b1 + b2 + b3))
        if value != value:  # a NaN tap (the containing pixel's is NaN too), the edge, nodata, scaled
            if not (r >= 0 and r < h and c >= 0 and c < w):  # outside the window (NaN too): no value
                continue
            value = _kernel_value(data, nodata, use_nodata, c, r, mode, unit, scale, nu, nv, wu, wv)
            if value != value:
                continue
        values[x] = value
        has[x] = 1
        if track:
            winner[x] = index
        written += 1
    return written


def _axes(m: tuple, inv, x0: float, y0: float, bh: int, bw: int) -> tuple[np.ndarray, np.ndarray] | None:
    """For a mapping without rotation (same CRS or separable, north-up grids on both sides), where the
    source column depends only on the block column and the source row only on the block row: those
    columns (bw,) and rows (bh,), the values ``_row`` gives; else None. Called per block and source:
    few numpy calls."""
    kind, gx, gy = m[0], m[1], m[2]
    if inv[1] != 0 or inv[3] != 0 or kind == GRID or (kind == LINEAR and (gx[0, 1] != 0 or gy[0, 0] != 0)):
        return None
    if kind == SEPARABLE:  # ``_row``'s arithmetic: x per column, y per row
        cols = inv[0] * gx[0, :bw] + inv[1] * gy[0, 0] + inv[2] - x0
        rows = inv[3] * gx[0, 0] + inv[4] * gy[0, :bh] + inv[5] - y0  # each row's first pixel
        return cols, rows
    # LINEAR: ``_row``'s arithmetic, less its terms that are exactly zero without rotation
    px = np.arange(gx[0, 3], gx[0, 3] + bw - 0.5)  # the target columns
    px *= gx[0, 0]
    px += gx[0, 2]
    px += gy[0, 3] * gx[0, 1]
    cols = px * inv[0]
    cols += inv[2]
    cols -= x0
    py = np.arange(gy[0, 3], gy[0, 3] + bh - 0.5)  # the target rows
    py *= gy[0, 1]
    py += gy[0, 2] + gx[0, 3] * gy[0, 0]
    rows = py * inv[4]
    rows += inv[5]
    rows -= y0
    return cols, rows


@_helper(boundscheck=False)
def _taps(mode, unit, scale, n, coords, size) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per position along one axis: the first tap's index (-1: a tap falls outside ``size``), the 2n
    weights and their sum, as ``_kernel_value`` computes them."""
    first = np.full(len(coords), -1, dtype=np.int64)
    weights = np.zeros((len(coords), max(2 * n + 1, 4)))  # at least 4: the unrolled loops read 4
    total = np.zeros(len(coords))
    for x in range(len(coords)):
        u = coords[x] - 0.5
        if not (u >= n - 1 and u < size - n):  # NaN fails too
            continue
        j0 = int(u)
        if unit:
            _unit_weights(mode, u - j0, weights[x])
        else:
            _weights(mode, u - j0, scale, n, weights[x])
        first[x] = j0 + 1 - n
        for b in range(2 * n):
            total[x] += weights[x, b]
    return first, weights, total


@_entry(boundscheck=False)
def _nearest_axes(src, nodata, use_nodata, jx, base, out, index, only_empty, lo, hi) -> int:
    """Nearest for mappings without rotation (``_axes``): ``jx`` the source column of each block column
    and ``base`` the flat index of each block row's source row (-1: outside the window; block columns
    ``lo`` .. ``hi`` - 1 hold those inside): each row gathered from its source row by ``_gather_row``, ``jx``
    as its flat indices (branch-free, so it vectorises)."""
    got = np.empty(jx.shape[0], src.dtype)
    written = 0
    for y in range(out[0].shape[0]):
        if base[y] >= 0 and not (only_empty and _full(out[1][y][lo:hi])):
            row = src[base[y] :]
            written += _gather_row(row, jx, got, nodata, use_nodata, out, y, index, only_empty, lo, hi)
    return written


@_entry(boundscheck=False)
def _kernel_axes(
    data, nodata, use_nodata, cols, rows, mode, unit, scale, nu, nv, out, index, only_empty
) -> int:
    """An interpolating kernel for mappings without rotation (``_axes``): source indices and kernel
    weights are computed once per block column and once per block row, not per pixel."""
    values, has, winner = out
    bh, bw = values.shape
    h, w = data.shape
    track = winner.shape == values.shape
    wu, wv = np.empty(2 * nu + 1), np.empty(2 * nv + 1)
    written = 0
    fx, wx, sx = _taps(mode, unit, scale[0], nu, cols, w)
    fy, wy, sy = _taps(mode, unit, scale[1], nv, rows, h)
    ring = 2 * nv  # the source rows' horizontal passes, kept by row index modulo 2 nv
    across, tag = np.empty((ring, bw)), np.full(ring, -1, dtype=np.int64)
    line = np.empty(bw)
    inside = (cols >= 0) & (cols < w)  # columns whose containing pixel is in the window (NaN fails too)
    for y in range(bh):
        if not (rows[y] >= 0 and rows[y] < h) or (only_empty and _full(has[y])):  # nothing to do here
            continue
        i0 = fy[y]
        if i0 >= 0:  # every vertical tap inside: separable, one row pass per source row, then down
            for a in range(ring):
                if tag[(i0 + a) % ring] != i0 + a:
                    _across(data, i0 + a, fx, wx, nu, nodata, use_nodata, across[(i0 + a) % ring])
                    tag[(i0 + a) % ring] = i0 + a
            line[:] = 0.0
            for a in range(ring):
                wa, part = wy[y, a], across[(i0 + a) % ring]
                for x in range(bw):
                    line[x] += wa * part[x]
            for x in range(bw):
                total = sx[x] * sy[y]
                line[x] = line[x] / total if abs(total) > 1e-5 else np.nan
        for x in range(bw):
            if only_empty and has[y, x] > 0:
                continue
            value = line[x] if i0 >= 0 else np.nan
            if value != value:  # a NaN tap, the window's edge, nodata: tap by tap
                if not inside[x]:
                    continue
                c, r = cols[x], rows[y]
                value = _kernel_value(data, nodata, use_nodata, c, r, mode, unit, scale, nu, nv, wu, wv)
                if value != value:
                    continue
            values[y, x] = value
            has[y, x] = 1
            if track:
                winner[y, x] = index
            written += 1
    return written


@_entry(boundscheck=False)
def _kernel_rows(
    data, src, nodata, use_nodata, m, state, inv, window, mode, unit, scale, nu, nv, out, index, only_empty
) -> int:
    """An interpolating kernel over a rotated block, row by row (``_kernel_row``); the next row's
    coordinates first, to prefetch its source lines. ``index`` < 0: a dry run (``any_inside``), which
    reads and writes nothing and returns 1 at the first pixel (still empty, with ``only_empty``) whose
    centre maps into the window, else 0."""
    values, count, winner = out
    bh, bw = values.shape
    h, w = data.shape
    wu, wv = np.empty(2 * nu + 1), np.empty(2 * nv + 1)
    track = winner.shape == values.shape
    written = 0
    cols, rows, cols_next, rows_next = np.empty(bw), np.empty(bw), np.empty(bw), np.empty(bw)
    lo = hi = 0
    for y in range(-1, bh):  # (no call with a constant row: numba would compile ``_row`` once more for it)
        lo_next = hi_next = 0
        if y + 1 < bh:
            _row(m, state, y + 1, inv, window[2], window[0], cols_next, rows_next)
            lo_next, hi_next = _span(m, state, h, w, bw) if m[0] == GRID else (0, bw)
            c_next, r_next = cols_next[lo_next:hi_next], rows_next[lo_next:hi_next]
            if index < 0:  # dry: the coordinates only
                if _any_centre(c_next, r_next, h, w, count[y + 1][lo_next:hi_next], only_empty):
                    return 1
                continue
            _prefetch_row(src, c_next, r_next, h, w, nv)
        # (a full row: all have values)
        if y >= 0 and index >= 0 and lo < hi and not (only_empty and _full(count[y][lo:hi])):
            who = winner[y][lo:hi] if track else winner.ravel()[:0]  # (empty: records no winner)
            written += _kernel_row(
                data, nodata, use_nodata, cols[lo:hi], rows[lo:hi], mode, unit, scale, nu, nv, wu, wv,
                values[y][lo:hi], count[y][lo:hi], who, index, only_empty,
            )  # fmt: skip
        cols, cols_next, rows, rows_next, lo, hi = cols_next, cols, rows_next, rows, lo_next, hi_next
    return written


def _nearest_block(src, h, w, nodata, use_nodata, m, inv, window, out, index, only_empty) -> int:
    """``_nearest_grid`` (or ``_nearest_rows``) over a block, with row buffers of the flat index type an
    (``h``, ``w``) window needs (``index`` < 0: a dry run, on a control grid only)."""
    bh, bw = out[0].shape
    kind = np.int32 if h * w < 2**31 else np.int64  # int32 indices vectorise better
    flats = (np.empty(bw, dtype=kind), np.empty(bw, dtype=kind))
    block = _nearest_grid if m[0] == GRID else _nearest_rows
    state = row_state(m, bh)
    return int(block(src, h, w, nodata, use_nodata, m, state, inv, window, out, index, only_empty, flats))


def sample_into(data, nodata, use_nodata, m, inv, window, mode, scale, out, index, only_empty) -> int:
    """Sample one source window into ``out`` = (values, has, winner) where it has a valid value
    (``only_empty``: only pixels without one yet, as ``first``); returns how many pixels it wrote. A
    point gets a value only where the source pixel containing it is valid. ``scale``: GDAL's (x, y)
    kernel scale; ``winner`` gets ``index`` unless it is an empty (0 x 0) placeholder.

    Picks the compiled loop the case needs (nearest or a kernel; without rotation, on a control grid or
    rotated), so that numba compiles each only when a request first needs it, and small."""
    values = out[0]
    bh, bw = values.shape
    h, w = data.shape
    nodata = float(nodata)
    src = np.ascontiguousarray(data).ravel()  # a view unless ``data`` is not contiguous
    axes = _axes(m, inv, window[2], window[0], bh, bw)
    if mode == NEAREST:
        if axes is not None:
            cols, rows = axes
            jx, base = np.full(bw, -1, dtype=np.int64), np.full(bh, -1, dtype=np.int64)
            inside_c, inside_r = (cols >= 0) & (cols < w), (rows >= 0) & (rows < h)  # NaN fails too
            jx[inside_c] = cols[inside_c].astype(np.int64)  # truncation is floor (>= 0)
            base[inside_r] = rows[inside_r].astype(np.int64) * w
            at = np.flatnonzero(inside_c)
            if not len(at):
                return 0
            lo, hi = int(at[0]), int(at[-1]) + 1
            return int(_nearest_axes(src, nodata, use_nodata, jx, base, out, index, only_empty, lo, hi))
        if src.shape[0] == 0:  # an empty window: nothing to gather (the gather reads src[0] unchecked)
            return 0
        return _nearest_block(src, h, w, nodata, use_nodata, m, inv, window, out, index, only_empty)
    nu = int(math.ceil(RADIUS[mode] / scale[0]))  # taps 1 - n .. n around the point, per axis
    nv = int(math.ceil(RADIUS[mode] / scale[1]))
    unit = mode != LANCZOS and scale[0] == 1.0 and scale[1] == 1.0  # closed-form weights
    if axes is not None:
        cols, rows = axes
        return int(
            _kernel_axes(
                data, nodata, use_nodata, cols, rows, mode, unit, scale, nu, nv, out, index, only_empty
            )
        )
    state = row_state(m, bh)
    return int(
        _kernel_rows(
            data,
            src,
            nodata,
            use_nodata,
            m,
            state,
            inv,
            window,
            mode,
            unit,
            scale,
            nu,
            nv,
            out,
            index,
            only_empty,
        )
    )


@_entry(boundscheck=False)
def _nearest_grid(src, h, w, nodata, use_nodata, m, state, inv, window, out, index, only_empty, flats):
    """Nearest over a block on a control grid, row by row: each row's flat source indices straight from
    the grid (``_grid_flat_row``), then the gather. The next row's indices come first, to prefetch its
    source lines. Returns how many pixels it wrote. ``index`` < 0: a dry run (``any_inside``), which
    writes nothing and returns 1 at the first pixel (still empty, with ``only_empty``) mapping into the
    window, else 0."""
    flat, flat_next = flats
    got = np.empty(flat.shape[0], src.dtype)
    written = lo = hi = 0
    for y in range(-1, out[0].shape[0]):
        lo_next = hi_next = 0
        if y + 1 < out[0].shape[0]:
            # one call site: numba types and inlines _grid_flat_row once for each
            lo_next, hi_next = _grid_flat_row(m, state, y + 1, inv, window[2], window[0], h, w, flat_next)
            if index < 0:  # dry: the flat indices only (``src`` is not read)
                if _any_flat(flat_next, out[1][y + 1], only_empty, lo_next, hi_next):
                    return 1
                continue
            _prefetch_flat(src, flat_next, lo_next, hi_next)
        if y >= 0 and index >= 0 and lo < hi and not (only_empty and _full(out[1][y][lo:hi])):
            written += _gather_row(src, flat, got, nodata, use_nodata, out, y, index, only_empty, lo, hi)
        flat, flat_next, lo, hi = flat_next, flat, lo_next, hi_next
    return written


@_helper(boundscheck=False, forceinline=True)
def _any_centre(cols, rows, h, w, has, only_empty) -> bool:
    """Whether any point of a row lies in an (``h``, ``w``) window (where ``has`` is 0, with
    ``only_empty``); NaN does not."""
    for x in range(cols.shape[0]):  # noqa: SIM110  (numba compiles no any() of a generator)
        r, c = rows[x], cols[x]
        if r >= 0 and r < h and c >= 0 and c < w and not (only_empty and has[x] > 0):
            return True
    return False


@_helper(boundscheck=False, forceinline=True)
def _any_flat(flat, has, only_empty, lo, hi) -> bool:
    """Whether any flat index of row columns ``lo`` .. ``hi`` - 1 is inside the window (where ``has`` is 0,
    with ``only_empty``)."""
    for x in range(lo, hi):  # noqa: SIM110  (numba compiles no any() of a generator)
        if flat[x] >= 0 and not (only_empty and has[x] > 0):
            return True
    return False


@_entry(boundscheck=False)
def _nearest_rows(src, h, w, nodata, use_nodata, m, state, inv, window, out, index, only_empty, flats):
    """``_nearest_grid`` for rotated affine or separable mappings: each row's coordinates (``_row``),
    then their flat indices."""
    flat, flat_next = flats
    bw = flat.shape[0]
    cols, rows, got = np.empty(bw), np.empty(bw), np.empty(bw, src.dtype)
    written = 0
    for y in range(-1, out[0].shape[0]):
        if y + 1 < out[0].shape[0]:
            _row(m, state, y + 1, inv, window[2], window[0], cols, rows)
            _flat_row(cols, rows, h, w, flat_next)
            _prefetch_flat(src, flat_next, 0, bw)
        if y >= 0:
            written += _gather_row(src, flat, got, nodata, use_nodata, out, y, index, only_empty, 0, bw)
        flat, flat_next = flat_next, flat
    return written


def any_inside(m, inv, window, count, only_empty, like=None) -> bool:
    """Whether any pixel (still empty, with ``only_empty``) maps into the window: read it only then.
    Without rotation, per block column and row in numpy; on a control grid, only the control intervals
    whose end points come near the window are walked pixel by pixel (between them a row is linear), with
    the same arithmetic as ``_row``. ``like``: (source dtype, ``out``, kernel) of a request's sampling into
    ``out`` (``sample_into``; ``out[1]`` is ``count``; kernel: None for nearest, else its (mode, unit,
    scale, nu, nv)): on a control grid, that sampling's own loop runs dry instead (the same coordinates; one
    compiled loop less for the request)."""
    bh, bw = count.shape
    axes = _axes(m, inv, 0.0, 0.0, bh, bw)
    if axes is not None:
        cols, rows = axes
        in_c = np.flatnonzero((cols >= window[2]) & (cols < window[3]))  # NaN fails too
        in_r = np.flatnonzero((rows >= window[0]) & (rows < window[1]))
        if not (len(in_c) and len(in_r)):
            return False
        if not only_empty:
            return True
        r0, r1, c0, c1 = in_r[0], in_r[-1] + 1, in_c[0], in_c[-1] + 1
        if r1 - r0 == len(in_r) and c1 - c0 == len(in_c):  # ranges, as monotone axes give: a view
            return bool(count[r0:r1, c0:c1].min() == 0)
        return bool(count[np.ix_(in_r, in_c)].min() == 0)
    if m[0] == GRID and like is not None:
        h, w = int(window[1] - window[0]), int(window[3] - window[2])
        dtype, out, kernel = like
        if h <= 0 or w <= 0:
            return False
        if kernel is None:  # of the source's dtype: the gather's own compiled loop
            return bool(
                _nearest_block(np.zeros(1, dtype), h, w, 0.0, False, m, inv, window, out, -1, only_empty)
            )
        data = np.empty((h, w), dtype)  # the window's shape; never read
        mode, unit, scale, nu, nv = kernel
        state = row_state(m, bh)
        args = (data, data.ravel(), 0.0, False, m, state, inv, window, mode, unit, scale, nu, nv, out)
        return bool(_kernel_rows(*args, -1, only_empty))
    if m[0] == GRID:
        return bool(_any_inside_grid(m, row_state(m, bh), inv, window, count, only_empty))
    return bool(_any_inside_rows(m, row_state(m, bh), inv, window, count, only_empty))


@_entry()
def _any_inside_rows(m, state, inv, window, count, only_empty) -> bool:
    """``any_inside`` for rotated affine or separable mappings, row by row."""
    bh, bw = count.shape
    cols, rows = np.empty(bw), np.empty(bw)
    for y in range(bh):
        _row(m, state, y, inv, 0.0, 0.0, cols, rows)
        if (
            m[0] == LINEAR
            and bw
            and (  # a straight row: beside the window if both its ends are
                _beside(rows[0], rows[bw - 1], window[0], window[1])
                or _beside(cols[0], cols[bw - 1], window[2], window[3])
            )
        ):
            continue
        for x in range(bw):
            if only_empty and count[y, x] > 0:
                continue
            r, c = rows[x], cols[x]
            if r >= window[0] and r < window[1] and c >= window[2] and c < window[3]:
                return True
    return False


@_helper(boundscheck=False)
def _across(data, i, first, weights, n, nodata, use_nodata, out) -> None:
    """Source row ``i`` weighted across each column's 2n taps (``_taps``); NaN where a tap is outside
    (``first`` < 0), NaN or nodata, so that the caller goes tap by tap there."""
    row = data[i]
    for x in range(out.shape[0]):
        j = first[x]
        if j < 0:
            out[x] = np.nan
        elif n == 1:  # bilinear, unrolled
            out[x] = weights[x, 0] * row[j] + weights[x, 1] * row[j + 1]
        elif n == 2:  # cubic, cubic_spline, unrolled
            out[x] = (
                weights[x, 0] * row[j] + weights[x, 1] * row[j + 1]
                + weights[x, 2] * row[j + 2] + weights[x, 3] * row[j + 3]
            )  # fmt: skip
        else:
            acc = 0.0
            for b in range(2 * n):
                acc += weights[x, b] * row[j + b]
            out[x] = acc
        if use_nodata and j >= 0:
            for b in range(2 * n):
                if row[j + b] == nodata:
                    out[x] = np.nan


@_helper(forceinline=True)
def _beside(a: float, b: float, lo: float, hi: float) -> bool:
    """Whether both ends of an interval are below ``lo`` or both at or above ``hi`` (with a margin for the
    rounding of the points between them; False for NaN, which is walked)."""
    margin = 1e-3
    return (a < lo - margin and b < lo - margin) or (a >= hi + margin and b >= hi + margin)


@_entry(boundscheck=False)
def _any_inside_grid(m, state, inv, window, count, only_empty) -> bool:
    """``any_inside`` for a control grid mapping."""
    ci, ks = m[4], state[6]
    bh, bw = count.shape  # an area mapping has one more column (pixel corners) than the block
    for y in range(bh):
        _grid_row(m, state, y, inv, 0.0, 0.0)
        for b in range(len(ci) - 1):
            base, span = ci[b], ci[b + 1] - ci[b]
            c = state[8][b]
            c0, c1, c2, c3, r0, r1, r2, r3 = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
            ce, re = state[4][b + 1], state[5][b + 1]
            # beside the window if both ends are, with room for how far the cubic bows between them
            bow = 1e-3 + 0.25 * span * span * (abs(c2 + span * c3) + abs(c3) * span)
            bow_r = 1e-3 + 0.25 * span * span * (abs(r2 + span * r3) + abs(r3) * span)
            if _beside(r0, re, window[0] - bow_r, window[1] + bow_r) or _beside(
                c0, ce, window[2] - bow, window[3] + bow
            ):
                continue
            for k in range(max(0 if b == 0 else 1, -base), min(span, bw - 1 - base) + 1):
                if only_empty and count[y, base + k] > 0:
                    continue
                t = ks[k]
                c, r = c0 + t * (c1 + t * (c2 + t * c3)), r0 + t * (r1 + t * (r2 + t * r3))
                if k == span:
                    c, r = ce, re
                if r >= window[0] and r < window[1] and c >= window[2] and c < window[3]:
                    return True
    return False


@_helper()
def _edge(xa: float, ya: float, xb: float, yb: float, acc: np.ndarray) -> None:
    """Deposit one polygon edge into ``acc`` so that running sums along each row give the polygon's
    signed area in each unit cell (exact signed-area accumulation, as anti-aliasing rasterisers do)."""
    if ya == yb:
        return
    sign = 1.0
    if ya > yb:
        xa, ya, xb, yb, sign = xb, yb, xa, ya, -1.0
    slope = (xb - xa) / (yb - ya)
    x = xa
    for row in range(int(math.floor(ya)), min(int(math.ceil(yb)), acc.shape[0])):
        dy = min(row + 1.0, yb) - max(float(row), ya)  # the part of the edge inside this row
        x_next = x + slope * dy
        d = dy * sign
        lo, hi = min(x, x_next), max(x, x_next)
        lo_floor = math.floor(lo)
        first, last = int(lo_floor), int(math.ceil(hi))
        if last <= first + 1:  # within one column: split by where the edge's midpoint sits
            mid = 0.5 * (x + x_next) - lo_floor
            acc[row, first] += d * (1 - mid)
            acc[row, first + 1] += d * mid
        else:  # across columns: the area right of the edge, column by column
            inv = 1.0 / (hi - lo)
            f0 = lo - lo_floor
            a0 = 0.5 * inv * (1 - f0) * (1 - f0)
            f1 = hi - math.ceil(hi) + 1
            a_end = 0.5 * inv * f1 * f1
            acc[row, first] += d * a0
            if last == first + 2:
                acc[row, first + 1] += d * (1 - a0 - a_end)
            else:
                a1 = inv * (1.5 - f0)
                acc[row, first + 1] += d * (a1 - a0)
                for col in range(first + 2, last - 1):
                    acc[row, col] += d * inv
                a2 = a1 + (last - first - 3) * inv
                acc[row, last - 1] += d * (1 - a2 - a_end)
            acc[row, last] += d * a_end
        x = x_next


@_entry()
def _coverage(qx, qy, acc: np.ndarray) -> None:
    """The area of the quadrilateral (qx, qy: vertices in order, relative to the grid's origin, all >= 0)
    inside each unit cell of ``acc`` (rows x columns + 2, zeroed): exact, in one pass over the edges and
    one over the cells."""
    for k in range(4):
        k1 = k + 1 if k < 3 else 0
        _edge(qx[k], qy[k], qx[k1], qy[k1], acc)
    for row in range(acc.shape[0]):
        running = 0.0
        for col in range(acc.shape[1]):
            running += acc[row, col]
            acc[row, col] = min(abs(running), 1.0)


def green_room(shape: tuple[int, int]) -> np.ndarray:
    """Room for ``_prefix_rows``' running sums over a source window of ``shape``, allocated by numpy: its
    large arrays get transparent huge pages where the OS offers them, numba's do not, and first touching
    4 KiB pages is slow on a VM. Empty above ``GREEN_CELLS``."""
    h, w = shape
    return np.empty(2 * h * (w + 1) if h * (w + 1) <= GREEN_CELLS else 0)


@_helper(boundscheck=False)
def _prefix_rows(data, nodata, use_nodata, square, room) -> tuple[np.ndarray, np.ndarray]:
    """Running sums along each source row, (h, w + 1) each, in ``room`` (``green_room``): of the valid
    values (squared with ``square``) and of validity (empty when every pixel is valid). Linear between
    columns, they are the integrals from the row's start that ``_edge_integral`` walks."""
    h, w = data.shape
    n = h * (w + 1)
    sums = room[:n].reshape((h, w + 1))
    holes = False
    for i in range(h):
        run = 0.0
        sums[i, 0] = 0.0
        for j in range(w):
            s = data[i, j]
            ok = _valid(s, nodata, use_nodata)
            holes |= not ok
            run += (float(s) * float(s) if square else float(s)) if ok else 0.0
            sums[i, j + 1] = run
    if not holes:  # every pixel valid: validity's running sum is the column itself
        return sums, np.empty((0, 0))
    valid = room[n : 2 * n].reshape((h, w + 1))
    for i in range(h):
        count = 0.0
        valid[i, 0] = 0.0
        for j in range(w):
            count += 1.0 if _valid(data[i, j], nodata, use_nodata) else 0.0
            valid[i, j + 1] = count
    return sums, valid


@_helper(boundscheck=False, forceinline=True)
def _edge_integral(xa, ya, xb, yb, sums, valid) -> tuple[float, float]:
    """Green's theorem: the integral of F dy along the segment (xa, ya) -> (xb, yb) in source pixels, for F
    the row running sums of ``_prefix_rows`` (values, validity); over a closed polygon these give the
    integrals of the values and of the valid area inside it, exactly. Each row the segment crosses is
    split where it crosses a column, where F changes slope; NaN if an end is not finite."""
    if not (abs(xa) < 1e15 and abs(ya) < 1e15 and abs(xb) < 1e15 and abs(yb) < 1e15):  # NaN fails too
        return np.nan, np.nan
    if ya == yb:
        return 0.0, 0.0
    sign = 1.0
    if ya > yb:
        xa, ya, xb, yb, sign = xb, yb, xa, ya, -1.0
    h, w = sums.shape[0], sums.shape[1] - 1
    dxdy = (xb - xa) / (yb - ya)
    acc, area = 0.0, 0.0
    for row in range(max(int(math.floor(ya)), 0), min(int(math.ceil(yb)), h)):
        y1, y2 = max(ya, float(row)), min(yb, row + 1.0)
        if y2 <= y1:
            continue
        x1, x2 = xa + (y1 - ya) * dxdy, xa + (y2 - ya) * dxdy
        lo, hi = min(x1, x2), max(x1, x2)
        k0, k1 = max(int(math.floor(lo)) + 1, 0), min(int(math.ceil(hi)) - 1, w)  # columns crossed
        if k1 < k0:  # within one column (or beyond the row's ends): F is linear, take its midpoint
            f, g = _running(sums, valid, row, 0.5 * (lo + hi), w)
            acc += f * (y2 - y1)
            area += g * (y2 - y1)
            continue
        per = (y2 - y1) / (hi - lo)  # dy per unit of x
        a = lo
        for k in range(k0, k1 + 2):
            b = min(float(k), hi) if k <= k1 else hi
            f, g = _running(sums, valid, row, 0.5 * (a + b), w)
            acc += f * (b - a) * per
            area += g * (b - a) * per
            a = b
    return sign * acc, sign * area


@_helper(boundscheck=False, forceinline=True)
def _running(sums, valid, row, x, w) -> tuple[float, float]:
    """The row's running sums at x (0 before the row, the row's totals after it; clamped, not branched:
    it runs several times per pixel); ``valid`` is empty when every pixel is valid (its running sum is
    then x itself, clamped to the row)."""
    xc = min(max(x, 0.0), float(w))
    j = min(int(xc), w - 1)
    t = xc - j
    f = sums[row, j] + t * (sums[row, j + 1] - sums[row, j])
    if valid.shape[0] == 0:
        return f, xc
    return f, valid[row, j] + t * (valid[row, j + 1] - valid[row, j])


@_helper(forceinline=True)
def _crossing(a: float, b: float, back: float) -> float:
    """How far along a -> b (0 to 1) it crosses the integer ``back`` below the larger end's floor; 0 or 1
    when that integer is not between them."""
    d = b - a
    t = (np.floor(max(a, b)) - back - a) / (d if d != 0.0 else 1.0)  # np.floor stays float: vectorises
    return min(max(t, 0.0), 1.0) if d != 0.0 else 0.0


@_helper(forceinline=True)
def _piece(x0, y0, dx, dy, start, end, w, h) -> tuple[float, float, float, float]:
    """The piece ``start`` -> ``end`` (fractions of the edge) of an edge inside one source pixel: the flat
    index of the running sum left of its midpoint (``w``, ``h``: the window's size, as floats), the
    midpoint's fraction past it, its dy (0 outside the window's rows), and its integral of the valid
    area when every pixel is valid (the running sum of validity is then the clamped column)."""
    mid = 0.5 * (start + end)
    row = np.floor(y0 + mid * dy)  # indices in floats until the last step: AVX2 has no
    x = min(max(x0 + mid * dx, 0.0), w)  # vector conversion between float64 and int64
    j = min(np.floor(x), w - 1.0)
    piece = (end - start) * dy if (row >= 0.0) & (row < h) else 0.0
    return min(max(row, 0.0), h - 1.0) * (w + 1.0) + j, x - j, piece, piece * x


@_helper(boundscheck=False, forceinline=True)
def _keep(at, frac, dy, p: int, e: int, piece) -> float:
    """Store a ``_piece`` as piece ``p`` of edge ``e``; returns its valid area."""
    at[p, e], frac[p, e], dy[p, e] = np.int32(piece[0]), piece[1], piece[2]
    return piece[3]


@_helper(boundscheck=False)
def _short_pieces(xa, ya, xb, yb, h, w, at, frac, dy, area) -> None:
    """``_edge_integral`` in two stages for edges shorter than a pixel along both axes; this is the first,
    branch-free so that it vectorises. Such an edge crosses at most one row and one column: three
    pieces (some empty), each inside one pixel, where the running sum is linear, so a piece's integral is
    the running sum at its midpoint times its dy. Per piece (``_piece``): the flat index of the running
    sum, the fraction, the dy; per edge, ``area``: the integral of the valid area when every pixel is
    valid. Edge ``e`` runs from point ``e`` of (xa, ya) to point ``e`` of (xb, yb)."""
    wf, hf = float(w), float(h)
    for e in range(area.shape[0]):
        x0, y0, x1, y1 = xa[e], ya[e], xb[e], yb[e]
        dx, dy_ = x1 - x0, y1 - y0
        t1, t2 = _crossing(y0, y1, 0.0), _crossing(x0, x1, 0.0)
        lo, hi = min(t1, t2), max(t1, t2)
        area[e] = (
            _keep(at, frac, dy, 0, e, _piece(x0, y0, dx, dy_, 0.0, lo, wf, hf))
            + _keep(at, frac, dy, 1, e, _piece(x0, y0, dx, dy_, lo, hi, wf, hf))
            + _keep(at, frac, dy, 2, e, _piece(x0, y0, dx, dy_, hi, 1.0, wf, hf))
        )


@_helper(boundscheck=False)
def _two_pixel_pieces(xa, ya, xb, yb, h, w, at, frac, dy, cut, area) -> None:
    """``_short_pieces`` for edges shorter than two pixels along both axes (as when downsampling by up to
    two): they cross at most two rows and two columns, five pieces. First where it crosses them, sorted
    (``cut``: rows 1 to 4; row 0 holds 0 and row 5 holds 1), then a loop per piece: one loop for all
    five would not vectorise."""
    for e in range(area.shape[0]):
        x0, y0, x1, y1 = xa[e], ya[e], xb[e], yb[e]
        a, b = _crossing(y0, y1, 0.0), _crossing(y0, y1, 1.0)
        c, d = _crossing(x0, x1, 0.0), _crossing(x0, x1, 1.0)
        a, b, c, d = min(a, b), max(a, b), min(c, d), max(c, d)  # a sorting network
        a, c, b, d = min(a, c), max(a, c), min(b, d), max(b, d)
        b, c = min(b, c), max(b, c)
        cut[1, e], cut[2, e], cut[3, e], cut[4, e] = a, b, c, d
    area[:] = 0.0
    for p in range(5):  # (not a call per constant piece: numba would compile each)
        _piece_of(xa, ya, xb, yb, float(w), float(h), at, frac, dy, cut, area, p)


@_helper(boundscheck=False, forceinline=True)
def _piece_of(xa, ya, xb, yb, w, h, at, frac, dy, cut, area, p: int) -> None:
    """Piece ``p`` of every edge of ``_two_pixel_pieces``, adding its valid area to the edge's."""
    for e in range(area.shape[0]):
        x0, y0 = xa[e], ya[e]
        piece = _piece(x0, y0, xb[e] - x0, yb[e] - y0, cut[p, e], cut[p + 1, e], w, h)
        area[e] += _keep(at, frac, dy, p, e, piece)


@_helper(boundscheck=False)
def _sum_pieces(flat, at, frac, dy, out) -> None:
    """The second stage of ``_short_pieces``: each edge's pieces' running sums (``flat``: a ``_prefix_rows``
    array, raveled) at their midpoints, times their dy."""
    if at.shape[0] == 3:  # a constant count: the loop over pieces unrolls
        _sum_n(flat, at, frac, dy, out, 3)
    else:
        _sum_n(flat, at, frac, dy, out, 5)


@_helper(boundscheck=False, forceinline=True)
def _sum_n(flat, at, frac, dy, out, n: int) -> None:
    """``_sum_pieces`` for ``n`` pieces per edge."""
    for e in range(out.shape[0]):
        acc = 0.0
        for p in range(n):
            k = at[p, e]
            f = flat[k]
            acc += dy[p, e] * (f + frac[p, e] * (flat[k + 1] - f))
        out[e] = acc


@_helper(boundscheck=False)
def _edges(xa, ya, xb, yb, sums, valid, scratch, out, area) -> None:
    """``_edge_integral`` of the edges from point ``e`` of (xa, ya) to point ``e`` of (xb, yb),
    into ``out`` (values) and ``area`` (valid area): in two vectorising stages when all are shorter
    than two pixels along both axes (``scratch``: their buffers for three pieces and for five), else
    one by one."""
    h, w = sums.shape[0], sums.shape[1] - 1
    one = two = True  # all shorter than one pixel, than two (and-reductions: they vectorise)
    for e in range(out.shape[0]):
        x0, y0, x1, y1 = xa[e], ya[e], xb[e], yb[e]
        near = (abs(x0) < 1e9) & (abs(y0) < 1e9)  # finite and near the window; NaN fails too
        lx, ly = abs(x1 - x0), abs(y1 - y0)
        one &= near & (lx < 1.0) & (ly < 1.0)
        two &= near & (lx < 2.0) & (ly < 2.0)
    if not two:
        for e in range(out.shape[0]):
            out[e], area[e] = _edge_integral(xa[e], ya[e], xb[e], yb[e], sums, valid)
        return
    at, frac, dy, cut = scratch[0] if one else scratch[1]
    if one:
        _short_pieces(xa, ya, xb, yb, h, w, at, frac, dy, area)
    else:
        _two_pixel_pieces(xa, ya, xb, yb, h, w, at, frac, dy, cut, area)
    _sum_pieces(sums.reshape(-1), at, frac, dy, out)
    if valid.shape[0]:
        _sum_pieces(valid.reshape(-1), at, frac, dy, area)


@_entry(boundscheck=False, error_model="numpy")
def _weighted_green(
    data, nodata, use_nodata, m, state, inv, x0, y0, stat, out, index, only_empty, room
) -> int:
    """``average``/``sum``/``rms`` over rotated footprints by Green's theorem: each footprint's integrals
    are the signed sums of its four edges' (``_edges``, a row of them at a time), and each edge is shared
    by two footprints, so it is integrated once. Exact, as ``average_into``'s cell-by-cell coverage."""
    values, count, winner = out
    bh, bw = values.shape
    h, w = data.shape
    sums, valid = _prefix_rows(data, nodata, use_nodata, stat == RMS, room)
    top_c, top_r, bot_c, bot_r = np.empty(bw + 1), np.empty(bw + 1), np.empty(bw + 1), np.empty(bw + 1)
    top_v, top_a = np.empty(bw), np.empty(bw)  # the edges along the pixels' top and bottom corners
    bot_v, bot_a = np.empty(bw), np.empty(bw)
    side_v, side_a = np.empty(bw + 1), np.empty(bw + 1)  # the edges down each corner column
    scratch = [  # a row of edges' pieces: 3 when they are shorter than a pixel, else 5 (and their cuts)
        (
            np.empty((k, bw + 1), np.int32),
            np.empty((k, bw + 1)),
            np.empty((k, bw + 1)),
            np.empty((k + 1, bw + 1)),
        )
        for k in (3, 5)
    ]
    scratch[1][3][0], scratch[1][3][5] = 0.0, 1.0  # the cuts of five pieces: from 0 to 1
    track = winner.shape == values.shape
    written = 0
    for y in range(-1, bh):  # (no call with a constant row: numba would compile ``_row`` once more for it)
        top_c, bot_c, top_r, bot_r = bot_c, top_c, bot_r, top_r
        top_v, bot_v, top_a, bot_a = bot_v, top_v, bot_a, top_a
        _row(m, state, y + 1, inv, x0, y0, bot_c, bot_r)
        _edges(bot_c[:-1], bot_r[:-1], bot_c[1:], bot_r[1:], sums, valid, scratch, bot_v, bot_a)
        if y < 0:
            continue
        _edges(top_c, top_r, bot_c, bot_r, sums, valid, scratch, side_v, side_a)
        edges = (top_c, top_r, bot_c, bot_r, top_v, top_a, bot_v, bot_a, side_v, side_a)
        row = (values[y], count[y], winner[y] if track else winner.ravel()[:0])
        written += _green_row(edges, h, w, stat, row, index, only_empty, track)
    return written


@_helper(boundscheck=False, error_model="numpy", forceinline=True)
def _green_row(edges, h, w, stat, row, index, only_empty, track) -> int:
    """One block row of ``_weighted_green``: each footprint's statistic from its edges' integrals, where
    its centre is in the window and its valid area is not zero (``only_empty``: where the row has no
    value yet); returns how many it wrote. Branch-free (errors of the discarded divisions are NaN), the
    winner (``track``) in a loop of its own, before the values."""
    values, count, winner = row
    anywhere = not only_empty
    if track:
        for x in range(values.shape[0]):
            ok = _footprint(edges, x, h, w)[2] & (anywhere | (count[x] == 0))
            winner[x] = index if ok else winner[x]
    written = 0
    for x in range(values.shape[0]):
        acc, weight, ok = _footprint(edges, x, h, w)
        ok &= anywhere | (count[x] == 0)
        values[x] = _weighted(stat, acc, weight) if ok else values[x]
        count[x] |= np.uint8(ok)  # a select would not vectorise
        written += np.int32(ok)  # type: ignore[assignment]  # numba keeps int64; numpy stubs: int32
    return written


@_helper(boundscheck=False, error_model="numpy", forceinline=True)
def _footprint(edges, x: int, h: int, w: int) -> tuple[float, float, bool]:
    """Footprint ``x`` of a ``_green_row``: the integrals of the values and of the valid area inside it
    (from its four edges'), and whether its centre is in the window and its valid area is not zero."""
    top_c, top_r, bot_c, bot_r, top_v, top_a, bot_v, bot_a, side_v, side_a = edges
    ccol = 0.25 * (top_c[x] + top_c[x + 1] + bot_c[x] + bot_c[x + 1])
    crow = 0.25 * (top_r[x] + top_r[x + 1] + bot_r[x] + bot_r[x + 1])
    acc = top_v[x] + side_v[x + 1] - bot_v[x] - side_v[x]  # around: top, right, bottom, left
    weight = top_a[x] + side_a[x + 1] - bot_a[x] - side_a[x]
    acc, weight = (-acc, -weight) if weight < 0 else (acc, weight)  # traversed the other way round
    ok = (crow >= 0) & (crow < h) & (ccol >= 0) & (ccol < w) & (weight > 1e-10)  # NaN fails too
    return acc, weight, ok


@_helper()
def _ranked(vals, n: int, stat: int) -> float:
    """GDAL's ``mode`` (the most frequent value; on ties, the first in row-major order) or quantile (the
    ceil(q n)-th smallest) of the ``n`` pixels a footprint touches, each counted once, as GDAL does."""
    order = np.argsort(vals[:n], kind="mergesort")  # stable: equal values keep their scan order
    if stat == MODE:
        best, best_n, best_first, k = vals[order[0]], 0, n, 0
        while k < n:
            first, run = order[k], 0
            while k < n and vals[order[k]] == vals[first]:
                run += 1
                k += 1
            if run > best_n or (run == best_n and first < best_first):
                best, best_n, best_first = vals[first], run, first
        return best
    return vals[order[max(int(math.ceil(QUANTILE[stat] * n)) - 1, 0)]]


@_helper()
def _overlap(lo: float, hi: float, k: int) -> float:
    """Length of [lo, hi] inside pixel [k, k + 1) along one axis."""
    return min(hi, k + 1.0) - max(lo, float(k))


@_helper(forceinline=True)
def _put(out, y: int, x: int, value: float, index: int, track: bool) -> None:
    """Write one footprint's statistic into ``out`` = (values, has, winner): the value, that it has one,
    and its source ``index`` when ``track``."""
    values, count, winner = out
    values[y, x] = value
    count[y, x] = 1
    if track:
        winner[y, x] = index


@_helper(forceinline=True)
def _weighted(stat: int, acc: float, weight: float) -> float:
    """``average``, ``rms`` or ``sum`` from a footprint's sum of area x value (x value for ``rms``) and
    its valid area."""
    if stat == AVERAGE:
        return acc / weight
    if stat == RMS:
        return math.sqrt(acc / weight)
    return acc


@_entry(boundscheck=False)
def _weighted_axes(data, nodata, use_nodata, by_col, by_row, stat, out, index, only_empty) -> int:
    """``average``, ``sum`` and ``rms`` where footprints are boxes (``_axes``: their corner columns and
    rows): each pixel's 1-D overlaps, computed as ``average_into`` does. A deliberately lean loop: through
    the general one, which also carries the ranked statistics and rotated footprints, this case was several
    times slower (``benchmarks/kernel.py``: same-CRS ``average`` went from 1.6-1.9x GDAL to 4-6x)."""
    values, count, winner = out
    bh, bw = values.shape
    h, w = data.shape
    track = winner.shape == values.shape
    written = 0
    for y in range(bh):
        ylo, yhi = min(by_row[y], by_row[y + 1]), max(by_row[y], by_row[y + 1])
        crow = 0.5 * (ylo + yhi)
        if not (crow >= 0 and crow < h):  # NaN fails too
            continue
        i_lo, i_hi = max(int(math.floor(ylo)), 0), min(int(math.ceil(yhi)), h)
        for x in range(bw):
            if only_empty and count[y, x] > 0:
                continue
            xlo, xhi = min(by_col[x], by_col[x + 1]), max(by_col[x], by_col[x + 1])
            ccol = 0.5 * (xlo + xhi)
            if not (ccol >= 0 and ccol < w):
                continue
            j_lo, j_hi = max(int(math.floor(xlo)), 0), min(int(math.ceil(xhi)), w)
            acc = 0.0
            weight = 0.0
            for i in range(i_lo, i_hi):
                fy = _overlap(ylo, yhi, i)
                for j in range(j_lo, j_hi):
                    s = data[i, j]
                    f = fy * _overlap(xlo, xhi, j)
                    if f > 0 and _valid(s, nodata, use_nodata):
                        acc += f * (s * s if stat == RMS else s)
                        weight += f
            if weight <= 1e-10:
                continue
            _put(out, y, x, _weighted(stat, acc, weight), index, track)
            written += 1
    return written


def average_into(
    data, nodata, use_nodata, m, inv, window, stat, out, index, only_empty, green=True, room=None
) -> int:
    """``stat`` (an AREA code) of the valid source pixels under each target pixel's footprint: ``average``
    and ``rms`` weight each by the area its footprint covers, ``sum`` adds value x area, ``min``/``max``
    and ``mode``/``med``/``q1``/``q3`` take every pixel the footprint touches. The
    footprint is the quadrilateral of the pixel's four corners: the mapping is of the (h + 1, w + 1)
    corner lattice. Weighted statistics over boxes (no rotation) take ``_weighted_axes``; over rotated
    footprints they integrate the footprints' edges (``_weighted_green``, in ``room`` from ``green_room``
    if given) unless ``green`` is False or the window is larger than ``GREEN_CELLS``; else, and for the
    others, each footprint's area in every pixel under it is computed cell by cell (``_area_cells``).
    Each loop is compiled when a request first needs it."""
    values = out[0]
    bh, bw = values.shape
    h, w = data.shape
    y0, x0 = float(window[0]), float(window[2])
    nodata = float(nodata)
    weighted = stat in (AVERAGE, SUM, RMS)
    axes = _axes(m, inv, x0, y0, bh + 1, bw + 1)  # corner columns and rows, without rotation
    if axes is not None and weighted:
        return int(_weighted_axes(data, nodata, use_nodata, axes[0], axes[1], stat, out, index, only_empty))
    state = row_state(m, bh + 1)
    if green and weighted and h * (w + 1) <= GREEN_CELLS:
        space = np.empty(2 * h * (w + 1)) if room is None else room
        args = (data, nodata, use_nodata, m, state, inv, x0, y0, stat, out, index, only_empty, space)
        return int(_weighted_green(*args))
    return int(_area_cells(data, nodata, use_nodata, m, state, inv, x0, y0, stat, out, index, only_empty))


@_entry()
def _area_cells(data, nodata, use_nodata, m, state, inv, x0, y0, stat, out, index, only_empty) -> int:
    """``average_into`` cell by cell: each footprint's exact area in every source pixel of its bounding
    box (``_coverage``; products of 1-D overlaps for an axis-aligned one), then its statistic."""
    values, count, winner = out
    bh, bw = values.shape
    h, w = data.shape
    top_c, top_r, bot_c, bot_r = np.empty(bw + 1), np.empty(bw + 1), np.empty(bw + 1), np.empty(bw + 1)
    qx, qy = np.empty(4), np.empty(4)
    cover = np.empty((8, 10))  # scratch: a footprint's area in each source pixel of its bounding box
    vals = np.empty(64)  # the footprint's pixels, for the ranked statistics
    track = winner.shape == values.shape
    written = 0
    for y in range(-1, bh):  # (no call with a constant row: numba would compile ``_row`` once more for it)
        top_c, bot_c = bot_c, top_c
        top_r, bot_r = bot_r, top_r
        _row(m, state, y + 1, inv, x0, y0, bot_c, bot_r)
        if y < 0:
            continue
        for x in range(bw):
            if only_empty and count[y, x] > 0:
                continue
            qx[0], qx[1], qx[2], qx[3] = top_c[x], top_c[x + 1], bot_c[x + 1], bot_c[x]
            qy[0], qy[1], qy[2], qy[3] = top_r[x], top_r[x + 1], bot_r[x + 1], bot_r[x]
            ccol, crow = 0.25 * (qx[0] + qx[1] + qx[2] + qx[3]), 0.25 * (qy[0] + qy[1] + qy[2] + qy[3])
            if not (crow >= 0 and crow < h and ccol >= 0 and ccol < w):  # NaN fails too
                continue
            xlo, xhi = min(qx[0], qx[1], qx[2], qx[3]), max(qx[0], qx[1], qx[2], qx[3])
            ylo, yhi = min(qy[0], qy[1], qy[2], qy[3]), max(qy[0], qy[1], qy[2], qy[3])
            i_lo, i_hi = max(int(math.floor(ylo)), 0), min(int(math.ceil(yhi)), h)
            j_lo, j_hi = max(int(math.floor(xlo)), 0), min(int(math.ceil(xhi)), w)
            if stat >= MODE and (i_hi - i_lo) * (j_hi - j_lo) > len(vals):
                vals = np.empty(2 * (i_hi - i_lo) * (j_hi - j_lo))
            oy, ox = math.floor(ylo), math.floor(xlo)
            nr, nc = int(math.ceil(yhi) - oy), int(math.ceil(xhi) - ox) + 2
            if nr > cover.shape[0] or nc > cover.shape[1]:
                cover = np.empty((max(nr, cover.shape[0]), max(nc, cover.shape[1])))
            grid = cover[:nr, :nc]
            # an axis-aligned footprint (4326 <-> 3857 on a grid): products of 1-D overlaps, else exact
            if qx[0] == qx[3] and qx[1] == qx[2] and qy[0] == qy[1] and qy[2] == qy[3]:
                for i in range(i_lo, i_hi):
                    for j in range(j_lo, j_hi):
                        grid[i - int(oy), j - int(ox)] = _overlap(ylo, yhi, i) * _overlap(xlo, xhi, j)
            else:
                grid[:] = 0.0
                for k in range(4):
                    qx[k] -= ox
                    qy[k] -= oy
                _coverage(qx, qy, grid)
            acc = 0.0
            weight = 0.0
            best = np.inf if stat == MINIMUM else -np.inf
            n = 0
            for i in range(i_lo, i_hi):
                for j in range(j_lo, j_hi):
                    s = data[i, j]
                    f = grid[i - int(oy), j - int(ox)]
                    # untouched: the running sums leave ~1e-17 in cells they cross
                    if f <= MIN_COVER or not _valid(s, nodata, use_nodata):
                        continue
                    if stat == MINIMUM:
                        best = min(best, float(s))
                    elif stat == MAXIMUM:
                        best = max(best, float(s))
                    elif stat >= MODE:
                        vals[n] = s
                        n += 1
                    acc += f * (s * s if stat == RMS else s)
                    weight += f
            if weight <= 1e-10:
                continue
            if stat >= MODE:
                value = _ranked(vals, n, stat)
            elif stat in (MINIMUM, MAXIMUM):
                value = best
            else:
                value = _weighted(stat, acc, weight)
            _put(out, y, x, value, index, track)
            written += 1
    return written


# the compiled entry points, each compiled per argument types when a request first needs it (``kernel.warm``
# renders a block through each); the functions they call are compiled into them
COMPILED = (
    _nearest_axes,
    _nearest_grid,
    _nearest_rows,
    _kernel_axes,
    _kernel_rows,
    _any_inside_grid,
    _any_inside_rows,
    _weighted_axes,
    _weighted_green,
    _area_cells,
)
