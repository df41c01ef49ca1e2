"""Errors name the node: a corrupt chunk names its array and key, a torn zarr.json its path."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import BytesCodec

from lazymerge import merge
from lazymerge.catalog.conventions import ProjAttrs, SpatialAttrs, write_proj, write_spatial
from lazymerge.catalog.meta import write_meta
from lazymerge.catalog.scan import scan_store
from lazymerge.errors import InvalidSourceError, SourceReadError, StoreError
from tests.support.stores import add_source

T = (10.0, 0.0, 500000.0, 0.0, -10.0, 6001000.0)
TARGET = {"crs": "EPSG:32618", "bbox": (500000.0, 6000000.0, 501000.0, 6001000.0), "resolution": 10.0}


def two_sources(tmp_path):
    path = tmp_path / "s.zarr"
    root = zarr.open_group(str(path), mode="w")
    rng = np.random.default_rng(3)
    add_source(root, "a", "EPSG:32618", T, rng.random((100, 100), dtype="f4"))
    add_source(root, "b", "EPSG:32618", (10.0, 0.0, 500500.0, 0.0, -10.0, 6001000.0), rng.random((100, 100)))
    return path, root


def tear(path):
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2])


def test_truncated_chunk_names_array_and_key(tmp_path):
    """zarr's default encoding (read by lazymerge.chunks): was a bare "Zstd decompression error"."""
    path, _ = two_sources(tmp_path)
    write_meta(path)
    chunk = path / "a" / "data" / "0" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:10])
    with pytest.raises(SourceReadError, match=r"source array 'a/data/0': chunk 'a/data/0/c/0/0'.*truncated"):
        merge(str(path), chunk_size=(64, 64), **TARGET).array.compute()


def test_corrupt_chunk_through_zarr_names_array_and_chunks(tmp_path):
    """An array zarr decodes itself (big-endian here): the error names the array, window and chunks."""
    path = tmp_path / "be.zarr"
    root = zarr.open_group(str(path), mode="w")
    group = root.require_group("be").create_group("data")
    arr = group.create_array(
        "0", shape=(100, 100), chunks=(64, 64), dtype=">f4", serializer=BytesCodec(endian="big")
    )
    arr[:] = np.random.default_rng(4).random((100, 100)).astype(">f4")
    write_spatial(arr, SpatialAttrs(("y", "x"), T, shape=arr.shape))
    write_proj(arr, ProjAttrs(code="EPSG:32618"))
    from lazymerge.catalog.conventions import Overview, write_multiscales

    write_multiscales(group, [Overview("0")])
    chunk = path / "be" / "data" / "0" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(SourceReadError, match=r"source array 'be/data/0': rows .* 'c/0/0'"):
        merge(str(path), chunk_size=(64, 64), datafusion=False, **TARGET).array.compute()


@pytest.mark.parametrize("node", ["b", "b/data", "b/data/0"])
def test_torn_zarr_json_of_a_source_names_its_path(tmp_path, node):
    """Index: the source whose metadata is torn is named (with the others indexed under skip_invalid)."""
    path, _ = two_sources(tmp_path)
    tear(path / node / "zarr.json")
    with pytest.raises(InvalidSourceError, match=rf"{node}.*cannot be read"):
        scan_store(path)
    with pytest.warns(UserWarning, match=node):
        assert [e.id for e in scan_store(path, skip_invalid=True)] == ["a"]


def test_torn_root_zarr_json_is_a_store_error(tmp_path):
    path, _ = two_sources(tmp_path)
    tear(path / "zarr.json")
    with pytest.raises(StoreError, match="zarr.json.*cannot be read"):
        scan_store(path)


def test_zarr_json_torn_after_planning_names_the_array(tmp_path):
    """Torn between planning and reading: the read names the array whose metadata is broken."""
    path, _ = two_sources(tmp_path)
    write_meta(path)
    result = merge(str(path), chunk_size=(64, 64), **TARGET)
    tear(path / "a" / "data" / "0" / "zarr.json")
    with pytest.raises(SourceReadError, match=r"source array 'a/data/0' cannot be opened.*zarr.json"):
        result.array.compute()
