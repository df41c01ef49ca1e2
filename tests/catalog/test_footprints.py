"""Grid footprints (every chunk's EPSG:4326 bounds, as planning finds pairs with) hold every point of
their cell: edges sampled at three points and widened by their bend, densified where they bend hard."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer

from lazymerge.catalog import footprints
from lazymerge.catalog.footprints import grid_lonlat_bounds, lonlat_bounds

# (CRS, lon, lat) centres to draw grids around: UTM, LAEA, Mercator, polar, geographic, sinusoidal
CENTRES = [
    ("EPSG:32633", 15.0, 50.0),
    ("EPSG:32660", 177.0, -40.0),
    ("EPSG:3035", 10.0, 52.0),
    ("EPSG:3857", -60.0, 70.0),
    ("EPSG:3413", -45.0, 75.0),
    ("EPSG:3031", 100.0, -80.0),
    ("EPSG:4326", 20.0, 60.0),
    ("+proj=sinu +lon_0=0 +datum=WGS84 +units=m", 120.0, 65.0),
]


@settings(max_examples=40, deadline=None)
@given(
    centre=st.sampled_from(CENTRES),
    cell_km=st.sampled_from([2.0, 10.0, 60.0, 300.0]),
    ny=st.integers(1, 12),
    nx=st.integers(1, 12),
    jitter=st.floats(-0.5, 0.5),
)
def test_grid_footprints_hold_every_point_of_their_cells(centre, cell_km, ny, nx, jitter):
    crs, lon, lat = centre
    cx, cy = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    step = cell_km * (1e3 if "4326" not in crs else 1 / 111.0)
    xs = cx + (np.arange(nx + 1) - nx / 2 + jitter) * step
    ys = cy + (np.arange(ny + 1)[::-1] - ny / 2) * step  # north-up: edges from the top
    got = grid_lonlat_bounds(crs, xs, ys)
    gx0, gy0 = np.meshgrid(xs[:-1], ys[1:])
    gx1, gy1 = np.meshgrid(xs[1:], ys[:-1])
    boxes = np.stack([gx0.ravel(), gy0.ravel(), gx1.ravel(), gy1.ravel()], axis=1)
    dense = lonlat_bounds(crs, boxes, 401)  # every cell, 401 points an edge
    easy = np.isfinite(dense).all(axis=1) & (dense[:, 0] <= dense[:, 2]) & (dense[:, 2] - dense[:, 0] < 90)
    d, g = dense[easy], got[easy]
    assert np.all(g[:, 0] <= d[:, 0]) and np.all(g[:, 1] <= d[:, 1])
    assert np.all(g[:, 2] >= d[:, 2]) and np.all(g[:, 3] >= d[:, 3])
    size = np.maximum(d[:, 2] - d[:, 0], d[:, 3] - d[:, 1])[:, None]
    widened = np.abs(g - d)
    assert np.all(widened <= 0.25 * size + 1e-6)  # a margin, not a different box


def test_a_cell_whose_edges_bend_is_densified():
    """Around the pole a cell's edges bend: three points would miss most of its longitudes."""
    xs, ys = np.array([-300e3, 0.0, 300e3]), np.array([300e3, 1.0, -300e3])
    got = grid_lonlat_bounds("EPSG:3413", xs, ys)
    _, bent = footprints._shared_edges(
        footprints.transformer(footprints.CRS.from_user_input("EPSG:3413").to_wkt(), footprints.WGS84_WKT),
        xs,
        ys,
        footprints.SAMPLES,
    )
    assert bent.all()
    boxes = np.array([[-300e3, 1.0, 0.0, 300e3], [0.0, 1.0, 300e3, 300e3]])
    np.testing.assert_array_equal(got[:2], lonlat_bounds("EPSG:3413", boxes, widen=True))


def test_too_few_samples_an_edge_is_refused():
    """Two points an edge show no bend to widen by: refused, naming the value."""
    with pytest.raises(ValueError, match="samples=2"):
        grid_lonlat_bounds("EPSG:32633", np.array([0.0, 1e4]), np.array([5e6, 4.99e6]), samples=2)
