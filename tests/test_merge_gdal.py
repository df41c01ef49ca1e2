"""merge() against GDAL's exact warper on random data: UTM zones, 4326->3857, a pole, the antimeridian."""

from __future__ import annotations

import numpy as np
import pytest

from lazymerge.api import plan
from tests.support.gdal_cases import CASES, CHUNK, SEAMS, SIZE, run, store_of, target_grid
from tests.support.gdal_oracle import Raster, agreement, mosaic_exact, nearest_exact


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
    np.testing.assert_array_equal(sql, expected)  # exact=True: every pixel, as the README says


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
    np.testing.assert_array_equal(got, mosaic_exact(shifted, crs, transform, (SIZE, SIZE)))


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("case", SEAMS)
def test_a_seam_of_the_sources_projection_inside_a_chunk_loses_no_pixel(make_store, case, exact):
    """Between two plan lattice points across a seam (Mercator's or sinusoidal's +-180), a chunk's pixels
    reach the source's edge, which no lattice point does: the window must take it (it missed up to 8
    columns). Every pixel as pyproj's exact transform puts it; GDAL's exact warper agrees wherever it
    gives a value, but drops some pixels beside the seam (its source window), so it is no oracle here."""
    src, (crs, lon, lat, res) = SEAMS[case]
    store = store_of(make_store, [src])
    bbox, transform = target_grid(crs, lon, lat, res)
    expected = nearest_exact([src], crs, transform, (SIZE, SIZE))
    assert 0.1 < np.isfinite(expected).mean() < 0.9  # the seam, the source's edge, inside the grid
    got = run(store, crs, bbox, res, datafusion=None, exact=exact)
    np.testing.assert_array_equal(got, expected)
    gdal = mosaic_exact([src], crs, transform, (SIZE, SIZE))
    np.testing.assert_array_equal(got[np.isfinite(gdal)], gdal[np.isfinite(gdal)])
