"""A compositing method that records, in the worker that runs it, which modules that worker has loaded."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from lazymerge.kernel.composite import First

PROBE_DIR = "LAZYMERGE_TEST_PROBE_DIR"


class ModuleProbe(First):
    """``first``, plus a JSON file per worker process listing its ``sys.modules`` (in $PROBE_DIR)."""

    def add(self, values: np.ndarray, valid: np.ndarray, index: int) -> None:
        super().add(values, valid, index)
        directory = os.environ.get(PROBE_DIR)
        if directory:
            path = Path(directory) / f"modules-{os.getpid()}.json"
            path.write_text(json.dumps(sorted(sys.modules)))
