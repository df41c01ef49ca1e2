"""Run in a subprocess by the kill tests and test_output_safety's second-writer test: write the seed mosaic
(64-pixel chunks) with the processes executor, or the executor a fourth argument names (a Lithops config as a
JSON file runs Lithops), with the number of overview levels a fifth argument gives (default 0)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lazymerge.executors import get_executor
from tests.support.executor_cases import seed_merge

if __name__ == "__main__":
    store, work_dir, target = sys.argv[1:4]
    executor = sys.argv[4] if len(sys.argv) > 4 else "processes"
    overviews = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    if executor.endswith(".json"):
        run_on = get_executor("lithops", config=json.loads(Path(executor).read_text()))
    else:
        run_on = get_executor(executor, max_workers=2)
    result = seed_merge(store, work_dir, chunk=64)
    result.to_zarr(target, executor=run_on, progress=False, overviews=overviews)
