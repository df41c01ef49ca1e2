"""`lazymerge index` and both planning paths refuse sources that cannot be mosaicked, naming every one."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from lazymerge import plan
from lazymerge.catalog.meta import write_meta
from lazymerge.cli import main
from lazymerge.errors import (
    ConventionError,
    InvalidFootprintError,
    InvalidSourceError,
    MetaSchemaError,
    SkippedSourceWarning,
)
from tests.support.stores import add_source

T = (10.0, 0.0, 500000.0, 0.0, -10.0, 6001000.0)
TARGET = {"crs": "EPSG:32618", "bbox": (500000.0, 6000000.0, 501000.0, 6001000.0), "resolution": 10.0}

# source -> (attribute overrides on its base level, what the error must say)
BAD = {
    "vertical": ({"proj:code": "EPSG:5703"}, "vertical"),
    "geocentric": ({"proj:code": "EPSG:4978"}, "geocentric"),
    "unknown_crs": ({"proj:code": "EPSG:999999"}, "not one pyproj knows"),
    "nan": ({"spatial:transform": [10.0, 0.0, float("nan"), 0.0, -10.0, 6001000.0]}, "finite"),
    "inf": ({"spatial:transform": [10.0, 0.0, float("inf"), 0.0, -10.0, 6001000.0]}, "finite"),
    "flat": ({"spatial:transform": [10.0, 0.0, 500000.0, 20.0, 0.0, 6001000.0 - 1.0]}, None),
    "degenerate": ({"spatial:transform": [0.0, 0.0, 500000.0, 0.0, 0.0, 6001000.0]}, "not invertible"),
    "five": ({"spatial:transform": [10.0, 0.0, 500000.0, 0.0, -10.0]}, "not 6 finite numbers"),
    "shape": ({"spatial:shape": [99, 100]}, "contradicts the array's shape"),
    "bbox": ({"spatial:bbox": [0.0, 0.0, 1.0, 1.0]}, "spatial:bbox"),
    "nodata": ({"nodata": "abc"}, "nodata = 'abc' is not a number"),
    "south": ({"spatial:transform": [10.0, 0.0, 500000.0, 0.0, -10.0, -5000000.0]}, "area of use"),
}
BAD["flat"] = (BAD["flat"][0], None)  # rotated and valid: must be accepted (see test)
BAD.pop("flat")


def bad_store(tmp_path, overview_scale_lie=True):
    """Two valid sources ("ok", "ok_pyramid") and one per BAD entry; optionally a source whose overview's
    spatial:transform contradicts its multiscales scale."""
    path = tmp_path / "bad.zarr"
    root = zarr.open_group(str(path), mode="w")
    rng = np.random.default_rng(0)
    data = rng.random((100, 100), dtype="f4")
    add_source(root, "ok", "EPSG:32618", T, data)
    add_source(root, "ok_pyramid", "EPSG:32618", T, data, levels=2)
    for name, (attrs, _) in BAD.items():
        add_source(root, name, "EPSG:32618", T, data)
        root[f"{name}/data/0"].attrs.update(attrs)
    if overview_scale_lie:
        add_source(root, "stretched", "EPSG:32618", T, data, levels=2)
        level = root["stretched/data/1"]
        level.attrs["spatial:transform"] = [40.0, 0.0, 500000.0, 0.0, -40.0, 6001000.0]  # scale says 2
    return path


def expected_problems() -> dict[str, str | None]:
    return {**{k: v[1] for k, v in BAD.items()}, "stretched": "multiscales scale says 2 x 2"}


def test_index_reports_every_invalid_source_at_once(tmp_path):
    path = bad_store(tmp_path)
    with pytest.raises(InvalidSourceError) as info:
        write_meta(path)
    problems = info.value.problems
    assert set(problems) == set(expected_problems())  # every bad one, and no good one
    for name, says in expected_problems().items():
        assert name in str(info.value)
        assert says in " ".join(problems[name]), (name, problems[name])
    assert "nan/data/0" in " ".join(problems["nan"]) and "spatial:transform" in " ".join(problems["nan"])
    assert not (path / "meta").exists()


def test_skip_invalid_indexes_the_rest_and_names_each_skipped(tmp_path):
    path = bad_store(tmp_path)
    with pytest.warns(SkippedSourceWarning) as caught:
        table = write_meta(path, skip_invalid=True)
    message = str(caught[0].message)
    assert all(name in message for name in expected_problems())
    assert table["id"].to_pylist() == ["ok", "ok_pyramid"]
    p = plan(str(path), datafusion=True, **TARGET)
    assert set(p.table["source_id"].to_pylist()) == {"ok", "ok_pyramid"}


def test_cli_index_lists_all_or_skips(tmp_path, capsys):
    path = bad_store(tmp_path)
    assert main(["index", str(path)]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in expected_problems()) and "--skip-invalid" in err
    with pytest.warns(SkippedSourceWarning):
        assert main(["index", "--skip-invalid", str(path)]) == 0
    assert "2 sources" in capsys.readouterr().out


def test_scan_path_refuses_invalid_sources_by_name(tmp_path):
    """Planning without /meta applies the same checks: no source is dropped silently."""
    path = bad_store(tmp_path)
    with pytest.raises(InvalidSourceError) as info:
        plan(str(path), datafusion=False, **TARGET)
    assert set(info.value.problems) == set(expected_problems())


def test_rotated_and_compound_sources_are_accepted(tmp_path):
    """Validation refuses only what is wrong: a rotated grid and a compound CRS with a horizontal part
    (UTM 18N + NAVD88 height) index and plan."""
    path = tmp_path / "fine.zarr"
    root = zarr.open_group(str(path), mode="w")
    data = np.random.default_rng(1).random((100, 100), dtype="f4")
    add_source(root, "rotated", "EPSG:32618", (9.0, 1.0, 500000.0, 1.0, -9.0, 6001000.0), data)
    add_source(root, "compound", "EPSG:32618+5703", T, data)
    table = write_meta(path)
    assert table["id"].to_pylist() == ["compound", "rotated"]
    p = plan(str(path), datafusion=True, **TARGET)
    assert set(p.table["source_id"].to_pylist()) == {"compound", "rotated"}


@pytest.fixture
def indexed(tmp_path):
    path = tmp_path / "two.zarr"
    root = zarr.open_group(str(path), mode="w")
    data = np.random.default_rng(2).random((100, 100), dtype="f4")
    add_source(root, "a", "EPSG:32618", T, data)
    add_source(root, "b", "EPSG:32618", (10.0, 0.0, 500500.0, 0.0, -10.0, 6001000.0), data)
    write_meta(path)
    return path, zarr.open_group(str(path / "meta"), mode="r+")


def test_meta_bbox_contradicting_the_transform_is_refused(indexed):
    """A /meta bbox moved away from the grid its transform describes would drop that source's pixels."""
    path, meta = indexed
    boxes = meta["bbox"][:]
    boxes[1] = boxes[0]  # b's bbox := a's (b's grid reaches 500 m further east)
    meta["bbox"][:] = boxes
    with pytest.raises(InvalidFootprintError, match=r"\['b'\].*re-run `lazymerge index`"):
        plan(str(path), datafusion=True, **TARGET)


@pytest.mark.parametrize("value", [np.nan, np.inf, 0.0])
def test_meta_transform_not_finite_names_the_source(indexed, value):
    """NaN/inf/zero pixel size in /meta: the error names the source and what is wrong with its grid (not
    the bbox), since `lazymerge index` would refuse it."""
    path, meta = indexed
    meta["transform_0"][1] = value
    with pytest.raises(
        MetaSchemaError,
        match=r"not finite and invertible \(source .b.: transform.*fix their spatial:transform",
    ):
        plan(str(path), datafusion=True, **TARGET)


def test_meta_vertical_crs_names_the_source(indexed):
    path, meta = indexed
    meta["proj:code"][0] = "EPSG:5703"
    with pytest.raises(MetaSchemaError, match=r"source 'a'.*vertical"):
        plan(str(path), datafusion=True, **TARGET)


def test_meta_columns_of_unequal_length(indexed):
    path, meta = indexed
    del meta["shape_x"]
    meta.create_array("shape_x", data=np.array([100, 100, 100], dtype="i8"))
    with pytest.raises(MetaSchemaError, match="unequal lengths.*shape_x.*3"):
        plan(str(path), datafusion=True, **TARGET)


def test_convention_errors_name_array_and_attribute(tmp_path):
    """The scan path's error for one bad array is a ConventionError naming the array and the attribute."""
    path = tmp_path / "one.zarr"
    root = zarr.open_group(str(path), mode="w")
    add_source(root, "x", "EPSG:32618", T, np.zeros((10, 10), dtype="f4"))
    root["x/data/0"].attrs["spatial:transform"] = [1, 2, 3, 4, 5]
    with pytest.raises(
        ConventionError, match=r"array 'x/data/0': attribute spatial:transform = \[1, 2, 3, 4, 5\]"
    ):
        write_meta(path)
