"""Absurd grids are refused from the request's numbers, at once; planning memory does not grow with the
chunks no source is near."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pyarrow as pa
import pytest

from lazymerge.api import plan
from lazymerge.errors import GridTooLargeError, SettingError
from lazymerge.planner import nearby

UTM = {"crs": "EPSG:32618", "bbox": (500000.0, 5990000.0, 508000.0, 6000000.0)}


@pytest.mark.parametrize(
    "request_, words",
    [
        ({**UTM, "resolution": 1e-9}, ["pixels", "max_pixels", "resolution of at least"]),
        (
            {"crs": "EPSG:3857", "bbox": (0.0, 0.0, 1e6, 1e6), "resolution": 1.0},  # 10^6 x 10^6 px
            ["1e+12 pixels", "max_pixels"],
        ),
        (
            {
                "crs": "EPSG:32618",
                "bbox": (500000.0, 5990000.0, 500800.0, 5991000.0),
                "resolution": 1.0,
                "chunk_size": (1, 1),
            },  # 800k pixels, one task each
            ["800,000 tasks", "max_tasks", "chunk_size"],
        ),
    ],
)
def test_absurd_grid_refused_fast(seed_store, request_, words):
    t0 = time.perf_counter()
    with pytest.raises(GridTooLargeError) as err:
        plan(str(seed_store), **request_)
    assert time.perf_counter() - t0 < 0.5
    for word in words:
        assert word in str(err.value)


def test_limits_overridable(seed_store, monkeypatch):
    small = {**UTM, "resolution": 20.0, "chunk_size": (64, 64), "bands": "data"}  # 500 x 400 px, 64 tasks
    with pytest.raises(GridTooLargeError, match="max_tasks=10"):
        plan(str(seed_store), max_tasks=10, **small)
    with pytest.raises(GridTooLargeError, match="max_pixels=1e"):
        plan(str(seed_store), max_pixels=100_000, **small)
    monkeypatch.setenv("LAZYMERGE_MAX_TASKS", "10")
    with pytest.raises(GridTooLargeError, match="LAZYMERGE_MAX_TASKS"):
        plan(str(seed_store), **small)
    assert plan(str(seed_store), max_tasks=64, **small).n_pairs > 0
    monkeypatch.setenv("LAZYMERGE_MAX_TASKS", "lots")
    with pytest.raises(SettingError, match="LAZYMERGE_MAX_TASKS='lots'"):
        plan(str(seed_store), **small)


def test_coarse_pass_gives_the_same_plan(seed_store, monkeypatch):
    """The coarse pass (forced onto a small grid) keeps every pair the full footprint join finds (94 x 79
    chunks: the default 64 coarse cells per side would take the coarse pass too)."""
    request = {
        **UTM,
        "bbox": (470000.0, 5980000.0, 530000.0, 6030000.0),
        "resolution": 20.0,
        "chunk_size": (32, 32),
        "bands": "data",
        "sortby": "id",
    }
    for cull in (False, True):
        monkeypatch.setattr(nearby, "COARSE", 10**6)  # more cells than chunks: every chunk's own footprint
        full = plan(str(seed_store), cull=cull, **request)
        monkeypatch.setattr(nearby, "COARSE", 5)
        coarse = plan(str(seed_store), cull=cull, **request)
        assert full.n_pairs > 0 and full.table.equals(coarse.table)


def test_planning_memory_does_not_grow_with_empty_chunks(seed_store):
    """The seed's 10 km sits in a corner of grids 16x and 64x larger in area: the chunks around it cost no
    footprint, so the peak of planning grows far less than the number of chunks."""
    peaks = []
    for side in (1, 4, 8):  # grid extent in units of 160 km
        bbox = (420000.0, 6000000.0 - side * 160_000.0, 420000.0 + side * 160_000.0, 6020000.0)
        tracemalloc.start()
        p = plan(
            str(seed_store),
            crs="EPSG:32618",
            bbox=bbox,
            resolution=20.0,
            chunk_size=(32, 32),
            bands="data",
            datafusion=False,
            max_tasks=10**7,
        )
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert p.n_pairs > 0 and isinstance(p.table, pa.Table)
    print("planning peaks (bytes):", peaks)
    chunks = [side**2 for side in (1, 4, 8)]
    # 64x the chunks: the per-chunk terms left (a few bytes each) stay far under the footprints' ~1 kB
    assert peaks[2] / peaks[0] < chunks[2] / chunks[0] / 8, peaks
    assert np.all(np.diff(peaks) >= -1e6)
