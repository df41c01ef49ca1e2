"""merge accepts an obstore store, a zarr Store or a path, on both discovery paths, identically."""

from __future__ import annotations

import asyncio

import icechunk
import numpy as np
import pytest
import zarr
from obstore.store import LocalStore as ObLocalStore

from lazymerge.api import merge
from lazymerge.demo import SEED_TARGET
from lazymerge.errors import StoreError

SEED = {**SEED_TARGET, "resolution": 20.0, "chunk_size": (128, 128), "bands": "data", "sortby": "id"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from lazymerge.catalog.meta import write_meta
    from lazymerge.demo import build_seed_store

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
    copy_store(path, mem)
    np.testing.assert_array_equal(merge(mem, datafusion=False, **SEED).array.compute(), expected)
    with pytest.raises(StoreError, match="datafusion=True needs an obstore store"):
        merge(mem, datafusion=True, **SEED)


def copy_store(src_path, dst) -> None:
    """Every key of the store at ``src_path`` into the zarr store ``dst``."""
    src = zarr.storage.LocalStore(str(src_path), read_only=True)
    proto = zarr.core.buffer.default_buffer_prototype()

    async def copy():
        async for key in src.list():
            await dst.set(key, await src.get(key, prototype=proto))

    asyncio.run(copy())


@pytest.mark.parametrize("datafusion", [True, False])
def test_icechunk_readonly_session(reference, tmp_path, datafusion):
    path, expected = reference
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "repo")))
    session = repo.writable_session("main")
    copy_store(path, session.store)
    session.commit("the seed store")
    readonly = repo.readonly_session("main")
    np.testing.assert_array_equal(merge(readonly, datafusion=datafusion, **SEED).array.compute(), expected)
