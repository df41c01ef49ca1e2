"""Bounded memory: each worker's peak RSS against Cubed's projection and allowed_mem, on real source reads.

    PYTHONPATH=. .venv/bin/python -m benchmarks.memory [--tile 4096] [--workers 2] [--allowed-mem 2GB]

Four tiles of random data (``--tile`` pixels square at 10 m, Zarr chunks 512, no overviews: every
downsampling reads full-resolution windows), two in UTM 18N and two in UTM 17N east of them, one store per
dtype. Each workload mosaics them into UTM 18N with ``to_zarr`` on the processes executor (fresh worker
processes per workload) and lazymerge's default Spec: ``allowed_mem`` as given and the default
``reserved_mem`` (contract/budget.py: baseline, plan cache and source chunk cache). Cubed records each
task's peak RSS (the worker's ru_maxrss: its whole baseline, its caches and the task); the table shows the
largest of them against Cubed's projected memory per task (reserved_mem + what lazymerge declares for the
task: contract/cost.py task_memory) and against allowed_mem. The projection must bound the peak: the script
exits 1 when a row's peak exceeds its projection or allowed_mem. The peak is the worker's own (Linux
``VmHWM``, executors/local.py ``own_peak_rss``): ``ru_maxrss`` in a spawned worker starts at its parent's
peak, so it would report the driver's memory. allowed_mem is 2GB: the /8 average at chunk 512 projects
about 1.07 GB, which the default 1GB refuses (TaskMemoryError, naming the chunk) before anything runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from pyproj import Transformer

from lazymerge.api import default_spec, merge
from lazymerge.catalog.conventions import (
    Overview,
    ProjAttrs,
    SpatialAttrs,
    write_multiscales,
    write_proj,
    write_spatial,
)
from lazymerge.catalog.meta import write_meta
from lazymerge.executors import get_executor

RES = 10.0
X0, Y0 = 500000.0, 5990000.0  # lower left of the UTM 18N tiles
# (name, dtype, resampling, target resolution / source resolution, chunk size)
WORKLOADS = [
    ("average /8", "float32", "average", 8.0, 512),
    ("nearest /8", "float32", "nearest", 8.0, 512),
    ("average /4, chunk 1024", "uint16", "average", 4.0, 1024),
    ("bilinear /2, chunk 256", "uint16", "bilinear", 2.0, 256),
    ("cubic x1, chunk 512", "float32", "cubic", 1.0, 512),
]


def _tile(root: zarr.Group, name: str, crs: str, x0: float, y1: float, data: np.ndarray) -> None:
    band = root.create_group(name).create_group("data")
    arr = band.create_array("0", data=data, chunks=(512, 512))
    h, w = data.shape
    bounds = (x0, y1 - h * RES, x0 + w * RES, y1)
    write_spatial(arr, SpatialAttrs(("y", "x"), (RES, 0.0, x0, 0.0, -RES, y1), bounds, (h, w)))
    write_proj(arr, ProjAttrs(code=crs))
    write_multiscales(band, [Overview("0")])


def build_store(path: Path, dtype: str, tile: int) -> tuple[float, float, float, float]:
    """Four random tiles (two UTM 18N, two UTM 17N to their east); returns the UTM 18N bbox to mosaic."""
    rng = np.random.default_rng(0)
    root = zarr.open_group(zarr.storage.LocalStore(str(path)), mode="w")
    side = tile * RES
    to17 = Transformer.from_crs("EPSG:32618", "EPSG:32617", always_xy=True)
    for k in range(4):
        if dtype == "float32":
            data = rng.random((tile, tile), dtype="f4")
        else:
            data = rng.integers(1, np.iinfo(dtype).max, (tile, tile), dtype=dtype)
        y1 = Y0 + side * (1 + k // 2)
        if k % 2 == 0:
            _tile(root, f"utm18_{k}", "EPSG:32618", X0, y1, data)
        else:  # the 17N tile whose upper left is the 18N point east of the 18N tile
            x, y = to17.transform(X0 + side, y1)
            _tile(root, f"utm17_{k}", "EPSG:32617", round(x / RES) * RES, round(y / RES) * RES, data)
    write_meta(path)
    # the UTM 18N tiles and most of the (rotated) 17N ones
    return (X0, Y0, X0 + 1.9 * side, Y0 + 2 * side)


def run(store: Path, bbox: tuple, tmp: str, workload: tuple, args: argparse.Namespace) -> tuple:
    name, dtype, resampling, factor, chunk = workload
    spec = default_spec(work_dir=f"{tmp}/wd", allowed_mem=args.allowed_mem)
    result = merge(
        store,
        crs="EPSG:32618",
        bbox=bbox,
        resolution=RES * factor,
        chunk_size=(chunk, chunk),
        resampling=resampling,
        sortby="id",
        spec=spec,
    )
    executor = get_executor("processes", max_workers=args.workers)  # fresh worker processes
    reports: list = []
    t0 = time.perf_counter()
    target = f"{tmp}/out-{time.monotonic_ns()}.zarr"
    out = result.to_zarr(target, executor=executor, progress=False, report=reports)
    wall = time.perf_counter() - t0
    sample = out[:: max(1, out.shape[0] // 64), :: max(1, out.shape[1] // 64)]
    filled = np.isfinite(sample) & (sample != 0) if dtype == "float32" else sample != 0
    assert filled.mean() > 0.5, f"{name}: the mosaic is mostly empty"
    [(_, tasks, projected, peak)] = [r for r in reports[0].rows() if r[0].startswith("op-")]
    return (
        name,
        dtype,
        f"{out.shape[0]}x{out.shape[1]}",
        tasks,
        int(spec.reserved_mem),
        projected,
        peak,
        int(spec.allowed_mem),
        wall,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile", type=int, default=4096)
    ap.add_argument("--allowed-mem", default="2GB")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lazymerge-membench-") as tmp:
        stores: dict[str, tuple] = {}
        for workload in WORKLOADS:
            dtype = workload[1]
            if dtype not in stores:
                path = Path(tmp) / f"{dtype}.zarr"
                stores[dtype] = (path, build_store(path, dtype, args.tile))
            rows.append(run(*stores[dtype], tmp, workload, args))
    print(
        f"4 tiles of {args.tile}x{args.tile} at 10 m (2 in UTM 18N, 2 in UTM 17N), Zarr chunks 512; "
        f"processes executor, {args.workers} workers; default reserved_mem; MB = 1e6 bytes"
    )
    head = (
        f"{'workload':24} {'dtype':8} {'output':>11} {'tasks':>5} {'reserved':>9} {'projected':>10} "
        f"{'peak RSS':>9} {'peak/proj':>9} {'allowed':>8} {'peak/allowed':>12} {'wall s':>7}"
    )
    print(head)
    ok = True
    for name, dtype, shape, tasks, reserved, projected, peak, allowed, wall in rows:
        ok &= peak is not None and peak <= projected <= allowed
        print(
            f"{name:24} {dtype:8} {shape:>11} {tasks:5d} {reserved / 1e6:9.0f} {projected / 1e6:10.0f} "
            f"{peak / 1e6:9.0f} {peak / projected:9.2f} {allowed / 1e6:8.0f} {peak / allowed:12.2f} "
            f"{wall:7.1f}"
        )
    print(f"peak RSS per worker <= projected <= allowed_mem on every row: {ok}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    from benchmarks.provenance import header

    print(header(), flush=True)
    main()
