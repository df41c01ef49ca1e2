"""Small tasks: what a task carries is the same size for a store of 10 sources and one of 10,000."""

from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pyarrow as pa
import shapely
import zarr

from lazymerge.catalog.layout import META_GROUP
from lazymerge.catalog.meta import _write_table, write_meta
from tests.support.executor_cases import seed_spec

TRANSFORM = (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)


def store_with(make_store, n_real: int, n_total: int):
    """``n_real`` small UTM 31N sources on disk, and a /meta of ``n_total`` rows: the real ones plus
    synthetic sources elsewhere on Earth (only /meta knows them; the planner filters them out by bbox)."""
    rng = np.random.default_rng(0)
    sources = []
    for i in range(n_real):
        a, b, c, d, e, f = TRANSFORM
        data = rng.random((32, 32)).astype("f4")
        sources.append((f"s{i:05d}", "EPSG:32631", (a, b, c + 160 * i, d, e, f), data))
    path = make_store(sources, meta=False)
    table = write_meta(path)
    extra = n_total - n_real
    rows = {
        name: pa.array(np.repeat(table[name].to_numpy(zero_copy_only=False)[:1], extra))
        for name in table.column_names
    }
    rows["id"] = pa.array([f"far{i:05d}" for i in range(extra)])
    lon = rng.uniform(-170, 170, extra)
    rows["bbox"] = pa.array(shapely.to_wkb(shapely.box(lon, -60.0, lon + 0.1, -59.9)).tolist(), pa.binary())
    # each far source's grid is its bbox (0.1 degree, 100 x 100 px in EPSG:4326), as /meta must agree
    rows["proj:code"], rows["proj:epsg"] = pa.array(["EPSG:4326"] * extra), pa.array([4326] * extra)
    for k, v in enumerate((0.001, 0.0, None, 0.0, -0.001, -59.9)):
        rows[f"transform_{k}"] = pa.array(lon if v is None else np.full(extra, v))
    rows["shape_x"] = rows["shape_y"] = pa.array(np.full(extra, 100))
    big = pa.concat_tables([table, pa.table(rows).cast(table.schema)])
    root = zarr.open_group(str(path), mode="r+")
    del root[META_GROUP]
    _write_table(root.create_group(META_GROUP), big)
    return path


def task_payload(path, tmp_path) -> tuple[int, int, int]:
    """(pickled KernelTask, cloudpickled function+config of the map_blocks op, plan rows) of a merge."""
    from lazymerge.api import merge

    r = merge(
        path,
        crs="EPSG:32631",
        bbox=(500000, 4999000, 501600, 5000000),
        resolution=10.0,
        chunk_size=(64, 64),
        datafusion=True,
        spec=seed_spec(tmp_path),
    )
    (op,) = [
        d["primitive_op"]
        for n, d in r.array.plan().dag.nodes(data=True)
        if d.get("primitive_op") is not None and n != "create-arrays"
    ]
    shipped = cloudpickle.dumps((op.pipeline.function, op.pipeline.config))
    return len(pickle.dumps(r.task)), len(shipped), r.plan.n_pairs


def test_task_payload_does_not_grow_with_sources(make_store, tmp_path):
    small = store_with(make_store, 10, 10)
    big = store_with(make_store, 10, 10_000)
    assert zarr.open_array(str(big / META_GROUP / "id")).shape == (10_000,)
    task_s, shipped_s, pairs_s = task_payload(small, tmp_path / "a")
    task_b, shipped_b, pairs_b = task_payload(big, tmp_path / "b")
    print(f"task {task_s} B vs {task_b} B; op payload {shipped_s} B vs {shipped_b} B")
    assert pairs_s == pairs_b >= 10  # the same 10 sources contribute, some to two chunks
    assert abs(task_b - task_s) <= 16 and abs(shipped_b - shipped_s) <= 16  # path lengths only
    assert shipped_b < 20_000  # neither the index, /meta nor the plan ride along
