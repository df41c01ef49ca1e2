"""Shared fixtures: real Zarr stores on disk."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, settings

from lazymerge.catalog.meta import write_meta
from lazymerge.demo import build_seed_store
from tests.support.stores import add_source

# Property-based tests: few examples in CI; HYPOTHESIS_PROFILE=long for a thorough run.
_SLOW = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=_SLOW, derandomize=True)
settings.register_profile("long", max_examples=500, deadline=None, suppress_health_check=_SLOW)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def seed_store(tmp_path):
    """The seed's four-tile store, with /meta written by lazymerge."""
    path = build_seed_store(tmp_path / "seed.zarr")
    write_meta(path)
    return path


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
