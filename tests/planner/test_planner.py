"""The plan table: both discovery paths agree, queries are batched, priority follows sortby."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import zarr

from lazymerge.api import merge, plan
from lazymerge.catalog.meta import MetaTable
from lazymerge.demo import SEED_TARGET
from lazymerge.errors import EmptyPlanWarning

SEED = {**SEED_TARGET, "resolution": 10.0, "bands": "data"}
COLUMNS = [
    "band",
    "chunk_row",
    "chunk_col",
    "source",
    "source_id",
    "priority",
    "level",
    "src_row0",
    "src_row1",
    "src_col0",
    "src_col1",
]


def test_both_paths_give_the_same_table(random_store):
    a = plan(str(random_store), chunk_size=(100, 100), datafusion=True, sortby="-id", **SEED)
    b = plan(str(random_store), chunk_size=(100, 100), datafusion=False, sortby="-id", **SEED)
    assert a.table.column_names == COLUMNS
    assert a.n_pairs > 20
    assert a.table.equals(b.table)
    assert a.levels.equals(b.levels)


def test_table_order_and_source_rows(random_store):
    p = plan(str(random_store), chunk_size=(100, 100), datafusion=True, sortby="-id", **SEED)
    t = p.table.to_pydict()
    keys = list(zip(t["band"], t["chunk_row"], t["chunk_col"], t["priority"], strict=True))
    assert keys == sorted(keys)  # by chunk, then priority
    ids = zarr.open_array(str(random_store / "meta" / "id"), mode="r")[:]
    assert [ids[s] for s in t["source"]] == t["source_id"]  # source = the /meta row
    # -id: s7 has the highest priority
    assert {sid: pr for sid, pr in zip(t["source_id"], t["priority"], strict=True)}["s7"] == 0
    for r0, r1, c0, c1 in zip(t["src_row0"], t["src_row1"], t["src_col0"], t["src_col1"], strict=True):
        assert 0 <= r0 < r1 <= 300 and 0 <= c0 < c1 <= 300


def test_queries_are_batched(random_store, monkeypatch):
    """The number of SQL queries does not grow with the number of chunks."""
    calls = []
    original = MetaTable.sql

    def counting(self, query, *args):
        calls.append(query)
        return original(self, query, *args)

    monkeypatch.setattr(MetaTable, "sql", counting)
    counts = []
    for chunk in (500, 50):
        calls.clear()
        p = plan(str(random_store), chunk_size=(chunk, chunk), datafusion=True, **SEED)
        counts.append((len(calls), p.grid.nchunks[0] * p.grid.nchunks[1]))
    assert counts[0][1] == 4 and counts[1][1] == 320
    assert counts[0][0] == counts[1][0] <= 3


@pytest.mark.parametrize("datafusion", [True, False])
def test_sortby_descending_and_lists(seed_store, datafusion):
    """Earlier sources win: '-id' puts the UTM 18N tiles first, so tile c (300) wins over d (400)."""
    a = merge(
        str(seed_store), chunk_size=(256, 256), datafusion=datafusion, sortby="-id", **SEED
    ).array.compute()
    assert a[0, 300] == 300
    b = merge(
        str(seed_store), chunk_size=(256, 256), datafusion=datafusion, sortby=["shape_x", "-id"], **SEED
    ).array.compute()
    assert b[0, 300] == 300  # shape_x 500 (18N tiles) sorts before 541 (17N tiles)
    c = merge(
        str(seed_store), chunk_size=(256, 256), datafusion=datafusion, sortby=["-shape_x"], **SEED
    ).array.compute()
    assert c[0, 300] == 400


def test_no_sortby_keeps_table_order(seed_store):
    t = plan(str(seed_store), chunk_size=(256, 256), datafusion=True, **SEED).table.to_pydict()
    assert all(s == p for s, p in zip(t["source"], t["priority"], strict=True))


def test_bbox_outside_every_source_plans_nothing(seed_store):
    far = {**SEED, "bbox": (100000.0, 100000.0, 101000.0, 101000.0), "chunk_size": (50, 50)}
    with pytest.warns(EmptyPlanWarning, match=r"meets none of the 4 source\(s\).*all nodata"):
        p = plan(str(seed_store), datafusion=True, **far)
    assert p.n_pairs == 0
    with pytest.warns(EmptyPlanWarning):
        r = merge(str(seed_store), datafusion=True, **far)
    assert np.isnan(r.array.compute()).all()


@pytest.mark.parametrize("datafusion", [True, False])
def test_merge_inside_a_running_event_loop(seed_store, datafusion):
    """As in a notebook: merge and plan are synchronous and work while a loop is running."""

    async def notebook_cell():
        asyncio.get_running_loop()
        return merge(str(seed_store), chunk_size=(256, 256), datafusion=datafusion, sortby="id", **SEED)

    result = asyncio.run(notebook_cell())
    a = result.array.compute()
    assert a[0, 0] == 300 and a[-1, 0] == 100
