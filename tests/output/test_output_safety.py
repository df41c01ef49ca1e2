"""to_zarr never destroys data: existing targets are refused, only lazymerge's own nodes are overwritten,
resume checks the request's fingerprint, a lease stops a second writer, ``lazymerge:complete`` turns true
only when everything is written; integer outputs (fill value = nodata) on every path."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
import zarr.storage

from lazymerge.api import merge
from lazymerge.cli import main
from lazymerge.errors import (
    OutputExistsError,
    OutputLockedError,
    OutputResumeError,
    OutputWriteError,
)
from lazymerge.executors import get_executor
from lazymerge.output.target import COMPLETE, FINGERPRINT, LOCK_KEY, Lease, open_target
from tests.support.executor_cases import random_seed_store, seed_merge, seed_spec

ROOT = Path(__file__).resolve().parents[2]  # the repository: tests.support is importable from it
BBOX = (502000.0, 5997500.0, 507000.0, 6001500.0)  # the int_store sources and some empty space
SHIFTED = (500020.0, 5990000.0, 508020.0, 6000000.0)  # same shape, one pixel east


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    return random_seed_store(tmp_path_factory.mktemp("safety") / "seed.zarr", meta=False)


@pytest.fixture(scope="module")
def expected(seed, tmp_path_factory):
    return seed_merge(seed, tmp_path_factory.mktemp("wd")).array.compute()


def files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def complete(path: Any) -> bool | None:
    return zarr.open(path, mode="r").attrs.get(COMPLETE)


def test_foreign_files_are_refused_and_kept(seed, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    r = seed_merge(seed, tmp_path / "wd")
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match=r"notes\.txt.*not a lazymerge output") as err:
            r.to_zarr(str(target), overwrite=overwrite)
        assert str(target) in str(err.value)
    with pytest.raises(OutputExistsError, match="not a lazymerge output"):
        r.to_zarr(str(target), resume=True)
    assert files(target) == {"notes.txt": b"mine"}  # untouched, and no lease left behind


def test_existing_array_is_refused_by_api_and_cli(seed, tmp_path, capsys):
    target = tmp_path / "a.zarr"
    zarr.create_array(str(target), data=np.arange(12.0).reshape(3, 4))
    before = files(target)
    with pytest.raises(OutputExistsError, match="a.zarr"):
        seed_merge(seed, tmp_path / "wd").to_zarr(str(target))
    bbox = ",".join(str(v) for v in (500000.0, 5990000.0, 508000.0, 6000000.0))
    args = [
        "run",
        str(seed),
        "--crs",
        "EPSG:32618",
        "--bbox",
        bbox,
        "--resolution",
        "20",
        "--out",
        str(target),
    ]
    assert main([*args, "--no-progress"]) == 2
    assert "not a lazymerge output" in capsys.readouterr().err
    assert main([*args, "--no-progress", "--overwrite"]) == 2  # not lazymerge's: overwrite refused too
    assert "only replaces a lazymerge output" in capsys.readouterr().err
    assert files(target) == before


def test_target_inside_the_source_store_is_refused(seed, tmp_path):
    before = files(seed)
    r = seed_merge(seed, tmp_path / "wd")
    for target in (seed, seed / "mosaic.zarr", zarr.storage.LocalStore(str(seed / "utm18n_tile_a"))):
        with pytest.raises(OutputExistsError, match="inside the source store"):
            r.to_zarr(target, overwrite=True)
    assert files(seed) == before


def test_overwrite_replaces_only_lazymerge_nodes(seed, expected, tmp_path):
    target = tmp_path / "out.zarr"
    seed_merge(seed, tmp_path / "wd", resolution=40.0, chunk=64).to_zarr(str(target), overviews=1)
    (target / "README.txt").write_text("about this mosaic")
    (target / "data" / "notes.txt").write_text("notes")
    r = seed_merge(seed, tmp_path / "wd")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        r.to_zarr(str(target))
    out = r.to_zarr(str(target), overwrite=True)  # another layout: one array at the root
    np.testing.assert_array_equal(out[:], expected)
    assert (target / "README.txt").read_text() == "about this mosaic"
    assert (target / "data" / "notes.txt").read_text() == "notes"
    assert set(files(target / "data")) == {"notes.txt"}  # the old levels and band group are gone
    assert complete(str(target)) is True and not (target / LOCK_KEY).exists()


def test_resume_checks_the_request(seed, expected, tmp_path):
    target = tmp_path / "out.zarr"
    r = seed_merge(seed, tmp_path / "wd")
    r.to_zarr(str(target))
    fp = zarr.open_array(str(target), mode="r").attrs[FINGERPRINT]
    assert fp["transform"] == [20.0, 0.0, 500000.0, 0.0, -20.0, 6000000.0] and fp["dtype"] == "float32"
    shifted = merge(seed, crs="EPSG:32618", bbox=SHIFTED, resolution=20.0, chunk_size=(128, 128), sortby="id")
    assert shifted.array.shape == r.array.shape
    before = files(target)
    with pytest.raises(OutputResumeError, match=r"transform: \[20\.0.*500000\.0.*there, .*500020\.0.* now"):
        shifted.to_zarr(str(target), resume=True)
    other = seed_merge(seed, tmp_path / "wd", chunk=64)
    with pytest.raises(OutputResumeError, match="chunks"):
        other.to_zarr(str(target), resume=True)
    assert files(target) == before
    out = seed_merge(seed, tmp_path / "wd2").to_zarr(str(target), resume=True)  # same request: nothing to do
    np.testing.assert_array_equal(out[:], expected)
    assert files(target) == before


def test_second_writer_in_threads_fails_fast(seed, expected, tmp_path, monkeypatch):
    monkeypatch.setenv("LAZYMERGE_FAULT_DELAY", "0.3")  # the first run lasts a few seconds
    target = tmp_path / "out.zarr"
    first, second = seed_merge(seed, tmp_path / "wd1"), seed_merge(seed, tmp_path / "wd2")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            first.to_zarr(str(target), executor=get_executor("threads", max_workers=2))
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        while not (target / LOCK_KEY).exists():
            assert thread.is_alive(), errors  # finished or failed before the second writer could try
            time.sleep(0.01)
        t0 = time.monotonic()
        with pytest.raises(OutputLockedError, match=rf"another run .*pid {os.getpid()}"):
            second.to_zarr(str(target), resume=True)
        assert time.monotonic() - t0 < 5
        assert thread.is_alive()  # failed while the first was still writing
    finally:
        thread.join()
    assert not errors
    np.testing.assert_array_equal(zarr.open_array(str(target), mode="r")[:], expected)
    assert complete(str(target)) is True and not (target / LOCK_KEY).exists()


def test_second_writer_in_another_process_fails_fast(seed, tmp_path):
    target = tmp_path / "out.zarr"
    second = seed_merge(seed, tmp_path / "wd2", chunk=64)
    env = {**os.environ, "LAZYMERGE_FAULT_DELAY": "0.1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "tests.support.write_seed",
        str(seed),
        str(tmp_path / "wd1"),
        str(target),
        "threads",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        while not (target / LOCK_KEY).exists():
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.02)
        holder = json.loads((target / LOCK_KEY).read_text())
        with pytest.raises(OutputLockedError, match=rf"pid {proc.pid}"):
            second.to_zarr(str(target))
        assert proc.poll() is None and holder["pid"] == proc.pid
    finally:
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    np.testing.assert_array_equal(zarr.open_array(str(target), mode="r")[:], second.array.compute())
    assert len(files(target / "c")) == 56
    assert complete(str(target)) is True and not (target / LOCK_KEY).exists()


def test_expired_lease_is_taken_over(seed, expected, tmp_path):
    target = tmp_path / "out.zarr"
    target.mkdir()
    lease = {"run": "old", "host": "elsewhere", "pid": 1, "since": "then", "expires": time.time() + 60}
    (target / LOCK_KEY).write_text(json.dumps(lease))
    r = seed_merge(seed, tmp_path / "wd")
    with pytest.raises(OutputLockedError, match="run old on host elsewhere"):
        r.to_zarr(str(target))
    (target / LOCK_KEY).write_text(json.dumps({**lease, "expires": time.time() - 1}))
    np.testing.assert_array_equal(r.to_zarr(str(target))[:], expected)
    assert not (target / LOCK_KEY).exists()


class FullDisk(zarr.storage.WrapperStore):
    """A store whose disk fills up after ``room`` chunk writes."""

    def __init__(self, store, room: int) -> None:
        super().__init__(store)
        self.room = room

    async def set(self, key, value):
        if "/c/" in f"/{key}":
            self.room -= 1
            if self.room < 0:
                raise OSError(errno.ENOSPC, "No space left on device", key)
        await self._store.set(key, value)


def test_full_disk_is_a_typed_error_and_not_complete(seed, tmp_path):
    store = FullDisk(zarr.storage.LocalStore(str(tmp_path / "out.zarr")), room=5)
    with pytest.raises(OutputWriteError, match="No space left on device.*resume=True"):
        seed_merge(seed, tmp_path / "wd").to_zarr(store, retries=0)
    assert complete(str(tmp_path / "out.zarr")) is False
    assert not (tmp_path / "out.zarr" / LOCK_KEY).exists()


def int_store(make_store, dtype: str) -> Path:
    """Two overlapping sources in two UTM zones, random values over ``dtype``'s positive range."""
    rng = np.random.default_rng(7)
    top = np.iinfo(dtype).max if np.dtype(dtype).kind in "iu" else 65535

    def data() -> np.ndarray:
        return rng.integers(1, top, (200, 200)).astype(dtype)

    return make_store(
        [
            ("a", "EPSG:32618", (10.0, 0.0, 503000.0, 0.0, -10.0, 6001000.0), data()),
            ("b", "EPSG:32617", (10.0, 0.0, 896000.0, 0.0, -10.0, 6018000.0), data()),
        ],
        meta=False,
    )


# uint16 with overviews: test_uint16_written_on_threads_resumes_on_processes
@pytest.mark.parametrize(("dtype", "nodata"), [("uint8", 0), ("int16", -1), ("float32", None)])
def test_integer_outputs_with_overviews(make_store, tmp_path, dtype, nodata):
    r = merge(
        int_store(make_store, "uint16" if dtype == "float32" else dtype),
        crs="EPSG:32618",
        bbox=BBOX,
        resolution=12.5,
        chunk_size=(64, 64),
        dtype=dtype,
        nodata=nodata,
    )
    expected = r.array.compute()
    empty = np.isnan(expected) if nodata is None else expected == nodata
    assert empty.any() and not empty.all()
    out = r.to_zarr(str(tmp_path / "o.zarr"), overviews=2)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out[:], expected)
    level = zarr.open_array(str(tmp_path / "o.zarr"), path="data/2", mode="r")
    np.testing.assert_array_equal(level[:], expected[::4, ::4])
    for arr in (out, level):
        fill = arr.metadata.fill_value
        assert np.isnan(fill) if nodata is None else fill == nodata
    assert complete(str(tmp_path / "o.zarr")) is True


def int_merge(make_store, tmp_path, dtype: str, nodata: int, resolution: float) -> Any:
    """The merge of int_store's sources as ``dtype`` with ``nodata``, with a work_dir for other executors."""
    return merge(
        int_store(make_store, dtype),
        crs="EPSG:32618",
        bbox=BBOX,
        resolution=resolution,
        chunk_size=(64, 64),
        dtype=dtype,
        nodata=nodata,
        spec=seed_spec(tmp_path / "wd"),
    )


def test_uint16_written_on_threads_resumes_on_processes(make_store, tmp_path):
    r = int_merge(make_store, tmp_path, "uint16", 0, 12.5)
    target = tmp_path / "o.zarr"
    r.to_zarr(str(target), overviews=1)
    chunks = sorted(p for p in (target / "data").rglob("c/**/*") if p.is_file())
    assert len(chunks) == 35 + 35  # 5 x 7 blocks per level (level 1 has half-size chunks)
    for p in chunks[::3]:
        p.unlink()  # as if the run had been killed mid-way (base and overview chunks)
    zarr.open_group(str(target), mode="r+").attrs[COMPLETE] = False
    out = r.to_zarr(str(target), resume=True, overviews=1, executor=get_executor("processes", max_workers=2))
    expected = r.array.compute()
    np.testing.assert_array_equal(out[:], expected)
    np.testing.assert_array_equal(zarr.open_array(str(target), path="data/1")[:], expected[::2, ::2])
    assert complete(str(target)) is True


@pytest.mark.slow
def test_int16_written_on_lithops_resumes_on_dask(make_store, tmp_path, monkeypatch):
    """The other executors write integer outputs too: int16 with a negative nodata and overviews from
    Lithops (localhost), a killed run resumed on a Dask cluster."""
    from lazymerge.executors.dask import local_cluster

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.lithops: everything comes from lazymerge's config
    r = int_merge(make_store, tmp_path, "int16", -1, 25.0)
    expected = r.array.compute()
    assert (expected == -1).any() and not (expected == -1).all()
    target = tmp_path / "o.zarr"
    r.to_zarr(str(target), overviews=1, executor=get_executor("lithops"))
    np.testing.assert_array_equal(zarr.open_array(str(target), path="data/0")[:], expected)
    chunks = sorted(p for p in (target / "data").rglob("c/**/*") if p.is_file())
    for p in chunks[::2]:
        p.unlink()  # as if the run had been killed mid-way
    zarr.open_group(str(target), mode="r+").attrs[COMPLETE] = False
    with local_cluster(n_workers=2, memory_limit="1GB") as cluster:
        executor = get_executor("dask", address=cluster.scheduler_address)
        out = r.to_zarr(str(target), resume=True, overviews=1, executor=executor)
    np.testing.assert_array_equal(out[:], expected)
    level = zarr.open_array(str(target), path="data/1", mode="r")
    np.testing.assert_array_equal(level[:], expected[::2, ::2])
    assert out.metadata.fill_value == -1 and level.metadata.fill_value == -1
    assert complete(str(target)) is True


@pytest.mark.slow
def test_s3_lease_is_exclusive_and_sources_are_protected(seed, expected, tmp_path, monkeypatch):
    from tests.support.s3_server import BUCKET, start, upload

    proc, server = start()
    try:
        target = open_target(server.store("out.zarr"))
        first, second = Lease(target), Lease(target)
        first.acquire()
        with pytest.raises(OutputLockedError, match=first.run):
            second.acquire()
        first.release()
        out = seed_merge(seed, tmp_path / "wd").to_zarr(server.store("out.zarr"))
        np.testing.assert_array_equal(out[:], expected)
        assert out.attrs[COMPLETE] is True
        with pytest.raises(OutputExistsError, match="overwrite=True"):
            seed_merge(seed, tmp_path / "wd").to_zarr(server.store("out.zarr"))
        upload(server, seed, "seed.zarr")
        r = seed_merge(server.store("seed.zarr"), tmp_path / "wd")
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        for inside in (
            server.store("seed.zarr/mosaic"),
            f"s3://{BUCKET}/seed.zarr",
            f"s3://{BUCKET}/seed.zarr/m",
        ):
            with pytest.raises(OutputExistsError, match="inside the source store"):
                r.to_zarr(inside, overwrite=True)
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_writes_uint16_and_overwrites_only_when_told(make_store, tmp_path, capsys):
    store = int_store(make_store, "uint16")
    out = tmp_path / "o.zarr"
    bbox = ",".join(str(v) for v in BBOX)
    args = ["run", str(store), "--crs", "EPSG:32618", "--bbox", bbox, "--resolution", "12.5"]
    args += [
        "--chunk-size",
        "64,64",
        "--dtype",
        "uint16",
        "--nodata",
        "0",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    expected = merge(
        store, crs="EPSG:32618", bbox=BBOX, resolution=12.5, chunk_size=(64, 64), dtype="uint16", nodata=0
    )
    written = zarr.open_array(str(out), mode="r")
    assert written.dtype == np.uint16 and written.metadata.fill_value == 0
    np.testing.assert_array_equal(written[:], expected.array.compute())
    capsys.readouterr()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0 and complete(str(out)) is True


STALE = {"run": "dead", "host": "elsewhere", "pid": 1, "since": "then", "expires": 0}


def race_takeovers(tmp_path: Path, put_stale, server_args: list[str], racers: int = 3, rounds: int = 5):
    """``racers`` processes take over the same stale lease at once, ``rounds`` times: winners per round."""
    sync = tmp_path / "sync"
    sync.mkdir()
    argv = [sys.executable, "-m", "tests.support.lease_racer", str(sync), str(rounds), *server_args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) for _ in range(racers)
    ]
    try:
        for p in procs:
            assert json.loads(p.stdout.readline()) == {"ready": True}
        winners = []
        for k in range(rounds):
            put_stale(f"race-{k}.zarr/{LOCK_KEY}", json.dumps(STALE).encode())
            (sync / f"go-{k}").touch()
            results = [json.loads(p.stdout.readline()) for p in procs]
            winners.append(sum(r["won"] for r in results))
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    return winners


def test_stale_lease_takeover_has_one_winner_locally(tmp_path):
    """Processes racing to take over the same expired lease on local disk: exactly one wins, every round."""

    def put_stale(key: str, data: bytes) -> None:
        path = tmp_path / "sync" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    assert race_takeovers(tmp_path, put_stale, []) == [1] * 5


@pytest.mark.slow
def test_stale_lease_takeover_has_one_winner_on_s3(tmp_path):
    """The same race on S3 (moto): the takeover is a put conditional on the stale lease's ETag."""
    import obstore

    from tests.support.s3_server import start

    proc, server = start()
    try:
        store = server.store()
        args = [json.dumps([server.endpoint, server.key_id, server.secret])]
        assert race_takeovers(tmp_path, lambda k, d: obstore.put(store, k, d), args) == [1] * 5
    finally:
        proc.terminate()
        proc.wait(10)


FULL_DISK_CHILD = """
import json, resource, signal, sys
sys.path.insert(0, {root!r})
from lazymerge.api import merge
result = merge({source!r}, **json.loads({request!r}))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    result.to_zarr({out!r}, retries=0)
    print(json.dumps({{"error": None}}))
except Exception as exc:
    print(json.dumps({{"error": type(exc).__name__, "message": str(exc)}}))
"""


def test_real_file_size_limit_is_a_typed_error_and_resumes(make_store, tmp_path):
    """A real OS limit, not a store wrapper: the writing process runs under RLIMIT_FSIZE (SIGXFSZ ignored),
    so the chunks of random data fail with EFBIG. OutputWriteError names the target, the output is not
    complete, the lease is released; resuming with room gives the output of a clean run, byte for byte."""
    source = str(int_store(make_store, "uint16"))
    request = {"crs": "EPSG:32618", "bbox": BBOX, "resolution": 12.5, "chunk_size": [64, 64],
               "dtype": "uint16", "nodata": 0}  # fmt: skip
    clean = tmp_path / "clean.zarr"
    merge(source, **request).to_zarr(str(clean))
    sizes = sorted(p.stat().st_size for p in (clean / "c").rglob("*") if p.is_file())
    limit = (clean / "zarr.json").stat().st_size + 1024  # the metadata fits, the full chunks do not
    assert sum(s > limit for s in sizes) >= 2, sizes
    out = tmp_path / "out.zarr"
    code = FULL_DISK_CHILD.format(root=str(ROOT), source=source, request=json.dumps(request), out=str(out),
                                  limit=limit)  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["error"] == "OutputWriteError", (report, run.stderr[-2000:])
    assert str(out) in report["message"] and "File too large" in report["message"]
    assert complete(str(out)) is False
    assert not (out / LOCK_KEY).exists()
    assert len(files(out / "c")) < len(sizes)
    merge(source, **request).to_zarr(str(out), resume=True)
    assert complete(str(out)) is True
    assert files(out / "c") == files(clean / "c")
