"""The priced dry run: its GET and byte counts against what the kernel reads through a counting store,
its price arithmetic from the table, the CLI's report, and the calibration."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import lazymerge
import lazymerge.kernel.reads as reads
from lazymerge.api import default_spec
from lazymerge.catalog.stores import StoreHandle, resolve_store
from lazymerge.cli import main
from lazymerge.contract.pricing import CountingStore, IOCount, calibrate, estimate, time_fit
from lazymerge.errors import InvalidRequestError

TARGET = {"crs": "EPSG:32618", "bbox": (500000, 5990000, 508000, 6000000), "resolution": 20.0}


def _random_store(make_store, rng):
    """Four overlapping UTM 18N sources of random uint16 (compressible only as noise is)."""
    sources = []
    for k, (x, y) in enumerate([(499000, 6001000), (503000, 6001000), (499000, 5996000), (503500, 5995500)]):
        data = rng.integers(1, 4000, (300, 300), dtype="u2")
        sources.append((f"s{k}", "EPSG:32618", (20.0, 0, x, 0, -20.0, y), data))
    return make_store(sources)


@pytest.mark.parametrize("cached", [False, True])
def test_estimate_matches_counted_reads(make_store, tmp_path, monkeypatch, cached):
    """With no chunk cache every block fetches its own chunks: the estimate is exact on GETs and within
    15 % on bytes (extrapolated from sampled chunk sizes); with the cache (one process: threads), reads
    fall between the bounds."""
    if not cached:
        monkeypatch.setattr(reads, "SOURCE_CACHE_BYTES", 0)
    path = _random_store(make_store, np.random.default_rng(3))
    handle = resolve_store(path)
    counting = CountingStore(handle.zarr_store)
    store = StoreHandle(counting, handle.obstore, None, handle.description)
    result = lazymerge.merge(
        store, **TARGET, chunk_size=(64, 64), method="last", spec=default_spec(str(tmp_path / "wd"))
    )
    est = estimate(result.plan, path, blocks_per_task=1)  # Cubed computes the array block by block
    counting.reset()
    result.array.compute()
    got = counting.counts()
    assert "stored bytes" in est.bytes_basis and est.gets_shared < est.gets == est.gets_per_block
    if cached:
        assert est.gets_shared <= got.chunk_gets <= est.gets
    else:
        assert got.chunk_gets == est.gets
        assert abs(got.chunk_bytes - est.bytes_read) <= 0.15 * got.chunk_bytes
    assert got.puts == 0 and got.metadata_gets >= est.metadata_gets  # a few per array opened


def test_prices_from_the_table(seed_store):
    plan = lazymerge.plan(seed_store, **TARGET, chunk_size=(64, 64))
    est = estimate(
        plan, prices={"s3_get_per_1000": 2.0, "s3_put_per_1000": 3.0, "lambda_gb_s": 1.0}, memory_gb=0.5
    )
    assert est.cost["GETs"] == pytest.approx(est.gets * 2.0 / 1000)
    assert est.cost["PUTs"] == pytest.approx(est.puts * 3.0 / 1000)
    assert est.cost["compute"] == pytest.approx(est.total_seconds * 0.5)
    nr, nc = plan.grid.nchunks
    assert est.puts == nr * nc and est.bytes_written == nr * nc * 64 * 64 * np.dtype(plan.dtype).itemsize
    assert "uncompressed" in est.bytes_basis  # no store given: nothing was sized
    with pytest.raises(InvalidRequestError, match="gcp-functions"):
        estimate(plan, backend="gcp-functions")
    assert "estimated cost" in str(plan.summary(store=seed_store))
    assert time_fit([est], [3 * est.total_seconds]) == pytest.approx((3.0, 0.0))  # one run: proportional
    big = est.scaled(4.0)  # a run 4x as large, e.g. 4x the area
    k, fixed = time_fit([est, big], [5 + 3 * est.total_seconds, 5 + 3 * big.total_seconds])
    assert (k, fixed) == pytest.approx((3.0, 5.0))  # 5 s of start-up, then 3x the stored speeds' time
    scaled = est.scaled(k, fixed)
    assert scaled.total_seconds == pytest.approx(5 + 3 * est.total_seconds) and scaled.gets == est.gets
    assert scaled.cost["compute"] == pytest.approx(
        est.cost["compute"] * scaled.total_seconds / est.total_seconds
    )
    assert "+0.0 %" in scaled.compare(IOCount(), cpu_seconds=scaled.total_seconds).splitlines()[-1]


def test_cli_plan_prints_the_price_and_run_the_comparison(seed_store, tmp_path, capsys):
    args = ["--crs", "EPSG:32618", "--bbox", "500000,5990000,508000,6000000", "--resolution", "40"]
    assert (
        main(
            [
                "plan",
                str(seed_store),
                *args,
                "--out",
                str(tmp_path / "p.zarr"),
                "--price",
                "s3_get_per_1000=1000",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "GET requests" in out and "estimated cost     aws-lambda" in out
    assert main(["plan", str(seed_store), *args, "--out", str(tmp_path / "q.zarr"), "--price", "x"]) == 2
    assert (
        main(
            [
                "run",
                str(seed_store),
                *args,
                "--out",
                str(tmp_path / "o.zarr"),
                "--no-progress",
                "--work-dir",
                str(tmp_path / "wd"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "measured vs estimated" in out and "source GETs" in out
    assert zarr.open_array(str(tmp_path / "o.zarr"), mode="r").nchunks_initialized > 0


def test_calibrate_measures_every_resampling_asked():
    speed = calibrate(("nearest", "bilinear"), size=128, repeat=1)
    assert set(speed) == {"nearest", "bilinear"} and all(v > 0 for v in speed.values())
