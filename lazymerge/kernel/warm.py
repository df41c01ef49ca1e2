"""Compile the kernel's loops once, into numba's on-disk cache, so that workers start warm.

Serverless workers start cold: the first block would pay numba's compile time (see benchmarks/kernel.py).
The loops are small units compiled per case (``kernel.loops.COMPILED``: nearest or a kernel or an area
statistic; without rotation, on a control grid or rotated) and per source and buffer dtype, each when a
request first needs it. ``lazymerge warm`` (or ``warm()``) renders one tiny block per unit: same-CRS,
cross-CRS control grid, separable and rotated mappings, every resampling family, for every source dtype the
kernel accepts (``DTYPES``), into the default float output (all resamplings), into the source's own
integer dtype (nearest straight into it) and through the float buffers of the compositing methods other
than first/last (nearest, bilinear); run it when building a worker image with ``NUMBA_CACHE_DIR`` set to a
directory the image keeps (numba reuses a cache only on a CPU with the same features; elsewhere it
compiles again). ``warm_request`` compiles only what one merge needs (the demo prints it as its own step).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import zarr
from affine import Affine
from pyproj import CRS, Transformer

from lazymerge.catalog.sources import Level
from lazymerge.contract.tasks import KernelOptions, TaskRow
from lazymerge.grid import TargetGrid
from lazymerge.kernel.block import render_chunk

RESAMPLINGS = ("nearest", "bilinear", "lanczos", "average", "med")  # one per compiled code path
# every source dtype the kernel reads (its loops are compiled per source and output dtype)
DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64")
# (source CRS, target CRS, the source grid rotated): no rotation, control grid, separable, rotated
CASES = (
    ("EPSG:32618", "EPSG:32618", False),
    ("EPSG:32617", "EPSG:32618", False),
    ("EPSG:4326", "EPSG:3857", False),
    ("EPSG:32618", "EPSG:32618", True),
)


def _default_float(dtype: str) -> str:
    """The merge's default output for one source dtype: a float holding it."""
    return str(np.promote_types(np.dtype(dtype), np.float32))


def _render(
    case: tuple[str, str, bool], src_dtype: str, out_dtype: str, resampling: str, method: str = "first"
) -> None:
    """A 32 x 32 block of one case (source CRS, target CRS, rotated), source dtype, output dtype,
    resampling and compositing method."""
    src_crs, dst_crs, rotated = case
    geographic = CRS.from_user_input(src_crs).is_geographic
    src = Affine(1e-4, 0, 10.0, 0, -1e-4, 45.0) if geographic else Affine(10, 0, 500000, 0, -10, 5e6)
    if rotated:
        src = src * Affine.rotation(2.0)
    # the block's corner: the source's centre, in the target CRS (so that every case samples the source)
    x, y = Transformer.from_crs(src_crs, dst_crs, always_xy=True).transform(*(src * (32, 32)))
    # a 32 x 32 chunk of a grid wider than the control grid's step (as real grids are)
    grid = TargetGrid(CRS.from_user_input(dst_crs), Affine(5, 0, x, 0, -5, y), (160, 160), (32, 32))
    store = zarr.storage.MemoryStore()
    zarr.create_array(store, name="a", data=np.ones((64, 64), dtype=src_dtype))
    source_nodata = None if np.dtype(src_dtype).kind == "f" else 0.0
    row = TaskRow(Level("a", tuple(src)[:6], (64, 64), src_dtype, source_nodata, crs=src_crs), (0, 64, 0, 64))
    nodata = None if np.dtype(out_dtype).kind == "f" else 0.0
    opts = KernelOptions(resampling=resampling, nodata=nodata, method=method)
    render_chunk([row], grid, 0, 0, store, np.dtype(out_dtype), opts)


def warm(dtypes: Iterable[str] = DTYPES) -> float:
    """Render a 32 x 32 block for every (case, source dtype, resampling) into the default float output,
    nearest into the source's integer dtype, and nearest and bilinear through the methods' float
    buffers; returns seconds."""
    t0 = time.perf_counter()
    for case in CASES:
        for dtype in dtypes:
            for resampling in RESAMPLINGS:
                _render(case, dtype, _default_float(dtype), resampling)
            if np.dtype(dtype).kind in "iu":
                _render(case, dtype, dtype, "nearest")
            for resampling in ("nearest", "bilinear"):  # integer outputs of bilinear take these too
                _render(case, dtype, _default_float(dtype), resampling, "mean")
    return time.perf_counter() - t0


def prime() -> float:
    """Load numba's CPU target (its type registries, 0.2-0.4 s), which a process otherwise does at its first
    compile (a load from the cache does without: ``loops._Cache``): run where workers are forked from (a
    Lithops localhost runner), so that a forked task that compiles starts with it loaded. Compiles
    nothing; returns seconds."""
    from numba.core.registry import cpu_target

    t0 = time.perf_counter()
    cpu_target.target_context.refresh()
    return time.perf_counter() - t0


def warm_request(src_dtypes: Iterable[str], out_dtype: str, resampling: str, method: str = "first") -> float:
    """Compile only what a merge of sources of ``src_dtypes`` into ``out_dtype`` with ``resampling`` and
    ``method`` needs (the same-CRS and cross-CRS mappings); returns seconds (about none once numba's cache
    has them)."""
    t0 = time.perf_counter()
    for case in CASES[:2]:
        for dtype in sorted(set(src_dtypes)):
            _render(case, dtype, out_dtype, resampling, method)
    return time.perf_counter() - t0
