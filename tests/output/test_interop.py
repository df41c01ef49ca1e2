"""to_xarray() as other tools see it: rioxarray's .rio (crs, transform, nodata, to_raster) and odc-geo's
.odc.geobox, each checked against the merge's grid."""

from __future__ import annotations

import numpy as np
import odc.geo.xr  # noqa: F401  (registers .odc)
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import CRS

from lazymerge.api import merge

TRANSFORM = (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)


@pytest.mark.parametrize("dtype,nodata", [(None, None), ("uint16", 0)])
def test_rioxarray_and_odc_geo_see_the_grid(make_store, tmp_path, dtype, nodata):
    rng = np.random.default_rng(18)
    data = rng.integers(1, 60000, (96, 80)).astype(dtype) if dtype else rng.random((96, 80), dtype="f4")
    random_source = make_store([("a", "EPSG:32618", TRANSFORM, data)], meta=False)
    options = {"dtype": dtype, "nodata": nodata} if dtype else {}
    # 64 x 60 px at 20 m, half of it outside the source: nodata there
    result = merge(
        str(random_source),
        crs="EPSG:32618",
        bbox=(500400.0, 5998720.0, 501600.0, 6000000.0),
        resolution=20.0,
        chunk_size=(32, 32),
        datafusion=False,
        **options,
    )
    da = result.to_xarray()
    grid = result.grid
    assert da.rio.crs == CRS.from_epsg(32618) == grid.crs
    assert da.rio.transform() == grid.transform == Affine(20.0, 0.0, 500400.0, 0.0, -20.0, 6000000.0)
    assert da.rio.shape == grid.shape == (64, 60)
    expected_nodata = nodata if dtype else np.nan
    np.testing.assert_equal(da.rio.nodata, expected_nodata)
    assert da.attrs["grid_mapping"] == "spatial_ref" and "crs_wkt" in da.spatial_ref.attrs
    assert da.odc.geobox == GeoBox(grid.shape, grid.transform, grid.crs)

    pixels = result.array.compute()
    assert (pixels == expected_nodata).any() or np.isnan(pixels).any()  # the nodata part is there
    da.rio.to_raster(tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert ds.crs == grid.crs and ds.transform == grid.transform
        np.testing.assert_equal(ds.nodata, expected_nodata)
        np.testing.assert_array_equal(ds.read(1), pixels)
