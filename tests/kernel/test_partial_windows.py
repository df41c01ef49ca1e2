"""Source windows that cover part of a block: the compiled loops skip the control intervals whose cubics
stay beyond the window (``loops._beyond``), so a pixel mapping into the window must still get its value
and none mapping outside may. Checked against the mapping's own coordinates (``Mapping.dense``) on random
CRS pairs, blocks, windows (inside, straddling or beyond the block's footprint) and random data."""

from __future__ import annotations

import numpy as np
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS, Transformer

from lazymerge.contract.tasks import THRESHOLD
from lazymerge.kernel import loops
from lazymerge.kernel.block import _NO_WINNER, _coef
from lazymerge.kernel.mapping import pixel_mapping

PAIRS = [  # target CRS, source CRS, lon, lat, target pixel size
    ("EPSG:32633", "EPSG:32632", 12.0, 48.0, 10.0),
    ("EPSG:32618", "EPSG:32617", -78.0, 40.0, 30.0),
    ("EPSG:3413", "EPSG:4326", -40.0, 75.0, 100.0),
    ("EPSG:3035", "EPSG:32631", 4.0, 50.0, 20.0),
    ("EPSG:3031", "EPSG:3976", 30.0, -80.0, 50.0),
    ("EPSG:3857", "EPSG:32660", 179.9, -20.0, 40.0),
]
EDGE = 1e-6  # source pixels: a centre this close to an edge may fall either side (loop vs numpy arithmetic)


@st.composite
def cases(draw):
    tcrs, scrs, lon, lat, res = draw(st.sampled_from(PAIRS))
    bh, bw = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    x, y = Transformer.from_crs("EPSG:4326", tcrs, always_xy=True).transform(lon, lat)
    target = Affine(res, 0, x - bw * res / 2, 0, -res, y + bh * res / 2)
    m = pixel_mapping(CRS.from_user_input(tcrs), target, (0, bh), (0, bw), scrs, 0.0, exact=True)
    sx, sy = m.dense()
    lo_x, hi_x, lo_y, hi_y = np.nanmin(sx), np.nanmax(sx), np.nanmin(sy), np.nanmax(sy)
    n = draw(st.integers(4, 400))  # source pixels across the footprint
    px = max(hi_x - lo_x, hi_y - lo_y, 1e-9) / n
    source = Affine(px, 0, lo_x, 0, -px, hi_y)
    # a window in the source's pixels, anywhere from well before the footprint to well past it
    r0, c0 = draw(st.integers(-n // 2, n + n // 4)), draw(st.integers(-n // 2, n + n // 4))
    window = (r0, r0 + draw(st.integers(1, n)), c0, c0 + draw(st.integers(1, n)))
    tol = THRESHOLD * px
    mapping = pixel_mapping(CRS.from_user_input(tcrs), target, (0, bh), (0, bw), scrs, tol)
    return mapping, source, window, draw(st.integers(0, 2**32 - 1)), draw(st.booleans())


def _source_pixels(mapping, source, window):
    """Each block pixel's source pixel coordinates in the window, from the mapping in numpy."""
    sx, sy = mapping.dense()
    inv = ~source
    cols = inv.a * sx + inv.b * sy + inv.c - window[2]
    rows = inv.d * sx + inv.e * sy + inv.f - window[0]
    return cols, rows


@settings(max_examples=80, deadline=None)
@given(case=cases(), resampling=st.sampled_from(["nearest", "bilinear"]))
def test_every_pixel_mapping_into_a_partial_window_gets_its_value(case, resampling):
    mapping, source, window, seed, only_empty = case
    rng = np.random.default_rng(seed)
    h, w = window[1] - window[0], window[3] - window[2]
    data = rng.random((h, w), dtype="f4")
    bh, bw = mapping.shape
    values = np.full((bh, bw), np.nan, "f4")
    before = (rng.random((bh, bw)) < 0.3).astype("u1") if only_empty else np.zeros((bh, bw), "u1")
    values[before > 0] = -1.0
    has, winner = before.copy(), np.full((bh, bw), -1, "i4")
    mode = loops.NEAREST if resampling == "nearest" else loops.BILINEAR
    win = np.array(window, "f8")
    written = loops.sample_into(
        data, np.nan, False, mapping.jit, _coef(source), win, mode, np.ones(2), (values, has, winner), 7,
        only_empty,
    )  # fmt: skip

    # without winners (render_chunk's placeholder, shared by every thread): the same pixels, nothing recorded
    untracked = (np.full((bh, bw), np.nan, "f4"), before.copy(), _NO_WINNER)
    untracked[0][before > 0] = -1.0
    again = loops.sample_into(
        data, np.nan, False, mapping.jit, _coef(source), win, mode, np.ones(2), untracked, 7, only_empty
    )
    assert again == written
    np.testing.assert_array_equal(untracked[0], values)
    np.testing.assert_array_equal(untracked[1], has)

    cols, rows = _source_pixels(mapping, source, window)
    with np.errstate(invalid="ignore"):
        inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        near_edge = np.isnan(cols) | np.isnan(rows)
        for v, n in ((cols, w), (rows, h)):
            near_edge |= (np.abs(v) < EDGE) | (np.abs(v - n) < EDGE)
    sure = ~near_edge & ~(before > 0)  # pixels the call had to decide, away from the window's edges
    assert np.array_equal(has[sure] > 0, inside[sure])
    assert np.array_equal(winner[sure] == 7, inside[sure])
    assert (has >= before).all() and (values[before > 0] == -1.0).all()  # filled pixels kept
    assert written == int(((has > 0) & (before == 0)).sum())
    if resampling == "nearest":
        with np.errstate(invalid="ignore"):
            clear = sure & inside
            for v in (cols, rows):
                clear &= np.abs(v - np.round(v)) > EDGE  # not on a source pixel's edge either
        r, c = rows[clear].astype(int), cols[clear].astype(int)
        np.testing.assert_array_equal(values[clear], data[r, c])
