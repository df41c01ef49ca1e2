"""Every bad input gets a typed error naming the value and the fix."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr

from lazymerge import errors
from lazymerge.api import merge, plan
from lazymerge.demo import SEED_TARGET

GOOD = {**SEED_TARGET, "resolution": 10.0, "chunk_size": (256, 256), "bands": "data"}


def call(store, **overrides):
    return merge(store=str(store), **{**GOOD, **overrides})


@pytest.mark.parametrize(
    ("overrides", "exc", "words"),
    [
        ({"crs": "EPSG:999999"}, errors.InvalidCRSError, ["EPSG:999999", "EPSG:32618"]),
        ({"crs": "not a crs"}, errors.InvalidCRSError, ["not a crs"]),
        (
            {"bbox": (508000.0, 5990000.0, 500000.0, 6000000.0)},
            errors.InvalidBBoxError,
            ["xmin 508000.0 >= xmax"],
        ),
        ({"bbox": (500000.0, 5990000.0, 500000.0, 6000000.0)}, errors.InvalidBBoxError, ["xmin", ">= xmax"]),
        ({"bbox": (500000.0, 6000000.0, 508000.0, 5990000.0)}, errors.InvalidBBoxError, ["ymin", ">= ymax"]),
        ({"bbox": (1, 2, 3)}, errors.InvalidBBoxError, ["(1, 2, 3)"]),
        ({"resolution": 0}, errors.InvalidResolutionError, ["resolution 0", "positive"]),
        ({"resolution": -10.0}, errors.InvalidResolutionError, ["-10.0"]),
        ({"resolution": "10"}, errors.InvalidResolutionError, ["'10'"]),
        ({"chunk_size": (256,)}, errors.InvalidChunkSizeError, ["(256,)", "two positive integers"]),
        ({"chunk_size": (0, 256)}, errors.InvalidChunkSizeError, ["(0, 256)"]),
        ({"chunk_size": (256.5, 256)}, errors.InvalidChunkSizeError, ["(256.5, 256)"]),
        ({"chunk_size": 256}, errors.InvalidChunkSizeError, ["256"]),
    ],
)
def test_bad_request(seed_store, overrides, exc, words):
    with pytest.raises(exc) as info:
        call(seed_store, **overrides)
    assert isinstance(info.value, errors.LazymergeError)
    for w in words:
        assert w in str(info.value)


@pytest.mark.parametrize("datafusion", [True, False])
def test_band_no_source_has(seed_store, datafusion):
    with pytest.raises(errors.BandNotFoundError, match=r"no source has band 'B04'.*'data'"):
        call(seed_store, bands="B04", datafusion=datafusion)


@pytest.mark.parametrize("datafusion", [True, False])
def test_unknown_sortby_column(seed_store, datafusion):
    with pytest.raises(errors.UnknownColumnError, match=r"sortby column 'cloud' does not exist.*'id'"):
        call(seed_store, sortby=["id", "-cloud"], datafusion=datafusion)


def test_sortby_is_never_pasted_into_sql(seed_store):
    with pytest.raises(errors.UnknownColumnError, match="does not exist"):
        call(seed_store, sortby="id; DROP TABLE meta; --", datafusion=True)


def test_datafusion_without_meta(seed_store):
    shutil.rmtree(seed_store / "meta")
    with pytest.raises(errors.MetaNotFoundError, match=r"no /meta table.*lazymerge index"):
        call(seed_store, datafusion=True)
    assert call(seed_store, datafusion=False).array.shape == (1000, 800)  # the scan path needs no /meta


def test_meta_missing_column(seed_store):
    shutil.rmtree(seed_store / "meta" / "shape_x")
    with pytest.raises(
        errors.MetaSchemaError, match=r"lacks required column\(s\) \['shape_x'\].*lazymerge index"
    ):
        call(seed_store, datafusion=True)


def test_meta_malformed_wkb(seed_store):
    bbox = zarr.open_array(str(seed_store / "meta" / "bbox"), mode="r+")
    values = bbox[:]
    values[2] = b"\x01\x03\x00\x00"  # truncated WKB
    bbox[:] = values
    with pytest.raises(errors.InvalidFootprintError, match=r"row 2 \(id 'utm18n_tile_a'\).*not valid WKB"):
        call(seed_store, datafusion=True)


def test_missing_store_path(tmp_path):
    with pytest.raises(errors.StoreError, match="does not exist"):
        call(tmp_path / "nope.zarr")


def test_unsupported_store_type():
    with pytest.raises(errors.StoreError, match="store of type ndarray is not supported"):
        merge(store=np.zeros(3), **GOOD)


def test_plan_validates_the_same_way(seed_store):
    with pytest.raises(errors.InvalidResolutionError):
        plan(store=str(seed_store), **{**GOOD, "resolution": 0})
