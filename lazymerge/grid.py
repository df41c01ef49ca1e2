"""The one grid model: ``PixelGrid`` (CRS, affine, shape) for sources, levels and the target, and
``TargetGrid``, a north-up PixelGrid tiled into chunks -- built and validated once, passed everywhere.

All chunk arithmetic lives here (as odc-geo keeps ``GeoBox`` and ``GeoboxTiles`` apart).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from pyproj import CRS


@dataclass(frozen=True)
class PixelGrid:
    """A pixel grid: pixel ``(row, col)`` covers ``transform * (col + [0, 1), row + [0, 1))`` in ``crs``."""

    crs: CRS
    transform: Affine
    shape: tuple[int, int]

    @property
    def resolution(self) -> float:
        """The side of a square pixel of the same area."""
        t = self.transform
        return float(abs(t.a * t.e - t.b * t.d) ** 0.5)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the grid's corners in its CRS."""
        h, w = self.shape
        xs, ys = zip(*(self.transform @ (c, r) for c, r in ((0, 0), (w, 0), (0, h), (w, h))), strict=True)
        return (min(xs), min(ys), max(xs), max(ys))

    def tiled(self, chunk_size: tuple[int, int]) -> TargetGrid:
        """This grid tiled into ``chunk_size`` chunks."""
        return TargetGrid(self.crs, self.transform, self.shape, (chunk_size[0], chunk_size[1]))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.crs.to_string()}, shape={self.shape}, res={self.resolution:g}, "
            f"bbox={tuple(round(v, 6) for v in self.bbox)})"
        )


@dataclass(frozen=True, repr=False)
class TargetGrid(PixelGrid):
    """A north-up PixelGrid (``transform == (res, 0, xmin, 0, -res, ymax)``) tiled into chunks of
    ``chunk_size`` (rows, cols), ragged at the bottom and right edges."""

    chunk_size: tuple[int, int] = (512, 512)

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
        return cls(CRS.from_user_input(crs), transform, (height, width), (chunk_size[0], chunk_size[1]))

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, chunks={self.chunk_size}, nchunks={self.nchunks})"

    @property
    def pixels(self) -> PixelGrid:
        """The grid without its tiling."""
        return PixelGrid(self.crs, self.transform, self.shape)

    @property
    def resolution(self) -> float:
        return float(self.transform.a)

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

    def chunk_windows(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``chunk_window`` of many chunks at once, by flat (row-major) index: (row0, row1, col0, col1)."""
        rows, cols = np.divmod(np.asarray(flat, dtype="i8"), self.nchunks[1])
        ch, cw = self.chunk_size
        r0, c0 = rows * ch, cols * cw
        return r0, np.minimum(r0 + ch, self.shape[0]), c0, np.minimum(c0 + cw, self.shape[1])

    def chunk_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Target CRS x of every chunk column edge and y of every chunk row edge (left to right, top to
        bottom, the grid's edges included)."""
        nr, nc = self.nchunks
        ch, cw = self.chunk_size
        rows = np.minimum(np.arange(nr + 1) * ch, self.shape[0])
        cols = np.minimum(np.arange(nc + 1) * cw, self.shape[1])
        return self.transform.c + cols * self.transform.a, self.transform.f + rows * self.transform.e

    def chunk_boxes(self, chunks: np.ndarray) -> np.ndarray:
        """(n, 4) boxes (xmin, ymin, xmax, ymax) of the chunks with these row-major indices."""
        r, c = np.divmod(np.asarray(chunks, dtype="i8"), self.nchunks[1])
        xs, ys = self.chunk_edges()
        return np.stack([xs[c], ys[r + 1], xs[c + 1], ys[r]], axis=1)


def horizontal_crs(crs: CRS) -> CRS:
    """``crs`` when it is a horizontal CRS (geographic or projected, alone or in a compound CRS); raises
    InvalidCRSError for a vertical, geocentric or engineering one, which has no map grid."""
    from lazymerge.errors import InvalidCRSError

    if crs.is_geographic or crs.is_projected:
        return crs
    kind = "vertical" if crs.is_vertical else "geocentric" if crs.is_geocentric else crs.type_name
    raise InvalidCRSError(
        f"target crs {crs.to_string()!r} ({crs.name}) is a {kind} CRS, not a horizontal one; pass a "
        "geographic or projected CRS such as 'EPSG:4326' or 'EPSG:3857'"
    )


def crossing_bbox(crs: CRS, bbox: Any) -> Any:
    """In a geographic target CRS, a bbox with ``xmin > xmax`` crosses the antimeridian (as in STAC and
    RFC 7946): it becomes ``(xmin, ymin, xmax + 360, ymax)``, east of 180. Any other bbox as given."""
    try:
        xmin, ymin, xmax, ymax = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return bbox  # parse_bbox says what is wrong
    if crs.is_geographic and xmin > xmax:
        return (xmin, ymin, xmax + 360.0, ymax)
    return bbox
