"""The seed mosaic used to compare executors: small (20 m, 16 tasks) but every tile and CRS involved."""

from __future__ import annotations

from typing import Any

import cubed

from lazymerge.api import merge
from lazymerge.demo import SEED_TARGET
from lazymerge.result import MergeResult


def seed_spec(work_dir: Any, allowed_mem: str = "500MB") -> cubed.Spec:
    return cubed.Spec(work_dir=str(work_dir), allowed_mem=allowed_mem, reserved_mem="100MB")


def seed_merge(store: Any, work_dir: Any, resolution: float = 20.0, chunk: int = 128) -> MergeResult:
    return merge(
        store,
        crs=SEED_TARGET["crs"],
        bbox=SEED_TARGET["bbox"],
        resolution=resolution,
        chunk_size=(chunk, chunk),
        sortby="id",
        spec=seed_spec(work_dir),
    )
