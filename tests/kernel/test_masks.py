"""Pixel masks against GDAL: each source's mask band (on its own, coarser grid) warped nearest by GDAL's
exact warper, dilated on that grid, drops the source's GDAL-warped values before compositing."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from lazymerge import Mask
from lazymerge.api import merge
from lazymerge.catalog.meta import write_meta
from lazymerge.errors import InvalidRequestError
from tests.support.gdal_cases import SIZE, merge_case, target_grid
from tests.support.gdal_oracle import Raster, around, warp_exact
from tests.support.stores import add_source

CRS_, LON, LAT, RES = "EPSG:32618", -78.005, 40.003, 30.0
DATES = ["2024-01-03T10:00:00Z", "2024-01-20T10:00:00Z", "2024-02-05T10:00:00Z", "2024-02-21T10:00:00Z"]


def _sources() -> list[Raster]:
    return [
        around("a", "EPSG:32617", -78.02, 40.0, 20.0, 200, 11),
        around("b", "EPSG:32618", -77.99, 40.01, 20.0, 200, 12),
        around("c", "EPSG:32618", -78.0, 39.995, 25.0, 170, 13),
        around("d", "EPSG:32617", -78.01, 40.006, 25.0, 170, 14),
    ]


def _mask_raster(src: Raster, band: str, seed: int) -> Raster:
    """The source's mask band on a grid twice as coarse, random classes 0-11 (SCL) or random bits (QA)."""
    a, b, c, d, e, f = src.transform
    n = src.data.shape[0] // 2
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 12, (n, n)) if band == "SCL" else rng.integers(0, 1 << 8, (n, n))
    return Raster(band, src.crs, (2 * a, b, c, d, 2 * e, f), values.astype("u2"))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Four overlapping sources, each with SCL and QA mask bands; a store with /meta."""
    sources = _sources()
    masks = {
        s.name: {b: _mask_raster(s, b, k * 10 + i) for i, b in enumerate(("SCL", "QA"))}
        for k, s in enumerate(sources)
    }
    path = tmp_path_factory.mktemp("masks") / "s.zarr"
    root = zarr.open_group(zarr.storage.LocalStore(str(path)), mode="w")
    for s, when in zip(sources, DATES, strict=True):
        add_source(root, s.name, s.crs, s.transform, s.data)
        for band, m in masks[s.name].items():
            add_source(root, s.name, m.crs, m.transform, m.data, band=band)
        root[s.name].attrs["datetime"] = when
    write_meta(path)
    return path, sources, masks


def _grow(bad: np.ndarray, n: int) -> np.ndarray:
    """``bad`` grown by ``n`` pixels in every direction (a (2n+1)-square window), by numpy's sliding
    windows: independent of lazymerge's own dilation."""
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(bad, n), (2 * n + 1, 2 * n + 1))
    return windows.any(axis=(2, 3))


def _bad(m: Raster, mask: Mask) -> Raster:
    """The mask's excluded pixels on the mask band's own grid (1.0), dilated there."""
    v = m.data.astype("i8")
    bad = np.isin(v, mask.values) | ((v & sum(1 << b for b in mask.bits)) != 0)
    return Raster(m.name, m.crs, m.transform, _grow(bad, mask.dilate).astype("f4"))


def _stack(scene, masks: list[Mask]) -> tuple[np.ndarray, tuple]:
    """Each source's GDAL-exact warp with its masked pixels set to NaN: (sources, y, x)."""
    _, sources, bands = scene
    bbox, transform = target_grid(CRS_, LON, LAT, RES)
    layers = []
    for s in sources:
        values = warp_exact(s, CRS_, transform, (SIZE, SIZE))
        for mask in masks:
            bad = warp_exact(_bad(bands[s.name][mask.band], mask), CRS_, transform, (SIZE, SIZE))
            values[bad > 0] = np.nan
        layers.append(values)
    return np.stack(layers), bbox


def _run(scene, datafusion=True, **kw):
    bbox, _ = target_grid(CRS_, LON, LAT, RES)
    return merge_case(scene[0], CRS_, bbox, RES, datafusion, **kw)


def _first(stack: np.ndarray) -> np.ndarray:
    out = np.full(stack.shape[1:], np.nan, dtype=stack.dtype)
    for layer in stack[::-1]:
        out = np.where(np.isnan(layer), out, layer)
    return out


SCL = Mask(band="SCL", values=[3, 8, 9, 10])


def _median(stack: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.nanmedian(stack, axis=0)


@pytest.mark.filterwarnings(
    "ignore:All-NaN slice:RuntimeWarning", "ignore:Mean of empty slice:RuntimeWarning"
)
@pytest.mark.parametrize(
    ("method", "reduce", "datafusion"),
    [("first", _first, True), ("first", _first, False), ("median", _median, True)],
)
def test_mask_values_against_gdal(scene, method, reduce, datafusion):
    stack, _ = _stack(scene, [SCL])
    unmasked, _ = _stack(scene, [])
    got = _run(scene, datafusion, method=method, mask=SCL).array.compute()
    np.testing.assert_allclose(got, reduce(stack), rtol=1e-6)
    shows_through = ~np.isnan(stack[1]) & np.isnan(stack[0]) & ~np.isnan(unmasked[0])
    assert shows_through.sum() > 100  # masked pixels of 'a' let 'b' through
    assert not np.allclose(np.nan_to_num(got), np.nan_to_num(reduce(unmasked)))


def test_bits_dilate_and_several_masks(scene):
    masks = [Mask(band="QA", bits=[1, 6], dilate=1), Mask(band="SCL", values=[9, 10], dilate=2)]
    stack, _ = _stack(scene, masks)
    got = _run(scene, method="first", mask=masks).array.compute()
    np.testing.assert_allclose(got, _first(stack), rtol=1e-6)
    assert np.isnan(stack).mean() > 0.5  # the dilated masks drop most pixels of each source


def test_masked_sources_are_not_culled_and_provenance(scene):
    stack, _ = _stack(scene, [SCL])
    culled = _run(scene, method="first", mask=SCL, cull=True, provenance=True)
    plain = _run(scene, method="first", cull=True)
    assert culled.plan.n_pairs > plain.plan.n_pairs  # culling kept the sources behind masked ones
    np.testing.assert_allclose(culled.array.compute(), _first(stack), rtol=1e-6)
    winner = np.argmax(~np.isnan(stack), axis=0)
    rows = culled.plan.table
    row_of = dict(zip(rows["source_id"].to_pylist(), rows["source"].to_pylist(), strict=True))
    expected = np.where(np.isnan(stack).all(0), -1, np.array([row_of[n] for n in "abcd"])[winner])
    np.testing.assert_array_equal(culled.provenance.compute(), expected)


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")
def test_mask_with_month_groups(scene):
    stack, _ = _stack(scene, [SCL])
    got = _run(scene, method="mean", mask=SCL, groupby="month").array.compute()
    with np.errstate(all="ignore"):
        expected = np.stack([np.nanmean(stack[:2], axis=0), np.nanmean(stack[2:], axis=0)])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_mask_errors_name_the_fix(scene):
    with pytest.raises(InvalidRequestError, match="mask band 'CLOUDS'"):
        _run(scene, mask=Mask(band="CLOUDS", values=[1]))
    with pytest.raises(InvalidRequestError, match="names no values and no bits"):
        Mask(band="SCL")
    with pytest.raises(InvalidRequestError, match="dilate"):
        Mask(band="SCL", values=[1], dilate=-1)


def test_saved_plan_keeps_masks(scene, tmp_path):
    result = _run(scene, method="first", mask=SCL)
    path = result.plan.save(str(tmp_path / "plan.zarr"))
    again = merge(str(scene[0]), plan=path)
    assert again.plan.masks == (SCL,)
    np.testing.assert_array_equal(again.array.compute(), result.array.compute())


def test_cli_mask_flags(scene, tmp_path, capsys):
    from lazymerge.cli import main
    from lazymerge.contract.model import Plan

    bbox, _ = target_grid(CRS_, LON, LAT, RES)
    out = str(tmp_path / "plan.zarr")
    args = ["plan", str(scene[0]), "--crs", CRS_, "--bbox", ",".join(map(str, bbox)), "--resolution", "30"]
    args += ["--bands", "data", "--mask", "SCL:3,8,9,10", "--mask-bits", "QA:1,6:1", "--out", out]
    assert main(args) == 0
    assert Plan.load(out).masks == (SCL, Mask(band="QA", bits=[1, 6], dilate=1))
    assert main([*args[:-4], "--mask", "SCL", "--out", out]) == 2
    assert "--mask 'SCL' must be BAND:n,n" in capsys.readouterr().err
