"""ingest: GeoTIFFs written by rasterio, COGs by GDAL's COG driver and STAC items by pystac (as
ItemCollection JSON, or stac-geoparquet written by the stac-geoparquet package) become a store whose pixels
are the files' pixels, and whose merge agrees with GDAL's exact warper run on the files."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pytest
import rasterio
import zarr
from rasterio.enums import Resampling

import lazymerge
from lazymerge.api import merge
from lazymerge.catalog.conventions import read_multiscales, read_proj, read_spatial
from lazymerge.cli import main
from lazymerge.errors import InvalidRequestError
from tests.support.gdal_cases import CASES, SIZE, target_grid
from tests.support.gdal_oracle import mosaic_exact
from tests.support.geotiffs import write_geotiff


def test_geotiff_and_cog_read_back_and_merge_like_gdal(tmp_path):
    (a, b), (crs, lon, lat, res) = CASES["utm-zones"]  # 160 px of random floats each, two UTM zones
    files = [
        write_geotiff(tmp_path / "a.tif", a.data, a.crs, a.transform, nodata=np.nan, scale=2.0, offset=1.0),
        write_geotiff(tmp_path / "b.tif", b.data, b.crs, b.transform, cog_overviews=2),
    ]
    store = tmp_path / "store.zarr"
    assert lazymerge.ingest([str(f) for f in files], store, chunks=64) == ["a", "b"]
    root = zarr.open_group(str(store), mode="r")
    for src, f in zip((a, b), files, strict=True):
        with rasterio.open(f) as ds:
            np.testing.assert_array_equal(root[f"{src.name}/data/0"][:], ds.read(1))
        assert read_spatial(root[f"{src.name}/data/0"]).transform == src.transform
        assert read_proj(root[f"{src.name}/data/0"]).code == src.crs
        assert [ov.asset for ov in read_multiscales(root[f"{src.name}/data"])] == ["0", "1", "2"]
    # b's levels are the COG's own overviews, as GDAL wrote them
    for k in (1, 2):
        with rasterio.open(files[1], overview_level=k - 1) as ov:
            np.testing.assert_array_equal(root[f"b/data/{k}"][:], ov.read(1))
            assert read_spatial(root[f"b/data/{k}"]).transform == tuple(ov.transform)[:6]
    # a's were built (160 px, 64 px chunks: two levels), each 2 x 2 mean as GDAL's average computes it
    with rasterio.open(files[0]) as ds:
        gdal_average = ds.read(1, out_shape=(80, 80), resampling=Resampling.average)
    np.testing.assert_allclose(root["a/data/1"][:], gdal_average, rtol=1e-6)
    assert root["a/data/0"].attrs["scale_factor"] == 2.0 and root["a/data/0"].attrs["add_offset"] == 1.0

    bbox, transform = target_grid(crs, lon, lat, res)
    got = merge(
        str(store),
        crs=crs,
        bbox=bbox,
        resolution=res,
        chunk_size=(64, 64),
        bands="data",
        sortby="id",
        exact=True,
    ).array.compute()
    expected = mosaic_exact([a, b], crs, transform, (SIZE, SIZE))  # GDAL on the original rasters
    assert 0 < np.isnan(expected).mean() < 0.9
    np.testing.assert_array_equal(got, expected)  # exact=True: every pixel, as the README says


@pytest.fixture
def stac_items(tmp_path):
    """Two pystac items, each with B04 and B03 uint16 COG assets (nodata 0), eo:cloud_cover and a time."""
    import pystac
    from rasterio.warp import transform_bounds
    from shapely.geometry import box, mapping

    rng = np.random.default_rng(7)
    items = []
    for k, (cloud, x0) in enumerate(((5.0, 500000.0), (60.0, 500320.0))):
        footprint = box(*transform_bounds("EPSG:32618", "EPSG:4326", x0, 5999360.0, x0 + 640.0, 6000000.0))
        item = pystac.Item(
            f"scene-{k}",
            mapping(footprint),
            list(footprint.bounds),
            dt.datetime(2024, 5, 1 + k, 10, tzinfo=dt.UTC),
            {"eo:cloud_cover": cloud, "platform": "test", "proj:epsg": 32618},
        )
        for band in ("B04", "B03"):
            data = rng.integers(1, 10000, (64, 64)).astype("uint16")
            path = write_geotiff(
                tmp_path / f"s{k}_{band}.tif",
                data,
                "EPSG:32618",
                (10.0, 0.0, x0, 0.0, -10.0, 6000000.0),
                nodata=0,
                cog_overviews=0,
            )
            item.add_asset(band, pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"]))
        items.append(item)
    collection = pystac.ItemCollection(items)
    collection.save_object(dest_href=str(tmp_path / "items.json"))
    return tmp_path / "items.json"


def to_geoparquet(items, path):
    """STAC items as a stac-geoparquet file, written by the stac-geoparquet package."""
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    to_parquet(parse_stac_items_to_arrow(items), path)
    return path


def store_contents(path):
    """Every array of a store (pixels, /meta columns) and every group's attributes, by path."""
    arrays, attrs = {}, {}

    def walk(group, prefix):
        attrs[prefix] = dict(group.attrs)
        for name, member in group.members():
            if isinstance(member, zarr.Group):
                walk(member, f"{prefix}/{name}")
            else:
                arrays[f"{prefix}/{name}"] = (member[:], dict(member.attrs))

    walk(zarr.open_group(str(path), mode="r"), "")
    return arrays, attrs


def test_stac_geoparquet_gives_the_same_store_as_the_json(stac_items, tmp_path):
    """The same items as stac-geoparquet (with relative hrefs, resolved against the file) through
    ``lazymerge ingest``: pixels, datetime, properties and /meta identical to the JSON's store; and so are
    those of items whose assets are that store's source groups (Zarr in this layout, copied)."""
    import pystac

    from lazymerge.catalog.ingest import read_stac

    items = list(pystac.ItemCollection.from_file(str(stac_items)))
    for item in items:
        for asset in item.assets.values():
            asset.href = asset.href.rpartition("/")[2]  # relative to the catalogue's folder
    parquet = to_geoparquet(items, tmp_path / "items.parquet")
    assert [i.id for i in read_stac(parquet, batch_size=1)] == ["scene-0", "scene-1"]  # one row at a time
    lazymerge.ingest(stac_items, tmp_path / "json.zarr", chunks=32, overviews=1)
    args = ["ingest", str(parquet), "--out", str(tmp_path / "parquet.zarr"), "--chunks", "32"]
    assert main([*args, "--overviews", "1", "--no-progress"]) == 0
    json_arrays, json_attrs = store_contents(tmp_path / "json.zarr")
    parquet_arrays, parquet_attrs = store_contents(tmp_path / "parquet.zarr")
    assert parquet_attrs == json_attrs and parquet_attrs["/scene-1"]["cloud_cover"] == 60.0
    assert parquet_arrays.keys() == json_arrays.keys() >= {"/scene-0/B04/1", "/meta/datetime", "/meta/id"}
    for key, (data, array_attrs) in json_arrays.items():
        np.testing.assert_array_equal(parquet_arrays[key][0], data, err_msg=key)
        assert parquet_arrays[key][1] == array_attrs, key
    # items whose assets are Zarr source groups of another store are copied as they are
    for item in items:
        item.assets = {"zarr": pystac.Asset(f"json.zarr/{item.id}", media_type="application/vnd+zarr")}
    lazymerge.ingest(to_geoparquet(items, tmp_path / "zarr.parquet"), tmp_path / "copy.zarr")
    copy_arrays, copy_attrs = store_contents(tmp_path / "copy.zarr")
    assert copy_attrs == json_attrs and copy_arrays.keys() == json_arrays.keys()
    for key, (data, array_attrs) in json_arrays.items():
        np.testing.assert_array_equal(copy_arrays[key][0], data, err_msg=key)
        assert copy_arrays[key][1] == array_attrs, key


def test_malformed_geoparquet_is_a_typed_error_naming_the_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pystac

    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"id": ["a"], "value": [1.0]}), plain)  # parquet, but not STAC
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not a parquet file")
    for bad in (plain, junk):
        with pytest.raises(InvalidRequestError, match=rf"{bad.name}.*not a stac-geoparquet.*write it with"):
            lazymerge.ingest(bad, tmp_path / "out.zarr")
    when = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    bare = pystac.Item("bare", {"type": "Point", "coordinates": [0.0, 0.0]}, [0.0] * 4, when, {})  # no assets
    no_assets = to_geoparquet([bare], tmp_path / "no-assets.parquet")
    with pytest.raises(InvalidRequestError, match=r"no-assets.parquet.*'bare' has no GeoTIFF/COG.*bands="):
        lazymerge.ingest(no_assets, tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists() or not any((tmp_path / "out.zarr").iterdir())


def test_stac_items_become_sources_with_time_and_properties(stac_items, tmp_path):
    store = tmp_path / "stac.zarr"
    assert lazymerge.ingest(stac_items, store, chunks=32, overviews=1) == ["scene-0", "scene-1"]
    root = zarr.open_group(str(store), mode="r")
    assert (
        dict(root["scene-0"].attrs).items()
        >= {
            "cloud_cover": 5.0,
            "platform": "test",
            "datetime": "2024-05-01T10:00:00+00:00",
        }.items()
    )
    with rasterio.open(stac_items.parent / "s1_B03.tif") as ds:
        np.testing.assert_array_equal(root["scene-1/B03/0"][:], ds.read(1))
    assert root["scene-1/B03/0"].attrs["nodata"] == 0 and root["scene-1/B03/1"].shape == (32, 32)
    # /meta carries the property: a where= on it picks the clear scene only
    result = merge(
        str(store),
        crs="EPSG:32618",
        bbox=(500000.0, 5999360.0, 500960.0, 6000000.0),
        resolution=10.0,
        bands=["B04", "B03"],
        where="cloud_cover < 20",
        dtype="uint16",
        nodata=0,
    )
    out = result.array.compute()
    np.testing.assert_array_equal(out[1, :, :64], root["scene-0/B03/0"][:])
    assert (out[:, :, 64:] == 0).all()  # scene-1 alone covers these columns, and it is cloudy


def test_resumes_writing_only_missing_sources(stac_items, tmp_path):
    store = tmp_path / "stac.zarr"
    lazymerge.ingest(stac_items, store, chunks=32, bands="B04")
    kept = (store / "scene-0" / "zarr.json").stat().st_mtime_ns
    shutil.rmtree(store / "scene-1")  # as if the run had died before scene-1 was renamed into place
    leftover = zarr.open_group(str(store / ".ingest-scene-1-0123456789ab"), mode="w")  # written aside
    leftover.create_group("B04")
    assert lazymerge.ingest(stac_items, store, chunks=32, bands="B04") == ["scene-1"]
    assert not (store / ".ingest-scene-1-0123456789ab").exists()
    assert (store / "scene-0" / "zarr.json").stat().st_mtime_ns == kept
    assert sorted(zarr.open_group(str(store), mode="r")["scene-1"].group_keys()) == ["B04"]
    assert lazymerge.ingest(stac_items, store, bands="B04") == []  # all complete: nothing to do
    with pytest.raises(InvalidRequestError, match="no asset"):
        lazymerge.ingest(stac_items, tmp_path / "other.zarr", bands="B08")


def test_index_stac_builds_meta_from_the_catalogue_in_place(stac_items, tmp_path):
    """Items whose assets are already source groups of the store: /meta from the catalogue, no copy."""
    import pystac

    from lazymerge.catalog.ingest import index_stac

    store = tmp_path / "stac.zarr"
    lazymerge.ingest(stac_items, store, chunks=32, bands="B04", meta=False)
    chunk = next((store / "scene-0" / "B04" / "0").rglob("c/*/*"))
    before = chunk.stat().st_mtime_ns
    items = []
    for item in pystac.ItemCollection.from_file(str(stac_items)):
        item.assets = {"zarr": pystac.Asset(str(store / item.id), media_type="application/vnd+zarr")}
        item.properties["eo:cloud_cover"] = 90.0 - item.properties["eo:cloud_cover"]  # the catalogue wins
        items.append(item)
    pystac.ItemCollection(items).save_object(dest_href=str(tmp_path / "zarr-items.json"))
    assert main(["index", str(store), "--stac", str(tmp_path / "zarr-items.json")]) == 0
    meta = zarr.open_group(str(store / "meta"), mode="r")
    assert list(meta["id"][:]) == ["scene-0", "scene-1"] and list(meta["cloud_cover"][:]) == [85.0, 30.0]
    assert chunk.stat().st_mtime_ns == before  # nothing rewritten
    result = merge(
        str(store),
        crs="EPSG:32618",
        bbox=(500000.0, 5999360.0, 500960.0, 6000000.0),
        resolution=10.0,
        bands="B04",
        where="cloud_cover < 50",
        dtype="uint16",
        nodata=0,
    )
    out = result.array.compute()
    assert (out[:, :32] == 0).all() and (out[:, 64:] != 0).all()  # now scene-1 is the clear one
    # the same catalogue as stac-geoparquet: the same /meta
    json_meta = store_contents(store / "meta")[0]
    assert main(["index", str(store), "--stac", str(to_geoparquet(items, tmp_path / "zarr.parquet"))]) == 0
    for key, (data, _) in store_contents(store / "meta")[0].items():
        np.testing.assert_array_equal(data, json_meta[key][0], err_msg=key)
    items[0].assets["zarr"].href = str(tmp_path / "elsewhere.zarr" / "scene-0")
    with pytest.raises(InvalidRequestError, match="must name one source group"):
        index_stac(items, store)
