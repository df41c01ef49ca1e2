"""The kernel: approximate transform, bilinear/cubic with halos, compositing methods, dtype and nodata."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from affine import Affine
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pyproj import CRS, Transformer

from lazymerge.api import merge
from lazymerge.contract.tasks import THRESHOLD
from lazymerge.errors import InvalidRequestError
from lazymerge.kernel.composite import Max
from lazymerge.kernel.mapping import pixel_mapping
from tests.support.gdal_cases import (
    CASES,
    CHUNK,
    HARD,
    SIZE,
    downsampled,
    interior,
    run,
    store_of,
    target_grid,
)
from tests.support.gdal_oracle import Raster, agreement, around, mosaic_exact, warp_exact
from tests.support.textbook import lanczos_at

# the control grid's largest error on each oracle case, in source pixels along each axis, as measured
# (docs/design/pixel-mapping.md), with headroom of 2x: a regression by more than that fails, not only one
# past THRESHOLD. 0 where the mapping is exact (separable, or refined to every pixel around a pole).
# utm-zones: a 192 px grid has three control lines a side at STEP = 128 (a quadratic): 1.1e-7.
MEASURED_GRID_ERROR = {
    "utm-zones": 2.5e-7,
    "4326-to-3857": 0.0,
    "polar": 3e-8,
    "antimeridian": 1e-7,
    "4326-around-north-pole": 0.0,
    "south-pole": 1e-7,
    "4326-80N-to-3413": 7e-6,
    "4326-78N-to-utm": 7e-6,
    "antimeridian-3857": 2e-7,
    "antimeridian-utm": 1e-8,
}
ALL = {**CASES, **HARD}


@pytest.mark.parametrize("case", ALL)
def test_control_grid_stays_within_threshold(case):
    sources, (crs, lon, lat, res) = ALL[case]
    _, transform = target_grid(crs, lon, lat, res)
    for src in sources:
        px, py = abs(src.transform[0]), abs(src.transform[4])
        grid = (CRS.from_user_input(crs), transform, (0, SIZE), (0, SIZE), src.crs)
        exact = pixel_mapping(*grid, 0.0, exact=True).dense()
        approx = pixel_mapping(*grid, (THRESHOLD * px, THRESHOLD * py)).dense()
        err = np.hypot((exact[0] - approx[0]) / px, (exact[1] - approx[1]) / py)
        assert np.nanmax(err) <= min(MEASURED_GRID_ERROR[case], THRESHOLD)
        assert np.array_equal(np.isnan(exact[0]), np.isnan(approx[0]))


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (65, 17), (66, 130), (200, 7)])
def test_control_grid_on_grids_of_few_lines(shape):
    """Grids with one, two or three control lines a side (the cubic falls back to a quadratic or the line):
    within THRESHOLD of the exact transform, pixel centres and corners."""
    transform = Affine(30.0, 0, 750000.0, 0, -30.0, 4431000.0)
    for offset, ext in ((0.5, 0), (0.0, 1)):
        grid = (CRS.from_user_input("EPSG:32618"), transform, (0, shape[0] + ext), (0, shape[1] + ext))
        approx = pixel_mapping(*grid, "EPSG:32617", THRESHOLD * 30.0, offset=offset).dense()
        exact = pixel_mapping(*grid, "EPSG:32617", 0.0, exact=True, offset=offset).dense()
        assert np.hypot(approx[0] - exact[0], approx[1] - exact[1]).max() / 30.0 <= THRESHOLD


@pytest.mark.parametrize("case", ALL)
def test_approximate_nearest_matches_gdal_exact(make_store, case):
    """The default path on every oracle case: a pixel moves only where its centre lies within the control
    grid's error (MEASURED_GRID_ERROR, <= THRESHOLD = 1e-5 px) of a source pixel's edge, so <= ~2e-5 of
    them (test_resampling_oracles checks a UTM pair pixel by pixel)."""
    sources, (crs, lon, lat, res) = ALL[case]
    store = store_of(make_store, sources)
    bbox, transform = target_grid(crs, lon, lat, res)
    expected = mosaic_exact(sources, crs, transform, (SIZE, SIZE))
    assert np.isfinite(expected).mean() > 0.2  # not a match of empty grids
    got = run(store, crs, bbox, res, datafusion=False, exact=False)
    assert agreement(got, expected) >= 0.9999


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize(
    "resampling", ["nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "rms", "max", "med"]
)
def test_two_chunkings_give_identical_pixels(make_store, resampling, exact):
    """Halos: no seams at target-chunk, source-chunk (64 px) or source boundaries. On the default path
    too: the control lattice follows the target grid, not the chunk, so a pixel gets the same source
    coordinates (the same arithmetic) in any chunking; identical pixels, not merely close ones."""
    sources, (crs, lon, lat, res) = CASES["utm-zones"]
    store = store_of(make_store, sources)
    bbox, _ = target_grid(crs, lon, lat, res)
    kw = {
        "crs": crs,
        "bbox": bbox,
        "resolution": res,
        "bands": "data",
        "sortby": "id",
        "resampling": resampling,
        "exact": exact,
    }
    a = merge(str(store), chunk_size=CHUNK, **kw).array.compute()
    b = merge(str(store), chunk_size=(50, 70), **kw).array.compute()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "cubic", "cubic_spline", "lanczos"])
def test_unrotated_grids_match_gdal_exact(make_store, resampling):
    """Same CRS, north-up (the per-column/per-row path): random data with NaN holes, a target off the
    source grid by a fraction of a pixel, small chunks; identical to GDAL away from the holes."""
    src = around("a", "EPSG:32618", -75.0, 40.0, 10.0, 200, 9)
    src.data[np.random.default_rng(1).random(src.data.shape) < 0.002] = np.nan
    store = store_of(make_store, [src])
    x0, y1 = src.transform[2] + 120 + 3.3, src.transform[5] - 120 - 2.2
    transform = Affine(10.0, 0, x0, 0, -10.0, y1)
    kw = {"crs": "EPSG:32618", "bbox": (x0, y1 - 1600, x0 + 1600, y1), "resolution": 10.0, "bands": "data"}
    got = merge(str(store), chunk_size=(24, 40), resampling=resampling, **kw).array.compute()
    expected = warp_exact(src, "EPSG:32618", transform, got.shape, resampling)
    if resampling == "nearest":
        np.testing.assert_array_equal(got, expected)
        return
    inner = interior(expected, 3)
    assert inner.mean() > 0.5
    np.testing.assert_allclose(got[inner], expected[inner], rtol=1e-4)
    other = merge(str(store), chunk_size=(64, 64), resampling=resampling, **kw).array.compute()
    np.testing.assert_array_equal(got, other)  # NaN holes and window edges included


REDUCE = {
    "last": lambda s: _last(s),
    "min": lambda s: np.nanmin(s, axis=0),
    "max": lambda s: np.nanmax(s, axis=0),
    "sum": lambda s: np.where(np.isnan(s).all(0), np.nan, np.nansum(s, axis=0)),
    "mean": lambda s: np.nanmean(s, axis=0),
    "median": lambda s: np.nanmedian(s, axis=0),
    "count": lambda s: (~np.isnan(s)).sum(axis=0).astype("f4"),
}


def _last(stack: np.ndarray) -> np.ndarray:
    out = np.full(stack.shape[1:], np.nan, dtype=stack.dtype)
    for layer in stack:
        out = np.where(np.isnan(layer), out, layer)
    return out


@pytest.mark.filterwarnings(
    "ignore:All-NaN slice:RuntimeWarning", "ignore:Mean of empty slice:RuntimeWarning"
)
@pytest.mark.parametrize("method", list(REDUCE))
def test_compositing_methods_against_gdal_warps(make_store, method):
    sources, (crs, lon, lat, res) = CASES["utm-zones"]
    store = store_of(make_store, sources)
    bbox, transform = target_grid(crs, lon, lat, res)
    stack = np.stack([warp_exact(s, crs, transform, (SIZE, SIZE)) for s in sources])
    expected = REDUCE[method](stack)
    got = run(store, crs, bbox, res, datafusion=False, method=method)
    assert (~np.isnan(stack)).sum(axis=0).max() == 2  # the sources do overlap
    np.testing.assert_allclose(got, expected, rtol=1e-6)


class Brightest(Max):
    """A user's own method: a plain class with the same protocol, picklable by reference."""


def test_user_method_class(make_store):
    sources, (crs, lon, lat, res) = CASES["utm-zones"]
    store = store_of(make_store, sources)
    bbox, _ = target_grid(crs, lon, lat, res)
    mine = run(store, crs, bbox, res, datafusion=False, method=Brightest)
    np.testing.assert_array_equal(mine, run(store, crs, bbox, res, datafusion=False, method="max"))


def test_integer_sources_stay_integer(make_store):
    rng = np.random.default_rng(4)
    data = rng.integers(1, 5000, (96, 96)).astype("uint16")
    data[:10] = 0  # nodata rows
    store = make_store([("a", "EPSG:32618", (10.0, 0.0, 500000.0, 0.0, -10.0, 4430000.0), data)])
    import zarr

    zarr.open_array(str(store / "a" / "data" / "0"), mode="r+").attrs["nodata"] = 0
    kw = {
        "crs": "EPSG:32618",
        "bbox": (500000.0, 4429040.0, 500960.0, 4430000.0),
        "resolution": 10.0,
        "bands": "data",
        "chunk_size": (64, 64),
    }
    got = merge(str(store), dtype="uint16", nodata=65535, **kw).array.compute()
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got[10:], data[10:])
    assert (got[:10] == 65535).all()
    mean = merge(str(store), dtype="uint16", nodata=65535, method="mean", **kw).array
    assert mean.dtype.kind == "f"  # mean promotes to float


def test_integer_output_rounds_as_gdal(make_store):
    """Interpolated values into an integer dtype round to the nearest integer (GDAL's rule), not truncate."""
    data = np.random.default_rng(6).integers(1, 5000, (96, 96)).astype("uint16")
    t = (10.0, 0.0, 500000.0, 0.0, -10.0, 4430000.0)
    store = make_store([("a", "EPSG:32618", t, data)])
    x0, y1 = 500000.0 + 20 + 3.0, 4430000.0 - 20 - 4.0  # off the source grid: values between pixels
    kw = {"crs": "EPSG:32618", "bbox": (x0, y1 - 800, x0 + 800, y1), "resolution": 10.0, "bands": "data"}
    got = merge(str(store), dtype="uint16", nodata=0, resampling="bilinear", **kw).array.compute()
    src = Raster("a", "EPSG:32618", t, data.astype("f4"))
    expected = warp_exact(src, "EPSG:32618", Affine(10, 0, x0, 0, -10, y1), got.shape, "bilinear")
    assert got.dtype == np.uint16
    assert np.abs(got - expected.astype("f8")).max() <= 0.5 + 1e-3  # the nearest integer (truncating: ~1)


@pytest.mark.parametrize(
    "kw, words",
    [
        (
            {"resampling": "gauss"},
            r"resampling 'gauss' is not one of \['nearest', 'bilinear', 'cubic', 'cubic_spline', 'lanczos'",
        ),
        ({"method": "mode"}, r"method 'mode' is not one of \['first', 'last', 'min'"),
        ({"dtype": "int16"}, "integer type: pass nodata="),
        ({"dtype": "uint8", "nodata": 300}, "nodata 300 does not fit dtype uint8"),
        (
            {"dtype": "int16", "nodata": -1},
            r"source array 'utm1\dn_tile_\w/data/\d' \(float32\) cannot be cast",
        ),
        ({"method": "mean", "cull": True}, "only method='first'"),
    ],
)
def test_bad_kernel_options(seed_store, kw, words):
    with pytest.raises(InvalidRequestError, match=words):
        merge(
            str(seed_store),
            crs="EPSG:32618",
            bbox=(500000.0, 5990000.0, 508000.0, 6000000.0),
            resolution=20.0,
            bands="data",
            **kw,
        )


@pytest.mark.parametrize("method", ["first", "max"])
def test_provenance_names_each_pixels_source(make_store, method):
    """result.provenance: the source table row behind every pixel, checked against GDAL per-source warps."""
    sources, (crs, lon, lat, res) = CASES["utm-zones"]
    store = store_of(make_store, sources)
    bbox, transform = target_grid(crs, lon, lat, res)
    result = merge(
        str(store),
        crs=crs,
        bbox=bbox,
        resolution=res,
        chunk_size=CHUNK,
        bands="data",
        sortby="-id",
        method=method,
        exact=True,
        provenance=True,
    )
    prov = result.provenance.compute()
    assert prov.dtype == np.int32
    stack = np.stack([warp_exact(s, crs, transform, (SIZE, SIZE)) for s in sources])  # rows 0 (a), 1 (b)
    if method == "first":  # sortby -id: b (row 1) first
        expected = np.where(~np.isnan(stack[1]), 1, np.where(~np.isnan(stack[0]), 0, -1))
    else:
        expected = np.where(
            np.isnan(stack).all(0), -1, np.nanargmax(np.where(np.isnan(stack), -np.inf, stack), 0)
        )
    np.testing.assert_array_equal(prov, expected)
    values = result.array.compute()
    np.testing.assert_array_equal(np.isnan(values), prov == -1)


def test_provenance_needs_a_single_source_method(seed_store):
    with pytest.raises(InvalidRequestError, match="provenance=True needs a method"):
        merge(
            str(seed_store),
            crs="EPSG:32618",
            bbox=(500000.0, 5990000.0, 508000.0, 6000000.0),
            resolution=20.0,
            bands="data",
            method="mean",
            provenance=True,
        )


def average_case(
    scrs: str, tcrs: str, sres: float, tres: float, lon: float, lat: float, make_store, stat: str = "average"
):
    src = around("a", scrs, lon, lat, sres, 400, 3)
    store = store_of(make_store, [src])
    x, y = Transformer.from_crs("EPSG:4326", tcrs, always_xy=True).transform(lon, lat)
    n = 80
    x0, y1 = x - n / 2 * tres + 0.3 * tres, y + n / 2 * tres - 0.2 * tres
    got = merge(
        str(store),
        crs=tcrs,
        bbox=(x0, y1 - n * tres, x0 + n * tres, y1),
        resolution=tres,
        chunk_size=(32, 48),
        bands="data",
        resampling=stat,
        exact=True,
    ).array.compute()
    return src, Affine(tres, 0, x0, 0, -tres, y1), got


@pytest.mark.parametrize(
    "scrs, tcrs, sres, tres, lon, lat",
    [
        ("EPSG:32618", "EPSG:32618", 10.0, 35.0, -75.0, 40.0),
        ("EPSG:4326", "EPSG:3857", 0.0001, 30.0, 10.0, 45.0),
    ],
)
@pytest.mark.parametrize("stat", ["average", "min", "max", "sum", "rms", "mode", "med", "q1", "q3"])
def test_area_resamplings_match_gdal_where_the_mapping_is_axis_aligned(
    make_store, scrs, tcrs, sres, tres, lon, lat, stat
):
    src, transform, got = average_case(scrs, tcrs, sres, tres, lon, lat, make_store, stat)
    expected = warp_exact(src, tcrs, transform, got.shape, stat)
    inner = interior(expected, 2)
    np.testing.assert_allclose(got[inner], expected[inner], rtol=1e-5)


def test_average_is_the_area_weighted_mean_of_the_footprint(make_store):
    """Between UTM zones the footprint is a rotated quadrilateral: compare with a 48 x 48 supersampling of
    each target pixel (GDAL's average approximates rotated footprints differently, up to ~10 % here)."""
    src, transform, got = average_case("EPSG:32617", "EPSG:32618", 10.0, 30.0, -77.99, 40.0, make_store)
    k = 48
    sub = Affine(transform.a / k, 0, transform.c, 0, transform.e / k, transform.f)
    fine = warp_exact(src, "EPSG:32618", sub, (got.shape[0] * k, got.shape[1] * k))
    expected = fine.reshape(got.shape[0], k, got.shape[1], k).mean(axis=(1, 3))
    inner = interior(expected, 2)
    err = np.abs(got[inner] - expected[inner])  # values are in [0, 1); supersampling itself errs ~1e-3
    assert err.max() < 0.005 and err.mean() < 0.001


@pytest.mark.parametrize("stat", ["average", "sum", "rms"])
@pytest.mark.parametrize("scale, top", [(1.0, 7.3), (1.0, -6.6), (1.7, 7.3), (1.7, -6.6), (3.3, 7.3)])
@pytest.mark.parametrize("holes", [True, False])
@pytest.mark.parametrize("first", [False, True])
def test_edge_integrals_equal_cell_by_cell_areas(stat, scale, top, holes, first):
    """The two exact routes for weighted statistics over rotated footprints agree: Green's theorem over
    the footprints' edges and the cell-by-cell coverage. Random values (with NaN holes and a nodata
    value, or none), footprints rotated by ~4 degrees and scaled (``scale`` source pixels per target
    pixel: edges shorter than one pixel, or two, take the staged routes), a window edge through the block (the
    right one, and with ``top`` < 0 the top one too), and corners whose transform failed (NaN, inf).
    With ``first``, as a later source under ``first`` with provenance: pixels an earlier source wrote
    keep their value and source, the others record this one."""
    from lazymerge.kernel import loops as jit

    rng = np.random.default_rng(7)
    data = rng.random((120, 140)).astype("f4")
    if holes:
        data[rng.random(data.shape) < 0.05] = np.nan
        data[rng.random(data.shape) < 0.05] = -9
    t = np.deg2rad(4.0)
    bh, bw = 30, 40
    cols = np.arange(bw + 1.0)  # the block's corner lattice, in source pixels (partly outside the window)
    rows = np.arange(bh + 1.0)[:, None]
    gx = scale * (np.cos(t) * cols - np.sin(t) * rows) + (140 - scale * bw * 0.8)
    gy = scale * (np.sin(t) * cols + np.cos(t) * rows) + top
    gx[12, 20] = np.nan  # a corner whose transform failed: its four pixels get nothing
    gy[3, 5] = np.inf
    ri, ci = np.arange(bh + 1), np.arange(bw + 1)
    m = (jit.GRID, gx, gy, ri, ci)
    ident, window = np.array([1.0, 0, 0, 0, 1.0, 0]), np.array([0.0, 120, 0, 140])
    earlier = np.zeros((bh, bw), bool)
    if first:
        earlier[14:26, 22:36] = True
    got = []
    for green in (True, False):
        values, count = np.where(earlier, -1.0, np.nan), earlier.astype("u1")
        winner = np.where(earlier, 1, -1).astype("i4") if first else np.zeros((1, 1), "i4")
        out = (values, count, winner)
        n = jit.average_into(data, -9.0, True, m, ident, window, jit.AREA[stat], out, 3, first, green)
        got.append(values)
        assert n == count.sum() - earlier.sum() and np.array_equal(count > 0, ~np.isnan(values))
        if first:
            assert (values[earlier] == -1).all() and (winner[earlier] == 1).all() and n > 100
            assert np.array_equal(winner == 3, (count > 0) & ~earlier)
    assert np.isfinite(got[0]).sum() > 0.5 * bh * bw and np.isnan(got[0]).any()  # the window edge
    assert np.isnan(got[0][11:13, 19:21]).all() and np.isnan(got[0][2:4, 4:6]).all()
    np.testing.assert_array_equal(np.isnan(got[0]), np.isnan(got[1]))
    np.testing.assert_allclose(got[0], got[1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("resampling", ["bilinear", "cubic", "cubic_spline", "lanczos"])
@pytest.mark.parametrize("ratio", [2.5, 4.0])
def test_kernels_widen_when_downsampling_as_gdal(make_store, resampling, ratio):
    """Downsampling random data: kernels widen by the ratio, as GDAL's do (plain kernels would alias and
    differ by ~0.4 here). GDAL estimates the ratio from its chunk's source window (0.5-1 % off here,
    which moves values ~1 %), so the oracle gets the true ratio as XSCALE/YSCALE.

    Where a pixel centre falls exactly on a source pixel's centre (half the columns at ratio 2.5), GDAL
    3.10's Lanczos weights its centre tap wrongly when downsampling (in ``GWKResampleOptimizedLanczos``
    every weight carries a factor pi**4 but the tap at distance 0 gets 1, or rounding noise when its
    accumulated distance is ~1e-16), which moves values by up to 28 % here. lazymerge keeps the textbook
    weights there: those pixels are checked against them, computed directly (``textbook.lanczos_at``)."""
    src = around("a", "EPSG:32618", -75.0, 40.0, 10.0, 400, 5)
    got, transform = downsampled(store_of(make_store, [src]), src, ratio, resampling)
    scale = str(1 / ratio)
    expected = warp_exact(src, "EPSG:32618", transform, got.shape, resampling, XSCALE=scale, YSCALE=scale)
    inner = interior(expected, 2)
    on_centre = np.zeros(got.shape, dtype=bool)  # columns whose centre is on a source pixel's centre
    if resampling == "lanczos":
        inv = ~Affine(*src.transform)
        cols = ((inv @ transform) @ (np.arange(got.shape[1]) + 0.5, np.full(got.shape[1], 0.5)))[0]
        on_centre[:, (cols - 0.5) % 1 == 0] = True
        assert ratio == 4.0 or (on_centre & inner).sum() > 1000  # at 2.5: half the columns
        for y, x in zip(*np.nonzero(on_centre & inner), strict=True):
            assert got[y, x] == pytest.approx(lanczos_at(src, transform, y, x, 1 / ratio), rel=1e-6)
    np.testing.assert_allclose(got[inner & ~on_centre], expected[inner & ~on_centre], rtol=1e-4)


@pytest.mark.slow
def test_warm_fills_numbas_cache_so_workers_start_compiled(tmp_path):
    """``lazymerge warm`` (run when building worker images) compiles every kernel loop into
    NUMBA_CACHE_DIR; a fresh process rendering a block then loads them instead of compiling."""
    from lazymerge.kernel import loops as jit

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    warm = [sys.executable, "-m", "lazymerge.cli", "warm", "--dtypes", "uint16"]  # one dtype: CI time
    subprocess.run(warm, env=env, check=True, capture_output=True)
    code = (
        "import numpy as np\n"
        "from lazymerge.kernel import loops as jit, warm\n"
        "warm.warm(['uint16'])\n"
        "print(sum(len(f.stats.cache_hits) for f in jit.COMPILED), "
        "sum(len(f.stats.cache_misses) for f in jit.COMPILED))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    hits, misses = map(int, out.stdout.split())
    assert hits >= len(jit.COMPILED) and misses == 0


def test_a_grid_narrower_than_the_control_step_maps_across_crs():
    """A target grid of at most STEP + 1 lines has two control lines per axis: no cubic through four (it
    divided by zero, as ``lazymerge warm``'s small blocks did), the line through them, refined until it
    stays within the threshold of the exact transform."""
    grid = (
        CRS.from_user_input("EPSG:32618"),
        Affine(10, 0, 5e5, 0, -10, 5e6),
        (0, 20),
        (0, 30),
        "EPSG:32617",
    )
    exact = pixel_mapping(*grid, 0.0, exact=True).dense()
    approx = pixel_mapping(*grid, (THRESHOLD * 10, THRESHOLD * 10)).dense()
    assert np.nanmax(np.hypot(exact[0] - approx[0], exact[1] - approx[1])) <= 2 * THRESHOLD * 10


@pytest.mark.parametrize("flip", [False, True])
def test_a_source_is_read_only_while_a_pixel_it_covers_is_empty(flip):
    """``any_inside`` without rotation: a source window over part of the block is needed while one pixel
    it covers has no value yet, and not once they all have, whatever the pixels outside it hold (also
    with a south-up source grid, whose rows run the other way)."""
    from lazymerge.kernel import loops as jit

    crs, target = CRS.from_user_input("EPSG:32618"), Affine(10, 0, 5e5, 0, -10, 5e6)
    m = pixel_mapping(crs, target, (0, 40), (0, 50), "EPSG:32618", 0.1).jit
    source = Affine(10, 0, 5e5 + 100, 0, -10, 5e6 - 100)
    if flip:
        source = Affine(10, 0, 5e5 + 100, 0, 10, 5e6 - 300)
    inv = np.array(tuple(~source)[:6])
    window = np.array([0.0, 20.0, 0.0, 30.0])  # source rows 0..20, columns 0..30: block rows 10..30, 10..40
    count = np.zeros((40, 50), dtype="u1")
    count[10:30, 10:40] = 1
    assert not jit.any_inside(m, inv, window, count, True)
    assert jit.any_inside(m, inv, window, count, False)
    count[29, 39] = 0
    assert jit.any_inside(m, inv, window, count, True)


@pytest.mark.parametrize("case", ["utm-zones", "polar"])
@pytest.mark.parametrize("shape", [(150, 1), (1, 150), (1, 1), (130, 2)])
@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "cubic", "average"])
@pytest.mark.parametrize("exact", [False, True])
def test_grids_one_pixel_wide_or_tall_match_gdal(make_store, case, shape, resampling, exact):
    """A target one pixel wide or tall, across CRSs (a control grid of one line that way: it takes the
    next line too; with ``exact`` too, every line a control line), in chunks smaller than it: nearest gives
    GDAL's exact warper's pixels, the other resamplings those of the whole grid around it; no crash (the
    loops once read such a row from unset indices)."""
    sources, (crs, lon, lat, res) = ALL[case]
    store = store_of(make_store, sources)
    _, transform = target_grid(crs, lon, lat, res)
    x0 = transform.c + (SIZE // 2 - shape[1] // 2) * res  # a line through the sources' middle
    y1 = transform.f - (SIZE // 2 - shape[0] // 2) * res
    bbox = (x0, y1 - shape[0] * res, x0 + shape[1] * res, y1)
    expected = mosaic_exact(sources, crs, Affine(res, 0, x0, 0, -res, y1), shape, resampling)
    assert np.isfinite(expected).mean() > 0.5
    request = {"resolution": res, "bands": "data", "sortby": "id", "resampling": resampling, "exact": exact}
    got = merge(str(store), crs=crs, bbox=bbox, chunk_size=(64, 64), datafusion=False, **request)
    got = got.array.compute()
    if resampling == "nearest":
        assert agreement(got, expected) == 1.0
        return
    # GDAL widens its kernels on a one pixel wide output (its scale comes from the extents): the other
    # resamplings are checked against the same pixels of the whole SIZE x SIZE grid instead
    whole = merge(str(store), crs=crs, bbox=target_grid(crs, lon, lat, res)[0], datafusion=False, **request)
    r0, c0 = SIZE // 2 - shape[0] // 2, SIZE // 2 - shape[1] // 2
    np.testing.assert_allclose(got, whole.array.compute()[r0 : r0 + shape[0], c0 : c0 + shape[1]], atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(
    pair=st.sampled_from(
        [("EPSG:32618", "EPSG:32617"), ("EPSG:3413", "EPSG:3995"), ("EPSG:3857", "EPSG:32633")]
    ),
    shape=st.tuples(st.integers(1, 200), st.integers(1, 200)),
    window=st.tuples(st.floats(-0.2, 1.2), st.floats(-0.2, 1.2), st.floats(0.0, 0.6), st.floats(0.0, 0.6)),
    filled=st.floats(0.0, 1.0),
    only_empty=st.booleans(),
    seed=st.integers(0, 2**16),
    resampling=st.sampled_from(["nearest", "bilinear", "cubic"]),
)
def test_the_dry_gather_says_whether_the_gather_writes(
    pair, shape, window, filled, only_empty, seed, resampling
):
    """On a control grid, ``any_inside`` runs the request's own sampling loop dry (nearest's gather, an
    interpolating kernel's rows): it is True exactly where that loop then writes a pixel (any window over,
    beside or inside the block, any pixels filled already), and it writes nothing, reads no source pixel."""
    from lazymerge.kernel import loops as jit

    target_crs, src_crs = pair
    to_src = Transformer.from_crs(target_crs, src_crs, always_xy=True)
    x0, y0 = (2e5, 1e6) if target_crs != "EPSG:3857" else (1.2e6, 5.5e6)
    target = Affine(30.0, 0, x0, 0, -30.0, y0)
    m = pixel_mapping(
        CRS.from_user_input(target_crs), target, (0, shape[0]), (0, shape[1]), src_crs, 3e-4
    ).jit
    assume(m[0] == jit.GRID)  # every pair here is one (a separable or affine mapping has no dry gather)
    corners = [target * (c, r) for c in (0, shape[1]) for r in (0, shape[0])]
    sx, sy = to_src.transform(*np.array(corners).T)
    source = Affine(30.0, 0, float(np.min(sx)), 0, -30.0, float(np.max(sy)))  # over the block's extent
    rows, cols = (np.max(sy) - np.min(sy)) / 30.0, (np.max(sx) - np.min(sx)) / 30.0
    r0, c0 = np.floor(window[0] * rows), np.floor(window[1] * cols)
    win = np.array([r0, r0 + 1 + np.floor(window[2] * rows), c0, c0 + 1 + np.floor(window[3] * cols)])
    inv = np.array(tuple(~source)[:6])
    rng = np.random.default_rng(seed)
    count = (rng.random(shape) < filled).astype("u1")
    values = np.full(shape, np.nan, dtype="f4")
    before = values.copy(), count.copy()
    mode = jit.CODES[resampling]
    kernel = None if resampling == "nearest" else (mode, True, np.ones(2), 1, 1)
    like = (np.dtype("f4"), (values, count, np.zeros((1, 1), "i4")), kernel)
    dry = jit.any_inside(m, inv, win, count, only_empty, like)
    np.testing.assert_array_equal(values, before[0])  # nothing written by the dry run
    np.testing.assert_array_equal(count, before[1])
    h, w = int(win[1] - win[0]), int(win[3] - win[2])
    wet = jit.sample_into(
        np.ones((h, w), "f4"),
        np.nan,
        False,
        m,
        inv,
        win,
        mode,
        np.ones(2),
        (values, count, np.zeros((1, 1), "i4")),
        0,
        only_empty,
    )
    assert dry == (wet > 0)


def test_a_request_compiles_only_the_loops_it_needs(tmp_path):
    """With an empty numba cache, a nearest merge of float32 sources (same CRS and across UTM zones, as the
    demo's) compiles only the nearest loops of those mappings, once each: not the kernels, the area
    statistics or the other dtypes; a bilinear merge only the kernel's loops, an average only its own.
    Whether a source is needed is asked of the same loops, dry (area statistics do not ask)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    code = (
        "from lazymerge.kernel import loops as jit, warm\n"
        "warm.warm_request(['float32'], 'float32', '{}')\n"
        "print(' '.join(f'{{f.__name__}}:{{len(f.signatures)}}' for f in jit.COMPILED if f.signatures))\n"
    )
    expected = {
        # whether a source is needed, on a control grid: the gather's own loop, dry (no _any_inside_grid)
        "nearest": ["_nearest_axes:1", "_nearest_grid:1"],
        "bilinear": ["_kernel_axes:1", "_kernel_rows:1"],  # the kernel's rows, dry
        # area statistics read every planned source (a footprint can meet a window with no corner inside)
        "average": ["_weighted_axes:1", "_weighted_green:1"],
    }
    for resampling, loops in expected.items():
        run = [sys.executable, "-c", code.format(resampling)]
        out = subprocess.run(run, env=env, check=True, capture_output=True, text=True)
        assert sorted(out.stdout.split()) == loops, resampling


def test_a_process_loading_the_loops_from_the_cache_skips_numbas_context_refresh(tmp_path):
    """numba refreshes its contexts (imports and installs every implementation registry) before each load
    from its cache; the kernel's loops load without it (``loops._Cache``), as a process that compiles
    still refreshes them. The first process compiles, the second loads, and a third, after the cache
    files were truncated, compiles again with a warning instead of failing; all three render the seed's
    mosaic (random values, across UTM zones, two levels) to the same pixels as this process."""
    from tests.support.executor_cases import SEED_REQUEST, random_seed_store

    store = random_seed_store(tmp_path / "store.zarr")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    code = (
        "import hashlib, sys\n"
        "import numpy as np\n"
        "from lazymerge.api import merge\n"
        "from lazymerge.kernel import loops as jit\n"
        f"out = np.ascontiguousarray(merge({str(store)!r}, **{SEED_REQUEST!r}).array.compute())\n"
        "print(sum(len(f.stats.cache_hits) for f in jit.COMPILED), "
        "sum(len(f.stats.cache_misses) for f in jit.COMPILED), 'numba.np.arraymath' in sys.modules, "
        "hashlib.sha256(out.tobytes()).hexdigest())\n"
    )

    def run() -> list[str]:
        child = [sys.executable, "-c", code]
        done = subprocess.run(child, env=env, check=True, capture_output=True, text=True)
        return [*done.stdout.split(), done.stderr]

    here = np.ascontiguousarray(merge(str(store), **SEED_REQUEST).array.compute())
    assert np.isfinite(here).mean() > 0.5  # the mosaic holds the random values, not only nodata
    digest = hashlib.sha256(here.tobytes()).hexdigest()
    hits0, misses0, refreshed0, digest0, _ = run()
    assert (hits0, refreshed0, digest0) == ("0", "True", digest) and int(misses0) >= 2  # compiled
    hits1, misses1, refreshed1, digest1, _ = run()
    assert (misses1, refreshed1, digest1) == ("0", "False", digest) and hits1 == misses0  # loaded
    for path in (tmp_path / "cache").rglob("*.nbc"):  # a damaged cache (a worker image's): compiled again
        path.write_bytes(path.read_bytes()[:100])
    *again, stderr = run()
    assert again == ["0", misses0, "True", digest] and "cannot be loaded" in stderr


def test_exact_footprint_coverage_matches_polygon_clipping():
    """The area accumulation behind the area resamplings equals shapely's polygon intersection, cell by
    cell, on rotated, sheared and scaled footprints of both orientations."""
    from shapely.geometry import Polygon, box

    from lazymerge.kernel.loops import _coverage

    rng = np.random.default_rng(0)
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float) - 0.5
    for _ in range(200):
        angle, (sx, sy), shear = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 4, 2), rng.uniform(-0.5, 0.5)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        quad = square @ (rot @ np.array([[sx, shear], [0, sy]])).T + rng.uniform(3, 6, 2)
        quad = quad[::-1] if rng.random() < 0.5 else quad
        origin = np.floor(quad.min(axis=0))
        rows, cols = (np.ceil(quad.max(axis=0)) - origin).astype(int)[::-1]
        cover = np.zeros((rows, cols + 2))
        rel = quad - origin
        _coverage(rel[:, 0].copy(), rel[:, 1].copy(), cover)
        poly = Polygon(rel)
        cells = [[box(j, i, j + 1, i + 1) for j in range(cols)] for i in range(rows)]
        expected = [[poly.intersection(cell).area for cell in row] for row in cells]
        np.testing.assert_allclose(cover[:, :cols], expected, atol=1e-9)


def _four_overlapping(make_store):
    """Four random sources in two UTM zones overlapping the same target (median != mean there)."""
    sources = [
        around(name, crs, lon, 40.0 + 0.002 * k, 30.0, 160, 30 + k)
        for k, (name, crs, lon) in enumerate(
            [
                ("a", "EPSG:32617", -78.02),
                ("b", "EPSG:32618", -77.99),
                ("c", "EPSG:32617", -78.0),
                ("d", "EPSG:32618", -78.01),
            ]
        )
    ]
    for s in sources:
        s.data[np.random.default_rng(len(s.name)).random(s.data.shape) < 0.05] = np.nan
    return sources, store_of(make_store, sources)


@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning", "ignore:Degrees of freedom:RuntimeWarning")
@pytest.mark.parametrize(
    ("method", "reduce"),
    [
        ("percentile:25", lambda s: np.nanpercentile(s, 25, axis=0)),
        ("percentile:90", lambda s: np.nanpercentile(s, 90, axis=0)),
        ("median", lambda s: np.nanmedian(s, axis=0)),
        ("std", lambda s: np.nanstd(s, axis=0)),
    ],
)
def test_percentiles_and_std_against_numpy_on_gdal_warps(make_store, method, reduce):
    sources, store = _four_overlapping(make_store)
    crs, res = "EPSG:32618", 30.0
    bbox, transform = target_grid(crs, -78.005, 40.003, res)
    stack = np.stack([warp_exact(s, crs, transform, (SIZE, SIZE)) for s in sources])
    assert (~np.isnan(stack)).sum(axis=0).max() >= 3  # up to four sources over a pixel
    expected = reduce(stack)
    got = run(store, crs, bbox, res, datafusion=False, method=method)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    if method == "percentile:25":
        assert not np.allclose(np.nan_to_num(got), np.nan_to_num(np.nanmean(stack, axis=0)))


def test_composition_counts_each_sources_pixels(make_store, tmp_path):
    sources, store = _four_overlapping(make_store)
    crs, res = "EPSG:32618", 30.0
    bbox, _ = target_grid(crs, -78.005, 40.003, res)
    result = merge(
        str(store),
        crs=crs,
        bbox=bbox,
        resolution=res,
        chunk_size=CHUNK,
        bands="data",
        sortby="id",
        method="max",
        provenance=True,
    )
    table = result.composition(plot=str(tmp_path / "composition.png"))
    prov = result.provenance.compute()
    rows = result.plan.table
    ids = dict(zip(rows["source"].to_pylist(), rows["source_id"].to_pylist(), strict=True))
    won, counts = np.unique(prov[prov >= 0], return_counts=True)
    expected = {ids[int(s)]: int(n) for s, n in zip(won, counts, strict=True)}
    assert dict(zip(table["source_id"].to_pylist(), table["pixels"].to_pylist(), strict=True)) == expected
    assert table["pixels"].to_pylist() == sorted(table["pixels"].to_pylist(), reverse=True)
    assert (tmp_path / "composition.png").stat().st_size > 0
    with pytest.raises(InvalidRequestError, match="provenance=True"):
        merge(str(store), crs=crs, bbox=bbox, resolution=res, bands="data").composition()


def test_percentile_outside_0_100_is_refused(seed_store):
    with pytest.raises(InvalidRequestError, match="from 0 to 100"):
        merge(
            str(seed_store),
            crs="EPSG:32618",
            bbox=(500000, 5990000, 508000, 6000000),
            resolution=20.0,
            method="percentile:101",
        )
