"""Resamplings on the default path (the control grid, ``exact=False``), on random data, against
independent references, with tolerances tight enough to tell every pair of methods apart:

- between two UTM zones at equal resolution (a ~4 degree rotation, no scale change): the interpolating
  kernels against GDAL's exact warper, the area statistics against shapely's polygon clipping;
- downsampling by near-integer ratios (1.97, 3.9), where GDAL's 1/n snapping decides the kernel's width.

Two chunkings giving identical pixels on the default path: ``tests/kernel/test_kernel.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer

from lazymerge.api import merge
from tests.support.area_oracle import Footprints
from tests.support.gdal_cases import downsampled, interior
from tests.support.gdal_oracle import Raster, around, warp_exact

N = 96  # target pixels per side
CHUNK = (32, 48)  # several chunks, edges off the control lattice
INTERPOLATING = ["bilinear", "cubic", "cubic_spline", "lanczos"]
AREA = ["average", "sum", "rms", "min", "max", "mode", "med", "q1", "q3"]
# a kernel's value off GDAL's by the control grid's error (< 1e-9 px) times the data's slope (< ~3 px^-1), and
# by GDAL's own arithmetic (float32 weights)
TOLERANCE = 1e-3


def rotated(seed: int, levels: int | None = None) -> Raster:
    """A 30 m source in UTM 17N, 3 degrees west of UTM 18N's central meridian: the target's pixels are
    the same size, rotated by ~4 degrees. ``levels``: integer values 0 .. levels - 1 (for ``mode``)."""
    src = around("a", "EPSG:32617", -78.0, 40.0, 30.0, 128, seed)
    if levels:
        src = Raster(src.name, src.crs, src.transform, np.floor(src.data * levels).astype("f4"))
    return src


def rotated_target(res: float = 30.0, n: int = N) -> tuple[tuple[float, ...], Affine]:
    """An ``n``-pixel square in UTM 18N at ``res``, inside the source, its origin off the source's grid."""
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32618", always_xy=True).transform(-78.0, 40.0)
    x0, y1 = x - n / 2 * res + 7.3, y + n / 2 * res - 11.9
    return (x0, y1 - n * res, x0 + n * res, y1), Affine(res, 0.0, x0, 0.0, -res, y1)


def merged(make_store, src: Raster, resampling: str, res: float = 30.0, n: int = N, **kw) -> np.ndarray:
    store = make_store([(src.name, src.crs, src.transform, src.data)])
    bbox, _ = rotated_target(res, n)
    kw = {"chunk_size": CHUNK, "bands": "data", "resampling": resampling, **kw}
    return merge(str(store), crs="EPSG:32618", bbox=bbox, resolution=res, **kw).array.compute()


@pytest.fixture(scope="module")
def interpolated(tmp_path_factory):
    """lazymerge's and GDAL's result of every interpolating kernel on the rotated pair (one store)."""
    import zarr

    from lazymerge.catalog.meta import write_meta
    from tests.support.stores import add_source

    src = rotated(11)
    path = tmp_path_factory.mktemp("rot") / "s.zarr"
    add_source(zarr.open_group(str(path), mode="w"), src.name, src.crs, src.transform, src.data)
    write_meta(path)
    bbox, transform = rotated_target()
    out = {}
    for resampling in INTERPOLATING:
        got = merge(
            str(path),
            crs="EPSG:32618",
            bbox=bbox,
            resolution=30.0,
            chunk_size=CHUNK,
            bands="data",
            resampling=resampling,
        ).array.compute()
        # GDAL's scale estimate (the source window's bounding box over the target's) reads the rotation
        # as downsampling by ~1.1 and widens its kernels; the true scale is 1, so it is pinned there
        pinned = warp_exact(src, "EPSG:32618", transform, got.shape, resampling, XSCALE="1", YSCALE="1")
        own = warp_exact(src, "EPSG:32618", transform, got.shape, resampling)
        out[resampling] = got, pinned, own
    return out


@pytest.mark.parametrize("resampling", INTERPOLATING)
def test_interpolating_kernels_across_utm_zones_match_gdal(interpolated, resampling):
    got, pinned, own = interpolated[resampling]
    inner = interior(pinned, 4)
    assert inner.all() or inner.mean() > 0.8
    assert np.abs(got[inner] - pinned[inner]).max() < TOLERANCE
    # without the pin GDAL blurs: its own estimate is off by far more than the tolerance
    assert np.abs(own[inner] - pinned[inner]).max() > 10 * TOLERANCE


@pytest.mark.parametrize("a, b", [("bilinear", "cubic"), ("cubic", "cubic_spline"), ("cubic", "lanczos")])
def test_the_tolerance_tells_kernels_apart(interpolated, a, b):
    """A kernel swapped for another fails the test above: they differ by far more than its tolerance."""
    inner = interior(interpolated[a][1], 4)
    assert np.abs(interpolated[a][0] - interpolated[b][1])[inner].max() > 10 * TOLERANCE


def test_nearest_across_utm_zones_matches_gdal(make_store):
    """Identical to GDAL's exact warper except where a pixel centre lies within the control grid's error
    (< 1e-9 px here) of a source pixel's edge; with ``exact=True``, identical everywhere."""
    src = rotated(12)
    _, transform = rotated_target()
    got = merged(make_store, src, "nearest")
    expected = warp_exact(src, "EPSG:32618", transform, got.shape)
    assert np.isfinite(expected).all()
    differ = got != expected
    assert differ.mean() < 1e-4
    r, c = np.mgrid[0:N, 0:N] + 0.5
    x, y = Transformer.from_crs("EPSG:32618", src.crs, always_xy=True).transform(*(transform * (c, r)))
    col, row = ~Affine(*src.transform) * (np.asarray(x), np.asarray(y))
    edge = np.minimum(np.abs(col - np.round(col)), np.abs(row - np.round(row)))  # to the nearest edge
    assert (edge[differ] < 1e-9).all()
    np.testing.assert_array_equal(merged(make_store, src, "nearest", exact=True), expected)


# rotated footprints of 1 source pixel (equal resolution) and of 1.5 x 1.5 (sum is ~2.25 x average there,
# where at equal resolution the two differ by the scale factor only, ~3e-5)
SIZES = {"1px": (30.0, N), "1.5px": (45.0, 64)}


@pytest.fixture(scope="module", params=list(SIZES))
def footprints(request):
    res, n = SIZES[request.param]
    _, transform = rotated_target(res, n)
    return res, n, Footprints(rotated(13), "EPSG:32618", transform, (n, n))


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("stat", AREA)
def test_area_statistics_on_rotated_footprints_match_polygon_clipping(make_store, footprints, stat, exact):
    """Every area statistic over rotated footprints against shapely's clipping of the exact footprint
    (GDAL approximates these footprints, so it is no oracle here). ``mode`` runs on 4 integer levels, so
    its counts and ties matter. With ``exact=True`` the corners are exact: identical pixels, weighted
    statistics to float rounding. On the default path the corners are off by up to 1.3e-4 px, which moves
    a footprint's area by ~5e-4 px^2: weighted statistics within that, and the ranked ones identical
    except where a footprint grazes a source pixel (by less than 1e-3 px^2), which those pixels leave out."""
    res, n, fp = footprints
    src = rotated(13, levels=4 if stat == "mode" else None)
    got = merged(make_store, src, stat, res, n, exact=exact).astype("f8")
    expected = fp.stat(src.data, stat)
    if stat in ("average", "sum", "rms"):
        np.testing.assert_allclose(got, expected, rtol=1e-6 if exact else 0, atol=0 if exact else 1e-3)
        return
    sure = np.ones(got.shape, dtype=bool) if exact else ~fp.near
    assert sure.mean() > 0.8
    np.testing.assert_array_equal(got[sure], expected[sure])


def test_area_oracle_tells_statistics_apart(footprints):
    """Each statistic differs from its neighbours by more than the tolerances above (q1 is the minimum
    itself wherever a footprint touches four pixels or fewer, so they are not compared; at equal
    resolution ``sum`` is ``average`` times the footprint's area, ~1 + 3e-5, which the exact run's
    1e-6 tells apart)."""
    res, n, fp = footprints
    data = rotated(13).data
    s = {name: fp.stat(data, name) for name in ("average", "rms", "sum", "med", "q3", "min", "max")}
    pairs = [("average", "rms"), ("average", "med"), ("q3", "max"), ("med", "q3")]
    for a, b in [*pairs, *([("average", "sum")] if res > 30 else [])]:
        assert (s[a] != s[b]).mean() > 0.3 and np.abs(s[a] - s[b]).max() > 1e-2, (a, b)
    assert (np.abs(s["sum"] / s["average"] - 1) > 1e-5).mean() > 0.5


@pytest.mark.parametrize("resampling", INTERPOLATING)
def test_downsampling_by_197_snaps_to_2_as_gdal(make_store, resampling):
    """At 1.97 GDAL snaps its scale to 1/2 (within 0.05 of an integer ratio) from its own estimate, and so
    does lazymerge: identical to GDAL unpinned. The true 1/1.97 would differ by ~1 %."""
    src = around("a", "EPSG:32618", -75.0, 40.0, 10.0, 300, 5)
    got, transform = downsampled(
        make_store([(src.name, src.crs, src.transform, src.data)]), src, 1.97, resampling
    )
    own = warp_exact(src, "EPSG:32618", transform, got.shape, resampling)
    inner = interior(own, 2)
    np.testing.assert_allclose(got[inner], own[inner], rtol=1e-5)
    scale = str(1 / 1.97)
    unsnapped = warp_exact(src, "EPSG:32618", transform, got.shape, resampling, XSCALE=scale, YSCALE=scale)
    assert np.abs(unsnapped[inner] - own[inner]).max() > 1e-3


@pytest.mark.parametrize("resampling", INTERPOLATING)
def test_downsampling_by_39_keeps_its_ratio(make_store, resampling):
    """At 3.9 (0.1 from 4: no snapping) the kernel widens by 3.9. GDAL's own estimate comes from its
    source window, which its kernel's reach pads: here it reads 4-4.2 (4 after snapping for bilinear),
    so GDAL is given the true scale, 1/3.9, as XSCALE/YSCALE; the test shows both that its estimate
    differs and that snapping to 1/4 would be wrong."""
    src = around("a", "EPSG:32618", -75.0, 40.0, 10.0, 300, 5)
    got, transform = downsampled(
        make_store([(src.name, src.crs, src.transform, src.data)]), src, 3.9, resampling
    )

    def gdal(scale: float | None) -> np.ndarray:
        opts = {} if scale is None else {"XSCALE": str(scale), "YSCALE": str(scale)}
        return warp_exact(src, "EPSG:32618", transform, got.shape, resampling, **opts)

    pinned = gdal(1 / 3.9)
    inner = interior(pinned, 2)
    np.testing.assert_allclose(got[inner], pinned[inner], rtol=1e-5)
    assert np.abs(gdal(None)[inner] - pinned[inner]).max() > 1e-3  # GDAL's own estimate
    assert np.abs(gdal(1 / 4)[inner] - pinned[inner]).max() > 1e-4  # snapped to 4


def _warp_integer(src: Raster, data: np.ndarray, nodata: int, transform: Affine, resampling: str):
    """GDAL's exact warp of integer ``data`` with ``nodata`` on ``src``'s grid, at scale 1, to float32."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.io import MemoryFile
    from rasterio.vrt import WarpedVRT

    h, w = data.shape
    profile = dict(driver="GTiff", width=w, height=h, count=1, dtype=data.dtype.name, crs=src.crs,
                   transform=Affine(*src.transform), nodata=nodata)  # fmt: skip
    with rasterio.Env(), MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(data, 1)
        with mem.open() as ds, WarpedVRT(
            ds, crs="EPSG:32618", transform=transform, width=N, height=N, resampling=Resampling[resampling],
            tolerance=1e-9, src_nodata=nodata, nodata=np.nan, dtype="float32", XSCALE="1", YSCALE="1",
        ) as vrt:  # fmt: skip
            return vrt.read(1)


@pytest.mark.parametrize("resampling", ["bilinear", "cubic"])
def test_interpolating_kernels_with_integer_nodata_match_gdal(tmp_path, resampling):
    """uint16 sources with a nodata value (as scenes have): the closed-form path for points whose taps are
    all valid and the tap-by-tap path next to nodata give GDAL's values, and nodata where GDAL has none."""
    src = rotated(14)
    rng = np.random.default_rng(14)
    data = (src.data * 250 + 1).astype("u2")
    data[rng.random(data.shape) < 0.03] = 0  # scattered nodata pixels
    data[:, :20] = 0  # and a scene edge (the image edge: GDAL falls back to bilinear there too)
    import zarr

    from lazymerge.catalog.meta import write_meta
    from tests.support.stores import add_source

    store = tmp_path / "s.zarr"
    add_source(zarr.open_group(str(store), mode="w"), src.name, src.crs, src.transform, data, nodata=0)
    write_meta(store)
    bbox, transform = rotated_target()
    got = merge(
        str(store), crs="EPSG:32618", bbox=bbox, resolution=30.0, chunk_size=CHUNK, bands="data",
        resampling=resampling, dtype="float32",
    ).array.compute()  # fmt: skip
    expected = _warp_integer(src, data, 0, transform, resampling)
    both = np.isfinite(got) & np.isfinite(expected)
    assert both.mean() > 0.5 and (np.isfinite(got) == np.isfinite(expected)).mean() > 0.999
    assert np.abs(got[both] - expected[both]).max() < 250 * TOLERANCE
