"""Object storage for the new formats, on a real S3 API (moto's server on loopback): a COG written to an
s3:// URL (written locally, uploaded with obstore), and GeoTIFFs ingested from s3:// (read by GDAL's /vsis3)
into a store in the bucket."""

from __future__ import annotations

import numpy as np
import obstore
import pytest
import rasterio
import zarr
from rio_cogeo.cogeo import cog_validate

import lazymerge
from lazymerge.api import merge
from lazymerge.errors import OutputError
from tests.support.geotiffs import write_geotiff
from tests.support.s3_server import BUCKET, serving

pytestmark = pytest.mark.slow
TRANSFORM = (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)


@pytest.fixture(scope="module")
def s3():
    with serving() as server:
        yield server


@pytest.fixture
def s3_env(s3, monkeypatch):
    """Credentials in the environment, for obstore (AWS_*) and for GDAL's /vsis3 (its own names)."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    host = s3.endpoint.removeprefix("http://")
    for key, value in {"AWS_S3_ENDPOINT": host, "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE"}.items():
        monkeypatch.setenv(key, value)
    return s3


def test_geotiffs_from_s3_into_a_store_in_s3_then_a_cog_in_s3(s3_env, tmp_path):
    rng = np.random.default_rng(9)
    data = rng.random((96, 80), dtype="f4")
    write_geotiff(tmp_path / "a.tif", data, "EPSG:32618", TRANSFORM, nodata=np.nan)
    bucket = s3_env.store()
    obstore.put(bucket, "tiles/a.tif", (tmp_path / "a.tif").read_bytes())

    store = f"s3://{BUCKET}/ingested.zarr"
    assert lazymerge.ingest([f"s3://{BUCKET}/tiles/a.tif"], store, chunks=32) == ["a"]
    remote = zarr.open_group(zarr.storage.ObjectStore(s3_env.store("ingested.zarr")), mode="r")
    np.testing.assert_array_equal(remote["a/data/0"][:], data)
    assert remote["a"].attrs["lazymerge:ingested"] and "meta" in remote
    assert lazymerge.ingest([f"s3://{BUCKET}/tiles/a.tif"], store, chunks=32) == []  # complete: skipped

    result = merge(
        store,
        crs="EPSG:32618",
        bbox=(500000.0, 5999040.0, 500800.0, 6000000.0),
        resolution=10.0,
        chunk_size=(32, 32),
    )
    url = f"s3://{BUCKET}/out/mosaic.tif"
    assert result.to_cog(url, blocksize=128) == url
    (tmp_path / "back.tif").write_bytes(bytes(obstore.get(bucket, "out/mosaic.tif").bytes()))
    assert cog_validate(str(tmp_path / "back.tif"))[0]
    with rasterio.open(tmp_path / "back.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), data)
        assert ds.transform == rasterio.Affine(*TRANSFORM)
    with pytest.raises(OutputError, match="exists; pass overwrite=True"):
        result.to_cog(url)
