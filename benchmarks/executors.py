"""Wall time and per-task overhead of each local executor on the same mosaic, every run from cold caches.

    .venv/bin/python benchmarks/executors.py [--resolution 10] [--chunk 128] [--workers 2] [--repeat 2]

The seed's four tiles are written with ``to_zarr`` on every executor; each output is checked identical to
the threads one. Every measurement runs in a fresh process (``--child``), so no executor reuses what an
earlier run left in this process's caches (opened arrays, the plan, decoded source chunks, numba's loaded
loops): threads pays its cold start as the worker processes of the others do. The kernel's own cost is
measured first, in its own fresh process, by rendering every block serially (process CPU time); per-task
overhead = (wall x workers - kernel time) / tasks: what the executor adds to each task (start-up,
pickling, scheduling, storage round trips). Best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import cubed
import numpy as np
import zarr

from lazymerge.api import merge
from lazymerge.demo import SEED_TARGET, build_seed_store
from lazymerge.executors import get_executor
from lazymerge.executors.dask import local_cluster
from lazymerge.kernel.block import merge_block
from lazymerge.output.write import blocks_per_task


@contextmanager
def dask_executor(workers: int) -> Iterator[Any]:
    with local_cluster(n_workers=workers, memory_limit="1GB") as cluster:
        yield get_executor("dask", address=cluster.scheduler_address)


def executors(workers: int) -> dict[str, Callable[[], Any]]:
    return {
        "threads": lambda: nullcontext(get_executor("threads", max_workers=workers)),
        "processes": lambda: nullcontext(get_executor("processes", max_workers=workers)),
        "lithops localhost (preload)": lambda: nullcontext(get_executor("lithops", worker_processes=workers)),
        "lithops localhost (plain)": lambda: nullcontext(
            get_executor("lithops", worker_processes=workers, preload=False)
        ),
        "dask LocalCluster": lambda: dask_executor(workers),
    }


def _merge(store: str, tmp: str, args: argparse.Namespace) -> Any:
    spec = cubed.Spec(work_dir=f"{tmp}/wd", allowed_mem="500MB", reserved_mem="100MB")
    crs, bbox = SEED_TARGET["crs"], SEED_TARGET["bbox"]
    return merge(
        store,
        crs=crs,
        bbox=bbox,
        resolution=args.resolution,
        chunk_size=(args.chunk,) * 2,
        sortby="id",
        spec=spec,
    )


def child(store: str, tmp: str, what: str, out: str, args: argparse.Namespace) -> None:
    """In a fresh process: ``what`` = "kernel" (every block serially, CPU s) or an executor's name (its
    to_zarr's wall s into ``out``); prints one JSON number. Planning is not timed."""
    result = _merge(store, tmp, args)
    if what == "kernel":
        c0 = time.process_time()
        for b in np.ndindex(*result.array.numblocks):
            merge_block(None, task=result.task, block_id=b)
        print(json.dumps(time.process_time() - c0))
        return
    with executors(args.workers)[what]() as executor:
        t0 = time.perf_counter()
        result.to_zarr(out, executor=executor, progress=False)
        print(json.dumps(time.perf_counter() - t0))


def fresh(store: str, tmp: str, what: str, out: str, args: argparse.Namespace) -> float:
    flags = ["--resolution", str(args.resolution), "--chunk", str(args.chunk), "--workers", str(args.workers)]
    cmd = [sys.executable, __file__, *flags, "--child", store, tmp, what, out]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=float, default=10.0)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, args)
        return
    with tempfile.TemporaryDirectory(prefix="lazymerge-execbench-") as tmp:
        store = str(build_seed_store(Path(tmp) / "seed.zarr"))
        array = _merge(store, tmp, args).array
        blocks = int(np.prod(array.numblocks))
        kernel = fresh(store, tmp, "kernel", "", args)
        per_task = blocks_per_task(blocks, args.chunk**2)
        n = -(-blocks // per_task)
        print(
            f"mosaic {array.shape} float32, {blocks} blocks of {args.chunk}x{args.chunk} in {n} tasks, "
            f"{args.workers} workers, each run in a fresh process (cold caches); kernel alone: "
            f"{kernel:.2f} s CPU ({1e3 * kernel / n:.1f} ms/task)"
        )
        reference = None
        rows = []
        for name in executors(args.workers):
            best = float("inf")
            for i in range(args.repeat):
                out = f"{tmp}/{name}-{i}.zarr"
                best = min(best, fresh(store, tmp, name, out, args))
                data = zarr.open_array(out, mode="r")[:]
                if reference is None:
                    reference = data
                np.testing.assert_array_equal(data, reference)
            rows.append((name, best, (best * args.workers - kernel) / n))
        threads = rows[0][1]
        print(f"{'executor':30} {'wall s':>8} {'vs threads':>11} {'overhead ms/task':>17}")
        for name, wall, over in rows:
            print(f"{name:30} {wall:8.2f} {wall / threads:10.2f}x {1e3 * over:17.1f}")
        print("all outputs identical to threads: True")


if __name__ == "__main__":
    from benchmarks.provenance import header

    if "--child" not in sys.argv:
        print(header(), flush=True)
    main()
