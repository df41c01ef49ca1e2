"""Writing a merge result: a Zarr array with spatial:/proj: attributes, streamed block by block."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cubed
import zarr

from lazymerge.conventions import write_proj, write_spatial
from lazymerge.errors import StoreError

if TYPE_CHECKING:
    from lazymerge.merge import MergeResult


def _is_icechunk_session(obj: Any) -> bool:
    return type(obj).__module__.startswith("icechunk") and hasattr(obj, "commit")


def write_zarr(
    result: MergeResult,
    target: Any,
    *,
    path: str | None = None,
    executor: Any = None,
    message: str | None = None,
    callbacks: list | None = None,
) -> zarr.Array:
    """Stream ``result.array`` into a new Zarr array at ``target`` with spatial:/proj: attributes.

    ``target`` is a path, a zarr Store, or a writable Icechunk Session; ``path`` is the array's path in
    it (required for a session). Blocks go straight from the kernel into the array (no whole-array
    compute). An Icechunk session is committed (with ``message``) only after every block was written;
    if any task fails, nothing is committed and the session's changes are discarded.
    """
    session = target if _is_icechunk_session(target) else None
    if session is not None:
        if session.read_only:
            raise StoreError("to_zarr needs a writable Icechunk session: repo.writable_session(branch)")
        if not path:
            raise StoreError("to_zarr into an Icechunk session needs path=, the array's name in the repo")
        target = session.store
    arr = result.array
    try:
        out = zarr.create_array(
            target,
            name=path,
            shape=arr.shape,
            chunks=arr.chunksize,
            dtype=arr.dtype,
            fill_value=float("nan"),
            overwrite=True,
        )
        cubed.store(arr, out, executor=executor, callbacks=callbacks)
        write_spatial(out, result.spatial)
        write_proj(out, result.proj)
    except BaseException:
        if session is not None:
            session.discard_changes()
        raise
    if session is not None:
        session.commit(message or f"lazymerge: mosaic {arr.shape} at {path}")
    return out
