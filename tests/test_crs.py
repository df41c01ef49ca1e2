"""lazymerge.crs: transformers built once per CRS pair, per thread, with from_crs's numbers; the
planner's composed ones with the searched one's."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS, Transformer

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


PROJECTED = st.one_of(
    st.integers(1, 60).map(lambda z: f"EPSG:{32600 + z}"),  # UTM north, WGS 84
    st.integers(1, 60).map(lambda z: f"EPSG:{32700 + z}"),  # UTM south
    st.integers(28, 38).map(lambda z: f"EPSG:{25800 + z}"),  # UTM, ETRS89
    st.sampled_from(["EPSG:3035", "EPSG:3857", "EPSG:3413", "EPSG:3031", "EPSG:2056", "EPSG:27700"]),
)


@settings(max_examples=25, deadline=None)
@given(target=PROJECTED, source=PROJECTED)
def test_composed_transformer_is_the_searched_one_on_random_projected_pairs(target, source):
    """Whatever two projected CRSs: the planner's composed transformer has the searched one's definition
    and numbers, to the bit (or is the searched one, where a datum shift lies between them)."""
    src, dst = (CRS.from_user_input(c).to_wkt() for c in (target, source))
    got, searched = lcrs.composed_transformer(src, dst), lcrs.transformer(src, dst)
    assert got.definition == searched.definition
    west, south, east, north = CRS.from_user_input(target).area_of_use.bounds
    rng = np.random.default_rng(0)
    x, y = Transformer.from_crs("EPSG:4326", target, always_xy=True).transform(
        rng.uniform(west, east, 200), rng.uniform(south, north, 200)
    )
    for a, b in zip(
        got.transform(x, y, errcheck=False), searched.transform(x, y, errcheck=False), strict=True
    ):
        np.testing.assert_array_equal(a, b)
