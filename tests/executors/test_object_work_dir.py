"""An object-store work_dir (``s3://``, the README's example) from the project's own dependencies: the
plan, the block ids and Cubed's intermediate arrays go through obstore (no s3fs or gcsfs), against a real
S3 API (moto's server on loopback), credentials from the environment."""

from __future__ import annotations

import cubed
import numpy as np
import pytest
import zarr

from lazymerge.catalog.stores import with_object_work_dir, zarr_location
from lazymerge.contract.budget import DEFAULT_RESERVED_MEM
from lazymerge.executors import get_executor
from tests.support.executor_cases import random_seed_store, seed_merge
from tests.support.s3_server import BUCKET, serving

pytestmark = pytest.mark.slow


@pytest.fixture
def seed_store(tmp_path):
    """conftest's seed store with random values (not one constant per tile): a misplaced block shows."""
    return random_seed_store(tmp_path / "seed.zarr")


@pytest.fixture(scope="module")
def s3():
    with serving() as server:
        yield server


@pytest.fixture
def s3_env(s3, monkeypatch):
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return s3


def keys(server, prefix: str) -> list[str]:
    import obstore

    return [m["path"] for batch in obstore.list(server.store(), prefix=prefix) for m in batch]


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_s3_work_dir(seed_store, s3_env, tmp_path, executor):
    expected = seed_merge(seed_store, tmp_path / "local").array.compute()
    work_dir = f"s3://{BUCKET}/work-{executor}"
    result = seed_merge(seed_store, work_dir)
    assert result.array.spec.storage_options == {"use_obstore": True}
    got = result.array.compute(executor=get_executor(executor, max_workers=2))
    np.testing.assert_array_equal(got, expected)
    report: list = []  # on threads a write runs through Cubed (its work_dir) only with a report or callbacks
    out = result.to_zarr(
        str(tmp_path / "out.zarr"), executor=get_executor(executor, max_workers=2), report=report
    )
    np.testing.assert_array_equal(out[:], expected)
    written = keys(s3_env, f"work-{executor}/")
    if executor == "processes":  # threads tasks read the plan in memory: it is saved only for other processes
        assert any("lazymerge-plan-" in k for k in written)  # the plan the tasks read
    assert any("lazymerge-ids-" in k for k in written)  # the block ids of the write
    assert any(k.split("/")[1].startswith("cubed-") for k in written)  # Cubed's intermediate arrays


def test_output_to_an_s3_url(seed_store, s3_env, tmp_path):
    expected = seed_merge(seed_store, tmp_path / "local").array.compute()
    seed_merge(seed_store, tmp_path / "wd").to_zarr(f"s3://{BUCKET}/out.zarr")
    arr = zarr.open_array(zarr_location(f"s3://{BUCKET}/out.zarr"), mode="r")
    np.testing.assert_array_equal(arr[:], expected)


def test_gs_work_dir_goes_through_obstore():
    """gs:// takes the same route (obstore's GCSStore); no GCS emulator runs here, so only the wiring is
    checked: the store it opens and the Spec Cubed gets."""
    from obstore.store import GCSStore

    store = zarr_location("gs://some-bucket/work")
    assert isinstance(store, zarr.storage.ObjectStore) and isinstance(store.store, GCSStore)
    spec = cubed.Spec("gs://some-bucket/work", allowed_mem="1GB", reserved_mem=DEFAULT_RESERVED_MEM)
    assert with_object_work_dir(spec).storage_options == {"use_obstore": True}
    local = cubed.Spec("/tmp/x", allowed_mem="1GB")
    assert with_object_work_dir(local) is local
