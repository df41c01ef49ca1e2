"""MergeResult: the lazy mosaic with its grid, plan and outputs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cubed
import numpy as np
import pyarrow as pa

from lazymerge import arrow
from lazymerge.catalog.conventions import ProjAttrs, SpatialAttrs
from lazymerge.contract.model import Plan
from lazymerge.contract.tasks import KernelTask
from lazymerge.errors import InvalidRequestError
from lazymerge.grid import TargetGrid

if TYPE_CHECKING:
    import xarray
    import zarr

    from lazymerge.kernel.reads import SkippedRead


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

    def composition(self, plot: str | None = None) -> pa.Table:
        """How many pixels each source won, per time group: an Arrow table (``[time,] source, source_id,
        pixels, fraction``, largest first within each group), and a bar chart PNG at ``plot`` if given.

        Needs ``merge(..., provenance=True)``; computes the provenance array (int32, one value per output
        pixel of the first band)."""
        if self.provenance is None:
            raise InvalidRequestError(
                "composition() counts each pixel's source: merge with provenance=True (and a method that "
                "takes each pixel from one source: first, last, min, max, quality:...)"
            )
        prov = np.asarray(self.provenance.compute())
        if self.plan.band_dim:  # the first band's sources
            prov = prov[:, 0] if self.time_coords is not None else prov[0]
        groups = prov.reshape(-1, *prov.shape[-2:]) if self.time_coords is not None else prov[None]
        table = self.plan.table
        ids = dict(zip(table["source"].to_pylist(), table["source_id"].to_pylist(), strict=True))
        rows: dict[str, list[Any]] = {"time": [], "source": [], "source_id": [], "pixels": [], "fraction": []}
        for k, layer in enumerate(groups):
            sources, counts = np.unique(layer[layer >= 0], return_counts=True)
            for i in np.argsort(-counts, kind="stable"):
                rows["time"].append(None if self.time_coords is None else self.time_coords[k])
                rows["source"].append(int(sources[i]))
                rows["source_id"].append(ids.get(int(sources[i])))
                rows["pixels"].append(int(counts[i]))
                rows["fraction"].append(float(counts[i]) / layer.size)
        if self.time_coords is None:
            del rows["time"]
        out = pa.table({name: arrow.infer(items) for name, items in rows.items()})
        if plot is not None:
            _plot_composition(out, plot)
        return out

    def to_xarray(self) -> xarray.DataArray:
        """A DataArray backed by the Cubed array, with rasterix RasterIndex coords and the xproj CRS."""
        from lazymerge.output.dataarray import to_xarray

        return to_xarray(self)

    def to_zarr(self, target: Any, **kwargs: Any) -> zarr.Array:
        """Stream the blocks into Zarr at ``target``; see ``lazymerge.output.write.write_zarr`` for the
        options (executor, resume, overwrite, overviews, progress). An existing target is refused unless
        ``overwrite=`` or ``resume=`` says otherwise; an Icechunk session is committed only on success."""
        from lazymerge.output.write import write_zarr

        return write_zarr(self, target, **kwargs)

    def to_cog(
        self,
        path: Any,
        *,
        overviews: int | str = "auto",
        compress: str = "deflate",
        blocksize: int = 512,
        **kwargs: Any,
    ) -> str:
        """Stream the blocks into a Cloud-Optimized GeoTIFF at ``path`` (local or object-store URL), with
        internal overviews, nodata, CRS and transform; see ``lazymerge.output.cog.write_cog`` for the
        options (resampling, overwrite, max_workers). Needs rasterio (``pip install lazymerge[formats]``)."""
        from lazymerge.output.cog import write_cog

        return write_cog(self, path, overviews=overviews, compress=compress, blocksize=blocksize, **kwargs)

    def skipped_reads(self) -> list[SkippedRead]:
        """With ``on_error="skip"``: every source window the tasks run so far could not read (each
        rendered as nodata), naming the source array, its window, the target block and the error."""
        from lazymerge.kernel.reads import skipped_reads

        return skipped_reads(self.task.plan_path)


def _plot_composition(table: pa.Table, path: str, top: int = 30) -> None:
    """A horizontal bar chart of the pixels each source won (the ``top`` largest, summed over time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals: dict[str, int] = {}
    for sid, n in zip(table["source_id"].to_pylist(), table["pixels"].to_pylist(), strict=True):
        totals[str(sid)] = totals.get(str(sid), 0) + int(n)
    names = sorted(totals, key=lambda s: -totals[s])[:top]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(names) + 1))
    ax.barh(names[::-1], [totals[n] for n in names[::-1]])
    ax.set_xlabel("pixels won")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
