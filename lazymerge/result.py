"""MergeResult: the lazy mosaic with its grid, plan and outputs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cubed
import numpy as np

from lazymerge.catalog.conventions import ProjAttrs, SpatialAttrs
from lazymerge.contract.model import Plan
from lazymerge.contract.tasks import KernelTask
from lazymerge.grid import TargetGrid

if TYPE_CHECKING:
    import xarray
    import zarr


@dataclass(frozen=True)
class MergeResult:
    """What ``lazymerge.merge`` returns. Unpacks as ``(array, spatial, proj, time_coords)``.

    Attributes
    ----------
    array
        The lazy ``cubed.Array`` (``([time,] [band,] y, x)``), nodata (NaN by default) where no source is.
    spatial, proj
        The target grid as spatial: and proj: attributes (``transform == (res, 0, xmin, 0, -res, ymax)``).
    time_coords
        ``datetime64[ns]`` labels of the time groups, or None without ``groupby``.
    plan
        The Plan the array runs.
    grid
        The TargetGrid.
    task
        What each block's task carries besides its block id.
    provenance
        With ``provenance=True``: an int32 array of each pixel's source table row (-1: none).
    """

    array: cubed.Array
    spatial: SpatialAttrs
    proj: ProjAttrs
    time_coords: np.ndarray | None
    plan: Plan
    grid: TargetGrid
    task: KernelTask
    provenance: cubed.Array | None = None

    def __iter__(self) -> Iterator[Any]:
        """``arr, spatial, proj, time_coords = result``, as the seed's API returned."""
        return iter((self.array, self.spatial, self.proj, self.time_coords))

    def to_xarray(self) -> xarray.DataArray:
        """A DataArray backed by the Cubed array, with rasterix RasterIndex coords and the xproj CRS."""
        from lazymerge.output.dataarray import to_xarray

        return to_xarray(self)

    def to_zarr(self, target: Any, **kwargs: Any) -> zarr.Array:
        """Stream the blocks into Zarr at ``target``; see ``lazymerge.output.write.write_zarr`` for the
        options (executor, resume, overviews, progress; an Icechunk session is committed only on success)."""
        from lazymerge.output.write import write_zarr

        return write_zarr(self, target, **kwargs)
