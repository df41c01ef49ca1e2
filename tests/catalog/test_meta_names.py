"""/meta column names: every name form `lazymerge index` accepts is written and read back through
zarr-datafusion-search; the others are refused before they reach it (it panicked on them)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import zarr

from lazymerge import plan
from lazymerge.catalog.meta import MetaTable, write_meta, write_meta_table
from lazymerge.catalog.scan import scan_store
from lazymerge.catalog.stores import resolve_store
from lazymerge.catalog.validate import META_NAME_CHARS, column_name_problem
from lazymerge.errors import MetaColumnWarning, MetaSchemaError
from tests.support.stores import add_source

TRANSFORM = (10.0, 0.0, 500000.0, 0.0, -10.0, 6001000.0)
TARGET = {"crs": "EPSG:32618", "bbox": (500000.0, 6000000.0, 501000.0, 6001000.0), "resolution": 10.0}


def _store(tmp_path, **attrs):
    path = tmp_path / "names.zarr"
    root = zarr.open_group(str(path), mode="w")
    add_source(root, "a", "EPSG:32618", TRANSFORM, np.zeros((100, 100), dtype="f4"))
    root["a"].attrs.update(attrs)
    return path


def test_every_accepted_name_form_round_trips(tmp_path):
    """One column per accepted character (inside a name, leading, trailing), plus mixed-case, digit-first
    and dotted names: each is written by write_meta_table and read back, value intact, by DataFusion."""
    path = _store(tmp_path)
    table = scan_store(path).table()
    names = {f"c{ch}x" for ch in META_NAME_CHARS} | {f"{ch}lead" for ch in META_NAME_CHARS}
    names |= {f"trail{ch}" for ch in META_NAME_CHARS} | {"Mixed", "9lives", "a.b.c", "..x", "__x"}
    names -= set(table.column_names)
    assert all(column_name_problem(n) is None for n in names)
    values = {name: float(i) for i, name in enumerate(sorted(names))}
    for name, value in values.items():
        table = table.append_column(name, pa.array([value]))
    write_meta_table(path, table)
    meta = MetaTable(resolve_store(path))
    assert names <= set(meta.schema.names)
    quoted = ", ".join('"' + n.replace('"', '""') + '"' for n in sorted(names))
    row = meta.sql(f"SELECT {quoted} FROM meta").to_pylist()[0]
    assert row == values


@pytest.mark.parametrize(
    "name", ["nuvosité", "a%b", "a#b", "a?b", 'a"b', "a\\b", "a/b", "a*b", "日本", "a\nb", ""]
)
def test_unreadable_names_are_refused_on_write(tmp_path, name):
    path = _store(tmp_path)
    table = scan_store(path).table().append_column(name, pa.array([1.0]))
    with pytest.raises(MetaSchemaError, match="cannot write /meta column"):
        write_meta_table(path, table)
    assert not (path / "meta").exists()  # nothing written


def test_source_attribute_with_unreadable_name_is_left_out_with_a_warning(tmp_path):
    """`lazymerge index` on a source with a `nuvosité` attribute: indexed without that column (a warning
    names it), and /meta stays readable: planning with where= on the other columns works."""
    path = _store(tmp_path, **{"nuvosité": 12.5, "cloud_cover": 3})
    with pytest.warns(MetaColumnWarning, match="nuvosité"):
        table = write_meta(path)
    assert "nuvosité" not in table.column_names and "cloud_cover" in table.column_names
    p = plan(str(path), where="cloud_cover < 5", datafusion=True, **TARGET)
    assert p.table.num_rows > 0


def test_meta_with_an_unreadable_name_fails_typed(tmp_path):
    """A /meta written by an older lazymerge (or by hand) with such a column: MetaSchemaError naming it,
    where zarr-datafusion-search panicked."""
    path = _store(tmp_path)
    write_meta(path)
    zarr.open_group(str(path / "meta"), mode="r+").create_array("nuvosité", data=np.array([1.0]))
    with pytest.raises(MetaSchemaError, match="nuvosité.*lazymerge index"):
        plan(str(path), datafusion=True, **TARGET)


def test_source_attributes_keep_their_types_and_an_oversized_integer_becomes_text(tmp_path):
    """Attributes index as the column their values make (int, float, bool, string; a missing one is null,
    NaN in /meta for integers and booleans), and one holding an integer beyond int64 as text, as mixed
    types do: it failed with OverflowError. A boolean missing on a source failed writing /meta."""
    path = tmp_path / "types.zarr"
    root = zarr.open_group(str(path), mode="w")
    a = {"huge": 2**70, "n": 3, "f": 1, "ok": True, "flag": True, "s": "x"}
    for name, attrs in (("a", a), ("b", {"f": 2.5, "ok": False})):
        add_source(root, name, "EPSG:32618", TRANSFORM, np.zeros((100, 100), dtype="f4"))
        root[name].attrs.update(attrs)
    table = write_meta(path)
    types = {k: str(table.schema.field(k).type) for k in ("huge", "n", "f", "ok", "flag", "s")}
    assert types == {
        "huge": "string",
        "n": "int64",
        "f": "double",
        "ok": "bool",
        "flag": "bool",
        "s": "string",
    }
    assert table["huge"].to_pylist() == [str(2**70), None] and table["f"].to_pylist() == [1.0, 2.5]
    assert table["flag"].to_pylist() == [True, None]
    p = plan(str(path), where="n = 3 AND ok AND flag = 1", datafusion=True, **TARGET)
    assert set(p.table["source_id"].to_pylist()) == {"a"}
