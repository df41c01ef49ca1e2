"""The memory lazymerge declares to Cubed bounds what a worker process really uses (benchmarks/memory.py at
scale): a real processes run, each task's peak measured in its worker."""

from __future__ import annotations

import cubed
import numpy as np
import zarr

from lazymerge.api import merge
from lazymerge.catalog.meta import write_meta
from lazymerge.contract.budget import BASELINE_BYTES, PLAN_CACHE_BYTES
from lazymerge.executors import get_executor
from tests.support.stores import add_source


def test_projected_memory_bounds_the_workers_peak(tmp_path, monkeypatch):
    """Average downsampling by 8 (each 128-pixel block reads a 1024-pixel window of random float32 and keeps
    running sums over it), one worker with its source chunk cache off. The driver holds 400 MB while the
    worker starts: the peak must be the worker's own, not inherited from its parent (``ru_maxrss``)."""
    monkeypatch.setenv("LAZYMERGE_CHUNK_CACHE_MB", "0")  # read by the spawned worker
    data = np.random.default_rng(5).random((1024, 1536), dtype="f4")
    path = tmp_path / "s.zarr"
    add_source(zarr.open_group(str(path), mode="w"), "a", "EPSG:32618", (10, 0, 5e5, 0, -10, 6e6), data)
    write_meta(path)
    spec = cubed.Spec(tmp_path / "wd", allowed_mem="2GB", reserved_mem=BASELINE_BYTES + PLAN_CACHE_BYTES)
    bbox = (5e5, 6e6 - 10240, 5e5 + 15360, 6e6)
    result = merge(
        path,
        crs="EPSG:32618",
        bbox=bbox,
        resolution=80,
        chunk_size=(128, 128),
        resampling="average",
        spec=spec,
    )
    # Compile this case's loops here first, into numba's on-disk cache, so the worker loads them: a compile
    # in the worker (an empty cache, as on a fresh clone) adds LLVM's memory, a one-off the projection
    # leaves out (worker images run `lazymerge warm`).
    result.array[:128, :128].compute()
    ballast = np.ones(50_000_000)  # 400 MB in the driver
    reports: list = []
    out = result.to_zarr(
        tmp_path / "o.zarr", executor=get_executor("processes", max_workers=1), report=reports
    )
    del ballast
    expected = data.reshape(128, 8, 192, 8).mean(axis=(1, 3))  # the pixels are 8 x 8 source cells
    np.testing.assert_allclose(out[:], expected, rtol=1e-5)
    [(_, tasks, projected, peak)] = [row for row in reports[0].rows() if row[0].startswith("op-")]
    assert tasks >= 1 and peak is not None
    assert projected / 2 < peak <= projected, (peak, projected)
