"""Source window reads: only the chunks a window touches, each decoded once per merge while cached."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import zarr
from affine import Affine
from zarr.storage import LocalStore

from lazymerge.catalog.sources import Level
from lazymerge.contract.budget import cache_bytes
from lazymerge.contract.tasks import TaskRow
from lazymerge.errors import SettingError
from lazymerge.kernel import reads
from lazymerge.kernel.chunkio import codec
from lazymerge.kernel.reads import read_window

CHUNK = 128


class RecordingStore(LocalStore):
    """A LocalStore that records the chunk keys it is asked for."""

    def __init__(self, root: str) -> None:
        super().__init__(root, read_only=True)
        self.keys: list[str] = []

    async def get(self, key, prototype, byte_range=None):
        if "/c/" in key:
            self.keys.append(key)
        return await super().get(key, prototype, byte_range)


@pytest.fixture
def source(tmp_path):
    data = np.random.default_rng(3).random((1000, 1000), dtype="f4")
    zarr.create_array(LocalStore(str(tmp_path)), name="src", data=data, chunks=(CHUNK, CHUNK))
    return RecordingStore(str(tmp_path)), data


def task(window: tuple[int, int, int, int]) -> TaskRow:
    level = Level("src", tuple(Affine.identity())[:6], (1000, 1000), "float32", None, crs="EPSG:32618")
    return TaskRow(level, window)


def chunks_of(window: tuple[int, int, int, int]) -> set[str]:
    r0, r1, c0, c1 = window
    rows, cols = range(r0 // CHUNK, -(-r1 // CHUNK)), range(c0 // CHUNK, -(-c1 // CHUNK))
    return {f"src/c/{i}/{j}" for i in rows for j in cols}


def test_window_reads_each_touched_chunk_once_per_merge(source):
    store, data = source
    first, second = (100, 400, 50, 300), (300, 600, 250, 500)  # overlapping windows
    for window in (first, second):
        r0, r1, c0, c1 = window
        np.testing.assert_array_equal(read_window(store, task(window), scope="merge-1"), data[r0:r1, c0:c1])
    assert len(store.keys) == len(set(store.keys))  # no chunk fetched twice
    assert set(store.keys) == chunks_of(first) | chunks_of(second)
    store.keys.clear()
    read_window(store, task(second), scope="merge-2")  # another merge does not see merge-1's chunks
    assert set(store.keys) == chunks_of(second)


def test_array_edges_and_no_scope(source):
    store, data = source
    edge = (900, 1000, 950, 1000)  # partial chunks at the array's end
    np.testing.assert_array_equal(read_window(store, task(edge), scope="m"), data[900:, 950:])
    store.keys.clear()
    for _ in range(2):  # without a scope nothing is cached
        np.testing.assert_array_equal(read_window(store, task(edge)), data[900:, 950:])
    assert sorted(store.keys) == sorted(2 * list(chunks_of(edge)))


def test_cache_stays_within_its_budget(source, monkeypatch):
    store, data = source
    budget = 5 * CHUNK * CHUNK * 4  # five float32 chunks
    monkeypatch.setattr(reads, "SOURCE_CACHE_BYTES", budget)
    for r in range(0, 1000, 200):
        window = (r, r + 200, 0, 500)
        got = read_window(store, task(window), scope="small")
        np.testing.assert_array_equal(got, data[r : r + 200, :500])
        assert reads._chunk_bytes <= budget
    store.keys.clear()
    read_window(store, task((800, 1000, 0, 500)), scope="small")  # the most recent chunks were kept
    assert len(store.keys) < len(chunks_of((800, 1000, 0, 500)))


CODECS = {  # create_array options; True: lazymerge decodes these chunks itself (numcodecs)
    "zstd (default)": ({}, True),
    "blosc": ({"compressors": zarr.codecs.BloscCodec()}, True),
    "gzip": ({"compressors": zarr.codecs.GzipCodec()}, True),
    "uncompressed": ({"compressors": None}, True),
    "int16": ({"dtype": "i2"}, True),
    "big-endian": ({"serializer": zarr.codecs.BytesCodec(endian="big")}, False),
    "sharded": ({"shards": (128, 128)}, False),
    "zarr v2": ({"zarr_format": 2}, False),
}


@pytest.mark.parametrize("name", list(CODECS))
def test_windows_equal_zarrs_reads_for_every_encoding(tmp_path, name):
    """Chunks decoded directly (or through zarr where lazymerge does not), chunks never written (the
    fill value) and partial chunks at the array's edges: every window equals zarr's own read."""
    options, direct = CODECS[name]
    dtype = options.pop("dtype", "f4")
    data = (np.random.default_rng(5).random((300, 260)) * 1000).astype(dtype)
    arr = zarr.create_array(
        LocalStore(str(tmp_path)), name="src", shape=data.shape, dtype=dtype, chunks=(64, 64), fill_value=-7,
        **options,
    )  # fmt: skip
    arr[:200] = data[:200]  # rows from 256 on are never written
    expected = arr[:]
    assert (expected[256:] == -7).all()
    store = LocalStore(str(tmp_path), read_only=True)
    assert (codec(reads.open_source(store, "src")) is not None) == direct
    for window in ((0, 300, 0, 260), (10, 90, 50, 250), (180, 300, 200, 260), (63, 65, 63, 65)):
        r0, r1, c0, c1 = window
        got = read_window(store, task(window), scope=f"codecs-{name}")
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected[r0:r1, c0:c1])


@pytest.mark.parametrize("value", ["lots", "-5", "nan", "inf"])
def test_bad_cache_size_names_the_setting_and_the_fix(value):
    with pytest.raises(SettingError, match=rf"LAZYMERGE_CHUNK_CACHE_MB='{value}'.*such as 128, or 0"):
        cache_bytes(value)


def test_cache_size_setting():
    assert cache_bytes(None) == 128 << 20 and cache_bytes("0") == 0
    assert cache_bytes("1.5") == 3 << 19


def test_chunks_are_decoded_and_encoded_in_the_calling_thread(tmp_path):
    """Whole-chunk decoding and encoding run in the worker's own thread, not on zarr's event loop: numcodecs
    releases the GIL, so workers (de)compress in parallel; on the loop's one thread they would queue."""
    import threading

    import numcodecs

    from lazymerge.kernel.chunkio import get_chunks, set_chunk

    threads: list[str] = []

    class Recording(numcodecs.Zstd):  # the codec lazymerge uses, recording where it runs
        def decode(self, buf, out=None):
            threads.append(threading.current_thread().name)
            return super().decode(buf, out)

        def encode(self, buf):
            threads.append(threading.current_thread().name)
            return super().encode(buf)

    data = np.random.default_rng(5).random((256, 256), dtype="f4")
    arr = zarr.create_array(
        LocalStore(str(tmp_path)), name="a", shape=data.shape, dtype="f4", chunks=(128, 128)
    )
    zstd = Recording(level=codec(arr).level)

    def work() -> None:
        set_chunk(arr, zstd, (1, 0), data[128:, :128])
        (got,) = get_chunks(arr, zstd, [(1, 0)])
        np.testing.assert_array_equal(got, data[128:, :128])

    worker = threading.Thread(target=work, name="worker-thread")
    worker.start()
    worker.join()
    assert threads == ["worker-thread", "worker-thread"]
    np.testing.assert_array_equal(arr[128:, :128], data[128:, :128])  # zarr reads what was written


class SlowStore(RecordingStore):
    """A RecordingStore whose chunk reads take 50 ms, so concurrent window reads overlap."""

    async def get(self, key, prototype, byte_range=None):
        if "/c/" in key:
            await asyncio.sleep(0.05)
        return await super().get(key, prototype, byte_range)


def test_concurrent_windows_fetch_a_shared_chunk_once(source, tmp_path):
    _, data = source
    store = SlowStore(str(tmp_path))
    windows = [(0, 300, 0, 300), (100, 400, 100, 400), (200, 500, 0, 300), (0, 300, 200, 500)]
    with ThreadPoolExecutor(len(windows)) as pool:
        got = list(pool.map(lambda w: read_window(store, task(w), scope="concurrent"), windows))
    for (r0, r1, c0, c1), window in zip(windows, got, strict=True):
        np.testing.assert_array_equal(window, data[r0:r1, c0:c1])
    assert sorted(store.keys) == sorted(set().union(*map(chunks_of, windows)))  # each chunk once
    assert not reads._fetching


def test_a_failed_shared_fetch_reaches_every_waiting_reader(source, tmp_path):
    _, data = source

    class Failing(SlowStore):
        async def get(self, key, prototype, byte_range=None):
            if key.endswith("c/1/1"):
                await asyncio.sleep(0.05)
                raise OSError(f"cannot read {key}")
            return await super().get(key, prototype, byte_range)

    store = Failing(str(tmp_path))
    windows = [(100, 300, 100, 300), (150, 250, 150, 250)]  # both need chunk (1, 1)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(read_window, store, task(w), "failing") for w in windows]
    for future in futures:
        with pytest.raises(OSError, match="c/1/1"):
            future.result()
    assert not reads._fetching


def test_a_forked_child_does_not_wait_for_its_parents_fetches(source, tmp_path):
    """A fetch in flight in the parent when a worker forks is not the child's: the child reads the chunk."""
    import multiprocessing

    _, data = source
    store = SlowStore(str(tmp_path))
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(read_window, store, task((0, 100, 0, 100)), "forked")
        while not reads._fetching:  # the parent's fetch is in flight
            time.sleep(0.001)
        ctx = multiprocessing.get_context("fork")
        child = ctx.Process(target=_read_in_child, args=(store, data), daemon=True)
        child.start()
        child.join(30)
        if child.is_alive():  # it waited for the parent's fetch
            child.kill()
        pending.result()
    assert child.exitcode == 0


def _read_in_child(store, data) -> None:
    np.testing.assert_array_equal(
        read_window(store, task((0, 100, 0, 100)), scope="forked"), data[:100, :100]
    )
