"""Property-based: random corruptions of a small store end in a typed LazymergeError or in the right
mosaic, never in another exception, a crash or a silently different mosaic.

Profiles (tests/conftest.py): "ci" runs 25 examples per test, derandomized; HYPOTHESIS_PROFILE=long runs
500. The /meta edits go through zarr-datafusion-search, so their examples run in a subprocess that must
exit 0 (a segfault cannot take the test run down with it).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st

from lazymerge import merge
from lazymerge.catalog.meta import write_meta
from lazymerge.errors import LazymergeError
from tests.support.stores import add_source

TARGET = {"crs": "EPSG:32618", "bbox": (500000.0, 5999500.0, 501500.0, 6001000.0), "resolution": 10.0}
_TEMPLATE: dict[str, object] = {}


def template() -> tuple[Path, np.ndarray]:
    """A store of two overlapping sources (one with an overview), indexed, and its mosaic."""
    if not _TEMPLATE:
        path = Path(tempfile.mkdtemp(prefix="lm-template-")) / "t.zarr"
        atexit.register(shutil.rmtree, path.parent, True)
        root = zarr.open_group(str(path), mode="w")
        rng = np.random.default_rng(7)
        for name, x0, y1, levels in (("a", 500000.0, 6001000.0, 2), ("b", 500500.0, 6000500.0, 1)):
            transform = (10.0, 0.0, x0, 0.0, -10.0, y1)
            add_source(root, name, "EPSG:32618", transform, rng.random((100, 100), dtype="f4"), levels=levels)
        root["a"].attrs["cloud_cover"] = 10
        write_meta(path)
        _TEMPLATE.update(path=path, mosaic=mosaic(path, datafusion=True))
    return _TEMPLATE["path"], _TEMPLATE["mosaic"]


def mosaic(path: Path, datafusion: bool) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return merge(str(path), chunk_size=(64, 64), datafusion=datafusion, **TARGET).array.compute()


def attempt(action) -> np.ndarray | None:
    """``action()``'s result, or None when it raised a LazymergeError; any other exception fails."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return action()
    except LazymergeError:
        return None


def copy() -> Path:
    src, _ = template()
    dst = Path(tempfile.mkdtemp(prefix="lm-corrupt-")) / "t.zarr"
    shutil.copytree(src, dst)
    return dst


def files(root: Path, name: str | None = None) -> list[Path]:
    """Files of the sources (not /meta), sorted; only those called ``name`` when given."""
    out = [p for p in root.rglob("*") if p.is_file() and "meta" not in p.relative_to(root).parts[:1]]
    return sorted(p for p in out if name is None or p.name == name)


def assert_equal_mosaic(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------ chunks
@given(
    pick=st.integers(min_value=0, max_value=10_000),
    mode=st.sampled_from(["truncate", "garbage", "empty"]),
    cut=st.floats(min_value=0.0, max_value=0.99),
    junk=st.binary(min_size=1, max_size=64),
)
def test_corrupt_chunk(pick, mode, cut, junk):
    """A truncated, emptied or replaced chunk: SourceReadError (naming it) or, if the bytes still decode to
    the right size, a mosaic; a truncated or emptied chunk never decodes silently."""
    path = copy()
    try:
        chunks = [p for p in files(path) if p.name != "zarr.json"]
        chunk = chunks[pick % len(chunks)]
        data = chunk.read_bytes()
        chunk.write_bytes({"truncate": data[: int(len(data) * cut)], "garbage": junk, "empty": b""}[mode])
        out = attempt(lambda: mosaic(path, datafusion=True))
        if mode != "garbage":
            _, reference = template()
            used = chunk.relative_to(path).parts[:3]
            touched = out is None or not np.array_equal(out, reference)
            # the level-1 overview of source a is not read at 10 m: corrupting it changes nothing
            assert touched or used == ("a", "data", "1"), chunk
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


# -------------------------------------------------------------------------------------- zarr.json
@given(
    pick=st.integers(min_value=0, max_value=10_000),
    mode=st.sampled_from(["truncate", "splice", "json"]),
    cut=st.floats(min_value=0.0, max_value=1.0),
    junk=st.binary(max_size=32),
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
        max_leaves=8,
    ),
)
def test_corrupt_zarr_json(pick, mode, cut, junk, value):
    """A zarr.json (root, source, band group or level) torn, spliced with bytes, or replaced by other JSON:
    `lazymerge index` and scan planning end typed, or, when the metadata still parses to the same
    document, in the same mosaic."""
    path = copy()
    try:
        meta_files = [path / "zarr.json", *files(path, "zarr.json")]
        target = meta_files[pick % len(meta_files)]
        text = target.read_bytes()
        at = int(len(text) * cut)
        new = {
            "truncate": text[:at],
            "splice": text[:at] + junk + text[at + len(junk) :],
            "json": json.dumps(value).encode(),
        }[mode]
        target.write_bytes(new)
        try:
            same = json.loads(new) == json.loads(text)
        except ValueError:
            same = False
        indexed = attempt(lambda: write_meta(path))
        out = attempt(lambda: mosaic(path, datafusion=False))
        if same:
            _, reference = template()
            assert indexed is not None and out is not None
            assert_equal_mosaic(out, reference)
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


# ------------------------------------------------------------------------------ convention attributes
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=8),
    max_leaves=10,
)
CRS_LIKE = st.sampled_from(["EPSG:4326", "EPSG:5703", "EPSG:4978", "EPSG:32618", "EPSG:3857", "EPSG:0", "x"])


@given(
    key=st.sampled_from(["spatial:transform", "nodata", "proj:code", "spatial:shape", "spatial:bbox"]),
    value=JSON_VALUES | CRS_LIKE | st.lists(st.floats(), min_size=4, max_size=6),
    level=st.sampled_from(["a/data/0", "a/data/1", "b/data/0"]),
)
def test_random_convention_attributes(key, value, level):
    """Any value for spatial:transform, nodata, proj:code, spatial:shape or spatial:bbox on any level:
    `lazymerge index` and scan planning + reading end typed or in a mosaic."""
    path = copy()
    try:
        zarr.open_array(str(path / level), mode="r+").attrs[key] = value
        attempt(lambda: write_meta(path))
        attempt(lambda: mosaic(path, datafusion=False))
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


@given(
    scale=st.lists(JSON_VALUES | st.floats(min_value=0.1, max_value=8), min_size=0, max_size=4),
    asset=st.sampled_from(["0", "1", "missing", 3]),
)
def test_random_multiscales(scale, asset):
    """A multiscales layout whose second level has any asset and scale: typed, or a mosaic."""
    path = copy()
    try:
        group = zarr.open_group(str(path / "a" / "data"), mode="r+")
        attrs = json.loads(json.dumps(group.attrs["multiscales"]))
        layout = attrs["layout"] if "layout" in attrs else attrs["multiscales"]["layout"]  # declared: nested
        layout[1]["asset"] = asset
        layout[1].setdefault("transform", {})["scale"] = scale
        group.attrs["multiscales"] = attrs
        attempt(lambda: write_meta(path))
        attempt(lambda: mosaic(path, datafusion=False))
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


# ---------------------------------------------------------------------------------------- /meta edits
COLUMNS = [
    "bbox",
    "id",
    "proj:code",
    "proj:epsg",
    "shape_x",
    "shape_y",
    "lazymerge:bands",
    "cloud_cover",
    *(f"transform_{i}" for i in range(6)),
]


def _edit_value(draw, column: str):
    """Any value of the column's type."""
    if column == "bbox":
        return draw(st.binary(max_size=40))
    if column in ("id", "proj:code", "lazymerge:bands"):
        return draw(st.text(max_size=40) | st.sampled_from(["EPSG:5703", "EPSG:4326", "[]", "[[null,1,[]]]"]))
    if column.startswith("transform_"):
        return draw(st.floats() | st.sampled_from([0.0, -1.0, 1e300]))
    return draw(st.integers(-(2**62), 2**62))


META_EDITS = st.tuples(
    st.sampled_from(COLUMNS),
    st.sampled_from(["value", "value", "shorter", "drop"]),
    st.integers(0, 1),
    st.data(),
)


@pytest.mark.skipif(not os.environ.get("LAZYMERGE_META_PROPERTIES"), reason="run by test_meta_edits")
@given(edit=META_EDITS)
def test_meta_edits_inner(edit):
    column, mode, row, data = edit
    path = copy()
    try:
        meta = zarr.open_group(str(path / "meta"), mode="r+")
        arr = meta[column]
        if mode == "value":
            values = arr[:]
            values[row] = _edit_value(data.draw, column)
            arr[:] = values
        elif mode == "shorter":
            values = arr[:][:1]
            del meta[column]
            shorter = meta.create_array(column, shape=values.shape, dtype=arr.metadata.data_type, chunks=(1,))
            shorter[:] = values
        else:
            del meta[column]
        out = attempt(lambda: mosaic(path, datafusion=True))
        if out is not None:  # no error: then the edit did not change the mosaic
            _, reference = template()
            assert_equal_mosaic(out, reference)
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


def test_meta_edits():
    """/meta edits (a value of any column set to anything of its type, a column shortened or dropped):
    a typed error or the same mosaic, run in a subprocess that must exit 0."""
    env = {**os.environ, "LAZYMERGE_META_PROPERTIES": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{__file__}::test_meta_edits_inner",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
