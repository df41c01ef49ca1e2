"""Wall time and per-task overhead of each local executor on the same mosaic.

    .venv/bin/python benchmarks/executors.py [--resolution 10] [--chunk 128] [--workers 2] [--repeat 2]

The seed's four tiles are written with ``to_zarr`` on every executor; each output is checked identical to
the threads one. The kernel's own cost is measured first by rendering every block serially in this process
(process CPU time); per-task overhead = (wall x workers - kernel time) / tasks: what the executor adds to
each task (start-up, pickling, scheduling, storage round trips). Best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import cubed
import numpy as np

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=float, default=10.0)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lazymerge-execbench-") as tmp:
        store = build_seed_store(Path(tmp) / "seed.zarr")
        spec = cubed.Spec(work_dir=f"{tmp}/wd", allowed_mem="500MB", reserved_mem="100MB")
        result = merge(
            store,
            crs=SEED_TARGET["crs"],
            bbox=SEED_TARGET["bbox"],
            resolution=args.resolution,
            chunk_size=(args.chunk,) * 2,
            sortby="id",
            spec=spec,
        )
        blocks = list(np.ndindex(*result.array.numblocks))
        c0 = time.process_time()
        for b in blocks:
            merge_block(None, task=result.task, block_id=b)
        kernel = time.process_time() - c0
        per_task = blocks_per_task(len(blocks), args.chunk**2)
        n = -(-len(blocks) // per_task)
        print(
            f"mosaic {result.array.shape} float32, {len(blocks)} blocks of {args.chunk}x{args.chunk} "
            f"in {n} tasks, {args.workers} workers; kernel alone: {kernel:.2f} s CPU "
            f"({1e3 * kernel / n:.1f} ms/task)"
        )
        reference = None
        rows = []
        for name, make in executors(args.workers).items():
            best = float("inf")
            for i in range(args.repeat):
                with make() as executor:
                    t0 = time.perf_counter()
                    out = result.to_zarr(f"{tmp}/{name}-{i}.zarr", executor=executor, progress=False)
                    best = min(best, time.perf_counter() - t0)
                data = out[:]
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
    main()
