"""Chunk footprints (each chunk's EPSG:4326 bounds, which planning joins with the sources'): lazymerge's
3 points an edge widened by the edge's bend against 21 points an edge (pyproj's ``transform_bounds``
default, lazymerge's before), on grids in several CRSs: time, and how often and how far each falls short
of the chunk's true bounds (401 points an edge, on up to 3,000 chunks of each grid).

    python -m benchmarks.footprints
"""

from __future__ import annotations

import time

import numpy as np

from lazymerge.catalog.footprints import DENSIFY, SAMPLES, grid_lonlat_bounds, lonlat_bounds
from lazymerge.grid import TargetGrid

GRIDS = [  # (label, CRS, bbox, resolution, chunk)
    ("LAEA Europe, 10 km chunks", "EPSG:3035", (3.0e6, 2.0e6, 5.0e6, 4.0e6), 10.0, 1024),
    ("UTM 60N, 15 km chunks", "EPSG:32660", (300_000.0, 5.0e6, 900_000.0, 6.0e6), 30.0, 512),
    ("Antarctic polar, 64 km chunks", "EPSG:3031", (-3.0e6, -3.0e6, 3.0e6, 3.0e6), 1000.0, 64),
    ("Arctic polar, 256 km chunks", "EPSG:3413", (-3.0e6, -3.0e6, 3.0e6, 3.0e6), 1000.0, 256),
    ("Web Mercator world, 1280 km", "EPSG:3857", (-2.0e7, -1.5e7, 2.0e7, 1.5e7), 5000.0, 256),
    (
        "sinusoidal world, 1280 km",
        "+proj=sinu +lon_0=0 +datum=WGS84 +units=m",
        (-2.0e7, -1.0e7, 2.0e7, 1.0e7),
        5000.0,
        256,
    ),
]


def shortfall(bounds: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """How far (degrees) each box falls short of the true one on its worst side (<= 0: it holds it)."""
    return np.maximum.reduce(
        [
            bounds[:, 0] - truth[:, 0],
            bounds[:, 1] - truth[:, 1],
            truth[:, 2] - bounds[:, 2],
            truth[:, 3] - bounds[:, 3],
        ]
    )


def cpu(grid: TargetGrid, samples: int, repeat: int = 3) -> float:
    """Least CPU seconds of ``repeat`` footprint runs over every chunk of ``grid``."""
    xs, ys = grid.chunk_edges()
    best = np.inf
    for _ in range(repeat):
        t = time.process_time()
        grid_lonlat_bounds(grid.crs, xs, ys, samples=samples)
        best = min(best, time.process_time() - t)
    return best


def main() -> None:
    print(
        f"{'grid':<30} {'chunks':>7}  {'21 pts s':>8} {'3 pts s':>8} {'ratio':>6}  "
        f"{'21 pts short':>12} {'by up to':>9}  {'3 pts short':>11} {'by up to':>9}"
    )
    for label, crs, bbox, res, chunk in GRIDS:
        grid = TargetGrid.from_bbox(crs, bbox, res, (chunk, chunk))
        xs, ys = grid.chunk_edges()
        old = grid_lonlat_bounds(grid.crs, xs, ys, samples=DENSIFY)
        new = grid_lonlat_bounds(grid.crs, xs, ys)
        t_old, t_new = cpu(grid, DENSIFY), cpu(grid, SAMPLES)
        boxes = grid.chunk_boxes(np.arange(len(new)))  # row-major, as the footprints
        sel = np.random.default_rng(0).choice(len(boxes), min(3000, len(boxes)), replace=False)
        truth = lonlat_bounds(grid.crs, boxes[sel], 401)
        ok = np.isfinite(truth).all(axis=1) & (truth[:, 0] <= truth[:, 2]) & (truth[:, 2] - truth[:, 0] < 90)
        s_old, s_new = shortfall(old[sel][ok], truth[ok]), shortfall(new[sel][ok], truth[ok])
        print(
            f"{label:<30} {len(boxes):>7}  {t_old:8.3f} {t_new:8.3f} {t_old / t_new:5.1f}x  "
            f"{100 * np.mean(s_old > 0):11.1f}% {max(s_old.max(), 0):9.1e}  "
            f"{100 * np.mean(s_new > 0):10.1f}% {max(s_new.max(), 0):9.1e}"
        )
    print(
        "\n'short': share of the sampled chunks whose bounds miss part of the chunk (against 401 points an "
        "edge), and by how much at most, in degrees; chunks across the antimeridian are not checked."
    )


if __name__ == "__main__":
    from benchmarks.provenance import header

    print(header(), flush=True)
    main()
