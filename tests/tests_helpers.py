"""Small store-building helpers shared by tests."""

from __future__ import annotations

import numpy as np
import zarr

from lazymerge.conventions import read_proj, read_spatial

from conftest import add_source


def add_band(root: zarr.Group, source: str, band: str, data: np.ndarray) -> None:
    """Another band for an existing source, on the grid of its ``data`` band."""
    base = root[f"{source}/data/0"]
    add_source(root, source, read_proj(base).code, read_spatial(base).transform, data, band=band)
