"""rescale=True: each source's scale_factor/add_offset (CF) or raster:scale/raster:offset (STAC) applied
before compositing, against GDAL-exact warps of the physical values."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from lazymerge.api import merge
from lazymerge.catalog.meta import write_meta
from tests.support.gdal_cases import CHUNK, SIZE, merge_case, target_grid
from tests.support.gdal_oracle import Raster, around, warp_exact
from tests.support.stores import add_source

CRS_, LON, LAT, RES = "EPSG:32618", -78.0, 40.005, 30.0


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    """One reflectance scene stored twice on the same grid: by the old baseline (DN = 10000 * r) and the
    new one (DN = 10000 * r + 1000, offset -0.1), DN 0 = nodata; and a third, shifted scene (STAC attrs)."""
    base = around("a", "EPSG:32618", -78.0, 40.0, 20.0, 200, 21)
    shifted = around("c", "EPSG:32617", -78.01, 40.01, 25.0, 170, 22)
    rng = np.random.default_rng(3)
    stored = {}
    path = tmp_path_factory.mktemp("rescale") / "s.zarr"
    root = zarr.open_group(zarr.storage.LocalStore(str(path)), mode="w")
    for name, src, offset, attrs in [
        ("a", base, 0, {"scale_factor": 1e-4, "add_offset": 0.0}),
        ("b", base, 1000, {"scale_factor": 1e-4, "add_offset": -0.1}),
        ("c", shifted, 1000, {"raster:scale": 1e-4, "raster:offset": -0.1}),
    ]:
        dn = np.rint(src.data * 9000 + 1).astype("u2") + offset
        dn[rng.random(dn.shape) < 0.05] = 0  # nodata, found before scaling
        add_source(root, name, src.crs, src.transform, dn, nodata=0, **attrs)
        physical = np.where(dn == 0, np.nan, dn * 1e-4 - offset * 1e-4).astype("f8")
        stored[name] = Raster(name, src.crs, src.transform, physical.astype("f4"))
    write_meta(path)
    return path, stored


def _merge(path, **kw):
    bbox, _ = target_grid(CRS_, LON, LAT, RES)
    kw.setdefault("rescale", True)
    return merge_case(path, CRS_, bbox, RES, **kw)


@pytest.mark.parametrize("datafusion", [True, False])
def test_two_baselines_merge_to_the_same_physical_values(baselines, datafusion):
    path, stored = baselines
    _, transform = target_grid(CRS_, LON, LAT, RES)
    a, b = (warp_exact(stored[n], CRS_, transform, (SIZE, SIZE)) for n in "ab")
    only = {n: _merge(path, where=f"id = '{n}'", datafusion=datafusion).array.compute() for n in "ab"}
    assert only["a"].dtype == np.float32
    np.testing.assert_allclose(only["a"], a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(only["b"], b, rtol=1e-5, atol=1e-6)
    both = np.isfinite(a) & np.isfinite(b)
    assert both.sum() > 1000
    np.testing.assert_allclose(only["a"][both], only["b"][both], atol=1e-6)  # the offset is gone


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")
@pytest.mark.parametrize("method", ["first", "mean"])
def test_rescaled_composite_against_gdal(baselines, method):
    path, stored = baselines
    _, transform = target_grid(CRS_, LON, LAT, RES)
    stack = np.stack([warp_exact(stored[n], CRS_, transform, (SIZE, SIZE)) for n in "abc"])
    if method == "first":
        expected = np.where(np.isnan(stack[0]), np.where(np.isnan(stack[1]), stack[2], stack[1]), stack[0])
    else:
        expected = np.nanmean(stack, axis=0)
    got = _merge(path, method=method).array.compute()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    stored_dn = merge(
        str(path),
        crs=CRS_,
        bbox=target_grid(CRS_, LON, LAT, RES)[0],
        resolution=RES,
        chunk_size=CHUNK,
        bands="data",
        sortby="id",
        exact=True,
        method=method,
        where="id = 'b'",
    ).array.compute()
    assert np.nanmin(stored_dn) >= 1000  # without rescale=True, the stored numbers
