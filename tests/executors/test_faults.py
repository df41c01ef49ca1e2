"""Faults mid-run end promptly: a failed task stops the run on every local executor (queued blocks are not
run), a SIGKILLed worker's tasks are resubmitted (identical output) or fail typed, and a dead S3 endpoint
ends the process with a typed error within a bounded time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cubed
import numpy as np
import psutil
import pytest
import zarr

from lazymerge.api import merge
from lazymerge.demo import SEED_TARGET
from lazymerge.errors import SourceReadError, WorkerLostError
from lazymerge.executors import get_executor
from lazymerge.kernel.faults import InjectedFault
from tests.support.executor_cases import random_seed_store
from tests.support.s3_server import start, upload

ROOT = Path(__file__).resolve().parents[2]
SEED = {**SEED_TARGET, "resolution": 10.0, "chunk_size": (64, 64), "bands": "data", "sortby": "id"}
DEAD_ENDPOINT_BOUND_S = 20.0  # kill -> process exit; measured ~2-3 s (README, "Bounded failure")


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    return random_seed_store(tmp_path_factory.mktemp("faults") / "seed.zarr")  # a misplaced block shows


def workers() -> list[psutil.Process]:
    """This process's live worker processes (multiprocessing spawn children)."""
    out = []
    for p in psutil.Process().children():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:  # ended meanwhile
            pass
    return out


def written_chunks(out: Path) -> int:
    return sum(1 for p in (out / "c").rglob("*") if p.is_file()) if (out / "c").exists() else 0


@pytest.mark.parametrize("name", ["threads", "processes"])
def test_failed_task_cancels_queued_blocks(seed, monkeypatch, name):
    """Every block fails, slowly: the run returns soon after the first failure, not after every queued block
    has run (half the time that would take, worker start-up included), and leaves no task running."""
    delay = 0.5
    monkeypatch.setenv("LAZYMERGE_FAULT_RATE", "1")
    monkeypatch.setenv("LAZYMERGE_FAULT_DELAY", str(delay))
    result = merge(str(seed), datafusion=False, **SEED)
    queued = int(np.prod(result.array.numblocks)) * delay / 2  # seconds for 2 workers to run every block
    executor = get_executor(name, max_workers=2)
    t0 = time.perf_counter()
    with pytest.raises(InjectedFault):
        result.array.compute(executor=executor)
    elapsed = time.perf_counter() - t0
    assert elapsed < queued / 2, f"{name}: the failed run took {elapsed:.1f} s to return"
    time.sleep(1.0)  # nothing keeps running behind the caller's back
    busy = [t.name for t in threading.enumerate() if t.name.startswith("lazymerge-task") and t.is_alive()]
    assert not busy, busy
    assert not workers()


def _kill_one_worker_when(out: Path, done: threading.Event) -> None:
    """SIGKILL one worker process of this process once blocks are being written."""
    while not done.is_set() and written_chunks(out) < 3:
        time.sleep(0.05)
    alive = workers()
    if alive and not done.is_set():
        os.kill(alive[0].pid, signal.SIGKILL)


@pytest.mark.parametrize("retries", [2, 0])
def test_killed_worker(seed, tmp_path, monkeypatch, retries):
    """A worker SIGKILLed mid-run: its tasks are resubmitted to a new pool and the output is identical; with
    retries=0 the run fails promptly with WorkerLostError."""
    request = {**SEED, "resolution": 20.0}
    reference = merge(str(seed), datafusion=False, **request).array.compute()
    monkeypatch.setenv("LAZYMERGE_FAULT_DELAY", "0.05")
    out = tmp_path / "out.zarr"
    done = threading.Event()
    killer = threading.Thread(target=_kill_one_worker_when, args=(out, done))
    killer.start()
    executor = get_executor("processes", max_workers=2, retries=retries)
    result = merge(str(seed), datafusion=False, **request)
    t0 = time.perf_counter()
    try:
        if retries:
            result.to_zarr(str(out), executor=executor)
            np.testing.assert_array_equal(zarr.open_array(str(out))[:], reference)
        else:
            with pytest.raises(WorkerLostError, match="worker process died"):
                result.to_zarr(str(out), executor=executor)
            assert time.perf_counter() - t0 < 30.0
    finally:
        done.set()
        killer.join()


CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from tests.support.s3_server import S3Server
from lazymerge.api import merge
server = S3Server(*{server!r})
seed = {seed!r}
result = merge(server.store("seed.zarr"), datafusion=False, **seed)
print(json.dumps({{"ready": time.time()}}), flush=True)
try:
    result.to_zarr({out!r}, executor={executor!r})
    print(json.dumps({{"error": None}}), flush=True)
except Exception as exc:
    print(json.dumps({{"error": type(exc).__name__, "message": str(exc), "at": time.time()}}), flush=True)
"""


@pytest.mark.slow
def test_dead_s3_endpoint_ends_the_process(seed, tmp_path):
    """The moto server is SIGKILLed while a child process reads from it: the child reports a typed error
    naming the source and exits, within DEAD_ENDPOINT_BOUND_S of the kill."""
    proc, server = start()
    try:
        upload(server, seed, "seed.zarr")
        out = tmp_path / "out.zarr"
        code = CHILD.format(
            root=str(ROOT),
            server=(server.endpoint, server.key_id, server.secret),
            seed=SEED,
            out=str(out),
            executor=None,
        )
        env = dict(os.environ, LAZYMERGE_FAULT_DELAY="0.1", PYTHONPATH=str(ROOT))
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
        json.loads(child.stdout.readline())  # planned: the run starts now
        deadline = time.time() + 120
        while written_chunks(out) < 2 and time.time() < deadline and child.poll() is None:
            time.sleep(0.02)
        assert written_chunks(out) >= 2, "the run did not start writing"
        proc.kill()
        killed = time.perf_counter()
        try:
            child.wait(timeout=120)
        finally:
            child.kill()
        exited = time.perf_counter() - killed
        report = json.loads(child.stdout.readline())
    finally:
        proc.kill()
        proc.wait(10)
    print(f"dead S3 endpoint: process exited {exited:.1f} s after the server was killed")
    assert report["error"] == SourceReadError.__name__, report
    assert "utm" in report["message"] and "target block" in report["message"]
    assert exited < DEAD_ENDPOINT_BOUND_S


FAILING_DELAY = 0.3


@pytest.fixture
def distributed_executor(request, monkeypatch):
    """A Lithops localhost executor, or the dask executor on a 2-worker LocalCluster, whose workers see
    block (0, 1) fail and every block take FAILING_DELAY s."""
    monkeypatch.setenv("LAZYMERGE_FAULT_BLOCKS", "0,1")
    monkeypatch.setenv("LAZYMERGE_FAULT_DELAY", str(FAILING_DELAY))
    if request.param == "lithops":
        yield get_executor("lithops", worker_processes=2)
        return
    from lazymerge.executors.dask import local_cluster

    with local_cluster(2, "1GB") as cluster:
        yield get_executor("dask", address=cluster.scheduler_address)


@pytest.mark.parametrize("distributed_executor", ["lithops", "dask"], indirect=True)
def test_failed_block_cancels_queued_blocks_distributed(seed, tmp_path, distributed_executor):
    """One early block cannot be read while ~200 slow blocks are queued: Lithops (localhost) and Dask end
    with that typed error, not retried, long before the queue would have drained, and render few blocks;
    the run's stop marker is in its work_dir (what stops tasks a backend cannot cancel)."""
    work = tmp_path / "work"
    spec = cubed.Spec(work_dir=str(work), allowed_mem="500MB", reserved_mem="100MB")
    result = merge(str(seed), datafusion=False, spec=spec, **SEED)
    total = int(np.prod(result.array.numblocks))
    t0 = time.perf_counter()
    with pytest.raises(SourceReadError, match=r"block \(0, 1\)"):
        result.array.compute(executor=distributed_executor)
    elapsed = time.perf_counter() - t0
    time.sleep(1.0)  # nothing keeps rendering behind the caller's back
    rendered = sum(1 for p in work.rglob("*") if p.is_file() and "/c/" in p.as_posix())
    assert rendered < total / 4, f"{rendered} of {total} blocks rendered after the failure"
    assert elapsed < total * FAILING_DELAY / 2, f"the failed run took {elapsed:.1f} s to return"
    assert list(work.glob("lazymerge-stop-*"))
