"""write_meta / lazymerge index: the seed's columns, densified and antimeridian-split footprints."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import shapely
import zarr
from pyproj import Transformer

from lazymerge.catalog.meta import MetaTable, write_meta
from lazymerge.catalog.stores import resolve_store
from lazymerge.cli import main
from lazymerge.errors import StoreError

SEED_COLUMNS = ["id", "bbox", "proj:epsg", *(f"transform_{i}" for i in range(6)), "shape_x", "shape_y"]


def test_write_meta_columns(seed_store):
    meta = zarr.open_group(str(seed_store / "meta"), mode="r")
    assert set(SEED_COLUMNS) <= set(meta.array_keys())
    assert list(meta["id"][:]) == ["utm17n_tile_b", "utm17n_tile_d", "utm18n_tile_a", "utm18n_tile_c"]
    assert list(meta["proj:epsg"][:]) == [32617, 32617, 32618, 32618]
    np.testing.assert_array_equal(meta["transform_2"][:], [895094.0, 894669.0, 500000.0, 500000.0])
    np.testing.assert_array_equal(meta["shape_x"][:], [541, 541, 500, 500])
    # no leftovers from the atomic replace
    assert not [p for p in seed_store.iterdir() if p.name.startswith(".meta")]


def test_footprints_are_densified(make_store):
    """The WKB box equals pyproj's densified transform_bounds, and reaches past the 4-corner box."""
    data = np.zeros((60, 60), dtype="f4")  # 600 km UTM tile: its top edge bulges north between corners
    path = make_store([("big", "EPSG:32617", (10000.0, 0.0, 200000.0, 0.0, -10000.0, 4600000.0), data)])
    geom = shapely.from_wkb(zarr.open_array(str(path / "meta" / "bbox"), mode="r")[:][0])
    t = Transformer.from_crs("EPSG:32617", "EPSG:4326", always_xy=True)
    expected = t.transform_bounds(200000.0, 4000000.0, 800000.0, 4600000.0, densify_pts=19)
    np.testing.assert_allclose(geom.bounds, expected, atol=1e-9)
    corners = t.transform([200000.0, 800000.0], [4600000.0, 4600000.0])
    assert geom.bounds[3] > max(corners[1]) + 0.05


def test_antimeridian_footprint_is_split(make_store):
    data = np.zeros((100, 100), dtype="f4")
    # UTM 60N, east edge of the zone at ~60N: 100 km wide, crosses 180
    path = make_store([("am", "EPSG:32660", (1000.0, 0.0, 620000.0, 0.0, -1000.0, 6700000.0), data)])
    geom = shapely.from_wkb(zarr.open_array(str(path / "meta" / "bbox"), mode="r")[:][0])
    assert geom.geom_type == "MultiPolygon"
    east, west = sorted(geom.geoms, key=lambda g: -g.bounds[0])
    assert east.bounds[2] == 180.0 and west.bounds[0] == -180.0
    assert east.bounds[0] > 170 and west.bounds[2] < -170


def test_meta_reads_through_datafusion(seed_store):
    meta = MetaTable(resolve_store(str(seed_store)))
    out = meta.sql('SELECT id, "proj:epsg" FROM meta WHERE shape_x > 520 ORDER BY id')
    assert out.to_pydict() == {"id": ["utm17n_tile_b", "utm17n_tile_d"], "proj:epsg": [32617, 32617]}
    assert pa.types.is_binary(meta.schema.field("bbox").type) or "binary" in str(
        meta.schema.field("bbox").type
    )


def test_cli_index_rewrites_meta(seed_store, capsys):
    zarr.open_group(str(seed_store), mode="r+")["meta"]["id"][0] = "stale"
    assert main(["index", str(seed_store)]) == 0
    assert "4 sources" in capsys.readouterr().out
    assert zarr.open_array(str(seed_store / "meta" / "id"), mode="r")[0] == "utm17n_tile_b"


def test_write_meta_returns_table(seed_store):
    table = write_meta(seed_store)
    assert table.column_names[:3] == ["id", "bbox", "proj:epsg"]


@pytest.mark.filterwarnings("ignore:Object at data is not recognized:UserWarning")
def test_datafusion_plans_from_meta_alone(seed_store):
    """/meta carries every source's bands and levels: planning reads no source group's metadata."""
    from lazymerge.api import plan

    request = {"crs": "EPSG:32618", "bbox": (500000.0, 5990000.0, 508000.0, 6000000.0), "resolution": 20.0}
    before = plan(str(seed_store), datafusion=True, **request)
    for name in ("zarr.json",):
        for band_meta in seed_store.glob(f"*/data/{name}"):
            band_meta.rename(band_meta.with_suffix(".hidden"))
    after = plan(str(seed_store), datafusion=True, **request)
    assert after.table.equals(before.table) and after.levels.equals(before.levels)
    with pytest.raises(StoreError):  # the scan path does need the groups
        plan(str(seed_store), datafusion=False, **request)
