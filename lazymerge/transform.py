"""Target pixel centres -> source CRS coordinates, exactly or through a checked control grid.

``exact``: every pixel centre through pyproj. Same CRS: the target coordinates themselves, no pyproj.
Otherwise a control grid (every ``STEP`` pixels, chunk edges included) is transformed exactly and
interpolated bilinearly; the interpolation is checked against the exact transform at every cell's centre,
and a cell whose error exceeds ``tolerance`` (source CRS units: the caller
passes its threshold in pixels times the finest source pixel) is transformed exactly, pixel by pixel.
Pixel centres sit at +0.5, as in GDAL.
"""

from __future__ import annotations

import numpy as np
from affine import Affine
from pyproj import CRS

from lazymerge.jit import interpolate
from lazymerge.warp import transformer

STEP = 16  # control points every STEP target pixels
THRESHOLD = 0.01  # maximum interpolation error, in source pixels


def source_xy(
    target_crs: CRS,
    target: Affine,
    rows: tuple[int, int],
    cols: tuple[int, int],
    source_crs: str,
    tolerance: float,
    exact: bool = False,
    offset: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Source CRS (x, y) of the target pixels ``rows`` x ``cols`` (half-open ranges of the target
    grid) at ``offset`` within each pixel (0.5: centres; 0: top-left corners); NaN where the transform
    fails."""
    r = np.arange(*rows) + offset
    c = np.arange(*cols) + offset

    def target_xy(rr: np.ndarray, cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return target.c + cc * target.a + rr * target.b, target.f + cc * target.d + rr * target.e

    if CRS.from_user_input(source_crs) == target_crs:
        return target_xy(*np.meshgrid(r, c, indexing="ij"))
    to_src = transformer(target_crs.to_wkt(), CRS.from_user_input(source_crs).to_wkt())

    def exact_at(rr: np.ndarray, cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sx, sy = to_src.transform(*target_xy(rr, cc), errcheck=False)
        return np.asarray(sx, dtype="f8"), np.asarray(sy, dtype="f8")

    if exact:
        return exact_at(*np.meshgrid(r, c, indexing="ij"))
    h, w = len(r), len(c)
    ri = np.unique(np.append(np.arange(0, h, STEP), h - 1))  # control rows and columns, edges included
    ci = np.unique(np.append(np.arange(0, w, STEP), w - 1))
    gx, gy = exact_at(*np.meshgrid(r[ri], c[ci], indexing="ij"))
    out_x, out_y = interpolate(gx, ri, ci, h, w), interpolate(gy, ri, ci, h, w)
    for a, b in _failing_cells(out_x, out_y, ri, ci, exact_at, r, c, tolerance):
        rs, cs = slice(ri[a], ri[a + 1] + 1), slice(ci[b], ci[b + 1] + 1)
        out_x[rs, cs], out_y[rs, cs] = exact_at(*np.meshgrid(r[rs], c[cs], indexing="ij"))
    return out_x, out_y


def _failing_cells(out_c, out_r, ri, ci, exact_at, r, c, threshold) -> list[tuple[int, int]]:
    """Control-grid cells whose interpolation misses the exact transform by more than ``threshold`` at
    the cell's centre, where bilinear interpolation errs most (NaN fails)."""
    if len(ri) < 2 or len(ci) < 2:
        return []
    a, b = np.meshgrid(np.arange(len(ri) - 1), np.arange(len(ci) - 1), indexing="ij")
    r0, r1, c0, c1 = ri[a], ri[a + 1], ci[b], ci[b + 1]
    pr, pc = (r0 + r1) // 2, (c0 + c1) // 2
    ec, er = exact_at(r[pr], c[pc])
    bad = ~(np.hypot(ec - out_c[pr, pc], er - out_r[pr, pc]) <= threshold)
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(bad), strict=True)]
