"""Area statistics over rotated footprints, computed independently of lazymerge: each target pixel's
footprint (its four corners transformed exactly with pyproj) clipped against every source pixel by shapely.

The oracle for ``average``/``sum``/``rms`` (area-weighted) and ``min``/``max``/``mode``/``med``/``q1``/
``q3`` (every pixel the footprint covers by more than ``COVERED``, in row-major order) where GDAL's warper
approximates rotated footprints differently.
"""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine
from pyproj import Transformer

from tests.support.gdal_oracle import Raster

QUANTILE = {"med": 0.5, "q1": 0.25, "q3": 0.75}
COVERED = 1e-10  # a source pixel counts as under a footprint when it covers more than this (px^2)


class Footprints:
    """Each target pixel's area in every source pixel under it: ``pixel``, ``row``, ``col``, ``area``
    (row-major within each pixel), and ``near``: pixels with a source pixel they cover by less than
    ``eps`` or come within ``eps`` of (a corner off by ``eps`` could add or drop it)."""

    def __init__(self, src: Raster, crs: str, transform: Affine, shape: tuple[int, int], eps: float = 1e-3):
        h, w = shape
        r, c = np.mgrid[0 : h + 1, 0 : w + 1].astype("f8")
        x, y = transform * (c, r)
        sx, sy = Transformer.from_crs(crs, src.crs, always_xy=True).transform(x, y)
        col, row = ~Affine(*src.transform) * (np.asarray(sx), np.asarray(sy))
        quads = np.stack(  # (h, w, 4, 2): top-left, top-right, bottom-right, bottom-left
            [
                np.stack([col[:-1, :-1], row[:-1, :-1]], -1),
                np.stack([col[:-1, 1:], row[:-1, 1:]], -1),
                np.stack([col[1:, 1:], row[1:, 1:]], -1),
                np.stack([col[1:, :-1], row[1:, :-1]], -1),
            ],
            axis=2,
        ).reshape(h * w, 4, 2)
        polys = shapely.polygons(quads)
        # the footprint's bounding box of pixels, and one more around: pixels it comes close to count too
        lo, hi = np.floor(quads.min(axis=1)).astype(int) - 1, np.ceil(quads.max(axis=1)).astype(int) + 1
        pix, rr, cc = [], [], []
        for p in range(h * w):
            i, j = np.mgrid[lo[p, 1] : hi[p, 1], lo[p, 0] : hi[p, 0]]
            pix.append(np.full(i.size, p))
            rr.append(i.ravel())
            cc.append(j.ravel())
        self.pixel, self.row, self.col = np.concatenate(pix), np.concatenate(rr), np.concatenate(cc)
        cells = shapely.box(self.col, self.row, self.col + 1, self.row + 1)
        area = shapely.area(shapely.intersection(polys[self.pixel], cells))
        gap = shapely.distance(polys[self.pixel], cells)
        doubtful = ((area > 0) & (area < eps)) | ((area == 0) & (gap < eps))
        self.area, self.shape = area, shape
        self.near = np.bincount(self.pixel, doubtful, minlength=h * w).reshape(shape) > 0

    def stat(self, data: np.ndarray, name: str) -> np.ndarray:
        """``name`` of ``data`` (a source without NaN, covering every footprint) per target pixel."""
        v = data[self.row, self.col].astype("f8")
        n = self.shape[0] * self.shape[1]
        weight = np.bincount(self.pixel, self.area, minlength=n)
        if name in ("average", "sum", "rms"):
            acc = np.bincount(self.pixel, self.area * (v * v if name == "rms" else v), minlength=n)
            out = {"average": acc / weight, "sum": acc, "rms": np.sqrt(acc / weight)}[name]
            return out.reshape(self.shape)
        out = np.empty(n)
        covered = self.area > COVERED
        for p, vals in enumerate(
            np.split(v[covered], np.cumsum(np.bincount(self.pixel[covered], minlength=n))[:-1])
        ):
            if name == "min":
                out[p] = vals.min()
            elif name == "max":
                out[p] = vals.max()
            elif name == "mode":  # the most frequent value; on ties, the first in row-major order
                uniq, first, counts = np.unique(vals, return_index=True, return_counts=True)
                best = counts == counts.max()
                out[p] = vals[first[best].min()]
            else:
                out[p] = np.sort(vals)[max(int(np.ceil(QUANTILE[name] * len(vals))) - 1, 0)]
        return out.reshape(self.shape)
