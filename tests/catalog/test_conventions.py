"""spatial:/proj:/multiscales through zarr-cm: declared and bare forms."""

from __future__ import annotations

import pytest
import zarr
from zarr_cm import multiscales as zcm_multiscales
from zarr_cm import proj as zcm_proj
from zarr_cm import spatial as zcm_spatial

from lazymerge.catalog.conventions import (
    Overview,
    ProjAttrs,
    SpatialAttrs,
    read_multiscales,
    read_proj,
    read_spatial,
    write_multiscales,
    write_proj,
    write_spatial,
)
from lazymerge.errors import ConventionError


@pytest.fixture
def group(tmp_path):
    return zarr.open_group(str(tmp_path / "g.zarr"), mode="w")


def test_write_declares_conventions_and_round_trips(group):
    arr = group.create_array("0", shape=(4, 6), dtype="f4")
    spatial = SpatialAttrs(
        ["y", "x"], (10.0, 0.0, 100.0, 0.0, -10.0, 200.0), (100.0, 160.0, 160.0, 200.0), (4, 6)
    )
    write_spatial(arr, spatial)
    write_proj(arr, ProjAttrs(code="EPSG:32618"))
    attrs = dict(arr.attrs)
    uuids = {c["uuid"] for c in attrs["zarr_conventions"]}
    assert {zcm_spatial.UUID, zcm_proj.UUID} <= uuids
    zcm_spatial.validate(zcm_spatial.extract(attrs)[1])  # what we wrote is valid per zarr-cm
    reopened = zarr.open_array(arr.store, path=arr.path, mode="r")
    assert read_spatial(reopened) == spatial
    assert read_proj(reopened) == ProjAttrs(code="EPSG:32618")


def test_read_bare_attributes(group):
    arr = group.create_array("0", shape=(4, 6), dtype="f4")
    arr.attrs.update({"spatial:transform": [2.0, 0.0, 1.0, 0.0, -2.0, 9.0], "proj:wkt2": "WKT-HERE"})
    assert read_spatial(arr).transform == (2.0, 0.0, 1.0, 0.0, -2.0, 9.0)
    assert read_spatial(arr).shape == (4, 6)
    assert read_proj(arr).wkt2 == "WKT-HERE"


def test_missing_attributes_are_typed_errors(group):
    arr = group.create_array("0", shape=(4, 6), dtype="f4")
    with pytest.raises(ConventionError, match="no spatial:transform"):
        read_spatial(arr)
    with pytest.raises(ConventionError, match="no proj:code"):
        read_proj(arr)
    with pytest.raises(ConventionError, match="no multiscales layout"):
        read_multiscales(group)


def test_wrong_node_kinds_are_typed_errors(group):
    """A multiscales asset that is a group, a 1-D band, a non-numeric nodata: ConventionError naming it."""
    from lazymerge.catalog.sources import read_band

    group.create_group("0")
    write_multiscales(group, [Overview("0")])
    with pytest.raises(ConventionError, match="names asset '0', which is a group"):
        read_multiscales(group)
    line = group.create_array("line", shape=(8,), dtype="f4")
    write_spatial(line, SpatialAttrs(transform=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)))
    with pytest.raises(ConventionError, match="'line' has shape \\(8,\\); a raster needs at least two"):
        read_band(line, None)
    arr = group.create_array("2d", shape=(4, 6), dtype="f4", attributes={"nodata": [0]})
    write_spatial(arr, SpatialAttrs(transform=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)))
    write_proj(arr, ProjAttrs(code="EPSG:32618"))
    with pytest.raises(ConventionError, match="nodata attribute of array '2d' is \\[0\\]; write a number"):
        read_band(arr, None)


def _levels(group):
    for name, res in (("0", 10.0), ("1", 20.0), ("2", 40.0)):
        arr = group.create_array(name, shape=(int(80 / res), int(80 / res)), dtype="f4")
        write_spatial(arr, SpatialAttrs(transform=(res, 0.0, 0.0, 0.0, -res, 80.0)))


@pytest.mark.parametrize("declared", [True, False])
def test_multiscales_declared_and_bare(group, declared):
    _levels(group)
    overviews = [
        Overview("0"),
        Overview("1", (2.0, 2.0), (0.5, 0.5), "0"),
        Overview("2", (4.0, 4.0), (1.5, 1.5), "1"),
    ]
    if declared:
        write_multiscales(group, overviews)
        assert zcm_multiscales.UUID in {c["uuid"] for c in group.attrs["zarr_conventions"]}
    else:  # the seed's form: no declaration
        group.attrs["multiscales"] = {
            "layout": [
                {"asset": o.asset, "transform": {"scale": list(o.scale), "translation": list(o.translation)}}
                for o in reversed(overviews)
            ]
        }
    got = read_multiscales(group)
    assert [o.asset for o in got] == ["0", "1", "2"]  # finest first
    assert [o.resolution() for o in got] == [10.0, 20.0, 40.0]  # from each level's own spatial:transform
    assert got[2].shape == (2, 2)


def test_level_transform_beats_scale(group):
    """A level's own spatial:transform decides its resolution, not the layout's scale."""
    _levels(group)
    group.attrs["multiscales"] = {
        "layout": [{"asset": "0"}, {"asset": "1", "transform": {"scale": [3.0, 3.0]}}]
    }
    assert read_multiscales(group)[1].resolution(native_res=10.0) == 20.0
