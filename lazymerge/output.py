"""Writing a merge result: a Zarr array with spatial:/proj: attributes, streamed block by block."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cubed
import zarr

from lazymerge.conventions import write_proj, write_spatial

if TYPE_CHECKING:
    from lazymerge.merge import MergeResult


def write_zarr(result: MergeResult, target: Any, *, executor: Any = None) -> zarr.Array:
    """Stream ``result.array`` into a new Zarr array at ``target`` (path or store) with spatial:/proj:.

    Blocks go straight from the kernel into the array (no whole-array compute).
    """
    arr = result.array
    out = zarr.create_array(
        target,
        shape=arr.shape,
        chunks=arr.chunksize,
        dtype=arr.dtype,
        fill_value=float("nan"),
        overwrite=True,
    )
    cubed.store(arr, out, executor=executor)
    write_spatial(out, result.spatial)
    write_proj(out, result.proj)
    return out
