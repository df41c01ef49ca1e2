"""merge accepts an obstore store, a zarr Store or a path, on both discovery paths, identically."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import zarr
from obstore.store import LocalStore as ObLocalStore

from lazymerge.errors import StoreError
from lazymerge.merge import merge

SEED = {"crs": "EPSG:32618", "bbox": (500000.0, 5990000.0, 508000.0, 6000000.0), "resolution": 20.0,
        "chunk_size": (128, 128), "bands": "data", "sortby": "id"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from lazymerge.demo import build_seed_store
    from lazymerge.meta import write_meta

    path = build_seed_store(tmp_path_factory.mktemp("ref") / "seed.zarr")
    write_meta(path)
    return path, merge(str(path), datafusion=False, **SEED).array.compute()


@pytest.mark.parametrize("datafusion", [True, False])
@pytest.mark.parametrize("kind", ["str", "pathlib", "file-url", "obstore", "zarr-local", "zarr-obstore"])
def test_store_kinds(reference, kind, datafusion):
    path, expected = reference
    store = {
        "str": lambda: str(path),
        "pathlib": lambda: path,
        "file-url": lambda: f"file://{path}",
        "obstore": lambda: ObLocalStore(str(path)),
        "zarr-local": lambda: zarr.storage.LocalStore(str(path)),
        "zarr-obstore": lambda: zarr.storage.ObjectStore(ObLocalStore(str(path)), read_only=True),
    }[kind]()
    np.testing.assert_array_equal(merge(store, datafusion=datafusion, **SEED).array.compute(), expected)


def test_memory_store_scan_path_and_datafusion_error(reference):
    path, expected = reference
    mem = zarr.storage.MemoryStore()
    src = zarr.storage.LocalStore(str(path), read_only=True)

    async def copy():  # the seed store, key by key, into memory
        async for key in src.list():
            await mem.set(key, await src.get(key, prototype=zarr.core.buffer.default_buffer_prototype()))

    asyncio.run(copy())
    np.testing.assert_array_equal(merge(mem, datafusion=False, **SEED).array.compute(), expected)
    with pytest.raises(StoreError, match="datafusion=True needs an obstore store"):
        merge(mem, datafusion=True, **SEED)
