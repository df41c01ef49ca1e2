"""Shared fixtures: real Zarr stores on disk."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from lazymerge.conventions import (
    Overview,
    ProjAttrs,
    SpatialAttrs,
    write_multiscales,
    write_proj,
    write_spatial,
)
from lazymerge.demo import build_seed_store
from lazymerge.meta import write_meta


@pytest.fixture
def seed_store(tmp_path):
    """The seed's four-tile store, with /meta written by lazymerge."""
    path = build_seed_store(tmp_path / "seed.zarr")
    write_meta(path)
    return path


def add_source(
    root: zarr.Group,
    name: str,
    crs: str,
    transform: tuple,
    data: np.ndarray,
    band: str = "data",
    levels: int = 1,
    **attrs,
) -> None:
    """A source group with one multiscales band group; level k is data[::2**k, ::2**k]."""
    group = root.require_group(name).create_group(band)
    overviews = []
    for k in range(levels):
        f = 2**k
        arr = group.create_array(str(k), data=np.ascontiguousarray(data[::f, ::f]), chunks=(64, 64))
        a, b, c, d, e, f_ = transform
        write_spatial(arr, SpatialAttrs(("y", "x"), (a * f, b, c, d, e * f, f_), shape=arr.shape))
        write_proj(arr, ProjAttrs(code=crs))
        arr.attrs.update(attrs)
        overviews.append(Overview(str(k), (float(f), float(f)), derived_from="0" if k else None))
    write_multiscales(group, overviews)


@pytest.fixture
def make_store(tmp_path):
    """Factory: make_store([(name, crs, transform, data), ...], meta=True) -> path."""
    counter = iter(range(1000))

    def make(sources, meta=True, band="data", levels=1):
        path = tmp_path / f"store{next(counter)}.zarr"
        root = zarr.open_group(zarr.storage.LocalStore(str(path)), mode="w")
        for name, crs, transform, data in sources:
            add_source(root, name, crs, transform, data, band=band, levels=levels)
        if meta:
            write_meta(path)
        return path

    return make


@pytest.fixture
def random_store(make_store):
    """Eight overlapping sources in two UTM zones, random data."""
    rng = np.random.default_rng(1)
    sources = []
    for k in range(8):
        crs, x0, y1 = ("EPSG:32618", 500000.0, 6001000.0) if k % 2 else ("EPSG:32617", 896000.0, 6018000.0)
        sources.append(
            (
                f"s{k}",
                crs,
                (10.0, 0.0, x0 + 900.0 * k, 0.0, -10.0, y1 - 1100.0 * k),
                rng.random((300, 300), dtype="f4"),
            )
        )
    return make_store(sources)
