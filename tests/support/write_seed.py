"""Run by test_output's kill test in a subprocess: write the seed mosaic with the processes executor."""

from __future__ import annotations

import sys

from lazymerge.executors import get_executor
from tests.support.executor_cases import seed_merge

if __name__ == "__main__":
    store, work_dir, target = sys.argv[1:4]
    result = seed_merge(store, work_dir, chunk=64)
    result.to_zarr(target, executor=get_executor("processes", max_workers=2), progress=False)
