"""EPSG:4326 targets across the antimeridian (``xmax > 180``, or ``xmin > xmax``) give the full mosaic,
checked against GDAL's exact warper; a target CRS that is not horizontal is an InvalidCRSError."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from affine import Affine

from lazymerge.api import merge, plan
from lazymerge.errors import InvalidCRSError
from tests.support.gdal_oracle import Raster, around, mosaic_exact

RES = 0.002
rng = np.random.default_rng(11)
SOURCES = [  # UTM 60N west of 180, UTM 1N east of it, and geographic sources on either side
    around("a", "EPSG:32660", 179.8, 50.0, 150.0, 120, 7),
    around("b", "EPSG:32601", -179.8, 50.03, 150.0, 120, 8),
    Raster(
        "c", "EPSG:4326", (0.0013, 0.0, -180.0 + 0.00037, 0.0, -0.0013, 50.1), rng.random((150, 200), "f4")
    ),
    Raster(
        "d", "EPSG:4326", (0.0013, 0.0, 179.75 + 0.00041, 0.0, -0.0013, 50.12), rng.random((150, 150), "f4")
    ),
]
X0, Y1, W, H = 179.6 + 0.00021, 50.15 - 0.00043, 400, 150  # 179.6 .. 180.4 E, off every source pixel edge


def turns(src: Raster) -> list[Raster]:
    """A geographic source, then the same pixels georeferenced 360 degrees west and east: what GDAL, which
    does not wrap longitudes between geographic CRSs, needs to see a source across the antimeridian."""
    if src.crs != "EPSG:4326":
        return [src]
    a, b, c, d, e, f = src.transform
    return [src, *(replace(src, transform=(a, b, c + t, d, e, f)) for t in (-360.0, 360.0))]


def merged(store, bbox, res=RES, **kw):
    return merge(
        str(store),
        crs="EPSG:4326",
        bbox=bbox,
        resolution=res,
        chunk_size=(64, 64),
        bands="data",
        sortby="id",
        exact=True,
        **kw,
    ).array.compute()


@pytest.fixture(scope="module")
def expected():
    shifted = [t for s in SOURCES for t in turns(s)]
    out = mosaic_exact(shifted, "EPSG:4326", Affine(RES, 0, X0, 0, -RES, Y1), (H, W))
    for src in SOURCES:  # every source shows, on both sides of 180 between them
        alone = mosaic_exact(turns(src), "EPSG:4326", Affine(RES, 0, X0, 0, -RES, Y1), (H, W))
        assert (alone == out).mean() > 0.03
    east = out[:, W // 2 + 10 :]
    assert np.isfinite(east).mean() > 0.3
    return out


@pytest.mark.parametrize("datafusion", [True, False])
def test_xmax_beyond_180_matches_gdal(make_store, expected, datafusion):
    store = make_store([(s.name, s.crs, s.transform, s.data) for s in SOURCES])
    got = merged(store, (X0, Y1 - H * RES, X0 + W * RES, Y1), datafusion=datafusion)
    np.testing.assert_array_equal(got, expected)  # exact=True: every pixel


def test_xmin_above_xmax_crosses(make_store, expected):
    """(179.6, ..., -179.6, ...) is the same request as (179.6, ..., 180.4, ...)."""
    store = make_store([(s.name, s.crs, s.transform, s.data) for s in SOURCES])
    got = merged(store, (X0, Y1 - H * RES, X0 + W * RES - 360.0, Y1))
    np.testing.assert_array_equal(got, expected)  # exact=True: every pixel


def test_global_source_wraps(make_store):
    """A global EPSG:4326 source under a 170..190 request fills it (two turns under the chunk across 180)."""
    g = Raster("g", "EPSG:4326", (0.5, 0.0, -180.0, 0.0, -0.5, 90.0), rng.random((360, 720), "f4"))
    store = make_store([(g.name, g.crs, g.transform, g.data)])
    transform = Affine(0.25, 0, 170.0, 0, -0.25, 10.0)
    exp = mosaic_exact(turns(g), "EPSG:4326", transform, (80, 80))
    assert np.isfinite(exp).all()
    got = merged(store, (170.0, -10.0, 190.0, 10.0), res=0.25)
    np.testing.assert_array_equal(got, exp)


@pytest.mark.parametrize("crs", ["EPSG:5703", "EPSG:4978"])
def test_target_crs_must_be_horizontal(seed_store, crs):
    with pytest.raises(InvalidCRSError, match="not a horizontal one"):
        plan(str(seed_store), crs=crs, bbox=(0, 0, 10, 10), resolution=1.0)


STRADDLING = [  # projected sources across 180 itself, in id order: UTM 60N, EPSG:3832 (Mercator at 150 E)
    around("e", "EPSG:32660", 180.0, 50.06, 150.0, 120, 21),
    around("f", "EPSG:3832", 180.02, 49.98, 150.0, 120, 22),
]


@pytest.fixture(scope="module")
def straddling_expected():
    out = mosaic_exact(STRADDLING, "EPSG:4326", Affine(RES, 0, X0, 0, -RES, Y1), (H, W))
    west, east = out[:, : W // 2], out[:, W // 2 :]  # 180 is the grid's middle column
    assert np.isfinite(west).mean() > 0.1 and np.isfinite(east).mean() > 0.1
    return out


@pytest.mark.parametrize(("datafusion", "crossing"), [(True, False), (False, False), (True, True)])
def test_projected_sources_across_180_match_gdal(make_store, straddling_expected, datafusion, crossing):
    """Projected sources straddling 180 into EPSG:4326, with xmax > 180 or xmin > xmax (crossing)."""
    store = make_store([(s.name, s.crs, s.transform, s.data) for s in STRADDLING])
    xmax = X0 + W * RES - (360.0 if crossing else 0.0)
    got = merged(store, (X0, Y1 - H * RES, xmax, Y1), datafusion=datafusion)
    np.testing.assert_array_equal(got, straddling_expected)  # exact=True: every pixel
