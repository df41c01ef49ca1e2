"""Fused, compiled loops for the kernel's hot paths (numba, cached on disk so workers compile once).

Each loop walks the block row by row: ``_row`` turns a ``lazymerge.transform.Mapping`` into the source pixel
coordinates of one row (affine, per-axis lookups or the control grid's bilinear interpolation), then the
row's pixels are sampled and written in the same pass; the per-pixel coordinates are never materialised.

``sample_into``: nearest/bilinear/cubic/cubic_spline/lanczos with GDAL's conventions: pixel ``(i, j)``
covers ``[j, j + 1) x [i, i + 1)``, nearest takes ``floor``, kernels weight the pixel centres around the
point, skip nodata and renormalise, and widen by ``1 / scale`` when downsampling (GDAL's XSCALE/YSCALE).
``average_into``: area statistics over each target pixel's footprint (its four corners in source pixels).
"""

from __future__ import annotations

import math

import numba
import numpy as np

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
QUANTILE = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.25, 0.75)  # of MEDIAN, Q1, Q3
LINEAR, SEPARABLE, GRID = 0, 1, 2  # kinds of lazymerge.transform.Mapping


@numba.njit(cache=True, nogil=True)
def _segments(idx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``n`` positions: the control interval it falls in and its fraction within it."""
    seg = np.zeros(n, dtype=np.int64)
    frac = np.zeros(n)
    if len(idx) < 2:
        return seg, frac
    a = 0
    for p in range(n):
        while a < len(idx) - 2 and p > idx[a + 1]:
            a += 1
        seg[p] = a
        frac[p] = (p - idx[a]) / (idx[a + 1] - idx[a])
    return seg, frac


@numba.njit(cache=True, nogil=True)
def _row_state(m, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What ``_row`` needs for an ``h``-row block: each row's control interval and fraction (GRID), and
    scratch of one value per control column."""
    rs, rf = _segments(m[3], h)
    return rs, rf, np.empty(m[1].shape[1]), np.empty(m[1].shape[1])


@numba.njit(cache=True, nogil=True)
def _row(m, state, y, inv, x0, y0, cols, rows) -> None:
    """Source pixel coordinates (``cols``, ``rows``, minus the window origin ``x0``, ``y0``) of every pixel
    of block row ``y`` (``state``: from ``_row_state``)."""
    kind, gx, gy = m[0], m[1], m[2]
    rs, rf, tx, ty = state
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
    else:  # the control grid: interpolate down the control columns, then linearly between them
        a, fy = rs[y], rf[y]
        a1 = min(a + 1, gx.shape[0] - 1)
        ci = m[4]
        for b in range(gx.shape[1]):
            px = gx[a, b] * (1 - fy) + gx[a1, b] * fy
            py = gy[a, b] * (1 - fy) + gy[a1, b] * fy
            tx[b] = inv[0] * px + inv[1] * py + inv[2] - x0  # source pixels are affine in (px, py)
            ty[b] = inv[3] * px + inv[4] * py + inv[5] - y0
        cols[0], rows[0] = tx[0], ty[0]
        for b in range(len(ci) - 1):
            span = ci[b + 1] - ci[b]
            dc, dr = (tx[b + 1] - tx[b]) / span, (ty[b + 1] - ty[b]) / span
            for k in range(1, span + 1):
                cols[ci[b] + k] = tx[b] + k * dc
                rows[ci[b] + k] = ty[b] + k * dr


@numba.njit(cache=True, nogil=True)
def evaluate(m, h: int, w: int, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mapping's source CRS coordinates of the rows ``ys`` of an (h, w) block, as (len(ys), w) arrays."""
    ident = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    state = _row_state(m, h)
    out_x, out_y = np.empty((len(ys), w)), np.empty((len(ys), w))
    for k in range(len(ys)):
        _row(m, state, ys[k], ident, 0.0, 0.0, out_x[k], out_y[k])
    return out_x, out_y


@numba.njit(cache=True, nogil=True, inline="always")
def _valid(v, nodata: float, use_nodata: bool) -> bool:
    if v != v:  # NaN
        return False
    return not (use_nodata and v == nodata)


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def _unit_weights(mode: int, t: float, out: np.ndarray) -> None:
    """Closed-form weights of the taps around a point ``t`` past a pixel centre, at scale 1 (bilinear:
    2 taps; cubic, cubic_spline: 4)."""
    if mode == BILINEAR:
        out[0], out[1] = 1 - t, t
    elif mode == CUBIC:  # Keys, a = -0.5
        out[0] = ((-0.5 * t + 1.0) * t - 0.5) * t
        out[1] = (1.5 * t - 2.5) * t * t + 1
        out[2] = ((-1.5 * t + 2.0) * t + 0.5) * t
        out[3] = (0.5 * t - 0.5) * t * t
    else:  # cubic B-spline
        s = 1 - t
        out[0] = s * s * s / 6
        out[1] = (3 * t * t * t - 6 * t * t + 4) / 6
        out[2] = (-3 * t * t * t + 3 * t * t + 3 * t + 1) / 6
        out[3] = t * t * t / 6


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _nearest_row(data, nodata, use_nodata, cols, rows, values, has, winner, index, only_empty) -> int:
    """Nearest for one block row: writes where the containing source pixel is valid (and ``index`` into
    ``winner`` unless it is the 1-element placeholder). Kept apart from ``_kernel_row``, whose prologue it
    shares, so that the hottest loop carries nothing else."""
    h, w = data.shape
    track = winner.shape[0] == values.shape[0]
    written = 0
    for x in range(cols.shape[0]):
        if only_empty and has[x] > 0:
            continue
        c, r = cols[x], rows[x]
        if r >= 0 and r < h and c >= 0 and c < w:  # NaN fails too
            v = data[np.intp(r), np.intp(c)]  # truncation is floor here: both are >= 0
            if v == v and not (use_nodata and v == nodata):
                values[x] = v
                has[x] = 1
                if track:
                    winner[x] = index
                written += 1
    return written


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _kernel_row(
    data, nodata, use_nodata, cols, rows, mode, unit, scale, nu, nv, wu, wv, values, has, winner, index,
    only_empty,
) -> int:  # fmt: skip
    """An interpolating kernel for one block row (``unit``: closed-form weights at scale 1)."""
    h, w = data.shape
    track = winner.shape[0] == values.shape[0]
    written = 0
    for x in range(cols.shape[0]):
        if only_empty and has[x] > 0:
            continue
        c, r = cols[x], rows[x]
        if not (r >= 0 and r < h and c >= 0 and c < w):  # NaN fails too
            continue
        if not _valid(data[np.intp(r), np.intp(c)], nodata, use_nodata):  # truncation is floor: >= 0
            continue
        u, v = c - 0.5, r - 0.5
        j0, i0 = int(math.floor(u)), int(math.floor(v))
        fu, fv = u - j0, v - i0
        value = np.nan
        inside = i0 >= nv - 1 and i0 + nv < h and j0 >= nu - 1 and j0 + nu < w
        if unit and inside and not use_nodata:  # the common case, without a branch per tap
            if mode == BILINEAR:
                top = data[i0, j0] * (1 - fu) + data[i0, j0 + 1] * fu
                bottom = data[i0 + 1, j0] * (1 - fu) + data[i0 + 1, j0 + 1] * fu
                value = top * (1 - fv) + bottom * fv
            else:
                _unit_weights(mode, fu, wu)
                _unit_weights(mode, fv, wv)
                value = 0.0
                for a in range(4):
                    line = data[i0 + a - 1]
                    part = (
                        wu[0] * line[j0 - 1] + wu[1] * line[j0] + wu[2] * line[j0 + 1] + wu[3] * line[j0 + 2]
                    )
                    value += wv[a] * part
                value /= (wu[0] + wu[1] + wu[2] + wu[3]) * (wv[0] + wv[1] + wv[2] + wv[3])
        if value != value:  # a NaN tap, nodata values, the window's edge, or a scaled kernel: tap by tap
            if unit:
                _unit_weights(mode, fu, wu)
                _unit_weights(mode, fv, wv)
            else:
                _weights(mode, fu, scale[0], nu, wu)
                _weights(mode, fv, scale[1], nv, wv)
            acc, weight = _accumulate(data, nodata, use_nodata, i0, j0, wu, wv, nu, nv)
            if abs(weight) <= 1e-5:
                continue
            value = acc / weight
        values[x] = value
        has[x] = 1
        if track:
            winner[x] = index
        written += 1
    return written


@numba.njit(cache=True, nogil=True)
def sample_into(data, nodata, use_nodata, m, inv, window, mode, scale, out, index, only_empty) -> int:
    """Sample one source window into ``out`` = (values, has, winner) where it has a valid value
    (``only_empty``: only pixels without one yet, as ``first``); returns how many pixels it wrote. A
    point gets a value only where the source pixel containing it is valid. ``scale``: GDAL's (x, y)
    kernel scale; ``winner`` gets ``index`` unless it is a 1 x 1 placeholder."""
    values, count, winner = out
    bh, bw = values.shape
    state = _row_state(m, bh)
    cols, rows = np.empty(bw), np.empty(bw)
    nu = int(math.ceil(RADIUS[mode] / scale[0]))  # taps 1 - n .. n around the point, per axis
    nv = int(math.ceil(RADIUS[mode] / scale[1]))
    wu, wv = np.empty(2 * nu + 1), np.empty(2 * nv + 1)
    unit = mode != LANCZOS and scale[0] == 1.0 and scale[1] == 1.0  # closed-form weights
    track = winner.shape == values.shape
    written = 0
    for y in range(bh):
        _row(m, state, y, inv, window[2], window[0], cols, rows)
        who = winner[y] if track else winner[0]
        if mode == NEAREST:  # the hot path, kept minimal
            written += _nearest_row(
                data, nodata, use_nodata, cols, rows, values[y], count[y], who, index, only_empty
            )
            continue
        written += _kernel_row(
            data, nodata, use_nodata, cols, rows, mode, unit, scale, nu, nv, wu, wv,
            values[y], count[y], who, index, only_empty,
        )  # fmt: skip
    return written


@numba.njit(cache=True, nogil=True)
def any_inside(m, inv, window, count, only_empty) -> bool:
    """Whether any pixel (still empty, with ``only_empty``) maps into the window: read it only then."""
    bh, bw = count.shape
    state = _row_state(m, bh)
    cols, rows = np.empty(bw), np.empty(bw)
    for y in range(bh):
        _row(m, state, y, inv, 0.0, 0.0, cols, rows)
        for x in range(bw):
            if only_empty and count[y, x] > 0:
                continue
            r, c = rows[x], cols[x]
            if r >= window[0] and r < window[1] and c >= window[2] and c < window[3]:
                return True
    return False


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def average_into(data, nodata, use_nodata, m, inv, window, stat, out, index, only_empty) -> int:
    """``stat`` (an AREA code) of the valid source pixels under each target pixel's footprint: ``average``
    and ``rms`` weight each by the area its footprint covers, ``sum`` adds value x area, ``min``/``max``
    and ``mode``/``med``/``q1``/``q3`` take every pixel the footprint touches. The
    footprint is the quadrilateral of the pixel's four corners: the mapping is of the (h + 1, w + 1)
    corner lattice."""
    values, count, winner = out
    bh, bw = values.shape
    h, w = data.shape
    y0, x0 = window[0], window[2]
    state = _row_state(m, bh + 1)
    top_c, top_r, bot_c, bot_r = np.empty(bw + 1), np.empty(bw + 1), np.empty(bw + 1), np.empty(bw + 1)
    _row(m, state, 0, inv, x0, y0, bot_c, bot_r)
    qx, qy = np.empty(4), np.empty(4)
    cover = np.empty((8, 10))  # scratch: a footprint's area in each source pixel of its bounding box
    grid = cover[:1, :1]
    vals = np.empty(64)  # the footprint's pixels, for the ranked statistics
    track = winner.shape == values.shape
    written = 0
    for y in range(bh):
        top_c, bot_c = bot_c, top_c
        top_r, bot_r = bot_r, top_r
        _row(m, state, y + 1, inv, x0, y0, bot_c, bot_r)
        for x in range(bw):
            if only_empty and count[y, x] > 0:
                continue
            qx[0], qx[1], qx[2], qx[3] = top_c[x], top_c[x + 1], bot_c[x + 1], bot_c[x]
            qy[0], qy[1], qy[2], qy[3] = top_r[x], top_r[x + 1], bot_r[x + 1], bot_r[x]
            ccol, crow = 0.25 * (qx[0] + qx[1] + qx[2] + qx[3]), 0.25 * (qy[0] + qy[1] + qy[2] + qy[3])
            if not (crow >= 0 and crow < h and ccol >= 0 and ccol < w):  # NaN fails too
                continue
            acc = 0.0
            weight = 0.0
            best = np.inf if stat == MINIMUM else -np.inf
            xlo, xhi = min(qx[0], qx[1], qx[2], qx[3]), max(qx[0], qx[1], qx[2], qx[3])
            ylo, yhi = min(qy[0], qy[1], qy[2], qy[3]), max(qy[0], qy[1], qy[2], qy[3])
            # an axis-aligned footprint (same CRS, 4326 <-> 3857): overlaps are products of 1-D overlaps
            boxed = qx[0] == qx[3] and qx[1] == qx[2] and qy[0] == qy[1] and qy[2] == qy[3]
            i_lo, i_hi = max(int(math.floor(ylo)), 0), min(int(math.ceil(yhi)), h)
            j_lo, j_hi = max(int(math.floor(xlo)), 0), min(int(math.ceil(xhi)), w)
            if stat >= MODE and (i_hi - i_lo) * (j_hi - j_lo) > len(vals):
                vals = np.empty(2 * (i_hi - i_lo) * (j_hi - j_lo))
            oy, ox = math.floor(ylo), math.floor(xlo)
            if not boxed:  # a rotated footprint: its exact area in every pixel of its bounding box
                nr, nc = int(math.ceil(yhi) - oy), int(math.ceil(xhi) - ox) + 2
                if nr > cover.shape[0] or nc > cover.shape[1]:
                    cover = np.empty((max(nr, cover.shape[0]), max(nc, cover.shape[1])))
                grid = cover[:nr, :nc]
                grid[:] = 0.0
                for k in range(4):
                    qx[k] -= ox
                    qy[k] -= oy
                _coverage(qx, qy, grid)
            n = 0
            for i in range(i_lo, i_hi):
                fy = min(yhi, i + 1.0) - max(ylo, float(i))
                for j in range(j_lo, j_hi):
                    s = data[i, j]
                    if not _valid(s, nodata, use_nodata):
                        continue
                    if boxed:
                        f = fy * (min(xhi, j + 1.0) - max(xlo, float(j)))
                    else:
                        f = grid[i - int(oy), j - int(ox)]
                    if f <= 0:
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
            if stat == AVERAGE:
                values[y, x] = acc / weight
            elif stat == RMS:
                values[y, x] = math.sqrt(acc / weight)
            elif stat == SUM:
                values[y, x] = acc
            elif stat >= MODE:
                values[y, x] = _ranked(vals, n, stat)
            else:
                values[y, x] = best
            if track:
                winner[y, x] = index
            count[y, x] = 1
            written += 1
    return written
