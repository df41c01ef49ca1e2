"""lazymerge.crs: transformers built once per CRS pair, per thread, with from_crs's numbers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from pyproj import Transformer

from lazymerge import crs as lcrs

PAIRS = [("EPSG:32632", "EPSG:32633"), ("EPSG:4326", "EPSG:3413"), ("EPSG:3035", "EPSG:32632")]


def _in_thread(fn):
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


@pytest.mark.parametrize("pair", PAIRS)
def test_another_thread_reuses_the_operation_with_the_same_numbers(pair):
    """A second thread builds its transformer from the pipeline the first one chose, not by searching
    again; both give from_crs's numbers, bit for bit."""
    src, dst = pair
    lcrs._definitions.pop(pair, None)
    first = _in_thread(lambda: lcrs.transformer(src, dst))
    assert lcrs._definitions[pair] is not None  # these pairs have one operation
    second = _in_thread(lambda: lcrs.transformer(src, dst))
    assert second is not first
    rng = np.random.default_rng(1)
    lon, lat = rng.uniform(-20, 40, 500), rng.uniform(35, 85, 500)
    x, y = Transformer.from_crs("EPSG:4326", src, always_xy=True).transform(lon, lat)
    expected = Transformer.from_crs(src, dst, always_xy=True).transform(x, y)
    for t in (first, second):
        np.testing.assert_array_equal(t.transform(x, y), expected)


def test_pairs_with_several_operations_are_built_with_from_crs_in_every_thread():
    """NAD27 -> WGS 84 has candidates that differ by area: no shared pipeline is kept; each thread
    builds from_crs's transformer (which picks per point)."""
    pair = ("EPSG:4267", "EPSG:4326")
    lcrs._definitions.pop(pair, None)
    _in_thread(lambda: lcrs.transformer(*pair))
    assert lcrs._definitions[pair] is None
    t = _in_thread(lambda: lcrs.transformer(*pair))
    expected = Transformer.from_crs(*pair, always_xy=True)
    assert t.definition == expected.definition
