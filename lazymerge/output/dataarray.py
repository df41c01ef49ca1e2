"""MergeResult -> xarray.DataArray backed by the Cubed array, with rasterix and xproj."""

from __future__ import annotations

from typing import TYPE_CHECKING

import xarray as xr
import xproj  # noqa: F401  (registers the .proj accessor)
from rasterix import RasterIndex

if TYPE_CHECKING:
    from lazymerge.result import MergeResult


def to_xarray(result: MergeResult, name: str = "mosaic") -> xr.DataArray:
    """DataArray with dims ([time,] [band,] y, x), RasterIndex x/y coordinates, labelled band and time
    coordinates, and a spatial_ref CRS coordinate."""
    plan = result.plan
    dims = ("time",) * (plan.time_coords is not None) + ("band",) * plan.band_dim + ("y", "x")
    da = xr.DataArray(result.array, dims=dims, name=name)
    h, w = result.grid.shape
    code = result.proj.code
    index = RasterIndex.from_transform(
        affine=result.grid.transform, width=w, height=h, x_dim="x", y_dim="y", crs=code
    )
    da = da.assign_coords(xr.Coordinates.from_xindex(index))
    if plan.band_dim:
        da = da.assign_coords(band=list(plan.bands))
    if plan.time_coords is not None:
        da = da.assign_coords(time=plan.time_coords)
    return da.proj.assign_crs(spatial_ref=code, allow_override=True)
