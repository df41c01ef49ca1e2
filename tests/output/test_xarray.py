"""MergeResult.to_xarray(): Cubed-backed DataArray with rasterix RasterIndex and the xproj CRS."""

from __future__ import annotations

import cubed
import numpy as np
from rasterix import RasterIndex

from lazymerge.api import merge
from lazymerge.demo import SEED_TARGET

SEED = {**SEED_TARGET, "resolution": 20.0, "chunk_size": (128, 128), "bands": "data"}


def test_to_xarray(seed_store):
    result = merge(str(seed_store), datafusion=True, sortby="id", **SEED)
    da = result.to_xarray()
    assert isinstance(da.data, cubed.Array)  # still lazy
    assert da.dims == ("y", "x") and da.shape == (500, 400)
    assert isinstance(da.xindexes["x"], RasterIndex)
    assert da.proj.crs.to_epsg() == 32618
    assert float(da.x[0]) == 500010.0 and float(da.y[-1]) == 5990010.0
    assert float(da.sel(x=500010.0, y=5999990.0, method="nearest")) == 300.0
    np.testing.assert_array_equal(da.values, result.array.compute())


def test_to_xarray_band_dimension(make_store):
    rng = np.random.default_rng(3)
    path = make_store(
        [("t", "EPSG:32618", (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0), rng.random((64, 64), dtype="f4"))],
        meta=False,
    )
    import zarr

    from tests.support.stores import add_band

    add_band(zarr.open_group(str(path), mode="r+"), "t", "B2", rng.random((64, 64), dtype="f4"))
    result = merge(
        str(path),
        crs="EPSG:32618",
        bbox=(500000.0, 5999360.0, 500640.0, 6000000.0),
        resolution=10.0,
        chunk_size=(32, 32),
        bands=["B2", "data"],
        datafusion=False,
    )
    da = result.to_xarray()
    assert da.dims == ("band", "y", "x") and list(da.band.values) == ["B2", "data"]
    root = zarr.open_group(str(path), mode="r")
    np.testing.assert_array_equal(da.sel(band="data").values, root["t/data/0"][:])
    np.testing.assert_array_equal(da.sel(band="B2").values, root["t/B2/0"][:])
