"""to_zarr: streamed, attributes, overviews that make a lazymerge source, Icechunk, resume after a kill,
retries after injected faults -- each against the array the threads executor computes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cubed
import numpy as np
import pytest
import zarr

from lazymerge.api import merge
from lazymerge.catalog.conventions import read_multiscales, read_proj, read_spatial
from lazymerge.catalog.scan import scan_store
from lazymerge.demo import SEED_TARGET
from lazymerge.errors import OutputError
from lazymerge.executors import get_executor
from lazymerge.kernel.faults import InjectedFault
from lazymerge.output.target import COMPLETE, LOCK_KEY
from lazymerge.output.write import blocks_per_task
from tests.support.drills import chunk_files, kill_when
from tests.support.executor_cases import random_seed_store, seed_merge

ROOT = Path(__file__).resolve().parents[2]  # the repository: tests.support is importable from it


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """The seed's tiles with random values: a misplaced block or pixel shows."""
    return random_seed_store(tmp_path_factory.mktemp("out") / "seed.zarr", meta=False)


@pytest.fixture(scope="module")
def reference(seed, tmp_path_factory):
    return {c: seed_merge(seed, tmp_path_factory.mktemp("wd"), chunk=c).array.compute() for c in (64, 128)}


def test_to_zarr_streams_blocks_with_attributes(seed, reference, tmp_path):
    r = seed_merge(seed, tmp_path / "wd")
    reports: list = []
    out = r.to_zarr(str(tmp_path / "out.zarr"), executor=get_executor("processes"), report=reports)
    np.testing.assert_array_equal(out[:], reference[128])
    assert out.chunks == (128, 128) and len(chunk_files(tmp_path / "out.zarr")) == 16  # NaN blocks too
    assert read_spatial(out).transform == (20.0, 0.0, 500000.0, 0.0, -20.0, 6000000.0)
    assert read_proj(out).code == "EPSG:32618"
    (name, tasks, projected, peak), *_ = reports[0].rows()
    per_task = blocks_per_task(16, 128 * 128)  # small blocks: several per task
    assert per_task == 2 and tasks == 16 // per_task
    # reported per task; seed_spec's reserved_mem (100 MB) is below a worker's real baseline, so no bound
    # here: tests/contract/test_memory_bound.py checks the default one
    assert projected > 0 and peak > 0


def test_overviews_make_a_lazymerge_source(seed, reference, tmp_path):
    r = seed_merge(seed, tmp_path / "wd")
    r.to_zarr(str(tmp_path / "ov.zarr"), overviews=2)
    g = zarr.open_group(str(tmp_path / "ov.zarr"), mode="r")
    assert [ov.asset for ov in read_multiscales(g["data"])] == ["0", "1", "2"]
    np.testing.assert_array_equal(g["data/2"][:], reference[128][::4, ::4])
    assert read_spatial(g["data/1"]).transform == (40.0, 0.0, 500000.0, 0.0, -40.0, 6000000.0)
    (entry,) = scan_store(str(tmp_path / "ov.zarr"))
    assert [lv.path for lv in entry.bands[None].levels] == ["data/0", "data/1", "data/2"]
    bbox = (500000, 5990000, 508000, 6000000)
    again = merge(str(tmp_path / "ov.zarr"), crs="EPSG:32618", bbox=bbox, resolution=20.0)
    np.testing.assert_array_equal(again.array.compute(), reference[128])
    with pytest.raises(OutputError, match="divisible by 256"):
        r.to_zarr(str(tmp_path / "bad.zarr"), overviews=8)


def test_icechunk_commits_only_when_every_block_succeeded(seed, reference, tmp_path, monkeypatch):
    import icechunk

    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "repo")))
    first = repo.lookup_branch("main")
    r = seed_merge(seed, tmp_path / "wd")
    monkeypatch.setenv("LAZYMERGE_FAULT_RATE", "1")  # every attempt of every block fails
    with pytest.raises(InjectedFault):
        r.to_zarr(repo.writable_session("main"))
    assert repo.lookup_branch("main") == first
    monkeypatch.delenv("LAZYMERGE_FAULT_RATE")
    r.to_zarr(repo.writable_session("main"), commit_message="seed mosaic")
    assert repo.lookup_branch("main") != first
    out = zarr.open_array(repo.readonly_session("main").store, mode="r")
    np.testing.assert_array_equal(out[:], reference[128])
    with pytest.raises(OutputError, match="threads executor only"):
        r.to_zarr(repo.writable_session("main"), executor=get_executor("processes"))
    # the Spec's executor is what Cubed falls back to: refused the same way
    spec = cubed.Spec(work_dir=str(tmp_path / "wd2"), allowed_mem="1GB", executor=get_executor("processes"))
    on_processes = merge(seed, **SEED_TARGET, resolution=20.0, chunk_size=(128, 128), spec=spec)
    with pytest.raises(OutputError, match="threads executor only"):
        on_processes.to_zarr(repo.writable_session("main"))


def test_injected_faults_are_retried_to_identical_output(seed, reference, tmp_path, monkeypatch):
    faults = tmp_path / "faults"
    faults.mkdir()
    monkeypatch.setenv("LAZYMERGE_FAULT_RATE", "0.3")
    monkeypatch.setenv("LAZYMERGE_FAULT_DIR", str(faults))
    r = seed_merge(seed, tmp_path / "wd", chunk=64)
    out = r.to_zarr(str(tmp_path / "out.zarr"), executor=get_executor("processes", max_workers=2))
    assert len(list(faults.iterdir())) >= 5  # of 56 blocks, these failed once and were retried
    np.testing.assert_array_equal(out[:], reference[64])


@pytest.mark.slow
def test_lithops_retries_injected_faults(seed, reference, tmp_path, monkeypatch):
    faults = tmp_path / "faults"
    faults.mkdir()
    monkeypatch.setenv("LAZYMERGE_FAULT_RATE", "0.3")
    monkeypatch.setenv("LAZYMERGE_FAULT_DIR", str(faults))
    r = seed_merge(seed, tmp_path / "wd")
    # retries=0: no retry inside the task, so only Cubed's Lithops retries can make this pass
    out = r.to_zarr(str(tmp_path / "out.zarr"), executor=get_executor("lithops"), retries=0)
    assert len(list(faults.iterdir())) >= 1
    np.testing.assert_array_equal(out[:], reference[128])


@pytest.mark.slow
def test_killed_processes_run_resumes_to_identical_output(seed, reference, tmp_path):
    target = tmp_path / "out.zarr"
    env = {**os.environ, "LAZYMERGE_FAULT_DELAY": "0.4", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "tests.support.write_seed", str(seed), str(tmp_path / "wd"), str(target)]
    kill_when(argv, env, ROOT, lambda: len(chunk_files(target) if (target / "c").exists() else {}) >= 6, 120)
    before = chunk_files(target)
    assert 6 <= len(before) < 56
    assert zarr.open_array(str(target), mode="r").attrs[COMPLETE] is False  # the killed run's lease stays
    assert (target / LOCK_KEY).exists()  # but its process is gone, so the resume takes it over
    r = seed_merge(seed, tmp_path / "wd2", chunk=64)
    out = r.to_zarr(str(target), executor=get_executor("processes", max_workers=2), resume=True)
    np.testing.assert_array_equal(out[:], reference[64])
    after = chunk_files(target)
    assert len(after) == 56 and out.attrs[COMPLETE] is True and not (target / LOCK_KEY).exists()
    assert {k: after[k] for k in before} == before  # blocks written before the kill were not redone


def test_progress_bar_per_op(seed, tmp_path, capsys):
    r = seed_merge(seed, tmp_path / "wd")
    r.to_zarr(str(tmp_path / "p.zarr"), progress=True)
    err = capsys.readouterr().err
    done = f"{16 // blocks_per_task(16, 128 * 128)}/{16 // blocks_per_task(16, 128 * 128)}"
    assert "map_blocks" in err and done in err  # tqdm's bar for the write tasks (16 blocks), on stderr
    r.to_zarr(str(tmp_path / "q.zarr"), progress=False)
    assert done not in capsys.readouterr().err


def test_integer_output_is_filled_with_its_nodata(make_store, tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(1, 1000, size=(100, 100), dtype="u2")
    data[:, :30] = 0  # the source's nodata
    store = make_store([("a", "EPSG:32618", (10.0, 0.0, 500000.0, 0.0, -10.0, 6001000.0), data)])
    bbox = (499000.0, 5999000.0, 501280.0, 6001000.0)  # the source plus empty blocks around it
    r = merge(
        store, crs="EPSG:32618", bbox=bbox, resolution=10.0, chunk_size=(64, 64), dtype="uint16", nodata=0
    )
    expected = r.array.compute()
    assert (expected == 0).any() and (expected > 0).any()
    out = r.to_zarr(str(tmp_path / "out.zarr"), overviews=1)
    assert out.fill_value == 0
    np.testing.assert_array_equal(out[:], expected)
    level = zarr.open_array(str(tmp_path / "out.zarr"), path="data/1", mode="r")
    assert level.fill_value == 0
    np.testing.assert_array_equal(level[:], expected[::2, ::2])
