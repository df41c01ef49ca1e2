"""MergeRequest: every merge/plan argument validated once, with errors that name the value and the fix."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyproj import CRS
from pyproj.exceptions import CRSError

from lazymerge.composite import QUALITY, parse_method
from lazymerge.errors import (
    InvalidBBoxError,
    InvalidChunkSizeError,
    InvalidCRSError,
    InvalidRequestError,
    InvalidResolutionError,
    UnknownColumnError,
)
from lazymerge.grid import TargetGrid
from lazymerge.planner.filters import parse_where
from lazymerge.planner.timegroups import parse_groupby
from lazymerge.resampling import parse_resampling
from lazymerge.stores import StoreHandle, resolve_store


@dataclass(frozen=True)
class SortKey:
    column: str
    descending: bool = False

    def sql(self) -> str:
        """ORDER BY term with the column quoted as an identifier (never pasted as SQL)."""
        quoted = '"' + self.column.replace('"', '""') + '"'
        return f"{quoted} {'DESC' if self.descending else 'ASC'} NULLS LAST"


@dataclass(frozen=True)
class MergeRequest:
    """A validated merge: where the sources are, the target grid, which bands, and their priority."""

    store: StoreHandle
    grid: TargetGrid
    bands: tuple[str | None, ...] | None  # None: the one band every source has
    band_dim: bool  # True when the user asked for a list of bands
    datafusion: bool
    sortby: tuple[SortKey, ...]
    groupby: str | None = None  # None, "time", "day" or "solar_day": a leading time dimension
    where: str | None = None  # SQL predicate over the source table, parsed by DataFusion
    cull: bool = False  # drop sources a chunk's higher-priority sources already cover (first-valid)
    resampling: str = "nearest"
    method: Any = "first"  # a compositing method name or class (lazymerge.composite)
    exact: bool = False  # transform every pixel exactly instead of through the checked control grid
    dtype: str | None = None  # output dtype (None: a float holding every source dtype)
    nodata: float | None = None  # output fill where no source has a value (None: NaN)

    @property
    def quality(self) -> str | None:
        """The name in ``method='quality:<name>'``, else None."""
        m = self.method
        return m[len(QUALITY) :] if isinstance(m, str) and m.startswith(QUALITY) else None

    def ranking(self, columns: Sequence[str]) -> tuple[SortKey, ...]:
        """The sort keys that give sources their priority: ``sortby``, after ``quality:<column>`` (highest
        first) when the quality name is a column of the source table."""
        if self.quality and self.quality in columns:
            return (SortKey(self.quality, True), *self.sortby)
        return self.sortby

    def check_sort_columns(self, columns: Sequence[str]) -> None:
        """Raise UnknownColumnError for a sortby column that is not in ``columns``."""
        for key in self.sortby:
            if key.column not in columns:
                raise UnknownColumnError(
                    f"sortby column {key.column!r} does not exist; available columns: {sorted(columns)}"
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


def build_request(
    *,
    store: Any,
    crs: Any,
    bbox: Any,
    resolution: Any,
    chunk_size: Any = (512, 512),
    bands: Any = None,
    datafusion: bool | None = None,
    sortby: Any = None,
    groupby: Any = None,
    where: Any = None,
    cull: bool = False,
    resampling: Any = "nearest",
    method: Any = "first",
    exact: bool = False,
    dtype: Any = None,
    nodata: Any = None,
) -> MergeRequest:
    """Validate every argument of merge()/plan() into a MergeRequest."""
    target_crs = parse_crs(crs)
    box = parse_bbox(bbox)
    res = parse_resolution(resolution)
    chunks = parse_chunk_size(chunk_size)
    band_names, band_dim = parse_bands(bands)
    keys = parse_sortby(sortby)
    group = parse_groupby(groupby)
    predicate = parse_where(where)
    resampling = parse_resampling(resampling)
    parse_method(method)
    if cull and method != "first":
        raise InvalidRequestError(
            f"cull=True drops covered sources, which only method='first' allows (not {method!r})"
        )
    out_dtype = parse_dtype(dtype, nodata)
    handle = resolve_store(store)
    if datafusion is None:
        from lazymerge.sources import META_GROUP

        datafusion = META_GROUP in handle.open_root()
    grid = TargetGrid.from_bbox(target_crs, box, res, chunks)
    return MergeRequest(
        handle,
        grid,
        band_names,
        band_dim,
        bool(datafusion),
        keys,
        group,
        predicate,
        bool(cull),
        resampling,
        method,
        bool(exact),
        out_dtype,
        None if nodata is None else float(nodata),
    )


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
