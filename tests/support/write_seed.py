"""Run in a subprocess by test_output's kill test and test_output_safety's second-writer test: write the seed
mosaic with the processes executor (or the one named by a fourth argument)."""

from __future__ import annotations

import sys

from lazymerge.executors import get_executor
from tests.support.executor_cases import seed_merge

if __name__ == "__main__":
    store, work_dir, target = sys.argv[1:4]
    executor = sys.argv[4] if len(sys.argv) > 4 else "processes"
    result = seed_merge(store, work_dir, chunk=64)
    result.to_zarr(target, executor=get_executor(executor, max_workers=2), progress=False)
