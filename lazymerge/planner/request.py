"""MergeRequest: every merge/plan argument, defined, documented and validated once."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np
from affine import Affine
from pyproj import CRS
from pyproj.exceptions import CRSError

from lazymerge.crs import CRSLike
from lazymerge.errors import (
    InvalidBBoxError,
    InvalidChunkSizeError,
    InvalidCRSError,
    InvalidRequestError,
    InvalidResolutionError,
    UnknownColumnError,
)
from lazymerge.grid import PixelGrid, TargetGrid, crossing_bbox, horizontal_crs
from lazymerge.kernel.composite import QUALITY, parse_method
from lazymerge.kernel.masks import parse_masks
from lazymerge.kernel.resampling import parse_band_resampling
from lazymerge.planner.filters import parse_where
from lazymerge.planner.limits import check_size, grid_size
from lazymerge.planner.timegroups import parse_groupby, parse_origin


@dataclass(frozen=True)
class SortKey:
    column: str
    descending: bool = False

    def sql(self) -> str:
        """ORDER BY term with the column quoted as an identifier (never pasted as SQL)."""
        quoted = '"' + self.column.replace('"', '""') + '"'
        return f"{quoted} {'DESC' if self.descending else 'ASC'} NULLS LAST"


def _field(default: Any, doc: str) -> Any:
    """A request field with its documentation (used by merge/plan docstrings and the CLI's help)."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, kw_only=True)
class MergeRequest:
    """A merge or plan, every argument but the store: validated once, when it is built.

    ``lazymerge.merge(store, **fields)`` and ``lazymerge.plan(store, **fields)`` take exactly these
    fields as keyword arguments, and ``lazymerge plan|run`` takes them as flags. Invalid values raise a
    typed ``InvalidRequestError`` subclass naming the value and the fix.
    """

    crs: CRSLike | None = _field(
        None, "Target CRS: anything pyproj accepts, e.g. 'EPSG:32618', WKT2, a pyproj.CRS."
    )
    bbox: tuple[float, float, float, float] | None = _field(
        None, "Target extent (xmin, ymin, xmax, ymax) in the target CRS."
    )
    resolution: float | None = _field(None, "Target pixel size, in the target CRS's units.")
    chunk_size: tuple[int, int] = _field((512, 512), "(rows, cols) of each output chunk; edges are ragged.")
    grid: Any = _field(
        None,
        "A ready grid instead of crs/bbox/resolution: a TargetGrid (its own chunking), a PixelGrid or an "
        "odc-geo GeoBox (chunked by chunk_size).",
    )
    bands: str | tuple[str, ...] | None = _field(
        None,
        "A band name (2-D result), a list of names (a leading band dimension, in that order), or None: "
        "every band all contributing sources share (several: a BandsInferredWarning says which).",
    )
    datafusion: bool | None = _field(
        None, "True: discover sources by SQL over /meta; False: scan the conventions; None: /meta if present."
    )
    sortby: str | tuple[str, ...] | None = _field(
        None,
        "Source-table column(s) giving priority ('-col' for descending): earlier sources win where they "
        "overlap. None keeps the table's row order.",
    )
    groupby: str | None = _field(
        None,
        "None: one composite; 'time', 'day', 'solar_day', 'week' (ISO), 'month', 'year' or an ISO 8601 "
        "duration ('P5D', 'P16D', 'P1M'): a leading time dimension, one composite per group, labelled by "
        "each bin's start in time_coords (needs a datetime per source).",
    )
    groupby_origin: str | None = _field(
        None, "Start of the first groupby duration bin (ISO 8601 date, for 'P16D' ...); default 1970-01-01."
    )
    where: str | None = _field(
        None, "SQL predicate over the source table's columns, e.g. 'cloud_cover < 20' (one expression)."
    )
    cull: bool = _field(
        False,
        "Drop, per chunk, sources that higher-priority ones already cover (method 'first' only; assumes "
        "sources are valid over their whole grid).",
    )
    resampling: str | dict[str, str] = _field(
        "nearest",
        "GDAL's names: nearest, bilinear, cubic, cubic_spline, lanczos, or the area statistics average, "
        "min, max, sum, rms, mode, med, q1, q3; or one per band, '*' for the others: "
        "{'SCL': 'nearest', '*': 'bilinear'} (each band's windows get its own halo).",
    )
    method: str | type = _field(
        "first",
        "How overlapping sources combine: first, last, min, max, mean, median, percentile:<0-100>, std, "
        "count, sum, quality:<band-or-column>, or a class with add/full/result (lazymerge.kernel.composite).",
    )
    exact: bool = _field(
        False, "Transform every pixel exactly instead of through the checked control grid (0.01 px)."
    )
    dtype: str | None = _field(
        None, "Output dtype (default: a float holding every source dtype); an integer dtype needs nodata."
    )
    nodata: float | None = _field(None, "Output value where no source has one (default NaN).")
    mask: Any = _field(
        None,
        "Pixel masks: a lazymerge.Mask (or a list; they combine) such as Mask(band='SCL', values=[3, 8, 9, "
        "10]) or Mask(band='QA_PIXEL', bits=[1, 3, 4], dilate=2). Masked pixels of a source count as nodata "
        "before compositing, so sources behind show through and reductions skip them; culling keeps every "
        "source.",
    )

    rescale: bool = _field(
        False,
        "Apply each source array's scale_factor/add_offset (CF) or raster:scale/raster:offset (STAC) "
        "before compositing, so sources with different offsets combine in physical units (float output; "
        "nodata is detected on the stored values).",
    )
    max_pixels: float | None = _field(
        None,
        "Refuse a target grid of more pixels (default 5e11, or LAZYMERGE_MAX_PIXELS): a typo in resolution "
        "fails at once.",
    )
    max_tasks: float | None = _field(
        None,
        "Refuse more kernel tasks, chunks x bands (default 500,000, or LAZYMERGE_MAX_TASKS): a tiny "
        "chunk_size fails at once.",
    )
    plan_dir: str | None = _field(
        None,
        "Directory where a large plan's table streams as Arrow IPC batches, read back memory-mapped (the "
        "file is unlinked once mapped; default: the system temporary directory, for plans of more than "
        "2,000,000 rows without culling).",
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "chunk_size", parse_chunk_size(self.chunk_size))
        if self.grid is None:
            missing = [k for k in ("crs", "bbox", "resolution") if getattr(self, k) is None]
            if missing:
                raise InvalidRequestError(
                    f"the target grid needs {', '.join(missing)} (or grid=, a TargetGrid, PixelGrid or "
                    "odc-geo GeoBox)"
                )
            crs = horizontal_crs(parse_crs(self.crs))
            set_(self, "crs", crs)
            set_(self, "bbox", parse_bbox(crossing_bbox(crs, self.bbox)))
            set_(self, "resolution", parse_resolution(self.resolution))
        else:
            given = [k for k in ("crs", "bbox", "resolution") if getattr(self, k) is not None]
            if given:
                raise InvalidRequestError(
                    f"pass either grid= or {', '.join(given)}, not both: grid already fixes the CRS, extent "
                    "and resolution"
                )
            set_(self, "grid", as_target_grid(self.grid, self.chunk_size))
        set_(self, "bands", _tuple_or_str(self.bands))
        set_(self, "sortby", _tuple_or_str(self.sortby))
        parse_bands(self.bands)
        self._check_size()
        parse_sortby(self.sortby)
        set_(self, "groupby", parse_groupby(self.groupby))
        parse_origin(self.groupby_origin)
        set_(self, "where", parse_where(self.where))
        set_(self, "resampling", parse_band_resampling(self.resampling))
        parse_method(self.method)
        if self.cull and self.method != "first":
            raise InvalidRequestError(
                f"cull=True drops covered sources, which only method='first' allows (not {self.method!r})"
            )
        set_(self, "dtype", parse_dtype(self.dtype, self.nodata))
        set_(self, "plan_dir", parse_plan_dir(self.plan_dir))
        set_(self, "mask", parse_masks(self.mask))
        set_(self, "nodata", None if self.nodata is None else float(self.nodata))
        for flag in ("cull", "exact", "rescale"):
            set_(self, flag, bool(getattr(self, flag)))
        if self.datafusion is not None:
            set_(self, "datafusion", bool(self.datafusion))
        self.target  # noqa: B018 -- the grid is built (and checked) now, not at first use

    def _check_size(self) -> None:
        """GridTooLargeError for more pixels or tasks than the limits allow, before any grid is built."""
        n_bands = len(self.band_names or ())
        if isinstance(self.grid, TargetGrid):
            rows, cols = self.grid.shape
            check_size(
                rows,
                cols,
                self.grid.chunk_size,
                n_bands,
                self.max_pixels,
                self.max_tasks,
                self.grid.resolution,
            )
        else:
            assert isinstance(self.bbox, tuple) and self.resolution is not None
            h, w = grid_size(self.bbox, self.resolution)
            check_size(h, w, self.chunk_size, n_bands, self.max_pixels, self.max_tasks, self.resolution)

    @cached_property
    def target(self) -> TargetGrid:
        """The target grid, tiled into chunks."""
        if isinstance(self.grid, TargetGrid):
            return self.grid
        assert isinstance(self.crs, CRS) and isinstance(self.bbox, tuple) and self.resolution is not None
        return TargetGrid.from_bbox(self.crs, self.bbox, self.resolution, self.chunk_size)

    @property
    def band_names(self) -> tuple[str | None, ...] | None:
        """The requested bands, or None (the band every source shares)."""
        return parse_bands(self.bands)[0]

    @property
    def band_dim(self) -> bool:
        """True when a list of bands was asked for (a leading band dimension)."""
        return parse_bands(self.bands)[1]

    @property
    def sort_keys(self) -> tuple[SortKey, ...]:
        return parse_sortby(self.sortby)

    @property
    def quality(self) -> str | None:
        """The name in ``method='quality:<name>'``, else None."""
        m = self.method
        return m[len(QUALITY) :] if isinstance(m, str) and m.startswith(QUALITY) else None

    def ranking(self, columns: Sequence[str]) -> tuple[SortKey, ...]:
        """The sort keys that give sources their priority: ``sortby``, after ``quality:<column>`` (highest
        first) when the quality name is a column of the source table."""
        if self.quality and self.quality in columns:
            return (SortKey(self.quality, True), *self.sort_keys)
        return self.sort_keys

    def check_sort_columns(self, columns: Sequence[str]) -> None:
        """Raise UnknownColumnError for a sortby column that is not in ``columns``."""
        for key in self.sort_keys:
            if key.column not in columns:
                raise UnknownColumnError(
                    f"sortby column {key.column!r} does not exist; available columns: {sorted(columns)}"
                )

    @classmethod
    def fields_doc(cls) -> str:
        """The numpy-style parameter list of every field, for docstrings."""
        lines = []
        for f in fields(cls):
            lines.append(f"{f.name}")
            lines.append(f"    {f.metadata['doc']} Default: ``{f.default!r}``.")
        return "\n".join(lines)


def _tuple_or_str(value: Any) -> Any:
    """A list of names as a tuple (hashable, immutable); a single name or None as is."""
    if value is None or isinstance(value, str):
        return value
    try:
        return tuple(value)
    except TypeError:
        return value


def as_target_grid(grid: Any, chunk_size: tuple[int, int]) -> TargetGrid:
    """A TargetGrid from what ``grid=`` accepts: a TargetGrid, a PixelGrid, or an odc-geo GeoBox."""
    if isinstance(grid, TargetGrid):
        return grid
    if isinstance(grid, PixelGrid):
        return TargetGrid(grid.crs, grid.transform, grid.shape, chunk_size)
    affine, shape, crs = (getattr(grid, k, None) for k in ("affine", "shape", "crs"))
    if affine is not None and shape is not None and crs is not None:  # odc-geo GeoBox
        if affine.b != 0 or affine.d != 0:
            raise InvalidRequestError(f"grid {grid!r} is rotated; lazymerge targets north-up grids")
        return TargetGrid(parse_crs(str(crs)), Affine(*tuple(affine)[:6]), tuple(shape), chunk_size)
    raise InvalidRequestError(
        f"grid {grid!r} is not a TargetGrid, PixelGrid or odc-geo GeoBox; pass one, or crs/bbox/resolution"
    )


def parse_crs(crs: Any) -> CRS:
    try:
        return CRS.from_user_input(crs)
    except (CRSError, TypeError, ValueError) as exc:
        raise InvalidCRSError(
            f"crs {crs!r} is not a CRS pyproj knows; pass e.g. 'EPSG:32618', a WKT2 string or a pyproj.CRS"
        ) from exc


def parse_bbox(bbox: Any) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in bbox)
    except (TypeError, ValueError) as exc:
        raise InvalidBBoxError(f"bbox {bbox!r} must be four numbers (xmin, ymin, xmax, ymax)") from exc
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InvalidBBoxError(f"bbox {bbox!r} must be four finite numbers (xmin, ymin, xmax, ymax)")
    xmin, ymin, xmax, ymax = values
    if xmin >= xmax:
        raise InvalidBBoxError(
            f"bbox {bbox!r} has xmin {xmin} >= xmax {xmax}; order it (xmin, ymin, xmax, ymax)"
        )
    if ymin >= ymax:
        raise InvalidBBoxError(
            f"bbox {bbox!r} has ymin {ymin} >= ymax {ymax}; order it (xmin, ymin, xmax, ymax)"
        )
    return values


def parse_resolution(resolution: Any) -> float:
    ok = isinstance(resolution, numbers.Real) and not isinstance(resolution, bool)
    if not ok or not math.isfinite(float(resolution)) or float(resolution) <= 0:
        raise InvalidResolutionError(
            f"resolution {resolution!r} must be a positive number in the target CRS's units (e.g. 10.0)"
        )
    return float(resolution)


def parse_chunk_size(chunk_size: Any) -> tuple[int, int]:
    def is_int(v: Any) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if isinstance(chunk_size, (str, bytes)) or not isinstance(chunk_size, Sequence) or len(chunk_size) != 2:
        raise InvalidChunkSizeError(
            f"chunk_size {chunk_size!r} must be two positive integers, e.g. (512, 512)"
        )
    if not all(is_int(v) and v > 0 for v in chunk_size):
        raise InvalidChunkSizeError(
            f"chunk_size {chunk_size!r} must be two positive integers, e.g. (512, 512)"
        )
    return (int(chunk_size[0]), int(chunk_size[1]))


def parse_sortby(sortby: Any) -> tuple[SortKey, ...]:
    if sortby is None:
        return ()
    items = [sortby] if isinstance(sortby, str) else list(sortby)
    keys = []
    for item in items:
        if not isinstance(item, str) or not item.lstrip("-"):
            raise InvalidRequestError(f"sortby entry {item!r} must be a column name, '-name' for descending")
        keys.append(SortKey(item[1:], True) if item.startswith("-") else SortKey(item))
    return tuple(keys)


def parse_bands(bands: Any) -> tuple[tuple[str | None, ...] | None, bool]:
    if bands is None:
        return None, False
    if isinstance(bands, str):
        return (bands,), False
    values = tuple(bands)
    if not values or not all(isinstance(b, str) for b in values):
        raise InvalidRequestError(f"bands {bands!r} must be a band name or a non-empty list of band names")
    if len(set(values)) != len(values):
        raise InvalidRequestError(f"bands {bands!r} lists a band twice")
    return values, True


def parse_dtype(dtype: Any, nodata: Any) -> str | None:
    """The requested output dtype; an integer one needs a nodata value it can hold."""
    if dtype is None:
        return None
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise InvalidRequestError(
            f"dtype {dtype!r} is not a numpy dtype, e.g. 'uint16' or 'float32'"
        ) from exc
    if dt.kind in "iu":
        if nodata is None:
            raise InvalidRequestError(f"dtype {dt} is an integer type: pass nodata= (a value it can hold)")
        info = np.iinfo(dt)
        if not (info.min <= float(nodata) <= info.max) or float(nodata) != int(nodata):
            raise InvalidRequestError(f"nodata {nodata!r} does not fit dtype {dt} ({info.min}..{info.max})")
    elif dt.kind != "f":
        raise InvalidRequestError(f"dtype {dt} is neither an integer nor a float type")
    return str(dt)


def parse_plan_dir(value: Any) -> str | None:
    """``plan_dir``: an existing local directory (as a string), or None."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.path.isdir(value):
        raise InvalidRequestError(
            f"plan_dir={value!r} is not an existing local directory; create it, or pass None for the "
            "system temporary directory"
        )
    return os.fspath(value)
