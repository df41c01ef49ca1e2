"""The coarse pass that finds the chunks near any source: the footprints it gives are the full grid's, and
no chunk whose footprint meets a source is left out, whatever the grid, CRS, sources and run size."""

from __future__ import annotations

import numpy as np
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from lazymerge.catalog.footprints import chunk_footprints, split_parts
from lazymerge.grid import TargetGrid
from lazymerge.planner import nearby

# (CRS, a box of the world in it to draw grids from)
AREAS = [
    ("EPSG:32633", (200_000.0, 4_000_000.0, 800_000.0, 6_000_000.0)),
    ("EPSG:3035", (2_500_000.0, 1_500_000.0, 6_500_000.0, 5_500_000.0)),
    ("EPSG:3413", (-3_000_000.0, -3_000_000.0, 3_000_000.0, 3_000_000.0)),  # holds the north pole
    ("EPSG:4326", (170.0, -80.0, 190.0, 80.0)),  # across the antimeridian
]


@st.composite
def cases(draw):
    crs, (x0, y0, x1, y1) = draw(st.sampled_from(AREAS))
    ny, nx = draw(st.integers(1, 90)), draw(st.integers(1, 90))
    res = min(x1 - x0, y1 - y0) / 100 / draw(st.sampled_from([1, 2, 4]))
    gx = draw(st.floats(x0, x1 - nx * res))
    gy = draw(st.floats(y0 + ny * res, y1))
    grid = TargetGrid.from_bbox(crs, (gx, gy - ny * res, gx + nx * res, gy), res, (1, 1))
    fp = chunk_footprints(grid)  # sources near the grid: within its lon/lat bounds (their fractions)
    with np.errstate(all="ignore"):
        w, s, e, n_ = (np.nanmin(fp[:, 0]), np.nanmin(fp[:, 1]), np.nanmax(fp[:, 2]), np.nanmax(fp[:, 3]))
    if not np.isfinite([w, s, e, n_]).all():
        w, s, e, n_ = -180.0, -90.0, 180.0, 90.0
    k = draw(st.integers(0, 8))
    unit = st.floats(0, 1)
    fx, fy = (np.array(draw(st.lists(unit, min_size=k, max_size=k))) for _ in "xy")
    size = np.array(draw(st.lists(st.floats(1e-4, 0.3), min_size=k, max_size=k)))
    lon, lat = w + fx * (e - w), s + fy * (n_ - s)
    parts = np.stack([lon, lat, lon + size * (e - w), np.minimum(lat + size * (n_ - s), 90)], axis=1).reshape(
        -1, 4
    )
    coarse = draw(st.integers(1, 12))
    run = draw(st.sampled_from([1, 7, 50, 10**9]))
    return grid, parts, coarse, run


@settings(max_examples=80, deadline=None)
@given(cases())
def test_coarse_pass_keeps_every_chunk_near_a_source(case):
    grid, parts, coarse, run = case
    full = chunk_footprints(grid)
    old = nearby.COARSE, nearby.RUN_CHUNKS
    nearby.COARSE, nearby.RUN_CHUNKS = coarse, run
    try:
        ids, footprints = nearby.nearby_chunks(grid, parts)
    finally:
        nearby.COARSE, nearby.RUN_CHUNKS = old
    assert np.all(np.diff(ids) > 0)
    np.testing.assert_array_equal(footprints, full[ids])  # the same points, whichever run holds a chunk
    index, chunk_parts = split_parts(full)
    meets = np.zeros(len(full), dtype=bool)
    if len(parts) and len(chunk_parts):
        q, _ = shapely.STRtree(shapely.box(*parts.T)).query(shapely.box(*chunk_parts.T))
        meets[index[q]] = True
    assert set(np.flatnonzero(meets)) <= set(ids.tolist())
