"""The shape of a cloud run, offline: sources, Cubed's work_dir (so the saved plan and the block ids),
the output and Lithops' own storage (but the straggler's) are all on S3 (moto's server on loopback, IAM
auth on), compute is Lithops ``localhost``, and nothing else is shared between the driver and the workers:
the task payload names no local path. Output identical to the threads executor on local disk, with
injected faults, with a straggler (Cubed's backup tasks), and after a killed driver with ``resume=True``.
The same on a Dask ``LocalCluster`` of separate worker processes."""

from __future__ import annotations

import json
import os
import pickle
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import obstore
import pytest
import zarr

from lazymerge.catalog.meta import write_meta
from lazymerge.catalog.stores import zarr_location
from lazymerge.errors import OutputLockedError, OutputResumeError
from lazymerge.executors import get_executor
from lazymerge.executors.dask import local_cluster
from lazymerge.executors.lithops import preload_runtime
from lazymerge.output.target import LOCK_KEY, Lease, open_target
from lazymerge.output.write import BlockWriter, open_output, write_blocks
from tests.support.drills import kill_when
from tests.support.executor_cases import random_seed_store, seed_merge
from tests.support.s3_server import BUCKET, REGION, S3Server, start, upload

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SOURCES = f"s3://{BUCKET}/sources/seed.zarr"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """The S3 server with the seed store uploaded, and the threads-on-local-disk reference."""
    proc, server = start()
    try:
        local = random_seed_store(tmp_path_factory.mktemp("cloud") / "seed.zarr", meta=False)
        write_meta(local)
        upload(server, local, "sources/seed.zarr")
        reference = seed_merge(local, tmp_path_factory.mktemp("wd"), chunk=64).array.compute()
        yield server, reference
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def env(cloud, monkeypatch):
    """The credentials in the environment: the driver's, and (inherited) every Lithops worker's."""
    server, _ = cloud
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    return server


def lithops_config(server: S3Server) -> dict:
    """Lithops localhost compute with its aws_s3 storage backend on the loopback server (boto3 reads
    the endpoint from AWS_ENDPOINT_URL)."""
    return {
        "lithops": {
            "backend": "localhost",
            "storage": "aws_s3",
            "log_level": "WARNING",
            "monitoring_interval": 0.1,
            "data_cleaner": False,  # its cleaner process (boto3 clients per job) only frees moto's memory
        },
        "aws": {"access_key_id": server.key_id, "secret_access_key": server.secret, "region": REGION},
        "aws_s3": {"storage_bucket": BUCKET, "region": REGION},
        "localhost": {"version": 1, "runtime": preload_runtime(), "worker_processes": 2},
    }


def keys(server: S3Server, prefix: str) -> list[str]:
    return [m["path"] for batch in obstore.list(server.store(), prefix=prefix) for m in batch]


def read_output(url: str) -> np.ndarray:
    return zarr.open_array(zarr_location(url), mode="r")[:]


def assert_no_local_path(result, probe: str, tmp_path: Path) -> None:
    """A write task's payload (the pickled BlockWriter and kernel task) names S3, never a local path."""
    target = open_output(
        zarr_location(probe), "", result.array.shape, result.array.chunksize, "float32", False
    )
    writer = BlockWriter(result.task, target, tuple(result.array.numblocks), tuple(result.array.chunksize))
    payload = pickle.dumps(writer) + pickle.dumps(result.task)
    for local in (str(tmp_path), tempfile.gettempdir(), str(ROOT), os.path.expanduser("~")):
        assert local.encode() not in payload, f"the task payload names the local path {local}"
    assert b"s3://" in payload or BUCKET.encode() in payload


def test_every_byte_on_s3(cloud, env, tmp_path):
    server, reference = cloud
    result = seed_merge(SOURCES, f"s3://{BUCKET}/work-a", chunk=64)
    out = f"s3://{BUCKET}/out-a.zarr"
    assert_no_local_path(result, f"s3://{BUCKET}/payload-probe.zarr", tmp_path)  # apart from the output
    result.to_zarr(out, executor=get_executor("lithops", config=lithops_config(server)))
    np.testing.assert_array_equal(read_output(out), reference)
    assert any("lazymerge-plan-" in k for k in keys(server, "work-a/"))  # the plan the tasks read
    assert any(k.startswith("lithops.jobs/") for k in keys(server, "lithops.jobs/"))  # Lithops' own storage


def test_dask_processes_on_s3(cloud, env, tmp_path):
    """A LocalCluster of two worker processes (they inherit only the credentials and endpoint from the
    environment) reads the sources from S3 and writes the work_dir and the output there."""
    server, reference = cloud
    result = seed_merge(SOURCES, f"s3://{BUCKET}/work-k", chunk=64)
    assert_no_local_path(result, f"s3://{BUCKET}/payload-probe-k.zarr", tmp_path)
    out = f"s3://{BUCKET}/out-k.zarr"
    with local_cluster(n_workers=2, memory_limit="1GB", processes=True) as cluster:
        pids = {w.pid for w in cluster.workers.values()}
        assert len(pids) == 2 and os.getpid() not in pids  # separate processes
        result.to_zarr(out, executor=get_executor("dask", address=cluster.scheduler_address))
    np.testing.assert_array_equal(read_output(out), reference)
    assert any("lazymerge-plan-" in k for k in keys(server, "work-k/"))


def test_injected_faults_on_s3(cloud, env, tmp_path, monkeypatch):
    server, reference = cloud
    faults = tmp_path / "faults"  # the markers only decide which attempt fails; no data goes there
    faults.mkdir()
    # 4 of the 56 blocks fail once, 2 of them in the last write task (7 blocks): it takes both of Cubed's
    # 2 retries (each retry is a Lithops job of its own, ~5 s here)
    monkeypatch.setenv("LAZYMERGE_FAULT_RATE", "0.1")
    monkeypatch.setenv("LAZYMERGE_FAULT_SEED", "0")
    monkeypatch.setenv("LAZYMERGE_FAULT_DIR", str(faults))
    result = seed_merge(SOURCES, f"s3://{BUCKET}/work-b", chunk=64)
    out = f"s3://{BUCKET}/out-b.zarr"
    # retries=0: no retry inside the task, so only the Lithops executor's retries make this pass
    result.to_zarr(out, executor=get_executor("lithops", config=lithops_config(server)), retries=0)
    assert len(list(faults.iterdir())) == 4
    np.testing.assert_array_equal(read_output(out), reference)


def test_killed_driver_resumes_on_s3(cloud, env, tmp_path):
    server, reference = cloud
    out = f"s3://{BUCKET}/out-c.zarr"
    config = tmp_path / "lithops.json"
    config.write_text(json.dumps(lithops_config(server)))
    run_env = {**os.environ, "LAZYMERGE_FAULT_DELAY": "0.5", "PYTHONPATH": str(ROOT)}
    argv = [
        sys.executable,
        "-m",
        "tests.support.write_seed",
        SOURCES,
        f"s3://{BUCKET}/work-c",
        out,
        str(config),
    ]

    def written() -> dict[str, str]:
        listed = obstore.list(server.store(), prefix="out-c.zarr/c/")
        return {m["path"]: m["e_tag"] for batch in listed for m in batch}

    kill_when(argv, run_env, ROOT, lambda: len(written()) >= 4, 180)
    time.sleep(1.0)  # a worker may finish the PUT it was in when the driver died
    before = written()
    assert 4 <= len(before) < 56
    result = seed_merge(SOURCES, f"s3://{BUCKET}/work-d", chunk=64)
    result.to_zarr(out, executor=get_executor("lithops", config=lithops_config(server)), resume=True)
    np.testing.assert_array_equal(read_output(out), reference)
    after = written()
    assert len(after) == 56
    assert {k: after[k] for k in before} == before  # blocks written before the kill were not redone


def test_modal_function_body_on_s3(cloud, env, tmp_path):
    """Modal's contract, offline: the app's ``write_blocks`` gets what a Lithops write task gets (a
    BlockWriter, shipped pickled, and flat block ids), runs the same entry point
    (``lazymerge.output.write.write_blocks``) and writes the same output, everything on S3."""
    import importlib.util
    import inspect

    server, reference = cloud
    spec = importlib.util.spec_from_file_location("lazymerge_modal_app", ROOT / "infra" / "modal" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    assert "from lazymerge.output.write import write_blocks as write" in inspect.getsource(app)
    result = seed_merge(SOURCES, f"s3://{BUCKET}/work-m", chunk=64)
    arr = result.array
    out = f"s3://{BUCKET}/out-m.zarr"
    target = open_output(zarr_location(out), "", arr.shape, arr.chunksize, arr.dtype, resume=False)
    shipped = pickle.dumps(BlockWriter(result.task, target, tuple(arr.numblocks), tuple(arr.chunksize)))
    assert str(tmp_path).encode() not in shipped and tempfile.gettempdir().encode() not in shipped
    n = int(np.prod(arr.numblocks))
    writer = pickle.loads(shipped)  # what the function's container unpickles
    assert app.write_blocks.local(writer, list(range(0, n, 2))) == list(range(0, n, 2))
    assert app.write_blocks.local(writer, list(range(1, n, 2))) == list(range(1, n, 2))
    np.testing.assert_array_equal(read_output(out), reference)
    block = app.render_block.local(pickle.loads(pickle.dumps(result.task)), (1, 2))
    np.testing.assert_array_equal(block, reference[64:128, 128:192])


def modal_app():
    import importlib.util

    spec = importlib.util.spec_from_file_location("lazymerge_modal_app", ROOT / "infra" / "modal" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


def test_modal_path_takes_the_lease_and_refuses_other_targets(cloud, env):
    """The Modal entry point's write goes through to_zarr (lease, fingerprint, complete mark) with the app's
    function body rendering the blocks; that body refuses a target whose lease its run does not hold: a
    foreign target, or one another run is writing. Nothing is written there."""
    server, reference = cloud
    app = modal_app()

    def local_map(writers, batches):  # what write_blocks.map does, in this process, pickled like Modal
        shipped = [pickle.loads(pickle.dumps(w)) for w in writers]
        return [app.write_blocks.local(w, b) for w, b in zip(shipped, batches, strict=True)]

    result = seed_merge(SOURCES, f"s3://{BUCKET}/work-l", chunk=64)
    out = f"s3://{BUCKET}/out-l.zarr"
    arr = result.to_zarr(out, resume=True, render=partial(app.run_batches, batch=8, call=local_map))
    np.testing.assert_array_equal(read_output(out), reference)
    assert arr.attrs["lazymerge:complete"] is True and LOCK_KEY not in keys(server, "out-l.zarr/")
    with pytest.raises(OutputResumeError):  # a different request: the fingerprint is checked
        seed_merge(SOURCES, f"s3://{BUCKET}/work-l", chunk=32).to_zarr(out, resume=True, render=local_map)

    foreign = zarr_location(f"s3://{BUCKET}/foreign.zarr")
    shape, chunks = result.array.shape, result.array.chunksize
    target = open_output(foreign, "", shape, chunks, "float32", resume=False)
    writer = BlockWriter(result.task, target, tuple(result.array.numblocks), chunks, lease="my-run")
    with pytest.raises(OutputLockedError, match="does not hold its lease"):
        app.write_blocks.local(writer, [0, 1])
    other = Lease(open_target(server.store("foreign.zarr")))
    other.acquire()
    try:
        with pytest.raises(OutputLockedError, match=other.run):
            app.write_blocks.local(writer, [0, 1])
    finally:
        other.release()
    assert not keys(server, "foreign.zarr/c/")


def test_straggler_backup_on_s3(cloud, env, tmp_path, monkeypatch):
    """(Last in this module: the straggler's Lithops localhost v2 job may still be winding down when it
    returns.) One block's first attempt stalls for 20 minutes; Cubed's backup task (on by default with an S3
    work_dir) renders that task's blocks again, so the run ends while the straggler still sleeps (Lithops
    localhost version 2 queues tasks, not jobs, so the backup need not wait for the straggler's job; the
    straggler is stopped when the executor closes). A late duplicate write is harmless: each block is one
    whole-chunk PUT of the same bytes."""
    server, reference = cloud
    faults = tmp_path / "faults"
    faults.mkdir()
    # 154 blocks: 10 tasks, the fewest with which Cubed launches backups. Cubed times a task from its
    # submission, so queued tasks look slow: its backup starts once the straggler has run 3x as long as
    # the 5th task to finish took.
    result = seed_merge(SOURCES, f"s3://{BUCKET}/work-s", chunk=38)
    row, col = np.unravel_index(15, result.array.numblocks)  # the last block of the first task
    monkeypatch.setenv("LAZYMERGE_FAULT_SLOW", f"{row},{col}:1200")
    monkeypatch.setenv("LAZYMERGE_FAULT_DIR", str(faults))
    out = f"s3://{BUCKET}/out-s.zarr"
    config = lithops_config(server)
    config["localhost"]["version"] = 2
    # Lithops' own job files on local disk: localhost v2 starts a process per task, and each one's S3
    # client for them and its status polls took a quarter of this test's time (the others keep them on S3)
    config["lithops"]["storage"] = "localhost"
    result.to_zarr(out, executor=get_executor("lithops", config=config))
    assert (faults / f"slow-{row}-{col}").exists()  # the straggler did start
    assert not (faults / f"woke-{row}-{col}").exists()  # and the run did not wait for it
    np.testing.assert_array_equal(read_output(out), reference)
    key = f"out-s.zarr/c/{row}/{col}"
    first = obstore.head(server.store(), key)
    time.sleep(1.1)  # S3 times have 1 s resolution
    target = zarr.open_array(zarr_location(out), mode="r+")
    arr = result.array
    write_blocks(np.arange(16), writer=BlockWriter(result.task, target, arr.numblocks, arr.chunksize))
    again = obstore.head(server.store(), key)
    assert again["last_modified"] > first["last_modified"] and again["e_tag"] == first["e_tag"]
    np.testing.assert_array_equal(read_output(out), reference)
