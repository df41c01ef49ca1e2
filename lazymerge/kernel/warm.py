"""Compile the kernel's loops once, into numba's on-disk cache, so that workers start warm.

Serverless workers start cold: the first block would pay numba's compile time (seconds, see
benchmarks/kernel.py). ``lazymerge warm`` (or ``warm()``) renders one tiny block per code path: same-CRS,
cross-CRS control grid and separable mappings, every resampling family, float32 and uint16 sources; run it
when building a worker image with ``NUMBA_CACHE_DIR`` set to a directory the image keeps (numba reuses a
cache only on a CPU with the same features; elsewhere it compiles again).
"""

from __future__ import annotations

import time

import numpy as np
import zarr
from affine import Affine
from pyproj import CRS

from lazymerge.catalog.sources import Level
from lazymerge.contract.tasks import KernelOptions, TaskRow
from lazymerge.grid import TargetGrid
from lazymerge.kernel.block import render_chunk

RESAMPLINGS = ("nearest", "bilinear", "lanczos", "average", "med")  # one per compiled code path
DTYPES = ("float32", "uint16")
PAIRS = (("EPSG:32618", "EPSG:32618"), ("EPSG:32617", "EPSG:32618"), ("EPSG:4326", "EPSG:3857"))


def warm() -> float:
    """Render a 32 x 32 block for every (source CRS, target CRS, dtype, resampling); returns seconds."""
    t0 = time.perf_counter()
    for src_crs, dst_crs in PAIRS:
        geographic = CRS.from_user_input(src_crs).is_geographic
        src = Affine(1e-4, 0, 10.0, 0, -1e-4, 45.0) if geographic else Affine(10, 0, 500000, 0, -10, 5e6)
        x, y = (1113194.9, 5621521.5) if geographic else (500100.0, 4999900.0)
        grid = TargetGrid(CRS.from_user_input(dst_crs), Affine(5, 0, x, 0, -5, y), (32, 32), (32, 32))
        for dtype in DTYPES:
            store = zarr.storage.MemoryStore()
            zarr.create_array(store, name="a", data=np.ones((64, 64), dtype=dtype))
            nodata = None if dtype.startswith("float") else 0.0
            row = TaskRow(Level("a", tuple(src)[:6], (64, 64), dtype, nodata, crs=src_crs), (0, 64, 0, 64))
            for resampling in RESAMPLINGS:
                opts = KernelOptions(resampling=resampling)
                render_chunk([row], grid, 0, 0, store, np.dtype("float32"), opts)
    return time.perf_counter() - t0
