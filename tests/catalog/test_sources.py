"""scan_store and select_overview on real stores."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from lazymerge.api import plan
from lazymerge.catalog.conventions import Overview, ProjAttrs, SpatialAttrs, write_proj, write_spatial
from lazymerge.catalog.scan import scan_store
from lazymerge.catalog.sources import select_overview
from lazymerge.errors import StoreError


def test_scan_seed_store(seed_store):
    index = scan_store(str(seed_store))
    assert [e.id for e in index] == ["utm17n_tile_b", "utm17n_tile_d", "utm18n_tile_a", "utm18n_tile_c"]
    assert index.band_names == ["data"]
    b = index.entries[0]
    assert b.crs.to_epsg() == 32617
    assert [lv.path for lv in b.bands["data"].levels] == ["utm17n_tile_b/data/0", "utm17n_tile_b/data/1"]
    assert [lv.resolution for lv in b.bands["data"].levels] == [10.0, 20.0]
    assert b.base.shape == (541, 541)


def test_scan_plain_arrays(tmp_path):
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    for name in ("tile1/B04", "tile1/B03", "lonely"):
        arr = root.create_array(name, shape=(8, 8), dtype="u2", fill_value=0)
        write_spatial(arr, SpatialAttrs(transform=(10.0, 0.0, 0.0, 0.0, -10.0, 80.0)))
        write_proj(arr, ProjAttrs(code="EPSG:32633"))
    root.create_array("not_spatial", shape=(3,), dtype="f4")
    index = scan_store(str(tmp_path / "s.zarr"))
    assert [(e.id, sorted(map(str, e.bands))) for e in index] == [
        ("lonely", ["None"]),
        ("tile1", ["B03", "B04"]),
    ]
    assert index.entries[1].bands["B04"].levels[0].nodata == 0.0  # integer fill_value marks missing


def test_scan_empty_store(tmp_path):
    zarr.open_group(str(tmp_path / "e.zarr"), mode="w")
    with pytest.raises(StoreError, match="no sources found"):
        scan_store(str(tmp_path / "e.zarr"))


@pytest.mark.parametrize(
    ("target", "asset"),
    [(5.0, "0"), (10.0, "0"), (19.99, "0"), (20.0, "1"), (39.0, "1"), (40.0, "2"), (1000.0, "2")],
)
def test_select_overview(target, asset):
    ovs = [Overview("0"), Overview("1", (2.0, 2.0)), Overview("2", (4.0, 4.0))]
    assert select_overview(ovs, target_res=target, native_res=10.0).asset == asset


@pytest.mark.parametrize("datafusion", [True, False])
def test_overview_choice_converts_units(make_store, datafusion):
    """A 4326 source (degrees) merged into 3857 (metres): the target resolution is converted, not raw.

    At 45N a 3857 pixel of 20 m is ~14 m on the ground, ~0.00018 deg: level 0 (0.0001 deg) is the coarsest
    level still as fine; comparing raw numbers (20 >= 0.0004) would wrongly pick the coarsest level 2.
    """
    data = np.random.default_rng(0).random((400, 400), dtype="f4")
    path = make_store(
        [("geo", "EPSG:4326", (0.0001, 0.0, 10.0, 0.0, -0.0001, 45.02), data)], levels=3, meta=datafusion
    )
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(10.02, 45.0)
    bbox = (x - 1000, y - 1000, x + 1000, y + 1000)
    levels = {
        r: set(
            plan(
                str(path),
                crs="EPSG:3857",
                bbox=bbox,
                resolution=r,
                chunk_size=(64, 64),
                bands="data",
                datafusion=datafusion,
            )
            .table["level"]
            .to_pylist()
        )
        for r in (20.0, 40.0, 100.0)
    }
    assert levels == {20.0: {0}, 40.0: {1}, 100.0: {2}}
