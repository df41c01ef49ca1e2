"""Multi-band, multi-date merges: band and time dimensions against the GDAL oracle, on both paths."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from lazymerge.api import merge, plan
from lazymerge.catalog.meta import MetaTable, write_meta
from lazymerge.catalog.stores import resolve_store
from lazymerge.contract.cost import task_memory
from lazymerge.errors import BandNotFoundError, BandsInferredWarning, GroupByError, InvalidRequestError
from tests.support.gdal_cases import CHUNK, SIZE, target_grid
from tests.support.gdal_oracle import Raster, agreement, around, mosaic_exact, warp_exact
from tests.support.stores import add_source

DATES = ["2024-06-01T10:30:00Z", "2024-06-01T10:31:10", "2024-06-03T12:29:00+02:00", "2024-06-03T10:30:40Z"]
TARGET = ("EPSG:32618", -78.0, 40.01, 25.0)


def scenes() -> list[tuple[str, str, Raster, Raster]]:
    """Four scenes (two per day, in two UTM zones), each with B04 at 30 m and B11 at 60 m."""
    out = []
    for k, when in enumerate(DATES):
        crs = "EPSG:32617" if k % 2 == 0 else "EPSG:32618"
        b04 = around(f"s{k}", crs, -78.015 + 0.01 * k, 40.0 + 0.003 * k, 30.0, 160, 10 + k)
        a, b, c, d, e, f = b04.transform
        rng = np.random.default_rng(20 + k)
        b11 = Raster(b04.name, crs, (2 * a, b, c, d, 2 * e, f), rng.random((80, 80), dtype="f4"))
        out.append((b04.name, when, b04, b11))
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("bt") / "scenes.zarr"
    root = zarr.open_group(zarr.storage.LocalStore(str(path)), mode="w")
    for name, when, b04, b11 in scenes():
        add_source(root, name, b04.crs, b04.transform, b04.data, band="B04")
        add_source(root, name, b11.crs, b11.transform, b11.data, band="B11")
        root[name].attrs["datetime"] = when
    write_meta(path)
    return path


def compute(store, **kw):
    crs, lon, lat, res = TARGET
    bbox, _ = target_grid(crs, lon, lat, res)
    return merge(str(store), crs=crs, bbox=bbox, resolution=res, chunk_size=CHUNK, sortby="id", **kw)


def test_meta_has_a_timestamp_column(store):
    meta = MetaTable(resolve_store(str(store)))
    assert str(meta.schema.field("datetime").type).startswith("timestamp")


@pytest.mark.parametrize("datafusion", [True, False])
def test_bands_and_days_match_gdal_per_slice(store, datafusion):
    result = compute(store, bands=["B11", "B04"], groupby="day", datafusion=datafusion)
    got = result.array.compute()
    assert got.shape == (2, 2, SIZE, SIZE)
    np.testing.assert_array_equal(
        result.time_coords, np.array(["2024-06-01", "2024-06-03"], dtype="datetime64[ns]")
    )
    crs, lon, lat, res = TARGET
    _, transform = target_grid(crs, lon, lat, res)
    for t, day in enumerate(["2024-06-01", "2024-06-03"]):
        todays = [s for s in scenes() if s[1].startswith(day)]
        for b, band in enumerate([3, 2]):  # B11 then B04, as asked
            expected = mosaic_exact([s[band] for s in todays], crs, transform, (SIZE, SIZE))
            assert np.isfinite(expected).mean() > 0.25
            assert agreement(got[t, b], expected) >= 0.9999, (day, band)


def test_both_paths_identical_with_time_and_bands(store):
    kw = {"bands": ["B04", "B11"], "groupby": "time"}
    a = compute(store, datafusion=True, **kw)
    b = compute(store, datafusion=False, **kw)
    assert a.plan.table.equals(b.plan.table)
    assert a.plan.table.column_names[:2] == ["time", "band"]
    assert len(a.time_coords) == 4
    np.testing.assert_array_equal(a.array.compute(), b.array.compute())


@pytest.mark.parametrize("datafusion", [True, False])
def test_latest_first_without_groupby(store, datafusion):
    """sortby='-datetime' puts the newest scene on top; time_coords stays None."""
    result = compute(store, bands="B04", datafusion=datafusion)
    latest = merge(
        str(store),
        crs=result.grid.crs,
        bbox=result.grid.bbox,
        resolution=result.grid.resolution,
        chunk_size=CHUNK,
        bands="B04",
        sortby="-datetime",
        datafusion=datafusion,
    )
    assert result.time_coords is None and latest.time_coords is None
    assert latest.plan.table["source_id"].to_pylist()[0] == "s3"
    crs, lon, lat, res = TARGET
    _, transform = target_grid(crs, lon, lat, res)
    expected = mosaic_exact([s[2] for s in reversed(scenes())], crs, transform, (SIZE, SIZE))
    assert agreement(latest.array.compute(), expected) >= 0.9999


def test_bands_none_takes_every_shared_band_and_says_so(store):
    with pytest.warns(BandsInferredWarning, match=r"\['B04', 'B11'\]"):
        result = compute(store, bands=None)
    assert result.array.shape == (2, SIZE, SIZE)
    da = result.to_xarray()
    assert da.dims == ("band", "y", "x") and list(da.band.values) == ["B04", "B11"]


def test_to_xarray_time_and_band(store):
    da = compute(store, bands=["B04", "B11"], groupby="day").to_xarray()
    assert da.dims == ("time", "band", "y", "x")
    assert da.time.dtype == np.dtype("datetime64[ns]") and len(da.time) == 2
    assert list(da.band.values) == ["B04", "B11"]


def test_solar_day_keeps_one_pass_together(make_store, tmp_path):
    """Two scenes at 23:50 and 00:20 UTC at 150 W are one local solar day, but two UTC days."""
    rng = np.random.default_rng(3)
    first = around("a", "EPSG:32605", -150.0, 60.0, 30.0, 64, 1)
    second = around("b", "EPSG:32605", -149.99, 60.0, 30.0, 64, 2)
    path = make_store(
        [(s.name, s.crs, s.transform, rng.random((64, 64), dtype="f4")) for s in (first, second)], meta=False
    )
    root = zarr.open_group(str(path), mode="r+")
    root["a"].attrs["datetime"] = "2024-06-01T23:50:00"
    root["b"].attrs["datetime"] = "2024-06-02T00:20:00"
    write_meta(path)
    x0, y1 = first.transform[2], first.transform[5]
    kw = {"crs": "EPSG:32605", "bbox": (x0, y1 - 1920, x0 + 1920, y1), "resolution": 30.0, "bands": "data"}
    for datafusion in (True, False):
        days = plan(str(path), groupby="day", datafusion=datafusion, **kw).time_coords
        solar = plan(str(path), groupby="solar_day", datafusion=datafusion, **kw).time_coords
        assert [str(d)[:10] for d in days] == ["2024-06-01", "2024-06-02"]
        assert [str(d)[:10] for d in solar] == ["2024-06-01"]


def test_groupby_errors(store, make_store):
    with pytest.raises(GroupByError, match=r"'fortnight' is not one of \['time', 'day', 'solar_day', 'week'"):
        compute(store, bands="B04", groupby="fortnight")
    rng = np.random.default_rng(0)
    plain = make_store([("a", "EPSG:32618", (30.0, 0, 500000.0, 0, -30.0, 4430000.0), rng.random((8, 8)))])
    for datafusion in (True, False):
        with pytest.raises(GroupByError, match="needs a datetime.*lazymerge index"):
            plan(
                str(plain),
                crs="EPSG:32618",
                bbox=(500000, 4429800, 500240, 4430000),
                resolution=30,
                groupby="day",
                datafusion=datafusion,
            )


@pytest.mark.parametrize("datafusion", [True, False])
def test_band_only_some_sources_have(store, tmp_path, datafusion):
    root = zarr.open_group(str(store), mode="r+")
    extra = np.random.default_rng(5).random((160, 160), dtype="f4")
    b04 = scenes()[1][2]
    add_source(root, "s1", b04.crs, b04.transform, extra, band="B08")
    write_meta(store)  # /meta describes every source's bands: rebuild it after changing them
    try:
        with pytest.raises(BandNotFoundError, match=r"band 'B08' is missing from source\(s\) \['s0'"):
            compute(store, bands=["B04", "B08"], datafusion=datafusion)
    finally:
        del root["s1/B08"]
        write_meta(store)


@pytest.mark.parametrize("datafusion", [True, False])
def test_culling_stays_within_each_time_group(store, datafusion):
    """A scene covering a chunk hides older scenes of its own day only, never another day's slice."""
    kw = {"bands": ["B04", "B11"], "groupby": "day", "datafusion": datafusion}
    full = compute(store, **kw)
    culled = compute(store, cull=True, **kw)
    assert culled.plan.n_pairs < full.plan.n_pairs
    np.testing.assert_array_equal(culled.array.compute(), full.array.compute())


def best_by_quality(crs: str, transform) -> tuple[np.ndarray, np.ndarray]:
    """(values, source index) of GDAL-exact per-scene warps: per pixel, the scene with data whose B11 is
    highest (a scene with data but no B11 there ranks below every scene with one; ties: the first)."""
    data = np.stack([warp_exact(b04, crs, transform, (SIZE, SIZE)) for _, _, b04, _ in scenes()])
    qa = np.stack([warp_exact(b11, crs, transform, (SIZE, SIZE)) for _, _, _, b11 in scenes()])
    rank = np.where(np.isnan(data), -np.inf, np.where(np.isnan(qa), -1e300, qa.astype("f8")))
    best = np.argmax(rank, axis=0)
    values = np.take_along_axis(data, best[None], 0)[0]
    none = np.isnan(data).all(0)
    return np.where(none, np.nan, values), np.where(none, -1, best)


@pytest.mark.parametrize("datafusion", [True, False])
def test_quality_band_takes_each_pixels_best_scene(store, datafusion):
    """method='quality:B11': B04 from the scene whose B11 (another grid: 60 m) is highest at the pixel."""
    result = compute(
        store, bands="B04", method="quality:B11", datafusion=datafusion, exact=True, provenance=True
    )
    crs, lon, lat, res = TARGET
    _, transform = target_grid(crs, lon, lat, res)
    values, best = best_by_quality(crs, transform)
    table = result.plan.table
    ids = dict(zip(table["source"].to_pylist(), table["source_id"].to_pylist(), strict=True))
    prov = result.provenance.compute()
    scene = np.vectorize(lambda s: int(ids[s][1:]) if s >= 0 else -1)(prov)
    np.testing.assert_array_equal(scene, best)
    np.testing.assert_array_equal(result.array.compute(), values)
    assert result.array.shape == (SIZE, SIZE)  # the quality band is read, not returned


@pytest.mark.parametrize("datafusion", [True, False])
def test_quality_column_ranks_scenes_by_it(store, datafusion):
    """method='quality:datetime' (a source-table column): the newest scene on top, as sortby='-datetime'."""
    newest = compute(store, bands="B04", method="quality:datetime", datafusion=datafusion).array.compute()
    crs, lon, lat, res = TARGET
    _, transform = target_grid(crs, lon, lat, res)
    expected = mosaic_exact([s[2] for s in reversed(scenes())], crs, transform, (SIZE, SIZE))
    assert agreement(newest, expected) >= 0.9999
    oldest = mosaic_exact([s[2] for s in scenes()], crs, transform, (SIZE, SIZE))
    assert agreement(newest, oldest) < 0.9


def test_quality_names_a_missing_band_or_column(store):
    with pytest.raises(InvalidRequestError, match=r"'cloud' is neither a column .*bands: \['B04', 'B11'\]"):
        compute(store, bands="B04", method="quality:cloud")


def test_quality_band_plan_counts_its_reads_not_its_tasks(store):
    """The quality band's rows are read by each output chunk's task: no tasks of their own in the summary,
    and the projected memory of every task includes its quality window."""
    quality = compute(store, bands="B04", method="quality:B11").plan
    first = compute(store, bands="B04").plan
    nr, nc = quality.grid.nchunks
    assert quality.summary().tasks == first.summary().tasks == nr * nc
    assert quality.summary().chunks_total == nr * nc
    keys_q, mem_q = task_memory(quality)
    keys_f, mem_f = task_memory(first)
    np.testing.assert_array_equal(keys_q, keys_f)
    assert (mem_q > mem_f).all()


@pytest.mark.parametrize("resampling", ["average", "nearest"])
def test_projected_task_memory_bounds_what_each_task_allocates(store, resampling):
    """Every task's projected memory is at least what rendering its block allocates, measured by
    tracemalloc (which sees numpy's arrays: the block, the reads, ``average``'s running sums); the
    projection must be an upper bound, so a formula that forgot a term would fail here."""
    import tracemalloc

    from lazymerge.kernel.block import merge_block

    result = compute(store, bands="B04", resampling=resampling)
    keys, mem = task_memory(result.plan)
    nr, nc = result.plan.grid.nchunks
    assert len(keys) == nr * nc
    merge_block(None, task=result.task, block_id=(0, 0))  # compile and open outside the measurement
    peaks = []
    for key, projected in zip(keys, mem, strict=True):
        row, col = divmod(int(key) % (nr * nc), nc)
        tracemalloc.start()
        try:
            merge_block(None, task=result.task, block_id=(row, col))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert peaks[-1] <= projected, (row, col, peaks[-1], projected)
    assert max(peaks) > 64 * 64 * 4  # the measurement sees at least the block itself
