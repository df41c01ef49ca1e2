"""The one place where what the user passes becomes what each layer needs.

Accepted: an obstore store (LocalStore, S3Store, MemoryStore ...), a zarr Store, an Icechunk Session,
or a path / URL. The zarr side reads arrays; the obstore (or Icechunk) side feeds DataFusion.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, TypeGuard

import zarr
import zarr.abc.store
import zarr.storage

from lazymerge.errors import StoreError

if TYPE_CHECKING:
    import cubed
    from icechunk import Session
    from obstore.store import ObjectStore

StoreLike: TypeAlias = "str | os.PathLike[str] | zarr.abc.store.Store | ObjectStore | Session | StoreHandle"
"""What ``merge``/``plan`` accept as a store: a path or URL, a zarr Store, an obstore store or an
Icechunk Session."""


@dataclass(frozen=True)
class StoreHandle:
    """A store resolved for every layer: ``zarr_store`` is picklable and is what tasks read from."""

    zarr_store: zarr.abc.store.Store
    obstore: ObjectStore | None = None
    icechunk_session: Session | None = None
    description: str = ""

    def open_root(self) -> zarr.Group:
        """The store's root group; the first read of a merge, so access errors surface here, typed."""
        try:
            return zarr.open_group(self.zarr_store, mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            raise StoreError(f"{self.description} is not a Zarr group: {exc}") from exc
        except Exception as exc:
            if not _is_obstore(exc):
                raise
            raise StoreError(
                f"cannot read {self.description}: {_store_message(exc)}. Check the store's credentials, "
                "endpoint and region (given on the store object or in the AWS_*/GOOGLE_*/AZURE_* environment)"
            ) from exc


def _is_obstore(obj: object) -> bool:
    """Whether obj (a store or an exception) comes from obstore."""
    return type(obj).__module__.startswith("obstore")


def _is_obstore_store(obj: object) -> TypeGuard[ObjectStore]:
    return _is_obstore(obj)


def _store_message(exc: Exception) -> str:
    """obstore's message (bucket, key, HTTP status and the server's error), without its debug dump."""
    return str(exc).split("Debug source:")[0].strip()


def _is_icechunk_session(obj: object) -> TypeGuard[Session]:
    return type(obj).__module__.startswith("icechunk") and hasattr(obj, "store")


def _from_path(path: str | os.PathLike[str]) -> StoreHandle:
    from obstore.store import LocalStore as ObLocalStore
    from obstore.store import from_url

    text = os.fspath(path)
    if "://" in text and not text.startswith("file://"):
        try:
            ob = from_url(text)
        except Exception as exc:  # obstore raises its own error types per scheme
            raise StoreError(f"cannot open store URL {text!r}: {exc}") from exc
        return StoreHandle(zarr.storage.ObjectStore(ob, read_only=True), ob, None, text)
    local = Path(text.removeprefix("file://")).expanduser().resolve()
    if not local.is_dir():
        raise StoreError(
            f"store path {text!r} does not exist or is not a directory; pass an existing Zarr store"
        )
    return StoreHandle(
        zarr.storage.LocalStore(str(local), read_only=True), ObLocalStore(str(local)), None, str(local)
    )


def is_object_url(location: object) -> bool:
    """An object-store URL (``s3://``, ``gs://``, ``az://``, ``http(s)://`` ...), not a local path."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def zarr_location(location: str) -> str | zarr.storage.ObjectStore:
    """What zarr opens for a location lazymerge writes to (a work_dir's plan, block ids, an output URL):
    an object-store URL as an obstore-backed zarr store (credentials from the environment, as for source
    URLs), since zarr alone would open it through fsspec, which needs s3fs or gcsfs; a path as itself."""
    if not is_object_url(location):
        return location
    from obstore.store import from_url

    return zarr.storage.ObjectStore(from_url(str(location)))


def with_object_work_dir(spec: cubed.Spec) -> cubed.Spec:
    """``spec`` with Cubed's intermediate arrays on obstore (``storage_options={"use_obstore": True}``)
    when its work_dir is an object-store URL, rather than fsspec (which needs s3fs or gcsfs)."""
    options = dict(spec.storage_options or {})
    if not is_object_url(spec.work_dir) or options.get("use_obstore"):
        return spec
    import cubed

    return cubed.Spec(
        work_dir=spec.work_dir,
        allowed_mem=spec.allowed_mem,
        reserved_mem=spec.reserved_mem,
        executor=spec._executor,
        executor_name=spec.executor_name,
        executor_options=spec.executor_options,
        storage_options={**options, "use_obstore": True},
        zarr_compressor=spec.zarr_compressor,
        intermediate_store=spec._intermediate_store,
    )


def resolve_store(store: StoreLike) -> StoreHandle:
    """Turn any accepted store into a StoreHandle. Raises StoreError for anything else."""
    if isinstance(store, StoreHandle):
        return store
    if isinstance(store, (str, os.PathLike)):
        return _from_path(store)
    if _is_obstore_store(store):
        return StoreHandle(zarr.storage.ObjectStore(store, read_only=True), store, None, repr(store))
    if _is_icechunk_session(store):
        return StoreHandle(store.store, None, store, f"icechunk session {store!r}")
    if isinstance(store, zarr.storage.LocalStore):
        from obstore.store import LocalStore as ObLocalStore

        return StoreHandle(store, ObLocalStore(str(store.root)), None, str(store.root))
    if isinstance(store, zarr.storage.ObjectStore):
        return StoreHandle(store, store.store, None, repr(store))
    if isinstance(store, zarr.abc.store.Store):
        return StoreHandle(store, None, None, repr(store))
    raise StoreError(
        f"store of type {type(store).__name__} is not supported; pass an obstore store, a zarr Store, "
        "an Icechunk Session, or a path/URL"
    )
