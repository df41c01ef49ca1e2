"""to_cog: a valid Cloud-Optimized GeoTIFF (rio-cogeo's validator), read back by rasterio with the merge's
pixels, CRS, transform, nodata and overviews; streamed with a bounded number of blocks in memory; never a
finished-looking partial file."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import zarr
from rio_cogeo.cogeo import cog_validate

from lazymerge.api import merge
from lazymerge.errors import OutputError
from lazymerge.kernel.faults import InjectedFault
from lazymerge.output import cog
from tests.support.stores import add_band

BBOX = (500000.0, 5996160.0, 502560.0, 6000000.0)  # 384 x 256 px at 10 m: 6 x 4 blocks of 64 px


@pytest.fixture
def two_sources(make_store):
    """Two random float32 sources in two UTM zones, partly outside the mosaic (nodata there)."""
    rng = np.random.default_rng(3)
    path = make_store(
        [
            ("a", "EPSG:32618", (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0), rng.random((200, 150), "f4")),
            ("b", "EPSG:32617", (10.0, 0.0, 888600.0, 0.0, -10.0, 6004000.0), rng.random((300, 300), "f4")),
        ],
        meta=False,
    )
    root = zarr.open_group(str(path), mode="r+")
    add_band(root, "a", "B2", rng.random((200, 150), "f4"))
    add_band(root, "b", "B2", rng.random((300, 300), "f4"))
    return path


def run(store, **options):
    options.setdefault("bands", "data")
    return merge(
        str(store),
        crs="EPSG:32618",
        bbox=BBOX,
        resolution=10.0,
        chunk_size=(64, 64),
        datafusion=False,
        **options,
    )


@pytest.mark.parametrize("options", [{}, {"bands": ["B2", "data"], "resampling": "bilinear"}])
def test_cog_is_valid_and_reads_back_the_merge(two_sources, tmp_path, options):
    result = run(two_sources, **options)
    (tmp_path / "out").mkdir()
    expected = result.array.compute()
    assert np.isnan(expected).any() and np.isfinite(expected).any()
    path = result.to_cog(tmp_path / "out" / "mosaic.tif", blocksize=128)
    valid, errors, warnings = cog_validate(path)
    assert valid and not errors, (errors, warnings)
    with rasterio.open(path) as ds:
        assert ds.crs == result.grid.crs and ds.transform == result.grid.transform
        assert np.isnan(ds.nodata) and ds.block_shapes[0] == (128, 128)
        assert ds.overviews(1) == [2, 4]  # auto: halve until the image (384 x 256 px) fits one tile
        pixels = ds.read()
        np.testing.assert_array_equal(pixels, expected.reshape(pixels.shape))
        assert ds.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION") == "DEFLATE"
        if "bands" in options:
            assert ds.descriptions == ("B2", "data")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mosaic.tif"]  # the temporary directory is gone


def test_integer_cog_with_explicit_overviews(make_store, tmp_path):
    rng = np.random.default_rng(5)
    data = rng.integers(1, 60000, (200, 150)).astype("uint16")
    store = make_store([("a", "EPSG:32618", (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0), data)], meta=False)
    result = run(store, dtype="uint16", nodata=0)
    path = result.to_cog(tmp_path / "mosaic.tiff", overviews=2, blocksize=128, compress="zstd")
    assert cog_validate(path)[0]
    with rasterio.open(path) as ds:
        assert ds.dtypes == ("uint16",) and ds.nodata == 0 and ds.overviews(1) == [2, 4]
        np.testing.assert_array_equal(ds.read(1), result.array.compute())
        # nearest overviews keep the mosaic's own values
        assert set(np.unique(ds.read(1, out_shape=(192, 128)))) <= set(np.unique(ds.read(1)))


def test_blocks_are_streamed_a_few_at_a_time(two_sources):
    """The writer consumes render_blocks, which never holds more than 2 x max_workers blocks: the mosaic
    (24 blocks of 64 x 64 px) is never computed whole. Counted by wrapping the kernel task it submits."""
    result = run(two_sources)
    started = []
    real = cog.merge_block

    def counting(*args, **kwargs):
        started.append(kwargs["block_id"])
        return real(*args, **kwargs)

    cog.merge_block = counting
    try:
        held = []
        for n, (_, block) in enumerate(cog.render_blocks(result, max_workers=2), start=1):
            held.append(len(started) - n)  # submitted but not yet handed to the writer
            assert block.shape == (64, 64)
    finally:
        cog.merge_block = real
    assert len(started) == 24 and max(held) <= 4


def test_refuses_an_existing_target_and_leaves_nothing_on_failure(two_sources, tmp_path, monkeypatch):
    result = run(two_sources)
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "mosaic.tif"
    target.write_bytes(b"not mine to overwrite")
    with pytest.raises(OutputError, match="exists; pass overwrite=True"):
        result.to_cog(target)
    assert target.read_bytes() == b"not mine to overwrite"
    monkeypatch.setenv("LAZYMERGE_FAULT_RATE", "1")  # every block fails
    with pytest.raises(InjectedFault):
        result.to_cog(tmp_path / "out" / "new.tif")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "mosaic.tif"
    ]  # no partial file, no temp dir
    with pytest.raises(OutputError, match="time groups|multiple of 16"):
        result.to_cog(tmp_path / "x.tif", blocksize=100)


def test_cog_rendered_on_an_executor_through_zarr(two_sources, tmp_path):
    """executor=: the blocks render on it into a temporary Zarr, then stream into the GeoTIFF."""
    from lazymerge.executors import get_executor

    result = run(two_sources)
    (tmp_path / "out").mkdir()
    path = result.to_cog(tmp_path / "out" / "m.tif", blocksize=128, executor=get_executor("processes"))
    assert cog_validate(path)[0]
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(ds.read(1), result.array.compute())
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["m.tif"]
