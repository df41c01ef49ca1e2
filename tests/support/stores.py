"""Small store-building helpers shared by tests."""

from __future__ import annotations

import numpy as np
import zarr

from lazymerge.catalog.conventions import (
    Overview,
    ProjAttrs,
    SpatialAttrs,
    read_proj,
    read_spatial,
    write_multiscales,
    write_proj,
    write_spatial,
)


def add_band(root: zarr.Group, source: str, band: str, data: np.ndarray) -> None:
    """Another band for an existing source, on the grid of its ``data`` band."""
    base = root[f"{source}/data/0"]
    add_source(root, source, read_proj(base).code, read_spatial(base).transform, data, band=band)


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


def date_and_band(store):
    """``store`` (conftest's random_store) with two days of acquisitions (sources alternate) and a second
    band ``nir`` of random values on every source, /meta rewritten; returns the store."""
    from lazymerge.catalog.meta import write_meta

    root = zarr.open_group(str(store), mode="r+")
    rng = np.random.default_rng(3)
    for k in range(8):
        root[f"s{k}"].attrs["datetime"] = f"2024-06-0{1 + k % 2}T10:00:00Z"
        add_band(root, f"s{k}", "nir", rng.random((300, 300), dtype="f4"))
    write_meta(store)
    return store
