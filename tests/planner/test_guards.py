"""DataFusion is never handed input it crashes on: where= is bounded, empty tables are handled, and a
Rust panic that still happens becomes a typed error."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pyarrow as pa
import pytest
import zarr
from datafusion import SessionContext
from hypothesis import given, settings
from hypothesis import strategies as st

from lazymerge import plan
from lazymerge.catalog.meta import write_meta
from lazymerge.errors import EmptyPlanWarning, InvalidWhereError, QueryPanicError, no_panic
from lazymerge.planner.filters import (
    MAX_WHERE_CHARS,
    MAX_WHERE_DEPTH,
    MAX_WHERE_OPERATORS,
    MAX_WHERE_TERMS,
    check_where_size,
    where_mask,
)
from lazymerge.planner.pairs import SourceSet
from lazymerge.planner.windows import Candidates
from tests.support.stores import add_source

TARGET = {"crs": "EPSG:32618", "bbox": (500000.0, 5999000.0, 501000.0, 6001000.0), "resolution": 10.0}


@pytest.fixture
def clouds(tmp_path):
    """Two sources with a cloud_cover column in /meta."""
    path = tmp_path / "clouds.zarr"
    root = zarr.open_group(str(path), mode="w")
    rng = np.random.default_rng(0)
    for k, cover in enumerate((5, 30)):
        add_source(
            root,
            f"s{k}",
            "EPSG:32618",
            (10.0, 0.0, 500000.0, 0.0, -10.0, 6001000.0 - 500 * k),
            rng.random((150, 100), dtype="f4"),
        )
        root[f"s{k}"].attrs["cloud_cover"] = cover
    write_meta(path)
    return path


@pytest.mark.parametrize(
    "where, what",
    [
        (" OR ".join(f"a = {i}" for i in range(MAX_WHERE_TERMS + 1)), "terms"),
        ("a > 0 AND " + " and ".join(f"b <> {i}" for i in range(MAX_WHERE_TERMS)), "terms"),
        ("a" + " = a" * (MAX_WHERE_TERMS + 1), "comparisons"),
        ("a" + " + 1" * (MAX_WHERE_OPERATORS + 1) + " > 0", "arithmetic operators"),
        ("(" * (MAX_WHERE_DEPTH + 1) + "a > 0" + ")" * (MAX_WHERE_DEPTH + 1), "nests"),
        ("a IN (" + ",".join(["1"] * (MAX_WHERE_CHARS // 2)) + ")", "characters long"),
    ],
)
def test_where_beyond_the_limits_is_refused(where, what):
    with pytest.raises(InvalidWhereError, match=what):
        check_where_size(where)


def test_where_within_the_limits_is_accepted():
    """Up to each limit, and text inside quotes or comments does not count; IN lists stay allowed."""
    table = pa.table({"a": [1, 2, 3], "s": ["x OR y", "a+b", "z"]})
    at_limit = " OR ".join(f"a = {i}" for i in range(MAX_WHERE_TERMS - 1))
    assert where_mask(table, at_limit).tolist() == [True, True, True]
    quoted = "s = '" + " OR ".join(["x"] * 1000) + "' OR s = 'a+b' -- " + "+" * 1000
    assert where_mask(table, quoted).tolist() == [False, True, False]
    in_list = "a IN (" + ",".join(str(i) for i in range(2, 100_002)) + ")"
    check_where_size(in_list)  # 100k values: allowed
    assert where_mask(table, "a IN (" + ",".join(str(i) for i in range(2, 10_002)) + ")").tolist() == [
        False,
        True,
        True,
    ]


def test_ten_thousand_or_terms_do_not_crash(clouds):
    """The where= that segfaulted inside DataFusion now fails typed; run apart, so a crash shows as a
    non-zero exit instead of killing the test run."""
    code = f"""
import sys
from lazymerge.errors import InvalidWhereError
from lazymerge import plan
where = " OR ".join(f"cloud_cover = {{i}}" for i in range(10_000))
try:
    plan({str(clouds)!r}, where=where, datafusion=True, **{TARGET!r})
except InvalidWhereError as exc:
    print("typed:", exc)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "typed: where" in done.stdout and "10000 terms" in done.stdout


@pytest.mark.parametrize("datafusion", [True, False])
def test_where_matching_no_source_warns_on_both_paths(clouds, datafusion):
    """Was a pyo3 PanicException (an empty table registered) on the DataFusion path."""
    with pytest.warns(EmptyPlanWarning, match="cloud_cover > 50"):
        p = plan(str(clouds), where="cloud_cover > 50", datafusion=datafusion, **TARGET)
    assert p.table.num_rows == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyPlanWarning)
        kept = plan(str(clouds), where="cloud_cover < 20", datafusion=datafusion, **TARGET)
    assert set(kept.table["source_id"].to_pylist()) == {"s0"}


def test_a_rust_panic_becomes_a_typed_error():
    """A real DataFusion panic (registering a partition without batches) is caught, as QueryPanicError
    naming what was being done; an ordinary exception passes through unchanged."""
    ctx = SessionContext()
    with pytest.raises(QueryPanicError, match="registering nothing"), no_panic("registering nothing"):
        ctx.register_record_batches("t", [[]])
    with pytest.raises(KeyError), no_panic("a lookup"):
        {}["missing"]


LEVEL = ["s/B/0", [10.0, 0.0, 0.0, 0.0, -10.0, 100.0], [10, 10], "uint16", 0.0, 1.0, [5, 5], 1.0, 0.0]


@pytest.mark.parametrize(
    "field, value",
    [(1, [10.0, 0.0, "x", 0.0, -10.0, 100.0]), (1, 5), (2, [10, None]), (6, "ab"), (3, 7), (1, [1.0])],
)
def test_a_bands_value_of_the_wrong_type_names_its_source(field, value):
    """Parsed many rows at once (values shared across rows), a /meta bands value holding a wrong type is
    a MetaSchemaError naming that source, never a struct or numpy error."""
    import json

    from lazymerge.errors import MetaSchemaError
    from lazymerge.planner.discover_sql import checked_bands_many

    bad = list(LEVEL)
    bad[field] = value
    texts = [json.dumps([["B", f"{s}/B", [lv]]]) for s, lv in (("good", LEVEL), ("bad", bad))]
    base, shape = np.array([LEVEL[1]] * 2), np.array([LEVEL[2]] * 2)
    assert len(checked_bands_many(texts[:1], ["good"], base[:1], shape[:1])) == 1
    with pytest.raises(MetaSchemaError, match="source 'bad'.*lazymerge:bands"):
        checked_bands_many(texts, ["good", "bad"], base, shape)


@pytest.mark.parametrize("bad_level", [0, 1])
def test_a_bad_grid_in_revisits_sharing_a_template_names_the_source(bad_level):
    """Revisits parsed once per template: a level whose grid is singular, or one row whose transform_*
    contradicts its base level, is a MetaSchemaError naming that row's source."""
    import json

    from lazymerge.errors import MetaSchemaError
    from lazymerge.planner.discover_sql import checked_bands_many

    ids = ["t1", "t2", "t3"]
    singular = [0.0, 0.0, 0.0, 0.0, 0.0, 100.0]
    levels = [[f"{{id}}/B/{i}", *LEVEL[1:]] for i in range(2)]
    levels[bad_level][1] = singular
    texts = [json.dumps([["B", f"{s}/B", levels]]).replace("{id}", s) for s in ids]
    base, shape = np.array([levels[0][1]] * 3), np.array([LEVEL[2]] * 3)
    with pytest.raises(MetaSchemaError, match="source 't1'.*not finite and invertible"):
        checked_bands_many(texts, ids, base, shape)
    good = [json.dumps([["B", f"{s}/B", [[f"{s}/B/0", *LEVEL[1:]]]]]) for s in ids]
    base = np.array([LEVEL[1]] * 3)
    base[1, 0] = 20.0  # the second row says its pixels are 20 m, its bands 10 m
    with pytest.raises(MetaSchemaError, match="source 't2'.*contradicts"):
        checked_bands_many(good, ids, base, np.array([LEVEL[2]] * 3))


def test_bands_shared_by_revisits_are_those_of_each_row():
    """Rows parsed once per template (the text without its id) give each row's own bands: ids in paths,
    ids that are also a band name or dtype, odd first characters and escaped quotes included."""
    import json

    from lazymerge.catalog.sources import bands_from_json
    from lazymerge.planner.discover_sql import checked_bands_many

    ids = ["t1", "t2", "t3", "uint16", "u", "1", "-x", ",y", 'q"a', "é", "n\x00"]

    def text(s: str, named: bool) -> str:
        lv = [f"{s}/B/{s}", *LEVEL[1:]]
        bands = [["B", f"{s}/B", [lv, [f'{s}"/{s}', *LEVEL[1:]]]]]
        return json.dumps(bands + [[s, "x", [lv]]] * named)

    texts = [text(s, s == "t3") for s in ids]
    base, shape = np.array([LEVEL[1]] * len(ids)), np.array([LEVEL[2]] * len(ids))
    got = checked_bands_many(texts, ids, base, shape)
    assert got == [bands_from_json(t) for t in texts]
    assert got[0]["B"].levels[0].path == "t1/B/t1" and got[1]["B"].levels[1].path == 't2"/t2'


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=6, unique=True),
    names=st.lists(st.text(max_size=4), min_size=1, max_size=4, unique=True),
    data=st.data(),
)
def test_a_band_looked_up_alone_is_the_rows_own(ids, names, data):
    """Any ids and band names (ids that are band names, share prefixes, hold quotes, NULs or non-ASCII):
    one band looked up first, alone, from the rows parsed once per template, is that row's own band in a
    full parse; names it does not have are not in it; then all of them equal the full parse."""
    import json

    from lazymerge.catalog.sources import bands_from_json
    from lazymerge.planner.discover_sql import checked_bands_many

    def text(s: str) -> str:
        return json.dumps(
            [[n, f"{s}/{n}", [[f"{s}/{n}/0", *LEVEL[1:]], [f'{s}"{n}/1', *LEVEL[1:]]]] for n in names]
        )

    texts = [text(s) for s in ids]
    base, shape = np.array([LEVEL[1]] * len(ids)), np.array([LEVEL[2]] * len(ids))
    got = checked_bands_many(texts, ids, base, shape)
    row, name = data.draw(st.integers(0, len(ids) - 1)), data.draw(st.sampled_from(names))
    own = bands_from_json(texts[row])[name]
    cands = Candidates(ids, ["EPSG:4326"] * len(ids), np.arange(len(ids)))
    sources = SourceSet(cands, np.zeros(0, "i8"), np.zeros((0, 4)), got.__getitem__)
    assert sources.level_of(row, name, 1) == own.levels[1]  # one level filled alone (the levels table)
    grids = sources.levels_of(row, name)  # for the windows: the grids, paths the template's or the row's
    assert [(lv.transform, lv.shape, lv.resolution) for lv in grids] == [
        (lv.transform, lv.shape, lv.resolution) for lv in own.levels
    ]
    assert got[row][name] == own
    assert data.draw(st.text(max_size=4).filter(lambda n: n not in names)) not in got[row]
    assert got == [bands_from_json(t) for t in texts]
