"""Merges from a real S3 API (moto's server on loopback) give GDAL's exact mosaic of the same random
sources, on both paths."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from lazymerge.api import merge
from lazymerge.errors import StoreError
from tests.support.gdal_cases import oracle_store
from tests.support.s3_server import BUCKET, start, upload

pytestmark = pytest.mark.slow

SEED: dict = {}  # the request, set by the fixture


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """Random sources in two UTM zones (with /meta) in a bucket of a moto server, and GDAL's exact mosaic
    of them to compare with."""
    path = tmp_path_factory.mktemp("s3") / "seed.zarr"
    request, expected = oracle_store(path)
    SEED.update(request)
    proc, server = start()
    try:
        upload(server, path, "seed.zarr")
        yield server, expected
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("datafusion", [True, False])
def test_obstore_s3store(s3, datafusion):
    server, expected = s3
    got = merge(server.store("seed.zarr"), datafusion=datafusion, **SEED).array.compute()
    np.testing.assert_array_equal(got, expected)


def test_zarr_store_over_s3_on_scan_path(s3):
    server, expected = s3
    store = zarr.storage.ObjectStore(server.store("seed.zarr"), read_only=True)
    np.testing.assert_array_equal(merge(store, datafusion=False, **SEED).array.compute(), expected)


@pytest.mark.parametrize("datafusion", [True, False])
def test_s3_url_with_credentials_from_environment(s3, monkeypatch, datafusion):
    server, expected = s3
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    got = merge(f"s3://{BUCKET}/seed.zarr", datafusion=datafusion, **SEED).array.compute()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("datafusion", [True, False])
def test_wrong_credentials_name_bucket_and_key(s3, datafusion):
    server, _ = s3
    bad = server.store("seed.zarr", key_id="AKIAWRONG", secret="wrong")
    with pytest.raises(StoreError) as err:
        merge(bad, datafusion=datafusion, **SEED)
    text = str(err.value)
    assert BUCKET in text and "seed.zarr" in text
    assert "InvalidAccessKeyId" in text or "privileges" in text
