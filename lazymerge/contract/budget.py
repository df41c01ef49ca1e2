"""A task's memory budget: what a kernel task holds besides its output block, in one place for the
kernel (which allocates it) and the planner (which projects it before anything runs)."""

from __future__ import annotations

import os

from lazymerge.errors import SettingError

READ_AHEAD = 2  # source windows read concurrently ahead of the one being warped
# Kernel working memory per output pixel, beyond the block itself (an upper bound): the compositing
# method's values, counts and sources (16 B), one source's sampled values before they combine (16 B),
# method temporaries and masks (~36 B); 16 B per source CRS for the area resamplings' corner lattice.
PIXEL_OVERHEAD = 68
PIXEL_PER_CRS = 16
GREEN = ("average", "sum", "rms")  # over rotated footprints: edges integrated over running sums (Green)
GREEN_CELLS = 16 << 20  # running sums for windows up to this many pixels (16 B each); larger go cell by cell
PLAN_CACHE_BYTES = 64 << 20  # decoded plan chunks kept per worker process
# A worker's interpreter and libraries (numpy, zarr, cubed, pyproj, numba with LLVM compiling the loops, and
# DataFusion/pyarrow when the driver's main module imports them, as spawned workers import it again): the
# smallest case of benchmarks/memory.py peaks at 272 MB per worker (VmHWM) before its caches fill
BASELINE_BYTES = 300_000_000


def cache_bytes(value: str | None) -> int:
    """Bytes of decoded source chunks a worker keeps, from ``LAZYMERGE_CHUNK_CACHE_MB`` (MiB; unset: 128,
    0 turns the cache off)."""
    if value is None:
        return 128 << 20
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = -1.0
    if not 0 <= megabytes < float("inf"):  # NaN fails too
        raise SettingError(
            f"LAZYMERGE_CHUNK_CACHE_MB={value!r} is not a size in MiB; set it to a number such as 128, "
            "or 0 to turn the source chunk cache off"
        )
    return int(megabytes * 2**20)


SOURCE_CACHE_BYTES = cache_bytes(os.environ.get("LAZYMERGE_CHUNK_CACHE_MB"))  # per worker process
# a worker's baseline: the interpreter and libraries, plus its caches of plan chunks and of decoded
# source chunks; pass a Spec with your own reserved_mem when you change LAZYMERGE_CHUNK_CACHE_MB
DEFAULT_RESERVED_MEM = BASELINE_BYTES + PLAN_CACHE_BYTES + SOURCE_CACHE_BYTES
