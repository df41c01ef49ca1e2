"""TargetGrid: the output's CRS, affine, shape and chunking -- built and validated once, passed everywhere."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from affine import Affine
from pyproj import CRS

from lazymerge.geometry import grid_lonlat_bounds


@dataclass(frozen=True)
class TargetGrid:
    """A north-up pixel grid: ``transform == (res, 0, xmin, 0, -res, ymax)`` with square pixels."""

    crs: CRS
    transform: Affine
    shape: tuple[int, int]
    chunk_size: tuple[int, int]

    @classmethod
    def from_bbox(
        cls, crs: CRS, bbox: tuple[float, float, float, float], resolution: float, chunk_size: tuple[int, int]
    ) -> TargetGrid:
        """The grid whose top-left corner is (xmin, ymax), covering bbox at ``resolution``.

        Inputs are trusted: validate them first (``lazymerge.planner.request``).
        """
        xmin, ymin, xmax, ymax = bbox
        width = max(1, math.ceil((xmax - xmin) / resolution - 1e-9))
        height = max(1, math.ceil((ymax - ymin) / resolution - 1e-9))
        transform = Affine(resolution, 0.0, xmin, 0.0, -resolution, ymax)
        return cls(CRS.from_user_input(crs), transform, (height, width), tuple(chunk_size))

    def __repr__(self) -> str:
        return (
            f"TargetGrid({self.crs.to_string()}, shape={self.shape}, res={self.resolution:g}, "
            f"bbox={tuple(round(v, 6) for v in self.bbox)}, chunks={self.chunk_size}, "
            f"nchunks={self.nchunks})"
        )

    @property
    def resolution(self) -> float:
        return float(self.transform.a)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        h, w = self.shape
        x0, y1 = self.transform @ (0, 0)
        x1, y0 = self.transform @ (w, h)
        return (x0, y0, x1, y1)

    @property
    def nchunks(self) -> tuple[int, int]:
        return (math.ceil(self.shape[0] / self.chunk_size[0]), math.ceil(self.shape[1] / self.chunk_size[1]))

    @property
    def chunks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Cubed/dask style chunk sizes, ragged at the bottom and right edges."""
        out = []
        for n, c in zip(self.shape, self.chunk_size, strict=True):
            sizes = [c] * (n // c)
            if n % c:
                sizes.append(n % c)
            out.append(tuple(sizes))
        return (out[0], out[1])

    def chunk_window(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(row0, row1, col0, col1) pixel window of a chunk."""
        ch, cw = self.chunk_size
        return (row * ch, min((row + 1) * ch, self.shape[0]), col * cw, min((col + 1) * cw, self.shape[1]))

    def chunk_transform(self, row: int, col: int) -> Affine:
        r0, _, c0, _ = self.chunk_window(row, col)
        return self.transform @ Affine.translation(c0, r0)

    @cached_property
    def chunk_bounds(self) -> np.ndarray:
        """(nrows * ncols, 4) boxes (xmin, ymin, xmax, ymax) of every chunk in the target CRS, row-major."""
        nr, nc = self.nchunks
        ch, cw = self.chunk_size
        rows = np.minimum(np.arange(nr + 1) * ch, self.shape[0])
        cols = np.minimum(np.arange(nc + 1) * cw, self.shape[1])
        x = self.transform.c + cols * self.transform.a
        y = self.transform.f + rows * self.transform.e
        xx0, yy0 = np.meshgrid(x[:-1], y[1:])
        xx1, yy1 = np.meshgrid(x[1:], y[:-1])
        return np.stack([xx0.ravel(), yy0.ravel(), xx1.ravel(), yy1.ravel()], axis=1)

    def chunk_footprints(self) -> np.ndarray:
        """(n, 4) EPSG:4326 (west, south, east, north) of every chunk, antimeridian- and pole-aware,
        densified along every chunk edge (each shared edge transformed once)."""
        nr, nc = self.nchunks
        ch, cw = self.chunk_size
        rows = np.minimum(np.arange(nr + 1) * ch, self.shape[0])
        cols = np.minimum(np.arange(nc + 1) * cw, self.shape[1])
        xs = self.transform.c + cols * self.transform.a
        ys = self.transform.f + rows * self.transform.e
        return grid_lonlat_bounds(self.crs, xs, ys)

    def pixel_centres(self, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        """Target CRS x, y of every pixel centre of a chunk (centres at +0.5, as GDAL)."""
        r0, r1, c0, c1 = self.chunk_window(row, col)
        t = self.transform
        cols = np.arange(c0, c1) + 0.5
        rows = np.arange(r0, r1) + 0.5
        x = t.c + cols * t.a
        y = t.f + rows * t.e
        return np.meshgrid(x, y)
