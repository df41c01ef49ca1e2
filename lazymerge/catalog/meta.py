"""The /meta table: written from a store's conventions, read into DataFusion via zarr-datafusion-search."""

from __future__ import annotations

import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import zarr
import zarr.storage
from datafusion import SessionContext

from lazymerge import arrow
from lazymerge.aio import run_sync
from lazymerge.catalog.layout import META_GROUP
from lazymerge.catalog.scan import scan_store
from lazymerge.catalog.stores import StoreHandle, resolve_store
from lazymerge.catalog.validate import column_name_problem
from lazymerge.errors import MetaNotFoundError, MetaSchemaError, StoreError, no_panic

REQUIRED_COLUMNS = ("id", "bbox", *(f"transform_{i}" for i in range(6)), "shape_x", "shape_y")
CRS_COLUMNS = ("proj:code", "proj:epsg")  # at least one; proj:code wins where both exist
INDEX_HINT = "build it with `lazymerge index STORE` or lazymerge.catalog.meta.write_meta(store)"

# Both are expected and harmless: /meta's WKB column uses zarr's variable_length_bytes (no v3 spec yet), and
# obstore stores cross the zarr-datafusion-search FFI by reconstruction (no shared connection pool).
warnings.filterwarnings("ignore", message=r"The data type \(VariableLengthBytes\(\)\)", category=Warning)
warnings.filterwarnings("ignore", message="Successfully reconstructed a store", category=RuntimeWarning)


def _writable_root(store: Any) -> tuple[zarr.Group, Path | None]:
    """A writable zarr root for the store, and its local directory when it has one."""
    if isinstance(store, (str, Path)) and "://" not in str(store):
        path = Path(store).expanduser().resolve()
        return zarr.open_group(zarr.storage.LocalStore(str(path)), mode="r+"), path
    handle = resolve_store(store)
    zstore = handle.zarr_store
    if isinstance(zstore, zarr.storage.LocalStore):
        path = Path(str(zstore.root))
        return zarr.open_group(zarr.storage.LocalStore(str(path)), mode="r+"), path
    if getattr(zstore, "read_only", False) and hasattr(zstore, "with_read_only"):
        zstore = zstore.with_read_only(False)
    return zarr.open_group(zstore, mode="r+"), None


def _write_table(group: zarr.Group, table: pa.Table) -> None:
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_string(col.type):
            arr = group.create_array(name, shape=(len(col),), dtype="string", chunks=(max(len(col), 1),))
            arr[:] = np.array(col.to_pylist(), dtype=object)
        elif pa.types.is_binary(col.type):
            arr = group.create_array(
                name, shape=(len(col),), dtype="variable_length_bytes", chunks=(max(len(col), 1),)
            )
            arr[:] = np.array(col.to_pylist(), dtype=object)
        elif (pa.types.is_integer(col.type) or pa.types.is_boolean(col.type)) and col.null_count:
            numbers = col.cast(pa.int64()) if pa.types.is_boolean(col.type) else col
            data = arrow.values(numbers).astype("f8")  # NaN marks the missing values
            group.create_array(name, data=data, chunks=(max(len(col), 1),))
        elif pa.types.is_timestamp(col.type):  # read back by DataFusion as a timestamp column
            data = arrow.values(col).astype("datetime64[us]")
            group.create_array(name, data=data, chunks=(max(len(col), 1),))
        else:
            group.create_array(name, data=arrow.values(col), chunks=(max(len(col), 1),))


def write_meta(store: Any, skip_invalid: bool = False) -> pa.Table:
    """Write the /meta table of a store from its conventions and return it.

    One row per source (id order): id, bbox (EPSG:4326 WKB, densified, split at the antimeridian),
    proj:epsg, proj:code, transform_0..5 and shape_x/shape_y of the base level. On a local store the new
    table replaces the old one atomically (written aside, then renamed), so no half-written /meta is left.

    Sources are validated first (``lazymerge.catalog.validate``): InvalidSourceError lists every invalid
    one by path, and nothing is written; ``skip_invalid=True`` indexes the others and warns
    (SkippedSourceWarning) naming each one left out.
    """
    table = scan_store(store, skip_invalid=skip_invalid).table()
    write_meta_table(store, table)
    return table


def write_meta_table(store: Any, table: pa.Table) -> None:
    """Write ``table`` as the store's /meta (atomically on a local store: written aside, then renamed).

    Raises MetaSchemaError, before writing anything, for a column name the /meta reader cannot read back
    (``lazymerge.catalog.validate.column_name_problem``)."""
    for name in table.column_names:
        problem = column_name_problem(name)
        if problem:
            raise MetaSchemaError(f"cannot write /meta column {name!r}: {problem}. Rename the column")
    root, local = _writable_root(store)
    if local is None:
        if META_GROUP in root:
            del root[META_GROUP]
        _write_table(root.create_group(META_GROUP), table)
        return
    tmp_name = f".meta-tmp-{uuid.uuid4().hex}"
    try:
        _write_table(root.create_group(tmp_name), table)
        final, old = local / META_GROUP, local / f".meta-old-{uuid.uuid4().hex}"
        if final.exists():
            final.rename(old)
        (local / tmp_name).rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(local / tmp_name, ignore_errors=True)


class MetaTable:
    """A DataFusion context with /meta registered as ``meta``; keeps the ZarrTable alive while in use."""

    def __init__(self, handle: StoreHandle) -> None:
        from zarr_datafusion_search import ZarrTable

        self.description = handle.description
        self._check_exists(handle)
        if handle.icechunk_session is None and handle.obstore is None:
            raise StoreError(
                f"datafusion=True needs an obstore store, a path/URL or an Icechunk session; "
                f"got {handle.description}"
            )

        async def _open() -> Any:  # ZarrTable constructors must be called inside a running loop
            if handle.icechunk_session is not None:
                return await ZarrTable.from_icechunk(handle.icechunk_session, "/" + META_GROUP)
            return await ZarrTable.from_obstore(handle.obstore, "/" + META_GROUP)

        with no_panic(f"reading /meta of {handle.description}", MetaSchemaError, f"rebuild it: {INDEX_HINT}"):
            self.table = run_sync(_open())  # the reference must outlive every query (FFI scope)
            self.ctx = SessionContext()
            self.ctx.register_table("meta", self.table)
            self.schema: pa.Schema = self.ctx.table("meta").schema()
        self._check_schema()

    @staticmethod
    def _check_exists(handle: StoreHandle) -> None:
        """MetaNotFoundError without a /meta group; MetaSchemaError when its columns cannot be read back
        (a name the reader cannot round-trip, a torn zarr.json, not 1-D, unequal lengths): checked here,
        before zarr-datafusion-search reads them, since it panics on each of these."""
        root = handle.open_root()

        def bad(why: str) -> MetaSchemaError:
            return MetaSchemaError(f"/{META_GROUP} of {handle.description}: {why}. Rebuild it: {INDEX_HINT}")

        try:
            group = root[META_GROUP]
        except KeyError:
            group = None
        except (ValueError, TypeError) as exc:
            raise bad(f"its zarr.json cannot be read ({type(exc).__name__}: {exc})") from exc
        if not isinstance(group, zarr.Group):
            raise MetaNotFoundError(f"store {handle.description} has no /{META_GROUP} table; {INDEX_HINT}")
        try:
            members = sorted(group.members(), key=lambda m: m[0])
        except (ValueError, TypeError, KeyError) as exc:
            raise bad(f"a column's zarr.json cannot be read ({type(exc).__name__}: {exc})") from exc
        lengths = {}
        for name, arr in members:
            problem = column_name_problem(name)
            if problem:
                raise bad(f"column {name!r} cannot be read back: {problem}")
            if not isinstance(arr, zarr.Array) or arr.ndim != 1:
                raise bad(f"column {name!r} is not a 1-D array")
            lengths[name] = arr.shape[0]
        if len(set(lengths.values())) > 1:
            raise bad(f"its columns have unequal lengths {lengths}")

    def _check_schema(self) -> None:
        names = set(self.schema.names)
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if not any(c in names for c in CRS_COLUMNS):
            missing.append(" or ".join(CRS_COLUMNS))
        if missing:
            raise MetaSchemaError(
                f"/meta lacks required column(s) {missing}; it has {sorted(names)}. Rebuild it: {INDEX_HINT}"
            )

    def sql(self, query: str, what: str = "") -> pa.Table:
        """The result of ``query`` (a Rust panic becomes QueryPanicError naming ``what`` or the query)."""
        with no_panic(what or f"query {query[:200]!r} on /meta of {self.description}"):
            return self.ctx.sql(query).to_arrow_table()
