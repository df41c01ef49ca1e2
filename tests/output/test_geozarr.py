"""The Zarr output as GeoZarr: spatial:, proj: and multiscales declared in zarr_conventions (validated by
zarr-cm), dimension names, GDAL's _CRS attribute; and what the GDAL this environment can install reads."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import zarr
import zarr_cm
from packaging.version import Version
from pyproj import CRS

from lazymerge.api import merge

TRANSFORM = (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)


@pytest.fixture
def output(make_store, tmp_path):
    rng = np.random.default_rng(4)
    store = make_store([("a", "EPSG:32618", TRANSFORM, rng.random((128, 96), dtype="f4"))], meta=False)
    result = merge(
        str(store),
        crs="EPSG:32618",
        bbox=(500000.0, 5998720.0, 500960.0, 6000000.0),
        resolution=10.0,
        chunk_size=(64, 64),
        datafusion=False,
    )
    result.to_zarr(str(tmp_path / "out.zarr"), overviews=2)
    return tmp_path / "out.zarr", result


def test_conventions_are_declared_and_valid(output):
    path, result = output
    group = zarr.open_group(str(path), mode="r")
    band = group["data"]
    assert zarr_cm.detect_revisions(dict(band.attrs)).keys() >= {"multiscales", "proj"}
    zarr_cm.validate_all(dict(band.attrs))
    for k in range(3):
        level = band[str(k)]
        attrs = dict(level.attrs)
        assert zarr_cm.detect_revisions(attrs).keys() >= {"spatial", "proj"}
        zarr_cm.validate_all(attrs)
        assert attrs["proj:code"] == "EPSG:32618"
        a, _, c, _, e, f = attrs["spatial:transform"]
        assert (a, c, e, f) == (10.0 * 2**k, 500000.0, -10.0 * 2**k, 6000000.0)
        assert level.metadata.dimension_names == ("y", "x")
        assert CRS.from_wkt(attrs["_CRS"]["wkt"]) == CRS.from_epsg(32618)


def test_gdal_reads_crs_transform_and_overviews(output):
    """GDAL >= 3.13 reads spatial:/proj: and multiscales. The newest GDAL installable here is rasterio's
    (3.10 on Python 3.11: the gdal-wheel binaries start at cp312, and PyPI's gdal is an sdist that needs
    libgdal >= 3.13 to build): its Zarr v3 reader predates the final spec's ``bytes`` codec, so it cannot
    open any array zarr-python 3 writes."""
    path, result = output
    name = f'ZARR:"{path}":/data/0'
    if Version(rasterio.__gdal_version__) < Version("3.13"):
        with pytest.raises(rasterio.errors.RasterioIOError, match="Unsupported codec: bytes"):
            rasterio.open(name)
        pytest.xfail(
            f"GDAL {rasterio.__gdal_version__} cannot decode Zarr v3's bytes codec (GDAL >= 3.13 can)"
        )
    with rasterio.open(name) as ds:
        assert ds.crs == result.grid.crs and ds.transform == result.grid.transform
        assert len(ds.overviews(1)) == 2


def test_stores_written_with_the_nested_multiscales_still_read(tmp_path):
    """Before the fix the declared value sat one level too deep ({"multiscales": {"multiscales": ...}})."""
    from lazymerge.catalog.conventions import Overview, read_multiscales, write_multiscales

    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    for k in range(2):
        group.create_array(str(k), shape=(4 // 2**k, 4 // 2**k), dtype="f4")
    write_multiscales(group, [Overview("0"), Overview("1", (2.0, 2.0), derived_from="0")])
    assert group.attrs["multiscales"]["layout"][1]["asset"] == "1"  # the value zarr-cm declares
    group.attrs["multiscales"] = {"multiscales": group.attrs["multiscales"]}  # the old nesting
    assert [ov.asset for ov in read_multiscales(group)] == ["0", "1"]
