"""Target pixels -> source CRS coordinates: a compact ``Mapping`` the compiled kernel evaluates per row.

Three kinds, none with a per-pixel pyproj call unless ``exact``:

- ``LINEAR``: same CRS: the target affine itself (``gx``/``gy`` hold its x and y coefficients).
- ``SEPARABLE``: pairs where source x depends only on the target column and source y only on the row
  (geographic <-> Mercator/equirectangular, north-up target): one exact transform per column and per row.
- ``GRID``: a control grid (every ``STEP``-th line of the whole target grid and its last one, over the
  block and as far beyond as its cubics reach) transformed exactly and interpolated by cubics, down the
  control columns and then along the row, each through an interval's two control points and a line on
  either side (``loops._stencils``), exact at the control points. Anchored to the target grid, not to the
  block, so a pixel's coordinates are the same arithmetic whichever chunk holds it: two chunkings give
  identical pixels. The interpolation is checked against the exact transform at the centre and edge
  midpoints of every cell holding the block's pixels, in source pixels along each axis (``tolerance`` in
  source CRS units, per axis: the caller passes its threshold times the finest source pixel), against
  ``MARGIN`` x the tolerance. Where a cell misses, its rows or columns (those that miss) are cut in 2 or 4
  across the block until it passes, or every pixel is a control point (exact): where that happens (a pole
  or the +-180 seam of a geographic source) the lines a block adds depend on the block, so two chunkings
  agree only within the threshold there.

Pixel centres sit at ``offset`` = 0.5, as in GDAL; area resamplings map pixel corners (``offset`` = 0).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from affine import Affine
from pyproj import CRS

from lazymerge.crs import transformer
from lazymerge.kernel.loops import GRID, LINEAR, SEPARABLE, evaluate

STEP = 128  # control points every STEP target pixels (refined where the check fails)
THRESHOLD = 0.01  # maximum interpolation error, in source pixels
MARGIN = 0.5  # probes must pass half the tolerance: the error can peak between them
# methods whose x depends on longitude only and y on latitude only
_CYLINDRICAL = {
    "Popular Visualisation Pseudo Mercator",
    "Mercator (variant A)",
    "Mercator (variant B)",
    "Equidistant Cylindrical",
    "Equidistant Cylindrical (Spherical)",
}


class Mapping(NamedTuple):
    """Source CRS coordinates of an (h, w) block of target pixels, in one of three kinds (see module)."""

    kind: int
    gx: np.ndarray  # LINEAR: (a, b, c, first column); SEPARABLE: (1, w) x per column; GRID: (nr, nc)
    gy: np.ndarray  # LINEAR: (d, e, f, first row); SEPARABLE: (1, h) y per row; GRID: (nr, nc)
    ri: np.ndarray  # GRID: the control rows (block-relative); else empty
    ci: np.ndarray  # GRID: the control columns
    shape: tuple[int, int]

    @property
    def jit(self) -> tuple:
        """The tuple the compiled loops take."""
        return (self.kind, self.gx, self.gy, self.ri, self.ci)

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """Source CRS (x, y) of every pixel, as two (h, w) arrays (for tests and benchmarks; the kernel
        never materialises them)."""
        return evaluate(self.jit, self.shape[0], self.shape[1], np.arange(self.shape[0]))


def _cylindrical(crs: CRS) -> bool:
    if crs.is_geographic:
        return True
    op = crs.coordinate_operation
    return crs.is_projected and op is not None and op.method_name in _CYLINDRICAL


@lru_cache(maxsize=256)
def _pair(target: str, source: str) -> tuple[bool, bool, str, str]:
    """For two CRSs as users give them: (the same CRS, both cylindrical (a separable pair), their WKTs).
    Cached: parsing and comparing CRSs costs about as much as a small block's control grid."""
    t, s = CRS.from_user_input(target), CRS.from_user_input(source)
    return t == s, _cylindrical(t) and _cylindrical(s), t.to_wkt(), s.to_wkt()


def pixel_mapping(
    target_crs: CRS,
    target: Affine,
    rows: tuple[int, int],
    cols: tuple[int, int],
    source_crs: str,
    tolerance: float | tuple[float, float],
    exact: bool = False,
    offset: float = 0.5,
    extent: tuple[int, int] | None = None,
) -> Mapping:
    """The mapping of target pixels ``rows`` x ``cols`` (half-open ranges of the target grid), at
    ``offset`` within each pixel, to ``source_crs``; NaN where the transform fails. ``tolerance``: the
    largest error allowed, in source CRS units, one for both axes or (x, y). ``extent``: the (rows,
    columns) of the whole grid the control lattice is anchored to (default: the block's end)."""
    h, w = rows[1] - rows[0], cols[1] - cols[0]
    tol_x, tol_y = tolerance if isinstance(tolerance, tuple) else (tolerance, tolerance)
    extent = extent or (rows[1], cols[1])
    r = np.arange(*rows) + offset
    c = np.arange(*cols) + offset
    none = np.zeros(0, dtype="i8")
    same, cylindrical, target_wkt, source_wkt = _pair(target_crs.srs or target_crs.to_wkt(), source_crs)
    if same:
        gx = np.array([[target.a, target.b, target.c, c[0]]])
        gy = np.array([[target.d, target.e, target.f, r[0]]])
        return Mapping(LINEAR, gx, gy, none, none, (h, w))
    to_src = transformer(target_wkt, source_wkt)

    def exact_at(rr: np.ndarray, cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = target.c + cc * target.a + rr * target.b
        y = target.f + cc * target.d + rr * target.e
        sx, sy = to_src.transform(x, y, errcheck=False)
        return np.asarray(sx, dtype="f8"), np.asarray(sy, dtype="f8")

    if exact:  # every line a control line; a block one line wide takes the next too (an interval holds it)
        hh, ww = max(h, 2), max(w, 2)
        gx, gy = exact_at(
            *np.meshgrid(rows[0] + offset + np.arange(hh), cols[0] + offset + np.arange(ww), indexing="ij")
        )
        return Mapping(GRID, gx, gy, np.arange(hh), np.arange(ww), (h, w))
    if target.b == 0 and target.d == 0 and cylindrical:
        mid_r, mid_c = np.full(w, r[h // 2]), np.full(h, c[w // 2])
        xs, _ = exact_at(mid_r, c)
        _, ys = exact_at(r, mid_c)
        m = Mapping(SEPARABLE, xs[None], ys[None], none, none, (h, w))
        if not _failing(m, exact_at, r, c, (tol_x, tol_y), _probes(h), _probes(w)).any():
            return m
    ri, ci = _lines(*rows, extent[0]), _lines(*cols, extent[1])  # control rows and columns, block-relative
    while True:
        # the lattice of control lines and the lines between them, transformed at once: control points,
        # and the probes: each cell's centre and its edges' midpoints, where the interpolation errs most
        lr = _interleave(ri, (ri[:-1] + ri[1:]) // 2)
        lc = _interleave(ci, (ci[:-1] + ci[1:]) // 2)
        ex, ey = exact_at((rows[0] + offset + lr)[:, None], (cols[0] + offset + lc)[None, :])
        m = Mapping(GRID, ex[::2, ::2].copy(), ey[::2, ::2].copy(), ri, ci, (h, w))
        ax, ay = _at_lattice(m, lr, lc)
        with np.errstate(invalid="ignore"):  # in units of the probes' tolerance; NaN on both sides: none
            err = np.hypot((ex - ax) / tol_x, (ey - ay) / tol_y) / MARGIN
        err[np.isnan(ex) & np.isnan(ax)] = 0.0
        err[np.isnan(err)] = np.inf
        # each cell's error down the columns and across the rows (its edges' midpoints); its centre counts
        # for both where neither edge fails. Only cells holding pixels of the block (the outer ones hold
        # the cubics' stencils).
        down = np.maximum(err[1::2, 0:-1:2], err[1::2, 2::2])
        across = np.maximum(err[0:-1:2, 1::2], err[2::2, 1::2])
        centre = np.where((down <= 1) & (across <= 1), err[1::2, 1::2], 0.0)
        held = ((ri[1:] > 0) & (ri[:-1] < h - 1))[:, None] & ((ci[1:] > 0) & (ci[:-1] < w - 1))[None, :]
        down, across = (
            np.where(held, np.maximum(down, centre), 0.0),
            np.where(held, np.maximum(across, centre), 0.0),
        )
        if down.max(initial=0.0) <= 1 and across.max(initial=0.0) <= 1:
            return m
        finer_r, finer_c = _split(ri, down.max(axis=1)), _split(ci, across.max(axis=0))
        if len(finer_r) == len(ri) and len(finer_c) == len(ci) or 4 * len(finer_r) * len(finer_c) >= h * w:
            # failing cells a pixel across, or a lattice as costly as every pixel: transform every pixel
            gx, gy = exact_at(*np.meshgrid(r, c, indexing="ij"))
            return Mapping(GRID, gx, gy, np.arange(h), np.arange(w), (h, w))
        ri, ci = finer_r, finer_c


def _split(lines: np.ndarray, err: np.ndarray) -> np.ndarray:
    """``lines`` with each interval whose error ``err`` (in units of the tolerance) exceeds 1 cut into as
    many equal parts as the cubic's error (~ length^4) needs to pass: 2 or 4 (halving twice at most, so
    that a jump, which no length makes pass, is narrowed down rather than cut into pixels at once)."""
    parts = np.where(err > 16, 4, 2)
    out = [lines]
    for a in np.nonzero(err > 1)[0]:
        span = lines[a + 1] - lines[a]
        k = min(int(parts[a]), int(span))
        out.append(lines[a] + (np.arange(1, k) * span) // k)
    return np.unique(np.concatenate(out))


@lru_cache(maxsize=256)
def _lines(lo: int, hi: int, extent: int) -> np.ndarray:
    """Control lines for grid lines ``lo`` .. ``hi - 1`` (a block's), relative to ``lo``: every STEP-th
    line of a grid of ``extent`` lines and its last, from the last one before ``lo`` (``lo`` itself at 0)
    to the first at or after ``hi - 1``, and the lines the cubics of those intervals reach (one more on
    each side, two at the grid's ends: ``loops._stencils``). Each pixel lies between the same two lines,
    with the same cubic, whichever block holds it (a pixel on a line other than the grid's first is the end
    of the interval before it). A grid of one line takes the next too (no pixel lies outside an interval).
    Kept (blocks of a grid repeat a few patterns); not to be modified."""
    extent = max(extent, 2)  # a grid one line wide: that line and the next, an interval holding it
    every = np.unique(np.append(np.arange(0, extent, STEP), extent - 1))
    n = len(every)
    first = max(int(np.searchsorted(every, lo)) - 1, 0)
    last = min(max(int(np.searchsorted(every, hi - 1)), first + 1), n - 1)

    def reach(a: int) -> tuple[int, int]:  # the lines interval a's cubic takes
        return max(a - 1 if a + 2 < n else a - 2, 0), min(a + 2 if a >= 1 else a + 3, n - 1)

    ends = (*reach(first), *reach(max(last - 1, first)))
    return every[min(ends) : max(ends) + 1] - lo


def _at_lattice(m: Mapping, lr: np.ndarray, lc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mapping ``m`` at the lattice ``lr`` x ``lc`` (block-relative lines, which may lie outside the
    block), by the compiled loops' own arithmetic (``loops.evaluate``)."""
    frame = m._replace(
        ri=m.ri - m.ri[0], ci=m.ci - m.ci[0], shape=(m.ri[-1] - m.ri[0] + 1, m.ci[-1] - m.ci[0] + 1)
    )
    return evaluate(frame.jit, frame.shape[0], frame.shape[1], lr - m.ri[0], lc - m.ci[0])


def _interleave(lines: np.ndarray, mids: np.ndarray) -> np.ndarray:
    """``lines[0], mids[0], lines[1], mids[1], ..., lines[-1]``."""
    out = np.empty(len(lines) + len(mids), dtype=lines.dtype)
    out[0::2], out[1::2] = lines, mids
    return out


def _probes(n: int) -> np.ndarray:
    """Every STEP pixels of ``n``, the last included: control lines, and where a separable mapping is
    checked."""
    return np.unique(np.append(np.arange(0, n, STEP), n - 1))


def _failing(
    m: Mapping, exact_at, r, c, tolerance: tuple[float, float], pr: np.ndarray, pc: np.ndarray
) -> np.ndarray:
    """(len(pr), len(pc)) mask of probe pixels where the mapping misses the exact transform by more than
    ``tolerance`` (x, y) (NaN fails)."""
    ex, ey = exact_at(r[pr][:, None], c[pc][None, :])
    ax, ay = evaluate(m.jit, m.shape[0], m.shape[1], pr, pc)
    return ~(np.hypot((ex - ax) / tolerance[0], (ey - ay) / tolerance[1]) <= 1)
