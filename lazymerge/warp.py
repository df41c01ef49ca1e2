"""Coordinate mapping from target pixel centres to source pixels, and nearest-neighbour sampling.

Pixel centres sit at +0.5 and the source index is ``floor`` of the source pixel coordinate, as GDAL's
warper does; the transform is exact (pyproj per pixel) for now.
"""

from __future__ import annotations

import threading

import numpy as np
from affine import Affine
from pyproj import Transformer

_local = threading.local()


def transformer(src: str, dst: str) -> Transformer:
    """A Transformer per thread (pyproj transformers are not thread-safe), cached by CRS pair."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    key = (src, dst)
    if key not in cache:
        cache[key] = Transformer.from_crs(src, dst, always_xy=True)
    return cache[key]


def source_pixels(inv: Affine, sx: np.ndarray, sy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer (row, col) of the source pixel containing each source-CRS point; -1 where not finite.

    Uses the inverse affine's coefficients directly, so exact pixel edges stay exact, as GDAL's do.
    """
    col = inv.a * sx + inv.b * sy + inv.c
    row = inv.d * sx + inv.e * sy + inv.f
    ok = np.isfinite(col) & np.isfinite(row)
    ci = np.where(ok, np.floor(np.where(ok, col, 0.0)), -1).astype("i8")
    ri = np.where(ok, np.floor(np.where(ok, row, 0.0)), -1).astype("i8")
    return ri, ci


def sample_nearest(
    data: np.ndarray, origin: tuple[int, int], ri: np.ndarray, ci: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Values at (ri, ci) from ``data`` (a window with top-left ``origin``), and where they fall inside it."""
    r = ri - origin[0]
    c = ci - origin[1]
    inside = (r >= 0) & (r < data.shape[0]) & (c >= 0) & (c < data.shape[1])
    values = np.zeros(ri.shape, dtype=data.dtype)
    values[inside] = data[r[inside], c[inside]]
    return values, inside
