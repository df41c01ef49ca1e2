"""Target pixel centres -> fractional source pixel coordinates, exactly or through a checked control grid.

``exact``: every pixel centre through pyproj. Same CRS: one affine composition, no pyproj at all.
Otherwise a control grid (every ``STEP`` pixels, chunk edges included) is transformed exactly and
interpolated bilinearly; the interpolation is checked against the exact transform at every cell's centre
and at its edge midpoints, and a cell whose error exceeds ``threshold`` source pixels is transformed
exactly, pixel by pixel. Pixel centres sit at +0.5, as in GDAL.
"""

from __future__ import annotations

import numpy as np
from affine import Affine
from pyproj import CRS

from lazymerge.warp import transformer

STEP = 16  # control points every STEP target pixels
THRESHOLD = 0.01  # maximum interpolation error, in source pixels


def _to_pixels(inv: Affine, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f


def source_coords(
    target_crs: CRS,
    target: Affine,
    rows: tuple[int, int],
    cols: tuple[int, int],
    source_crs: str,
    source_inv: Affine,
    exact: bool = False,
    threshold: float = THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """(col, row) fractional source pixel coordinates of the target pixels ``rows`` x ``cols`` (half-open
    ranges of the target grid); NaN where the transform fails."""
    r = np.arange(*rows) + 0.5
    c = np.arange(*cols) + 0.5
    same = CRS.from_user_input(source_crs) == target_crs
    if same:  # target pixel -> source pixel is one affine map
        m = source_inv * target
        return m.a * c[None, :] + m.b * r[:, None] + m.c, m.d * c[None, :] + m.e * r[:, None] + m.f
    to_src = transformer(target_crs.to_wkt(), CRS.from_user_input(source_crs).to_wkt())

    def exact_at(rr: np.ndarray, cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = target.c + cc * target.a + rr * target.b
        y = target.f + cc * target.d + rr * target.e
        sx, sy = to_src.transform(x, y, errcheck=False)
        return _to_pixels(source_inv, np.asarray(sx), np.asarray(sy))

    if exact:
        return exact_at(*np.meshgrid(r, c, indexing="ij"))
    h, w = len(r), len(c)
    # control points: every STEP pixels from the first pixel centre, plus the last one
    ri = np.unique(np.append(np.arange(0, h, STEP), h - 1))
    ci = np.unique(np.append(np.arange(0, w, STEP), w - 1))
    gc, gr = exact_at(*np.meshgrid(r[ri], c[ci], indexing="ij"))
    out_c = np.empty((h, w))
    out_r = np.empty((h, w))
    # bilinear interpolation between control points, separably along rows then columns
    row_pos = np.interp(np.arange(h), ri, np.arange(len(ri)))
    col_pos = np.interp(np.arange(w), ci, np.arange(len(ci)))
    i0 = np.minimum(np.floor(row_pos).astype(int), len(ri) - 2) if len(ri) > 1 else np.zeros(h, int)
    j0 = np.minimum(np.floor(col_pos).astype(int), len(ci) - 2) if len(ci) > 1 else np.zeros(w, int)
    fr = (row_pos - i0)[:, None] if len(ri) > 1 else np.zeros((h, 1))
    fc = (col_pos - j0)[None, :] if len(ci) > 1 else np.zeros((1, w))
    i1 = np.minimum(i0 + 1, len(ri) - 1)
    j1 = np.minimum(j0 + 1, len(ci) - 1)
    for g, out in ((gc, out_c), (gr, out_r)):
        top = g[i0][:, j0] * (1 - fc) + g[i0][:, j1] * fc
        bottom = g[i1][:, j0] * (1 - fc) + g[i1][:, j1] * fc
        out[:] = top * (1 - fr) + bottom * fr
    # check each cell at its centre and edge midpoints; cells that fail (or touch NaN) go exact
    bad_cells = _failing_cells(out_c, out_r, ri, ci, exact_at, r, c, threshold)
    for a, b in bad_cells:
        rs, cs = slice(ri[a], ri[a + 1] + 1), slice(ci[b], ci[b + 1] + 1)
        ec, er = exact_at(*np.meshgrid(r[rs], c[cs], indexing="ij"))
        out_c[rs, cs], out_r[rs, cs] = ec, er
    return out_c, out_r


def _failing_cells(out_c, out_r, ri, ci, exact_at, r, c, threshold) -> list[tuple[int, int]]:
    """Control-grid cells whose interpolation misses the exact transform by more than ``threshold`` at
    the cell's centre or an edge midpoint (NaN fails)."""
    if len(ri) < 2 or len(ci) < 2:
        return []
    a, b = np.meshgrid(np.arange(len(ri) - 1), np.arange(len(ci) - 1), indexing="ij")
    r0, r1, c0, c1 = ri[a], ri[a + 1], ci[b], ci[b + 1]
    mr, mc = (r0 + r1) // 2, (c0 + c1) // 2
    pr = np.stack([mr, r0, mr, r1, mr])
    pc = np.stack([mc, mc, c0, mc, c1])
    ec, er = exact_at(r[pr], c[pc])
    err = np.hypot(ec - out_c[pr, pc], er - out_r[pr, pc])
    bad = ~np.all(err <= threshold, axis=0)
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(bad), strict=True)]
