"""merge() against GDAL's exact warper on random data: UTM zones, 4326->3857, a pole, the antimeridian."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer

from lazymerge.merge import merge
from lazymerge.planner import plan

from gdal_oracle import Raster, agreement, around, mosaic_exact

SIZE = 192
CHUNK = (64, 64)

CASES = {
    "utm-zones": (
        [
            around("a", "EPSG:32617", -78.02, 40.0, 30.0, 160, 1),
            around("b", "EPSG:32618", -77.97, 40.02, 30.0, 160, 2),
        ],
        ("EPSG:32618", -78.0, 40.01, 25.0),
    ),
    "4326-to-3857": (
        [
            around("a", "EPSG:4326", 10.0, 45.0, 0.0003, 160, 3),
            around("b", "EPSG:4326", 10.02, 45.01, 0.00025, 160, 4),
        ],
        ("EPSG:3857", 10.01, 45.005, 30.0),
    ),
    "polar": (
        [
            around("a", "EPSG:32633", 15.0, 89.5, 500.0, 200, 5),
            around("b", "EPSG:3995", 0.0, 90.0, 500.0, 200, 6),
        ],
        ("EPSG:3413", 0.0, 90.0, 600.0),
    ),
    "antimeridian": (
        [
            around("a", "EPSG:32660", 179.85, 50.0, 150.0, 200, 7),
            around("b", "EPSG:32601", -179.85, 50.05, 150.0, 200, 8),
        ],
        ("EPSG:3832", 180.0, 50.02, 200.0),
    ),
}


def target_grid(crs: str, lon: float, lat: float, res: float) -> tuple[tuple[float, ...], Affine]:
    """A SIZE-square bbox around lon/lat whose centre sits off every pixel edge of the sources."""
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    x0 = x - SIZE / 2 * res + 0.21 * res
    y1 = y + SIZE / 2 * res - 0.43 * res
    return (x0, y1 - SIZE * res, x0 + SIZE * res, y1), Affine(res, 0.0, x0, 0.0, -res, y1)


def store_of(make_store, sources: list[Raster]):
    return make_store([(s.name, s.crs, s.transform, s.data) for s in sources])


def run(store, crs, bbox, res, datafusion, **kw):
    kw.setdefault("exact", True)  # the foundation's exact kernel; the approximate one is tested below
    result = merge(
        store=str(store),
        crs=crs,
        bbox=bbox,
        resolution=res,
        chunk_size=CHUNK,
        bands="data",
        datafusion=datafusion,
        sortby="id",
        **kw,
    )
    return result.array.compute()


@pytest.mark.parametrize("case", CASES)
def test_matches_gdal_exact_on_both_paths(make_store, case):
    sources, (crs, lon, lat, res) = CASES[case]
    store = store_of(make_store, sources)
    bbox, transform = target_grid(crs, lon, lat, res)
    expected = mosaic_exact(sources, crs, transform, (SIZE, SIZE))
    # every source contributes and some pixels stay empty, so priority, edges and holes are all exercised
    for src in sources:
        assert (mosaic_exact([src], crs, transform, (SIZE, SIZE)) == expected).mean() > 0.05
    assert 0 < np.isnan(expected).mean() < 0.9

    sql = run(store, crs, bbox, res, datafusion=True)
    scan = run(store, crs, bbox, res, datafusion=False)
    np.testing.assert_array_equal(sql, scan)
    assert agreement(sql, expected) >= 0.9999


@pytest.mark.parametrize("case", CASES)
def test_plan_never_misses_a_contributing_source(make_store, case):
    """Every chunk lists every source that GDAL puts a pixel in it (the pole's chunk included)."""
    sources, (crs, lon, lat, res) = CASES[case]
    store = store_of(make_store, sources)
    bbox, transform = target_grid(crs, lon, lat, res)
    p = plan(str(store), crs=crs, bbox=bbox, resolution=res, chunk_size=CHUNK, bands="data")
    planned = {
        (r, c, s)
        for r, c, s in zip(
            *(p.table[k].to_pylist() for k in ("chunk_row", "chunk_col", "source_id")), strict=True
        )
    }
    needed = set()
    for src in sources:
        hit = ~np.isnan(mosaic_exact([src], crs, transform, (SIZE, SIZE)))
        for r, c in zip(*np.nonzero(hit), strict=True):
            needed.add((int(r) // CHUNK[0], int(c) // CHUNK[1], src.name))
    assert needed and needed <= planned
    if case == "polar":
        col, row = ~transform @ (0.0, 0.0)
        assert {(int(row) // CHUNK[0], int(col) // CHUNK[1], s) for s in "ab"} <= needed


def test_half_pixel_shift_shows(make_store):
    """The comparison is sharp: the same sources half a pixel off agree with the oracle on few pixels."""
    sources, (crs, lon, lat, res) = CASES["utm-zones"]
    shifted = [
        Raster(
            s.name, s.crs, (*s.transform[:2], s.transform[2] + s.transform[0] / 2, *s.transform[3:]), s.data
        )
        for s in sources
    ]
    store = store_of(make_store, shifted)
    bbox, transform = target_grid(crs, lon, lat, res)
    expected = mosaic_exact(sources, crs, transform, (SIZE, SIZE))
    got = run(store, crs, bbox, res, datafusion=False)
    assert agreement(got, expected) < 0.8
    assert agreement(got, mosaic_exact(shifted, crs, transform, (SIZE, SIZE))) >= 0.9999
