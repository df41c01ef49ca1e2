"""merge accepts an obstore store, a zarr Store or a path, on both discovery paths: every one gives GDAL's
exact mosaic of the same random sources (a store kind that read a wrong chunk or level would not)."""

from __future__ import annotations

import asyncio

import icechunk
import numpy as np
import pytest
import zarr
from obstore.store import LocalStore as ObLocalStore

from lazymerge.api import merge
from lazymerge.errors import StoreError
from tests.support.gdal_cases import oracle_store


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The store on disk, and GDAL's exact mosaic of its sources (every pixel, with exact=True)."""
    path = tmp_path_factory.mktemp("ref") / "s.zarr"
    request, expected = oracle_store(path)
    return path, expected, request


@pytest.mark.parametrize("datafusion", [True, False])
@pytest.mark.parametrize("kind", ["str", "pathlib", "file-url", "obstore", "zarr-local", "zarr-obstore"])
def test_store_kinds(reference, kind, datafusion):
    path, expected, request = reference
    store = {
        "str": lambda: str(path),
        "pathlib": lambda: path,
        "file-url": lambda: f"file://{path}",
        "obstore": lambda: ObLocalStore(str(path)),
        "zarr-local": lambda: zarr.storage.LocalStore(str(path)),
        "zarr-obstore": lambda: zarr.storage.ObjectStore(ObLocalStore(str(path)), read_only=True),
    }[kind]()
    np.testing.assert_array_equal(merge(store, datafusion=datafusion, **request).array.compute(), expected)


def test_memory_store_scan_path_and_datafusion_error(reference):
    path, expected, request = reference
    mem = zarr.storage.MemoryStore()
    copy_store(path, mem)
    np.testing.assert_array_equal(merge(mem, datafusion=False, **request).array.compute(), expected)
    with pytest.raises(StoreError, match="datafusion=True needs an obstore store"):
        merge(mem, datafusion=True, **request)


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
    path, expected, request = reference
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "repo")))
    session = repo.writable_session("main")
    copy_store(path, session.store)
    session.commit("the seed store")
    readonly = repo.readonly_session("main")
    np.testing.assert_array_equal(merge(readonly, datafusion=datafusion, **request).array.compute(), expected)
