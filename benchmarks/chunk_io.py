"""Source-chunk I/O: lazymerge's direct chunk reads/writes against zarr's, and what the chunk cache saves.

    python benchmarks/chunk_io.py

1. Per chunk, process CPU time (best of 5 passes over 16 chunks, local disk): reading a 512 x 512 float32
   chunk of random data (zarr's default zstd) through zarr (``arr[chunk]``) and through
   ``lazymerge.kernel.chunkio.get_chunks``;
  writing a 1024 x 1024 output block through zarr (``arr[block] = ...``)
   and through ``lazymerge.kernel.chunkio.set_chunk``. Both sides use the same numcodecs codec.
2. Chunks fetched when a grid of 1024 px target blocks reads windows (each 1100 px: a block plus a halo)
   over 512 px source chunks, in row-major block order: with the per-worker chunk cache (one merge's scope)
   and without it.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import zarr
from affine import Affine
from zarr.storage import LocalStore

from lazymerge.catalog.sources import Level
from lazymerge.contract.tasks import TaskRow
from lazymerge.kernel.chunkio import codec, get_chunks, set_chunk
from lazymerge.kernel.reads import read_window

SOURCE, CHUNK, BLOCK, HALO = 4608, 512, 1024, 38


class CountingStore(LocalStore):
    """A LocalStore that counts the chunk reads it serves."""

    def __init__(self, root: str) -> None:
        super().__init__(root, read_only=True)
        self.chunk_gets = 0

    async def get(self, key, prototype, byte_range=None):
        self.chunk_gets += "/c/" in key
        return await super().get(key, prototype, byte_range)


def cpu_per_call(fn, calls: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best / calls


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="lazymerge-chunkio-") as tmp:
        src = zarr.create_array(
            LocalStore(tmp), name="src", shape=(SOURCE,) * 2, dtype="f4", chunks=(CHUNK,) * 2
        )
        src[:] = rng.random((SOURCE, SOURCE), dtype="f4")
        keys = [(i, j) for i in range(4) for j in range(4)]
        comp = codec(src)

        def zarr_reads():
            for i, j in keys:
                src[i * CHUNK : (i + 1) * CHUNK, j * CHUNK : (j + 1) * CHUNK]

        def direct_reads():
            for key in keys:
                get_chunks(src, comp, [key])

        out = zarr.create_array(
            LocalStore(tmp), name="out", shape=(4 * BLOCK,) * 2, dtype="f4", chunks=(BLOCK,) * 2
        )
        block = rng.random((BLOCK, BLOCK), dtype="f4")

        def zarr_writes():
            for i, j in keys:
                out[i * BLOCK : (i + 1) * BLOCK, j * BLOCK : (j + 1) * BLOCK] = block

        def direct_writes():
            for key in keys:
                set_chunk(out, codec(out), key, block)

        n_keys = len(keys)
        rows = [
            ("read 512x512 chunk", cpu_per_call(zarr_reads, n_keys), cpu_per_call(direct_reads, n_keys)),
            ("write 1024x1024 block", cpu_per_call(zarr_writes, n_keys), cpu_per_call(direct_writes, n_keys)),
        ]
        print(f"{'per chunk, CPU ms':24} {'zarr':>8} {'lazymerge':>10} {'saved':>8}")
        for name, z, d in rows:
            print(f"{name:24} {1e3 * z:8.2f} {1e3 * d:10.2f} {1e3 * (z - d):8.2f}")

        n = SOURCE // BLOCK
        windows = [
            (max(r * BLOCK - HALO, 0), min((r + 1) * BLOCK + HALO, SOURCE),
             max(c * BLOCK - HALO, 0), min((c + 1) * BLOCK + HALO, SOURCE))
            for r in range(n) for c in range(n)
        ]  # fmt: skip
        identity = tuple(Affine.identity())[:6]
        level = Level("src", identity, (SOURCE, SOURCE), "float32", None, crs="EPSG:32618")
        counts = {}
        for label, scope in (("with the chunk cache", "bench"), ("without it", "")):
            store = CountingStore(tmp)
            for window in windows:
                read_window(store, TaskRow(level, window), scope=scope)
            counts[label] = store.chunk_gets
        distinct = (SOURCE // CHUNK) ** 2
        print(
            f"\n{n} x {n} blocks of {BLOCK} px (windows {BLOCK + 2 * HALO} px) over {CHUNK} px chunks "
            f"({distinct} chunks under them):"
        )
        for label, count in counts.items():
            print(f"  chunks fetched {label:22} {count:5d}")
        print(
            f"\nrandom float32, zarr {zarr.__version__} default codecs "
            f"({', '.join(type(c).__name__ for c in src.metadata.codecs)}), local disk"
        )


if __name__ == "__main__":
    from benchmarks.provenance import header

    print(header(), flush=True)
    main()
