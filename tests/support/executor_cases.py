"""The seed mosaic used to compare executors: small (20 m, 16 tasks) but every tile and CRS involved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cubed
import numpy as np
import zarr

from lazymerge.api import merge
from lazymerge.demo import SEED_TARGET, SEED_TILES, build_seed_store
from lazymerge.result import MergeResult


def random_seed_store(path: Any, meta: bool = True) -> Path:
    """The seed's four tiles (their CRSs, grids and two levels) holding random values instead of one
    constant per tile, so that a block written in the wrong place, a pixel moved within a block or a
    wrong level read shows in an executor or writer test; /meta written unless ``meta=False``."""
    from lazymerge.catalog.meta import write_meta

    path = build_seed_store(path)
    root = zarr.open_group(str(path), mode="r+")
    rng = np.random.default_rng(0)
    for name, *_ in SEED_TILES:
        for level in ("0", "1"):
            arr = root[f"{name}/data/{level}"]
            arr[:] = rng.random(arr.shape, dtype="f4")
    if meta:
        write_meta(path)
    return path


def seed_spec(work_dir: Any, allowed_mem: str = "500MB") -> cubed.Spec:
    return cubed.Spec(work_dir=str(work_dir), allowed_mem=allowed_mem, reserved_mem="100MB")


# the seed mosaic's request at 20 m in 128 px chunks (plain values: it can be written into a child's code)
SEED_REQUEST = {
    "crs": SEED_TARGET["crs"],
    "bbox": tuple(SEED_TARGET["bbox"]),
    "resolution": 20.0,
    "chunk_size": (128, 128),
    "sortby": "id",
}


def seed_merge(store: Any, work_dir: Any, resolution: float = 20.0, chunk: int = 128) -> MergeResult:
    request = {**SEED_REQUEST, "resolution": resolution, "chunk_size": (chunk, chunk)}
    return merge(store, **request, spec=seed_spec(work_dir))
