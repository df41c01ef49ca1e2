"""Run by the kill tests in a subprocess: write the seed mosaic (64-pixel chunks) with the processes
executor, or with Lithops when a Lithops config (a JSON file) is given as the fourth argument."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lazymerge.executors import get_executor
from tests.support.executor_cases import seed_merge

if __name__ == "__main__":
    store, work_dir, target = sys.argv[1:4]
    if len(sys.argv) > 4:
        executor = get_executor("lithops", config=json.loads(Path(sys.argv[4]).read_text()))
    else:
        executor = get_executor("processes", max_workers=2)
    result = seed_merge(store, work_dir, chunk=64)
    result.to_zarr(target, executor=executor, progress=False)
