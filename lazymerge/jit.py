"""Fused, compiled loops for the kernel's hot paths (numba, cached on disk so workers compile once).

``interpolate``: the control grid's bilinear interpolation to every pixel, in one pass.
``sample_into``: one source into the block for ``first``/``last`` compositing, in one pass per pixel:
source CRS -> source pixel (affine), window test, nearest/bilinear/cubic sampling with GDAL's conventions
(see lazymerge.resampling, which this mirrors and is tested against), validity, write.
"""

from __future__ import annotations

import math

import numba
import numpy as np

NEAREST, BILINEAR, CUBIC = 0, 1, 2
CODES = {"nearest": NEAREST, "bilinear": BILINEAR, "cubic": CUBIC}
# area resamplings: statistics of the source pixels under each target pixel's footprint (as GDAL's)
AREA = {"average": 0, "min": 1, "max": 2, "sum": 3, "rms": 4}


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
def interpolate(g: np.ndarray, ri: np.ndarray, ci: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear interpolation of control values ``g`` (rows ``ri`` x cols ``ci``) to an (h, w) array."""
    out = np.empty((h, w))
    rs, rf = _segments(ri, h)
    cs, cf = _segments(ci, w)
    last_r, last_c = len(ri) - 1, len(ci) - 1
    for y in range(h):
        a, fy = rs[y], rf[y]
        a1 = min(a + 1, last_r)
        for x in range(w):
            b, fx = cs[x], cf[x]
            b1 = min(b + 1, last_c)
            top = g[a, b] * (1 - fx) + g[a, b1] * fx
            bottom = g[a1, b] * (1 - fx) + g[a1, b1] * fx
            out[y, x] = top * (1 - fy) + bottom * fy
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _valid(v, nodata: float, use_nodata: bool) -> bool:
    if v != v:  # NaN
        return False
    return not (use_nodata and v == nodata)


@numba.njit(cache=True, nogil=True, inline="always")
def _cubic(t: float) -> float:
    t = abs(t)
    a = -0.5
    if t <= 1:
        return ((a + 2) * t - (a + 3)) * t * t + 1
    if t < 2:
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return 0.0


@numba.njit(cache=True, nogil=True)
def sample_into(
    data: np.ndarray,
    nodata: float,
    use_nodata: bool,
    sx: np.ndarray,
    sy: np.ndarray,
    inv: np.ndarray,
    window: np.ndarray,
    mode: int,
    values: np.ndarray,
    count: np.ndarray,
    winner: np.ndarray,
    index: int,
    only_empty: bool,
) -> int:
    """Sample one source window into ``values`` where it has a valid value (``only_empty``: only pixels
    without one yet, as ``first``); returns how many pixels it wrote."""
    w0, w1, v0, v1 = window[0], window[1], window[2], window[3]
    h, w = data.shape
    written = 0
    for y in range(sx.shape[0]):
        for x in range(sx.shape[1]):
            if only_empty and count[y, x] > 0:
                continue
            px, py = sx[y, x], sy[y, x]
            col = inv[0] * px + inv[1] * py + inv[2]
            row = inv[3] * px + inv[4] * py + inv[5]
            if not (row >= w0 and row < w1 and col >= v0 and col < v1):  # NaN fails too
                continue
            r, c = row - w0, col - v0
            i, j = int(math.floor(r)), int(math.floor(c))
            if i >= h or j >= w or not _valid(data[i, j], nodata, use_nodata):
                continue
            if mode == NEAREST:
                value = float(data[i, j])
            else:
                u, v = c - 0.5, r - 0.5
                j0, i0 = int(math.floor(u)), int(math.floor(v))
                fu, fv = u - j0, v - i0
                lo, hi = (0, 1) if mode == BILINEAR else (-1, 2)
                acc = 0.0
                weight = 0.0
                for di in range(lo, hi + 1):
                    ii = i0 + di
                    if ii < 0 or ii >= h:
                        continue
                    wv = (1 - fv if di == 0 else fv) if mode == BILINEAR else _cubic(fv - di)
                    for dj in range(lo, hi + 1):
                        jj = j0 + dj
                        if jj < 0 or jj >= w:
                            continue
                        s = data[ii, jj]
                        if not _valid(s, nodata, use_nodata):
                            continue
                        wu = (1 - fu if dj == 0 else fu) if mode == BILINEAR else _cubic(fu - dj)
                        acc += wv * wu * s
                        weight += wv * wu
                if abs(weight) <= 1e-5:
                    continue
                value = acc / weight
            values[y, x] = value
            winner[y, x] = index
            count[y, x] += 1
            written += 1
    return written


@numba.njit(cache=True, nogil=True)
def any_inside(
    sx: np.ndarray, sy: np.ndarray, inv: np.ndarray, window: np.ndarray, count: np.ndarray, only_empty: bool
) -> bool:
    """Whether any pixel (still empty, with ``only_empty``) maps into the window: read it only then."""
    for y in range(sx.shape[0]):
        for x in range(sx.shape[1]):
            if only_empty and count[y, x] > 0:
                continue
            col = inv[0] * sx[y, x] + inv[1] * sy[y, x] + inv[2]
            row = inv[3] * sx[y, x] + inv[4] * sy[y, x] + inv[5]
            if row >= window[0] and row < window[1] and col >= window[2] and col < window[3]:
                return True
    return False


@numba.njit(cache=True, nogil=True)
def _clip_area(
    qx: np.ndarray,
    qy: np.ndarray,
    x0: float,
    y0: float,
    px: np.ndarray,
    py: np.ndarray,
    bx: np.ndarray,
    by: np.ndarray,
) -> float:
    """Area of the convex quadrilateral (qx, qy) inside the unit square at (x0, y0) (Sutherland-Hodgman;
    ``px``, ``py``, ``bx``, ``by`` are scratch buffers of 16)."""
    n = 4
    px[:4] = qx
    py[:4] = qy
    for edge in range(4):  # left, right, top, bottom of the square
        m = 0
        for k in range(n):
            ax, ay = px[k], py[k]
            cx, cy = px[(k + 1) % n], py[(k + 1) % n]
            if edge == 0:
                da, dc = ax - x0, cx - x0
            elif edge == 1:
                da, dc = x0 + 1 - ax, x0 + 1 - cx
            elif edge == 2:
                da, dc = ay - y0, cy - y0
            else:
                da, dc = y0 + 1 - ay, y0 + 1 - cy
            if da >= 0:
                bx[m], by[m] = ax, ay
                m += 1
            if (da >= 0) != (dc >= 0):
                t = da / (da - dc)
                bx[m], by[m] = ax + t * (cx - ax), ay + t * (cy - ay)
                m += 1
        if m == 0:
            return 0.0
        px[:m] = bx[:m]
        py[:m] = by[:m]
        n = m
    area = 0.0
    for k in range(n):
        area += px[k] * py[(k + 1) % n] - px[(k + 1) % n] * py[k]
    return abs(area) / 2


@numba.njit(cache=True, nogil=True)
def average_into(
    data: np.ndarray,
    nodata: float,
    use_nodata: bool,
    cx: np.ndarray,
    cy: np.ndarray,
    inv: np.ndarray,
    window: np.ndarray,
    values: np.ndarray,
    count: np.ndarray,
    winner: np.ndarray,
    index: int,
    only_empty: bool,
    stat: int = 0,
) -> int:
    """``stat`` (an AREA code) of the valid source pixels under each target pixel's footprint: ``average``
    and ``rms`` weight each by the area its footprint covers, ``sum`` adds value x area, ``min``/``max``
    take every pixel the footprint touches. The footprint is the quadrilateral of the pixel's four corners
    in source pixels (``cx``, ``cy``: source CRS coordinates of the (h + 1, w + 1) corner grid)."""
    w0, w1, v0, v1 = window[0], window[1], window[2], window[3]
    h, w = data.shape
    written = 0
    qx, qy = np.empty(4), np.empty(4)
    buf = np.empty((4, 16))  # scratch for the clipping
    for y in range(values.shape[0]):
        for x in range(values.shape[1]):
            if only_empty and count[y, x] > 0:
                continue
            for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 1), (1, 0))):  # the footprint, in order
                px, py = cx[y + dy, x + dx], cy[y + dy, x + dx]
                qx[k] = inv[0] * px + inv[1] * py + inv[2] - v0
                qy[k] = inv[3] * px + inv[4] * py + inv[5] - w0
            ccol, crow = qx.mean(), qy.mean()
            if not (crow >= 0 and crow < w1 - w0 and ccol >= 0 and ccol < v1 - v0):  # NaN fails too
                continue
            acc = 0.0
            weight = 0.0
            best = np.inf if stat == 1 else -np.inf
            xlo, xhi, ylo, yhi = qx.min(), qx.max(), qy.min(), qy.max()
            # an axis-aligned footprint (same CRS, 4326 <-> 3857): overlaps are products of 1-D overlaps
            boxed = qx[0] == qx[3] and qx[1] == qx[2] and qy[0] == qy[1] and qy[2] == qy[3]
            for i in range(max(int(math.floor(ylo)), 0), min(int(math.ceil(yhi)), h)):
                fy = min(yhi, i + 1.0) - max(ylo, float(i))
                for j in range(max(int(math.floor(xlo)), 0), min(int(math.ceil(xhi)), w)):
                    s = data[i, j]
                    if not _valid(s, nodata, use_nodata):
                        continue
                    if boxed:
                        f = fy * (min(xhi, j + 1.0) - max(xlo, float(j)))
                    else:
                        f = _clip_area(qx, qy, float(j), float(i), buf[0], buf[1], buf[2], buf[3])
                    if f <= 0:
                        continue
                    if stat == 1:
                        best = min(best, float(s))
                    elif stat == 2:
                        best = max(best, float(s))
                    acc += f * (s * s if stat == 4 else s)
                    weight += f
            if weight <= 1e-10:
                continue
            if stat == 0:
                values[y, x] = acc / weight
            elif stat == 4:
                values[y, x] = math.sqrt(acc / weight)
            elif stat == 3:
                values[y, x] = acc
            else:
                values[y, x] = best
            winner[y, x] = index
            count[y, x] += 1
            written += 1
    return written
