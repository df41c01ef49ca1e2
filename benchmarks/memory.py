"""Bounded memory: write a mosaic whose output is FACTOR x allowed_mem and report each worker's peak RSS.

    .venv/bin/python benchmarks/memory.py [--allowed-mem 400MB] [--factor 20] [--chunk 512] \
        [--executor processes]

The seed's four tiles (10 m) are mosaicked at the resolution that makes the float32 output FACTOR times
``allowed_mem``, streamed block by block into Zarr with ``to_zarr``. Cubed measures each task's peak RSS
(the worker process's ru_maxrss: its whole baseline plus the task); the table compares the largest of them
with ``allowed_mem`` and with Cubed's projection. Threads cannot measure per-task memory: use processes,
lithops or dask.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

import cubed
import numpy as np

from lazymerge.api import merge
from lazymerge.demo import SEED_TARGET, build_seed_store
from lazymerge.executors import get_executor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--allowed-mem", default="400MB")
    ap.add_argument("--factor", type=float, default=20.0)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--executor", default="processes")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="lazymerge-membench-") as tmp:
        store = build_seed_store(Path(tmp) / "seed.zarr")
        options = {"max_workers": args.workers} if args.executor in ("threads", "processes") else {}
        executor = get_executor(args.executor, **options)
        # the worker's own baseline (Python, numpy, zarr, cubed, numba/LLVM), measured, not guessed
        reserved = cubed.measure_reserved_mem(executor, work_dir=f"{tmp}/probe")
        spec = cubed.Spec(work_dir=f"{tmp}/wd", allowed_mem=args.allowed_mem, reserved_mem=reserved)
        xmin, ymin, xmax, ymax = SEED_TARGET["bbox"]
        target_bytes = args.factor * spec.allowed_mem
        res = math.sqrt((xmax - xmin) * (ymax - ymin) * 4 / target_bytes)  # float32 pixels
        result = merge(
            store,
            crs=SEED_TARGET["crs"],
            bbox=SEED_TARGET["bbox"],
            resolution=res,
            chunk_size=(args.chunk,) * 2,
            sortby="id",
            spec=spec,
        )
        arr = result.array
        reports: list = []
        t0 = time.perf_counter()
        out = result.to_zarr(f"{tmp}/out.zarr", executor=executor, progress=False, report=reports)
        wall = time.perf_counter() - t0
        sample = out[:: max(1, out.shape[0] // 64), :: max(1, out.shape[1] // 64)]
        assert set(np.unique(sample[np.isfinite(sample)])) == {100.0, 200.0, 300.0, 400.0}
        (name, tasks, projected, peak), *_ = [r for r in reports[0].rows() if r[0].startswith("op-")]
        driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        rows = [
            ("executor", args.executor, ""),
            ("output shape x dtype", f"{arr.shape} float32", ""),
            ("output bytes", f"{arr.nbytes / 1e6:,.0f} MB", f"{arr.nbytes / spec.allowed_mem:.1f}"),
            ("allowed_mem", f"{spec.allowed_mem / 1e6:,.0f} MB", "1.00"),
            (
                "reserved_mem (measured)",
                f"{spec.reserved_mem / 1e6:,.1f} MB",
                f"{spec.reserved_mem / spec.allowed_mem:.2f}",
            ),
            ("tasks (blocks)", f"{tasks}", f"chunk {args.chunk}x{args.chunk}"),
            ("projected mem per task", f"{projected / 1e6:,.1f} MB", f"{projected / spec.allowed_mem:.2f}"),
            (
                "peak RSS per worker (max)",
                f"{peak / 1e6:,.1f} MB" if peak else "not measured",
                f"{peak / spec.allowed_mem:.2f}" if peak else "",
            ),
            ("driver peak RSS", f"{driver / 1e6:,.1f} MB", f"{driver / arr.nbytes:.3f} x output"),
            ("wall time", f"{wall:,.1f} s", ""),
        ]
        print(f"{'quantity':28} {'value':>26}  ratio to allowed_mem")
        for k, v, r in rows:
            print(f"{k:28} {v:>26}  {r}")
        ok = peak is not None and peak < spec.allowed_mem
        print(f"peak RSS per worker under allowed_mem: {ok}")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    from benchmarks.provenance import header

    print(header(), flush=True)
    main()
