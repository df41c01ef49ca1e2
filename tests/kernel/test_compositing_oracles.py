"""Compositing three overlapping sources (so ``median`` is not ``mean``) against GDAL's per-source exact
warps; provenance for every method that picks one source. With ``exact=True``, so that every pixel must
match: the default path's mapping (within 1e-4 px, which moves ~0.05 % of nearest pixels per source) is
tested on its own in ``test_resampling_oracles``."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from lazymerge.api import merge
from lazymerge.catalog.meta import write_meta
from tests.support.gdal_cases import CHUNK, SIZE, target_grid
from tests.support.gdal_oracle import Raster, around, warp_exact
from tests.support.stores import add_source

TARGET = ("EPSG:32618", -78.0, 40.01, 25.0)


def sources() -> list[tuple[Raster, Raster]]:
    """Three sources in three CRSs around the target, each with a ``data`` band and a random ``q``
    (quality) band on the same grid: ids a, b, c are source table rows 0, 1, 2."""
    out = []
    for k, (crs, lon, lat, res) in enumerate(
        [
            ("EPSG:32617", -78.005, 40.006, 30.0),
            ("EPSG:32618", -77.995, 40.014, 27.0),
            ("EPSG:4326", -78.0, 40.01, 0.0003),
        ]
    ):
        data = around("abc"[k], crs, lon, lat, res, 150, 30 + k)
        q = np.random.default_rng(40 + k).random(data.data.shape, dtype="f4")
        out.append((data, Raster(data.name, crs, data.transform, q)))
    return out


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The store, and GDAL's exact nearest warp of every source's data and quality onto the target."""
    path = tmp_path_factory.mktemp("three") / "s.zarr"
    root = zarr.open_group(str(path), mode="w")
    crs, lon, lat, res = TARGET
    _, transform = target_grid(crs, lon, lat, res)
    stack, quality = [], []
    for data, q in sources():
        add_source(root, data.name, data.crs, data.transform, data.data)
        add_source(root, q.name, q.crs, q.transform, q.data, band="q")
        stack.append(warp_exact(data, crs, transform, (SIZE, SIZE)))
        quality.append(warp_exact(q, crs, transform, (SIZE, SIZE)))
    write_meta(path)
    stack, quality = np.stack(stack), np.stack(quality)
    count = (~np.isnan(stack)).sum(axis=0)
    assert (count == 3).mean() > 0.2 and (count == 1).any()  # three deep in places, one in others
    return path, stack, quality


def compute(path, **kw):
    crs, lon, lat, res = TARGET
    bbox, _ = target_grid(crs, lon, lat, res)
    return merge(
        str(path),
        crs=crs,
        bbox=bbox,
        resolution=res,
        chunk_size=CHUNK,
        bands="data",
        sortby="id",
        exact=True,
        **kw,
    )


def _pick(stack: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.where(index < 0, np.nan, np.take_along_axis(stack, np.maximum(index, 0)[None], 0)[0])


def winner(stack: np.ndarray, quality: np.ndarray, method: str) -> np.ndarray:
    """The source row each pick-one method takes per pixel (-1: none), from the per-source warps."""
    valid = ~np.isnan(stack)
    none = ~valid.any(0)
    if method == "first":
        index = np.argmax(valid, 0)
    elif method == "last":
        index = len(stack) - 1 - np.argmax(valid[::-1], 0)
    elif method in ("min", "max"):
        sign = 1 if method == "max" else -1
        index = np.argmax(np.where(valid, sign * stack, -np.inf), 0)
    else:  # quality:q: the valid source whose quality is highest there
        index = np.argmax(np.where(valid & ~np.isnan(quality), quality, -np.inf), 0)
    return np.where(none, -1, index)


REDUCE = {
    "mean": lambda s: np.nanmean(s, 0),
    "median": lambda s: np.nanmedian(s, 0),
    "sum": lambda s: np.where(np.isnan(s).all(0), np.nan, np.nansum(s, 0)),
    "count": lambda s: (~np.isnan(s)).sum(0).astype("f4"),
}


def close(got: np.ndarray, expected: np.ndarray) -> float:
    """Share of pixels equal to within float32 rounding (both NaN counts as equal)."""
    same = np.isclose(got, expected, rtol=1e-6, atol=0) | (np.isnan(got) & np.isnan(expected))
    return float(same.mean())


@pytest.mark.filterwarnings(
    "ignore:All-NaN slice:RuntimeWarning", "ignore:Mean of empty slice:RuntimeWarning"
)
@pytest.mark.parametrize("method", list(REDUCE))
def test_combining_methods_over_three_sources(case, method):
    path, stack, _ = case
    got = compute(path, method=method).array.compute()
    assert close(got, REDUCE[method](stack)) == 1.0
    if method == "median":  # where three sources overlap, the median is not the mean
        three = (~np.isnan(stack)).sum(0) == 3
        assert np.abs(REDUCE["median"](stack) - REDUCE["mean"](stack))[three].mean() > 0.05


@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")
@pytest.mark.parametrize("method", ["first", "last", "min", "max", "quality:q"])
def test_provenance_of_every_pick_one_method(case, method):
    """result.provenance names the source row each pixel came from, and the value is that source's."""
    path, stack, quality = case
    result = compute(path, method=method, provenance=True)
    prov = result.provenance.compute()
    values = result.array.compute()
    expected = winner(stack, quality, method)
    np.testing.assert_array_equal(prov, expected)
    assert len(np.unique(expected[expected >= 0])) == 3  # every source wins somewhere
    np.testing.assert_array_equal(np.isnan(values), prov == -1)
    assert close(values, _pick(stack, prov)) == 1.0  # the value is the named source's


def test_pick_one_methods_differ(case):
    """Swapping any two pick-one methods would fail the test above: their winners differ widely."""
    _, stack, quality = case
    picks = {m: winner(stack, quality, m) for m in ("first", "last", "min", "max", "quality:q")}
    names = list(picks)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert (picks[a] != picks[b]).mean() > 0.1, (a, b)
