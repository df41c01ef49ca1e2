"""resampling={"SCL": "nearest", "*": "bilinear"}: each band against GDAL's exact warp with its own
resampling, and each band's plan windows widened by its own kernel's halo."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import zarr

from lazymerge.api import merge
from lazymerge.catalog.meta import write_meta
from tests.support.gdal_cases import CHUNK, SIZE, target_grid
from tests.support.gdal_oracle import Raster, around, warp_exact
from tests.support.stores import add_source


def test_per_band_resampling_against_gdal(tmp_path):
    src = around("a", "EPSG:32617", -78.0, 40.0, 30.0, 180, 31)
    scl = Raster(
        "SCL", src.crs, src.transform, np.random.default_rng(5).integers(0, 12, src.data.shape).astype("f4")
    )
    path = tmp_path / "s.zarr"
    root = zarr.open_group(zarr.storage.LocalStore(str(path)), mode="w")
    add_source(root, "a", src.crs, src.transform, src.data)
    add_source(root, "a", scl.crs, scl.transform, scl.data, band="SCL")
    write_meta(path)
    crs, res = "EPSG:32618", 25.0
    bbox, transform = target_grid(crs, -78.0, 40.001, res)
    result = merge(
        str(path),
        crs=crs,
        bbox=bbox,
        resolution=res,
        chunk_size=CHUNK,
        bands=["data", "SCL"],
        exact=True,
        resampling={"SCL": "nearest", "*": "bilinear"},
    )
    got = result.array.compute()
    np.testing.assert_allclose(got[0], warp_exact(src, crs, transform, (SIZE, SIZE), "bilinear"), atol=1e-5)
    np.testing.assert_array_equal(got[1], warp_exact(scl, crs, transform, (SIZE, SIZE), "nearest"))
    assert set(np.unique(got[1][np.isfinite(got[1])])) <= set(range(12))  # classes stay classes
    t = result.plan.table
    width = [
        pc.sum(
            pc.subtract(
                t.filter(pc.equal(t["band"], b))["src_col1"], t.filter(pc.equal(t["band"], b))["src_col0"]
            )
        ).as_py()
        for b in (0, 1)
    ]
    assert width[0] > width[1]  # bilinear's halo is wider than nearest's
    again = merge(str(path), plan=result.plan.save(str(tmp_path / "plan.zarr")))
    np.testing.assert_array_equal(again.array.compute(), got)
