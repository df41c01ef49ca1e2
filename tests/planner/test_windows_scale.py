"""Planning at scale: windows from each chunk's lattice extent per source CRS equal the per-pair lattice's,
and a large plan streams to disk in batches and reads back identically."""

from __future__ import annotations

import os

import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS, Transformer

import lazymerge.planner.build as build
import lazymerge.planner.windows as windows
from lazymerge.api import plan
from lazymerge.demo import SEED_TARGET
from lazymerge.grid import TargetGrid

# (target CRS, lon, lat, resolution) and source CRSs near it: projected pairs across UTM zones, LAEA,
# Mercator and geographic sources
TARGETS = [
    ("EPSG:3035", 10.0, 52.0, 10.0),
    ("EPSG:32633", 15.0, 45.0, 20.0),
    ("EPSG:3857", -75.0, 40.0, 30.0),
    ("EPSG:3413", -40.0, 85.0, 100.0),  # polar stereographic, around the pole
]
SOURCES = ["EPSG:32632", "EPSG:32633", "EPSG:32618", "EPSG:3035", "EPSG:4326", "EPSG:3857", "EPSG:3413"]


@settings(max_examples=12, deadline=None)
@given(
    t=st.sampled_from(TARGETS),
    src=st.sampled_from(SOURCES),
    seed=st.integers(0, 2**32 - 1),
)
def test_box_windows_equal_the_per_pair_lattice(t, src, seed):
    code, lon, lat, res = t
    rng = np.random.default_rng(seed)
    cx, cy = Transformer.from_crs("EPSG:4326", code, always_xy=True).transform(lon, lat)
    chunk = int(rng.integers(64, 512))
    half = res * chunk * 8
    grid = TargetGrid.from_bbox(code, (cx - half, cy - half, cx + half, cy + half), res, (chunk, chunk))
    crs = CRS.from_user_input(src)
    # source grids near the target's centre, in the source CRS: random resolution, origin and shape
    sx, sy = Transformer.from_crs(code, src, always_xy=True).transform(cx, cy)
    n = 300
    geo = crs.is_geographic
    r = rng.uniform(1e-4, 2e-3, n) if geo else rng.uniform(5.0, 200.0, n) * (res / 10.0)
    spread = 2.0 if geo else 16 * half
    ox = sx + rng.uniform(-spread, spread, n)
    oy = sy + rng.uniform(-spread, spread, n)
    flip = rng.random(n) < 0.1  # a few south-up grids
    shape = rng.integers(50, 20000, (n, 2))
    coef = np.array(
        [
            (inv.a, inv.b, inv.c, inv.d, inv.e, inv.f)
            for inv in (~Affine(r[i], 0.0, ox[i], 0.0, r[i] if flip[i] else -r[i], oy[i]) for i in range(n))
        ]
    )
    chunks = rng.integers(0, grid.nchunks[0] * grid.nchunks[1], n)
    margin = 1 + rng.integers(0, 4, n)
    if not windows.box_ok(grid.crs, crs, coef).all():
        return  # both geographic: the per-pair lattice path handles the wrap
    new = windows.box_windows(grid, crs, chunks, coef, shape, margin)
    old, _, _ = windows._windows(grid, crs, chunks, coef, shape, False, margin)
    np.testing.assert_array_equal(new, old)


@pytest.mark.parametrize("t", TARGETS)
def test_lattice_extents_from_the_sub_lattice_equal_the_whole_lattice(t):
    """Where the 3 x 3 sub-lattice decides (monotonic coordinates), its corners are the whole lattice's
    extremes, bit for bit; across UTM zones, LAEA, Mercator, geographic and around a pole."""
    code, lon, lat, res = t
    cx, cy = Transformer.from_crs("EPSG:4326", code, always_xy=True).transform(lon, lat)
    half = res * 256 * 20
    grid = TargetGrid.from_bbox(code, (cx - half, cy - half, cx + half, cy + half), res, (256, 256))
    chunks = np.arange(grid.nchunks[0] * grid.nchunks[1])
    for src in SOURCES:
        crs = CRS.from_user_input(src)
        to_src = Transformer.from_crs(code, src, always_xy=True)
        sub, whole = windows.lattice_extents(grid, crs, chunks), windows._full_extents(to_src, grid, chunks)
        np.testing.assert_array_equal(sub[0], whole[0])
        np.testing.assert_array_equal(sub[1], whole[1])  # and the same seams


@pytest.mark.parametrize("t", TARGETS)
def test_the_interpolated_culling_lattice_stays_within_its_tolerance(t):
    """``source_lattice`` interpolates a chunk's lattice from its 3 x 3 sub-lattice only where its checks
    pass: every one of the 81 points stays within the tolerance of the exact transform (NaN where it is),
    and many chunks of smooth pairs are interpolated (else this checks nothing)."""
    code, lon, lat, res = t
    cx, cy = Transformer.from_crs("EPSG:4326", code, always_xy=True).transform(lon, lat)
    half = res * 1024 * 12
    grid = TargetGrid.from_bbox(code, (cx - half, cy - half, cx + half, cy + half), res, (1024, 1024))
    chunks = np.arange(grid.nchunks[0] * grid.nchunks[1])
    xs, ys = windows.chunk_lattice(grid, chunks)
    for src in SOURCES:
        crs = CRS.from_user_input(src)
        tol = 1e-3 * (1e-4 if crs.is_geographic else res)
        ex, ey = Transformer.from_crs(code, src, always_xy=True).transform(xs, ys, errcheck=False)
        sx, sy, smooth = windows.source_lattice(grid, crs, chunks, tol)
        for got, exact in ((sx, ex), (sy, ey)):
            np.testing.assert_array_equal(np.isnan(got), np.isnan(exact))
            with np.errstate(invalid="ignore"):
                assert not (np.abs(got - exact) > tol).any(), src
        interpolated = ~((sx == ex) | np.isnan(ex)).all(axis=1)
        assert not (interpolated & ~smooth).any()  # what it interpolated, it says so
        if crs.is_geographic:
            assert not interpolated.any()  # longitudes wrap: every point transformed
        elif src != code and "EPSG:3413" not in (code, src):  # (the same CRS: exact either way)
            assert interpolated.mean() > 0.2, src


@pytest.mark.parametrize(
    "pair", [("EPSG:3035", "EPSG:32632"), ("EPSG:4267", "EPSG:4326"), ("EPSG:4326", "EPSG:3413")]
)
def test_cached_transformers_give_from_crs_numbers(pair):
    """crs.transformer may take a group's one shared operation: the numbers stay from_crs's, inside and
    far outside the operations' areas of use."""
    from lazymerge.crs import _build

    src, dst = (CRS.from_user_input(c).to_wkt() for c in pair)
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-180, 180, 2000), rng.uniform(-89, 89, 2000)
    x, y = Transformer.from_crs("EPSG:4326", src, always_xy=True).transform(lon, lat, errcheck=False)
    expected = Transformer.from_crs(src, dst, always_xy=True).transform(x, y, errcheck=False)
    np.testing.assert_array_equal(_build(src, dst).transform(x, y, errcheck=False), expected)


def test_rotated_grids_keep_the_per_pair_lattice():
    coef = np.array([[0.1, 0.0, 1.0, 0.0, -0.1, 2.0], [0.1, 0.01, 1.0, 0.0, -0.1, 2.0]])
    ok = windows.box_ok(CRS.from_epsg(3035), CRS.from_epsg(32632), coef)
    assert ok.tolist() == [True, False]
    assert not windows.box_ok(CRS.from_epsg(4326), CRS.from_epsg(4326), coef).any()


SEED = {**SEED_TARGET, "resolution": 10.0, "bands": "data"}


@pytest.mark.parametrize("datafusion", [True, False])
def test_a_streamed_plan_is_written_in_batches_and_reads_back_identically(
    random_store, tmp_path, monkeypatch, datafusion
):
    kw = dict(chunk_size=(40, 40), datafusion=datafusion, sortby="-id", **SEED)
    in_memory = plan(str(random_store), **kw)
    assert in_memory.n_pairs > 100
    monkeypatch.setattr(windows, "PAIR_BATCH", 37)
    spill = tmp_path / "spill"
    spill.mkdir()
    streamed = plan(str(random_store), plan_dir=str(spill), **kw)
    assert "windows (streamed to disk)" in streamed.timings
    assert len(streamed.table.to_batches()) > in_memory.n_pairs // 37 // 2  # one record batch per batch
    assert streamed.table.equals(in_memory.table)
    assert streamed.levels.equals(in_memory.levels)
    assert os.listdir(spill) == []  # the file is unlinked once mapped
    # past STREAM_ROWS, a plan streams without plan_dir (to the system temporary directory)
    monkeypatch.setattr(build, "STREAM_ROWS", 10)
    auto = plan(str(random_store), **kw)
    assert "windows (streamed to disk)" in auto.timings
    assert auto.table.equals(in_memory.table)
    saved = auto.save(str(tmp_path / "plan.zarr"))
    assert type(in_memory).load(saved).table.equals(in_memory.table)


def test_plan_dir_must_be_a_directory(random_store, tmp_path):
    from lazymerge.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="plan_dir=.*not an existing local directory"):
        plan(str(random_store), plan_dir=str(tmp_path / "missing"), **SEED)


def test_cli_plan_dir_streams_the_plan(random_store, tmp_path, monkeypatch):
    from lazymerge.cli import main
    from lazymerge.contract.model import Plan

    monkeypatch.setattr(windows, "PAIR_BATCH", 5)
    spill = tmp_path / "spill"
    spill.mkdir()
    out = tmp_path / "p.zarr"
    bbox = ",".join(str(v) for v in SEED["bbox"])
    grid = ["--crs", SEED["crs"], "--bbox", bbox, "--resolution", "10", "--bands", "data"]
    argv = ["plan", str(random_store), *grid, "--chunk-size", "100,100", "--sortby", "id", "--out", str(out)]
    assert main([*argv, "--plan-dir", str(spill)]) == 0
    assert os.listdir(spill) == []
    expected = plan(str(random_store), chunk_size=(100, 100), sortby="id", **SEED)
    assert Plan.load(str(out)).table.equals(expected.table)


@pytest.mark.parametrize(
    "pair, composed",
    [
        (("EPSG:3035", "EPSG:32601"), True),  # ETRS89 -> WGS 84 far from Europe: the slowest search
        (("EPSG:3035", "EPSG:32632"), True),
        (("EPSG:3857", "EPSG:32618"), True),
        (("EPSG:32633", "EPSG:32632"), True),
        (("EPSG:3035", "EPSG:25832"), True),
        (("EPSG:3035", "EPSG:31467"), False),  # a datum shift (DHDN): the search
        (("EPSG:3035", "EPSG:4326"), False),  # a geographic source: the search
        (("EPSG:3035", "+proj=utm +zone=32 +ellps=intl +towgs84=-87,-98,-121 +units=m"), False),  # bound
        (("EPSG:3035", "EPSG:5972"), False),  # compound (UTM 32N + a height)
    ],
)
def test_source_transformer_is_the_one_the_operation_search_finds(pair, composed):
    """``crs.composed_transformer`` builds the pipeline of two projections without a datum shift itself:
    the same definition and the same numbers, to the bit, as the transformer PROJ's operation search
    gives; any other pair is the searched transformer."""
    from lazymerge.crs import _composed_pipeline, composed_transformer, transformer

    src, dst = (CRS.from_user_input(c).to_wkt() for c in pair)
    assert (_composed_pipeline(src, dst) is not None) is composed
    got, searched = composed_transformer(src, dst), transformer(src, dst)
    assert got.definition == searched.definition
    x, y = Transformer.from_crs("EPSG:4326", pair[0], always_xy=True).transform(
        np.random.default_rng(0).uniform(-10, 30, 500), np.random.default_rng(1).uniform(35, 70, 500)
    )
    ours, theirs = got.transform(x, y, errcheck=False), searched.transform(x, y, errcheck=False)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_planning_gives_the_garbage_collector_back_as_it_was(random_store):
    """build_plan pauses the cyclic collector: after a plan, and after one that fails inside planning (a
    band no source has), it is on again; a caller who had turned it off finds it off."""
    import gc

    from lazymerge.errors import BandNotFoundError

    assert gc.isenabled()
    args = {**SEED, "chunk_size": (100, 100)}
    plan(str(random_store), **args)
    assert gc.isenabled()
    with pytest.raises(BandNotFoundError):
        plan(str(random_store), **{**args, "bands": "no-such-band"})
    assert gc.isenabled()
    gc.disable()
    try:
        plan(str(random_store), **args)
        assert not gc.isenabled()
    finally:
        gc.enable()


@settings(max_examples=25, deadline=None)
@given(
    pair=st.sampled_from(
        [  # (target CRS, source CRS, lon, lat of the source's edge at 180, source pixel, target pixel)
            ("EPSG:32660", "EPSG:3857", 180.0, 60.0, 150.0, 100.0),
            ("EPSG:32601", "EPSG:3857", 180.0, -30.0, 120.0, 100.0),
            ("EPSG:3031", "+proj=sinu +lon_0=0 +datum=WGS84 +units=m", 180.0, -80.0, 300.0, 400.0),
        ]
    ),
    chunk=st.integers(8, 300),
    shift=st.floats(-0.5, 0.5),
    beyond=st.integers(0, 150),
)
def test_windows_hold_every_pixel_beside_a_seam(pair, chunk, shift, beyond):
    """Whatever the chunk size, a chunk across a world projection's ±180 seam gets a window holding the
    source pixel of every pixel centre of it that lies in the source (pyproj's exact transform): between
    two lattice points across the seam, pixels reach the source's edge, a lattice step (chunk / 8) from
    the nearest point."""
    tcrs, scrs, lon, lat, sres, tres = pair
    to_src = Transformer.from_crs("EPSG:4326", scrs, always_xy=True)
    ex, ey = to_src.transform(
        179.999999, lat
    )  # the source's edge (its last column ends at the seam + beyond)
    n = 200
    src = Affine(sres, 0.0, ex - (n - beyond) * sres, 0.0, -sres, ey + n / 2 * sres)
    tx, ty = Transformer.from_crs("EPSG:4326", tcrs, always_xy=True).transform(lon, lat)
    half = 2 * chunk * tres
    x0, y0 = tx - half + shift * chunk * tres, ty - half + shift * chunk * tres
    grid = TargetGrid.from_bbox(tcrs, (x0, y0, x0 + 2 * half, y0 + 2 * half), tres, (chunk, chunk))
    chunks = np.arange(grid.nchunks[0] * grid.nchunks[1])
    inv = ~src
    coef = np.tile([inv.a, inv.b, inv.c, inv.d, inv.e, inv.f], (len(chunks), 1))
    shape = np.tile([n, n], (len(chunks), 1))
    crs = CRS.from_user_input(scrs)
    found = windows.box_windows(grid, crs, chunks, coef, shape, np.zeros(len(chunks), dtype="i8"))
    back = Transformer.from_crs(tcrs, scrs, always_xy=True)
    for k in chunks:
        r0, r1, c0, c1 = grid.chunk_window(int(k) // grid.nchunks[1], int(k) % grid.nchunks[1])
        rr, cc = np.mgrid[r0:r1, c0:c1] + 0.5
        t = grid.transform
        sx, sy = back.transform(t.c + cc * t.a, t.f + rr * t.e)
        col, row = inv.c + sx * inv.a, inv.f + sy * inv.e
        inside = (col >= 0) & (col < n) & (row >= 0) & (row < n)
        if not inside.any():
            continue
        w = found[k]
        assert w[0] >= 0, f"chunk {k} holds source pixels but has no window"
        assert w[0] <= row[inside].min() and np.floor(row[inside].max()) < w[1]
        assert w[2] <= col[inside].min() and np.floor(col[inside].max()) < w[3]


def test_a_culled_plan_from_the_interpolated_lattice_equals_the_exact_lattices(random_store, monkeypatch):
    """Culling's cell masks and the culled plan's windows from the interpolated lattice (``source_lattice``)
    give the plan the exact lattice gives, row for row, on two UTM zones' sources in small chunks (most
    lattices interpolated, which the test checks happened)."""
    kw = {
        "crs": "EPSG:32618",
        "bbox": (495000.0, 5980000.0, 515000.0, 6010000.0),
        "resolution": 10.0,
        "chunk_size": (48, 64),
        "bands": "data",
        "sortby": "id",
        "cull": True,
    }
    real, smooth = windows.source_lattice, []

    def watched(*args, **kwargs):
        out = real(*args, **kwargs)
        smooth.append(out[2])
        return out

    monkeypatch.setattr(windows, "source_lattice", watched)
    interpolated = plan(str(random_store), **kw)
    assert np.concatenate(smooth).mean() > 0.5
    monkeypatch.setattr(windows, "LATTICE_TOL", 0.0)  # every point transformed
    exact = plan(str(random_store), **kw)
    assert interpolated.n_pairs < interpolated.pairs_before_cull  # culling dropped pairs
    assert interpolated.table.equals(exact.table)
