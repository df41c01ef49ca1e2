"""The Zarr output as GeoZarr: spatial:, proj: and multiscales declared in zarr_conventions (validated by
zarr-cm), dimension names, GDAL's _CRS attribute; and what the newest GDAL the package index has reads."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr
import zarr_cm
from affine import Affine
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


GDAL_PYTHON = Path(__file__).parents[2] / ".venv-gdal" / "bin" / "python"  # made by `make test`
PROBE = Path(__file__).parents[1] / "support" / "gdal_zarr_probe.py"


@pytest.fixture
def gdal_probe(output, tmp_path):
    """What the newest GDAL with a Zarr driver that the package index has reads from the output: run from
    the Python 3.12 side venv ``.venv-gdal`` (``make test`` makes it) by tests/support/gdal_zarr_probe.py.
    The GDALs there today: gdal-wheel 3.13.3, built without the Zarr driver, and rasterio 1.5.2's 3.12.2."""
    path, result = output
    if not GDAL_PYTHON.exists():
        pytest.skip(f"{GDAL_PYTHON} is missing: `make gdal-venv` makes it (it needs a Python 3.12)")
    run = subprocess.run(
        [str(GDAL_PYTHON), str(PROBE), str(path), "data", "3", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    probe = json.loads(run.stdout)
    assert probe["used"], f"no GDAL with a Zarr driver in {GDAL_PYTHON}: {probe['gdals']}"
    pixels = [np.load(tmp_path / f"{k}.npy") for k in range(len(probe["levels"]))]
    return probe, pixels


def test_gdal_reads_every_level_crs_and_pixels(output, gdal_probe):
    """Every level opens in GDAL with lazymerge's CRS and pixels. The project venv's GDAL (rasterio 1.4's
    3.10, the newest on Python 3.11) cannot decode Zarr v3 at all."""
    path, result = output
    if Version(rasterio.__gdal_version__) < Version("3.11"):
        with pytest.raises(rasterio.errors.RasterioIOError, match="Unsupported codec: bytes"):
            rasterio.open(f'ZARR:"{path}":/data/0')
    probe, pixels = gdal_probe
    group = zarr.open_group(str(path), mode="r")
    assert len(pixels) == 3
    for k, level in enumerate(probe["levels"]):
        assert CRS.from_wkt(level["crs"]) == result.grid.crs, k
        np.testing.assert_array_equal(pixels[k], group[f"data/{k}"][:], err_msg=str(k))
    np.testing.assert_array_equal(pixels[0], result.array.compute())


def test_gdal_reads_transform_and_overviews(output, gdal_probe):
    """GDAL >= 3.13 reads spatial:transform and multiscales: every level's geotransform, and level 0's
    two overviews. An older GDAL is checked to read neither, and the test says so."""
    _, result = output
    probe, _ = gdal_probe
    levels, version = probe["levels"], probe["version"]
    if Version(version) < Version("3.13"):
        # precisely what it does not read: no geotransform from spatial:transform (GDAL's default, the
        # identity), no overviews from multiscales (the levels open one by one)
        assert all(level["transform"] == [0.0, 1.0, 0.0, 0.0, 0.0, 1.0] for level in levels)
        assert all(level["overviews"] == 0 for level in levels)
        pytest.xfail(
            f"GDAL {version} ({probe['used']}) reads _CRS and the pixels but not spatial:transform or "
            f"multiscales; gdal-wheel {probe['gdals']['gdal-wheel'].get('version')} has no Zarr driver"
        )
    for k, level in enumerate(levels):
        assert Affine.from_gdal(*level["transform"]) == result.grid.transform @ Affine.scale(2**k), k
    assert levels[0]["overviews"] == 2


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
