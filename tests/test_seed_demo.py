"""The seed demo's own code, unchanged but for its one 3-way unpacking, against the package."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Transformer

from tests.support.seed_demo import run_seed

TILES = {  # the seed's tiles: name -> (crs, bbox)
    "a": ("EPSG:32618", (500000.0, 5990000.0, 505000.0, 5995000.0)),
    "c": ("EPSG:32618", (500000.0, 5995000.0, 505000.0, 6000000.0)),
    "b": ("EPSG:32617", (895094.0, 6006920.0, 900511.0, 6012337.0)),
    "d": ("EPSG:32617", (894669.0, 6011912.0, 900086.0, 6017329.0)),
}


def covered(res: float, shape: tuple[int, int]) -> np.ndarray:
    """True where some tile contains the target pixel centre (computed independently of lazymerge)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    x = 500000.0 + (cols + 0.5) * res
    y = 6000000.0 - (rows + 0.5) * res
    out = np.zeros(shape, dtype=bool)
    for crs, (x0, y0, x1, y1) in TILES.values():
        x1, y0 = x0 + int((x1 - x0) / 10.0) * 10.0, y1 - int((y1 - y0) / 10.0) * 10.0  # whole pixels
        sx, sy = Transformer.from_crs("EPSG:32618", crs, always_xy=True).transform(x, y)
        out |= (sx >= x0) & (sx < x1) & (sy > y0) & (sy <= y1)
    return out


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    return {df: run_seed(str(tmp_path_factory.mktemp(f"seed{df}")), datafusion=df) for df in (True, False)}


@pytest.mark.parametrize("datafusion", [True, False])
def test_seed_values(seed_runs, datafusion):
    r = seed_runs[datafusion]
    assert r["sel_10"].asset == "0" and r["sel_20"].asset == "1"
    assert [ov.asset for ov in r["overviews"]] == ["0", "1"]
    assert r["overviews"][1].transform == (20.0, 0.0, 500000.0, 0.0, -20.0, 5995000.0)
    assert r["time_coords"] is None
    assert r["result_arr"].chunks == ((256, 256, 256, 232), (256, 256, 256, 32))
    assert r["result_spatial"].transform == (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)
    assert r["result_proj"].code == "EPSG:32618"
    lazy = r["lazy"]
    assert lazy.dims == ("y", "x") and lazy.shape == (1000, 800)
    assert float(lazy.x[0]) == 500005.0 and float(lazy.y[0]) == 5999995.0
    a = r["da"].values
    assert a.dtype == np.float32
    assert a[0, 0] == 300 and a[0, -1] == 400 and a[-1, 0] == 100 and a[-3, -3] == 200
    assert np.isnan(a[-1, -1]) and np.isnan(a[-2, -1])
    assert set(np.unique(a[~np.isnan(a)])) == {100.0, 200.0, 300.0, 400.0}
    np.testing.assert_array_equal(np.isnan(a), ~covered(10.0, a.shape))
    b = r["da_20m"].compute().values
    assert b.shape == (500, 400)
    assert r["da_20m"].data.chunks == ((128, 128, 128, 116), (128, 128, 128, 16))
    assert b[0, 0] == 300 and b[0, -1] == 400 and b[-1, 0] == 100 and b[-3, -3] == 200


def test_seed_priority_follows_sortby(seed_runs):
    """sortby="id": utm17n_* sort before utm18n_*, so the UTM 17N tiles win where tiles overlap."""
    a = seed_runs[True]["da"].values
    # pixel (row 0, col 300) at x=503005: inside tile c (18N) and tile d (17N); d wins
    assert a[0, 300] == 400


def test_seed_both_paths_identical(seed_runs):
    np.testing.assert_array_equal(seed_runs[True]["da"].values, seed_runs[False]["da"].values)
    np.testing.assert_array_equal(
        seed_runs[True]["da_20m"].compute().values, seed_runs[False]["da_20m"].compute().values
    )
