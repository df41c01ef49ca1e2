"""to_zarr's edge cases: an Icechunk write with some blocks failing (nothing committed) then resumed (one
commit), overviews of a mosaic with band and time dimensions, a kill during the overview build, and the
``.partial`` files a kill mid-chunk leaves."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import zarr

from lazymerge.api import merge
from lazymerge.catalog.conventions import read_multiscales, read_spatial
from lazymerge.executors import get_executor
from lazymerge.kernel.faults import InjectedFault
from lazymerge.output.write import missing_blocks
from tests.support.drills import chunk_files, kill_group_when
from tests.support.executor_cases import random_seed_store, seed_merge
from tests.support.stores import date_and_band

ROOT = Path(__file__).resolve().parents[2]  # the repository: tests.support is importable from it


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """The seed's tiles with random values: a misplaced block or pixel shows."""
    return random_seed_store(tmp_path_factory.mktemp("edges") / "seed.zarr", meta=False)


@pytest.fixture(scope="module")
def reference(seed, tmp_path_factory):
    return seed_merge(seed, tmp_path_factory.mktemp("wd"), chunk=64).array.compute()


def test_icechunk_some_blocks_fail_then_resume_commits(seed, reference, tmp_path, monkeypatch):
    """A few blocks fail (no retries): the run raises and the branch does not move, though other blocks
    were written into the session. Resumed in that session with the faults gone, only the missing blocks
    are rendered, and the branch moves once, to the whole mosaic."""
    import icechunk

    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "repo")))
    first = repo.lookup_branch("main")
    faults = tmp_path / "faults"
    faults.mkdir()
    monkeypatch.setenv("LAZYMERGE_FAULT_RATE", "0.05")
    monkeypatch.setenv("LAZYMERGE_FAULT_DIR", str(faults))
    r = seed_merge(seed, tmp_path / "wd", chunk=64)
    session = repo.writable_session("main")
    threads = get_executor("threads", max_workers=2, retries=0)
    with pytest.raises(InjectedFault):
        r.to_zarr(session, executor=threads, retries=0)
    assert repo.lookup_branch("main") == first  # nothing committed
    assert len(list(faults.iterdir())) >= 1
    missing = missing_blocks(zarr.open_array(session.store, mode="r"))
    assert 0 < len(missing) < 56  # some blocks written, some not
    monkeypatch.delenv("LAZYMERGE_FAULT_RATE")
    r.to_zarr(session, executor=threads, retries=0, resume=True)
    assert repo.lookup_branch("main") != first
    assert len(list(repo.ancestry(branch="main"))) == 2  # the initial snapshot and one commit
    out = zarr.open_array(repo.readonly_session("main").store, mode="r")
    np.testing.assert_array_equal(out[:], reference)


def test_overviews_with_band_and_time_dimensions(random_store, tmp_path):
    store = date_and_band(random_store)
    request = {"crs": "EPSG:32618", "bbox": (500000, 5990000, 508000, 6000000), "resolution": 20.0}
    r = merge(str(store), **request, chunk_size=(64, 64), bands=["nir", "data"], groupby="day", sortby="id")
    base = r.array.compute()
    assert base.shape == (2, 2, 500, 400)
    r.to_zarr(str(tmp_path / "ov.zarr"), overviews=2)
    g = zarr.open_group(str(tmp_path / "ov.zarr"), mode="r")
    assert [ov.asset for ov in read_multiscales(g["data"])] == ["0", "1", "2"]
    for k in range(3):
        level = g[f"data/{k}"]
        assert level.shape == (2, 2, -(-500 // 2**k), -(-400 // 2**k))
        np.testing.assert_array_equal(level[:], base[..., :: 2**k, :: 2**k])
        res = 20.0 * 2**k
        assert read_spatial(level).transform == (res, 0.0, 500000.0, 0.0, -res, 6000000.0)


def writer(seed, tmp_path, target, overviews: int, delay: str) -> subprocess.Popen:
    """The seed mosaic written by tests.support.write_seed in its own process group (the kill takes its
    workers too), each task slowed by ``delay`` seconds."""
    env = {**os.environ, "LAZYMERGE_FAULT_DELAY": delay, "PYTHONPATH": str(ROOT)}
    args = ["-m", "tests.support.write_seed", str(seed), str(tmp_path / "wd"), str(target), "processes"]
    args.append(str(overviews))
    return subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, start_new_session=True)


@pytest.mark.slow
def test_kill_during_overview_build_then_resume(seed, reference, tmp_path):
    """Killed once the base level is written and level 1 is being built (each overview task slowed by
    LAZYMERGE_FAULT_DELAY): no multiscales layout yet, so the output reads as unfinished; a resumed run
    keeps the base blocks and builds every level."""
    target = tmp_path / "out.zarr"
    proc = writer(seed, tmp_path, target, overviews=2, delay="0.3")
    kill_group_when(proc, lambda: (target / "data" / "1" / "zarr.json").exists())
    base = chunk_files(target / "data" / "0")
    assert len(base) == 56
    assert "multiscales" not in zarr.open_group(str(target / "data"), mode="r").attrs
    r = seed_merge(seed, tmp_path / "wd2", chunk=64)
    r.to_zarr(str(target), overviews=2, resume=True)
    assert chunk_files(target / "data" / "0") == base  # the base was not redone
    g = zarr.open_group(str(target), mode="r")
    assert [ov.asset for ov in read_multiscales(g["data"])] == ["0", "1", "2"]
    for k in range(3):
        np.testing.assert_array_equal(g[f"data/{k}"][:], reference[:: 2**k, :: 2**k])


@pytest.mark.slow
def test_resume_clears_partial_chunk_files(seed, reference, tmp_path):
    """A kill mid-run, then a chunk file half-written as zarr's LocalStore leaves it when killed between
    writing ``<key>.<uuid>.partial`` and renaming it: the resumed run renders the missing blocks and
    deletes the leftover; nothing but chunks remains."""
    target = tmp_path / "out.zarr"
    proc = writer(seed, tmp_path, target, overviews=0, delay="0.3")
    kill_group_when(proc, lambda: len(chunk_files(target) if (target / "c").exists() else {}) >= 6)
    done = chunk_files(target)
    assert 6 <= len(done) < 56
    row = next(iter(sorted(done))).split("/")[1]
    leftover = target / "c" / row / f"55.{uuid.uuid4().hex}.partial"
    leftover.write_bytes(b"\x28\xb5\x2f\xfd half a chunk")
    r = seed_merge(seed, tmp_path / "wd2", chunk=64)
    out = r.to_zarr(str(target), resume=True)
    np.testing.assert_array_equal(out[:], reference)
    assert not list(target.rglob("*.partial"))
    assert len(chunk_files(target)) == 56


def test_blocks_an_executor_lost_leave_the_output_not_complete(seed, reference, tmp_path):
    """An executor that returns without error but never ran some tasks (as a backend that drops jobs can):
    to_zarr raises OutputIncompleteError naming the missing blocks and does not mark the output complete;
    resume writes only those blocks and gives the whole mosaic."""
    from lazymerge.errors import OutputIncompleteError
    from lazymerge.output.target import COMPLETE
    from lazymerge.output.write import write_blocks, write_zarr

    r = seed_merge(seed, tmp_path / "wd", chunk=64)
    out = tmp_path / "o.zarr"

    def lossy(writer, ids):  # renders every other task's blocks, then returns as if all were done
        write_blocks(ids[::2], writer=writer)

    with pytest.raises(OutputIncompleteError, match=r"blocks were not written.*resume=True"):
        write_zarr(r, out, render=lossy)
    assert zarr.open_array(out, mode="r").attrs[COMPLETE] is False
    lost = missing_blocks(zarr.open_array(out, mode="r"))
    assert len(lost) == len(np.arange(int(np.prod(r.array.numblocks)))[1::2])
    r.to_zarr(out, resume=True)
    assert zarr.open_array(out, mode="r").attrs[COMPLETE] is True
    np.testing.assert_array_equal(zarr.open_array(out, mode="r")[:], reference)
