"""method="medoid" against a numpy medoid of GDAL-exact warps of every band, with and without a mask."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from lazymerge import Mask
from lazymerge.api import merge
from lazymerge.catalog.meta import write_meta
from tests.support.gdal_cases import CHUNK, SIZE, target_grid
from tests.support.gdal_oracle import Raster, around, warp_exact
from tests.support.stores import add_source

BANDS = ("red", "nir", "swir")
CRS_, RES = "EPSG:32618", 30.0


def numpy_medoid(stack: np.ndarray) -> np.ndarray:
    """(sources, bands, y, x) -> (bands, y, x): the source closest to the per-band median of the sources
    valid in every band, the first on ties (within 1e-9: two sources are equally close to their
    midpoint); NaN where none is valid."""
    s, b, h, w = stack.shape
    out = np.full((b, h, w), np.nan, dtype=stack.dtype)
    for y in range(h):
        for x in range(w):
            vectors = stack[:, :, y, x].astype("f8")
            ok = np.isfinite(vectors).all(axis=1)
            if not ok.any():
                continue
            median = np.median(vectors[ok], axis=0)
            d = [((v - median) ** 2).sum() if good else np.inf for v, good in zip(vectors, ok, strict=True)]
            out[:, y, x] = vectors[int(np.argmax(np.array(d) <= min(d) * (1 + 1e-9)))]
    return out


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    centres = [(-78.02, 40.0), (-77.99, 40.01), (-78.0, 39.995), (-78.01, 40.006), (-78.005, 40.002)]
    sources = {}
    path = tmp_path_factory.mktemp("medoid") / "s.zarr"
    root = zarr.open_group(zarr.storage.LocalStore(str(path)), mode="w")
    for k, (lon, lat) in enumerate(centres):
        name = "abcde"[k]
        crs = "EPSG:32617" if k % 2 else "EPSG:32618"
        sources[name] = {}
        for i, band in enumerate(BANDS):
            r = around(name, crs, lon, lat, 20.0, 170, 40 + 3 * k + i)
            r.data[np.random.default_rng(k * 7 + i).random(r.data.shape) < 0.03] = np.nan
            add_source(root, name, r.crs, r.transform, r.data, band=band)
            sources[name][band] = r
        cloud = np.random.default_rng(90 + k).integers(0, 12, r.data.shape).astype("u1")
        add_source(root, name, r.crs, r.transform, cloud, band="SCL")
        sources[name]["SCL"] = Raster("SCL", r.crs, r.transform, cloud.astype("f4"))
    write_meta(path)
    return path, sources


@pytest.mark.parametrize("masked", [False, True])
def test_medoid_against_numpy_on_gdal_warps(scene, masked):
    path, sources = scene
    bbox, transform = target_grid(CRS_, -78.005, 40.003, RES)
    mask = Mask(band="SCL", values=[8, 9, 10])
    stack = []
    for name in sorted(sources):
        layers = np.stack([warp_exact(sources[name][b], CRS_, transform, (SIZE, SIZE)) for b in BANDS])
        if masked:
            scl = warp_exact(sources[name]["SCL"], CRS_, transform, (SIZE, SIZE))
            layers[:, np.isin(scl, mask.values)] = np.nan
        stack.append(layers)
    expected = numpy_medoid(np.stack(stack))
    result = merge(
        str(path),
        crs=CRS_,
        bbox=bbox,
        resolution=RES,
        chunk_size=CHUNK,
        bands=list(BANDS),
        sortby="id",
        exact=True,
        method="medoid",
        mask=mask if masked else None,
    )
    assert result.array.chunks[0] == (3,)  # every band of a block in one task
    got = result.array.compute()
    np.testing.assert_array_equal(got, expected)
    assert (np.isfinite(np.stack(stack)).all(axis=1).sum(axis=0) >= 3).sum() > 1000  # real medoid choices
