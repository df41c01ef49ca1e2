"""Calendar time bins (week, month, year, ISO 8601 durations) with sources on both sides of bin edges."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from lazymerge.api import plan
from lazymerge.catalog.meta import write_meta
from lazymerge.errors import GroupByError
from tests.support.gdal_oracle import around

# Sunday 2024-03-31 / Monday 2024-04-01 straddle an ISO week, a month and a P16D bin from 2024-01-01
# (bins start Jan 1, Jan 17, Feb 2, Feb 18, Mar 5, Mar 21, Apr 6); Dec 31 / Jan 1 straddle a year.
WHEN = {
    "a": "2023-12-31T23:59:00Z",
    "b": "2024-01-01T00:01:00Z",
    "c": "2024-03-31T12:00:00Z",
    "d": "2024-04-01T12:00:00Z",
    "e": "2024-04-06T00:30:00Z",
}


FOUR = [["a"], ["b"], ["c"], ["d", "e"]]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from tests.support.stores import add_source

    path = tmp_path_factory.mktemp("bins") / "s.zarr"
    root = zarr.open_group(zarr.storage.LocalStore(str(path)), mode="w")
    for k, (name, when) in enumerate(WHEN.items()):
        r = around(name, "EPSG:32618", -75.0, 40.0, 30.0, 32, k)
        add_source(root, name, r.crs, r.transform, r.data)
        root[name].attrs["datetime"] = when
    write_meta(path)
    return path, around("a", "EPSG:32618", -75.0, 40.0, 30.0, 32, 0)


def labels(store, groupby, datafusion, **kw):
    path, r = store
    x0, y1 = r.transform[2], r.transform[5]
    p = plan(
        str(path),
        crs="EPSG:32618",
        bbox=(x0, y1 - 960, x0 + 960, y1),
        resolution=30.0,
        bands="data",
        groupby=groupby,
        datafusion=datafusion,
        **kw,
    )
    days = [str(d)[:10] for d in p.time_coords]
    groups = p.table.group_by("time").aggregate([("source_id", "distinct")]).sort_by("time")
    members = [sorted(v) for v in groups["source_id_distinct"].to_pylist()]
    return days, members


@pytest.mark.parametrize("datafusion", [True, False])
@pytest.mark.parametrize(
    ("groupby", "origin", "days", "members"),
    [
        ("week", None, ["2023-12-25", "2024-01-01", "2024-03-25", "2024-04-01"], FOUR),
        ("month", None, ["2023-12-01", "2024-01-01", "2024-03-01", "2024-04-01"], FOUR),
        ("year", None, ["2023-01-01", "2024-01-01"], [["a"], ["b", "c", "d", "e"]]),
        (
            "P16D",
            "2024-01-01",
            ["2023-12-16", "2024-01-01", "2024-03-21", "2024-04-06"],
            [["a"], ["b"], ["c", "d"], ["e"]],
        ),
        ("P2M", "2024-01-01", ["2023-11-01", "2024-01-01", "2024-03-01"], [["a"], ["b"], ["c", "d", "e"]]),
    ],
)
def test_bins_start_where_the_calendar_says(store, groupby, origin, days, members, datafusion):
    got_days, got_members = labels(store, groupby, datafusion, groupby_origin=origin)
    assert got_days == days and got_members == members


def test_duration_origin_defaults_to_the_epoch_and_bad_values_are_named(store):
    days, _ = labels(store, "P1D", True)
    assert days == ["2023-12-31", "2024-01-01", "2024-03-31", "2024-04-01", "2024-04-06"]
    for bad in ("P0D", "fortnight", "PT6H"):
        with pytest.raises(GroupByError, match=repr(bad)):
            labels(store, bad, True)
    with pytest.raises(GroupByError, match="groupby_origin 'soon'"):
        labels(store, "P16D", True, groupby_origin="soon")


def test_epoch_bins_are_whole_days_counted_from_1970():
    from lazymerge.planner.timegroups import ORIGIN, calendar_bins

    days = np.array(["1970-01-01", "1970-01-16", "1970-01-17", "1969-12-31"], dtype="datetime64[D]")
    got = calendar_bins(days, "P16D", ORIGIN)
    assert [str(d) for d in got] == ["1970-01-01", "1970-01-01", "1970-01-17", "1969-12-16"]
