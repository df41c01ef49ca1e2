"""What a store holds, source by source: ``SourceEntry`` -> ``Band`` -> ``Level`` (one readable array and
its pixel grid), read from the conventions, and ``select_overview``.

Layout: source groups -> band groups (with ``multiscales``) -> level arrays, each level carrying its own
spatial:/proj:. A plain array carrying spatial:/proj: is a single-level band of its parent group; at the
store root it is a source of its own, with the band name ``None``.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import zarr
from affine import Affine
from pyproj import CRS

from lazymerge.catalog.conventions import (
    Overview,
    ProjAttrs,
    array_member,
    read_multiscales,
    read_proj,
    read_spatial,
    yx,
)
from lazymerge.catalog.validate import check_overview
from lazymerge.crs import crs_from
from lazymerge.errors import ConventionError
from lazymerge.grid import PixelGrid


@dataclass(frozen=True)
class Level:
    """One readable array of a band: its path in the store, its pixel grid (transform, shape and, where
    known, CRS), its dtype and nodata. What the planner selects and the kernel reads."""

    path: str
    transform: tuple[float, float, float, float, float, float]
    shape: tuple[int, int]
    dtype: str
    nodata: float | None
    scale: float = 1.0
    chunks: tuple[int, int] = (0, 0)  # the array's chunk shape (rows, cols); what one read fetches
    crs: str = ""  # "AUTH:CODE" or WKT; empty where the source (not the level) carries it
    scale_factor: float = 1.0  # physical value = stored * scale_factor + add_offset (with rescale=True)
    add_offset: float = 0.0

    @property
    def resolution(self) -> float:
        a, b, _, d, e, _ = self.transform
        return float(abs(a * e - b * d) ** 0.5)

    @cached_property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    @property
    def grid(self) -> PixelGrid:
        """The level's pixel grid (needs ``crs``)."""
        return PixelGrid(crs_from(self.crs), self.affine, self.shape)


@dataclass(frozen=True)
class Band:
    """A band of a source: its levels, finest first."""

    name: str | None
    path: str
    levels: tuple[Level, ...]


@dataclass(frozen=True)
class SourceEntry:
    """One source: its id (group path), CRS, bands, and acquisition time (its ``datetime`` attribute)."""

    id: str
    proj: ProjAttrs
    bands: dict[str | None, Band] = field(default_factory=dict)
    datetime: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)  # other scalar attributes: /meta columns

    @property
    def crs(self) -> CRS:
        return CRS.from_user_input(self.proj.crs_input)

    @property
    def base(self) -> Level:
        """The finest level of the first band: what /meta's transform and shape describe."""
        return next(iter(self.bands.values())).levels[0]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the base level in the source CRS."""
        return level_bounds(self.base)


def level_bounds(level: Level) -> tuple[float, float, float, float]:
    t = Affine(*level.transform)
    h, w = level.shape
    xs, ys = zip(*(t @ (c, r) for c, r in ((0, 0), (w, 0), (0, h), (w, h))), strict=True)
    return (min(xs), min(ys), max(xs), max(ys))


def _nodata(arr: zarr.Array) -> float | None:
    """The value that marks missing pixels: an explicit ``nodata``/``_FillValue`` attribute; else NaN for
    floats (always invalid) and the zarr fill_value for integers."""
    for key in ("nodata", "_FillValue"):
        value = arr.attrs.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConventionError(f"{key} attribute of array {arr.path!r} is {value!r}; write a number")
        try:
            return float(value)
        except ValueError:
            raise ConventionError(
                f"array {arr.path!r}: attribute {key} = {value!r} is not a number; write the pixel value "
                "that marks missing data (or NaN, or remove it) and re-run `lazymerge index`"
            ) from None
    if np.dtype(arr.dtype).kind == "f":
        return None
    fv = arr.fill_value
    return None if fv is None else float(fv)


def _linear(arr: zarr.Array) -> tuple[float, float]:
    """(scale, offset) from physical values to stored ones: CF ``scale_factor``/``add_offset``, else STAC
    ``raster:scale``/``raster:offset``; (1, 0) where neither is set."""
    out = []
    for keys, default in ((("scale_factor", "raster:scale"), 1.0), (("add_offset", "raster:offset"), 0.0)):
        value = next((arr.attrs[k] for k in keys if arr.attrs.get(k) is not None), default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ConventionError(
                f"{'/'.join(keys)} attribute of array {arr.path!r} is {value!r}; write a number"
            )
        out.append(float(value))
    return out[0], out[1]


def _level(arr: zarr.Array, scale: float = 1.0) -> Level:
    transform = read_spatial(arr).transform
    assert transform is not None  # read_spatial raises ConventionError when there is none
    factor, offset = _linear(arr)
    return Level(
        path=arr.path,
        transform=transform,
        shape=yx(arr, arr.shape),
        dtype=str(np.dtype(arr.dtype)),
        nodata=_nodata(arr),
        scale=scale,
        chunks=yx(arr, arr.chunks),
        scale_factor=factor,
        add_offset=offset,
    )


def read_band(group_or_array: zarr.Group | zarr.Array, name: str | None) -> tuple[Band, ProjAttrs]:
    """A band from a multiscales group (every level) or a plain array (one level), with its CRS."""
    if isinstance(group_or_array, zarr.Array):
        return Band(name, group_or_array.path, (_level(group_or_array),)), read_proj(group_or_array)
    overviews: list[Overview] = read_multiscales(group_or_array)
    levels = tuple(_level(array_member(group_or_array, ov.asset), ov.scale[0]) for ov in overviews)
    base_scale = overviews[0].scale
    for ov, lv in zip(overviews[1:], levels[1:], strict=True):
        relative = tuple(s / b for s, b in zip(ov.scale, base_scale, strict=True))
        check_overview(group_or_array.path, ov.asset, relative, levels[0].transform, lv.transform, lv.shape)
    base = array_member(group_or_array, overviews[0].asset)
    try:
        proj = read_proj(base)
    except ConventionError:
        proj = read_proj(group_or_array)
    return Band(name, group_or_array.path, levels), proj


def bands_json(bands: dict[str | None, Band]) -> str:
    """A source's bands and levels as compact JSON: what the planner needs, so that planning from /meta
    never opens the source groups."""
    return json.dumps(
        [
            [
                name,
                band.path,
                [
                    [
                        lv.path,
                        list(lv.transform),
                        list(lv.shape),
                        lv.dtype,
                        lv.nodata,
                        lv.scale,
                        list(lv.chunks),
                        lv.scale_factor,
                        lv.add_offset,
                    ]
                    for lv in band.levels
                ],
            ]
            for name, band in bands.items()
        ],
        separators=(",", ":"),
    )


def bands_from_json(text: str, memo: dict | None = None) -> dict[str | None, Band]:
    """The inverse of ``bands_json``. With ``memo`` (one dict shared by many calls), equal transforms,
    shapes and chunks are one tuple across all the sources parsed: 100,000 sources' levels then take a
    fraction of the memory."""
    if memo is None:
        memo = {}

    def one(v: list) -> tuple:  # keyed by bytes and types: -0.0 is not 0.0 here, nor 1 1.0
        try:
            return memo.setdefault((struct.pack(f"{len(v)}d", *v), *map(type, v)), tuple(v))
        except (struct.error, TypeError):  # not numbers (nor a list): the readers' checks refuse it
            return tuple(v)

    return {
        name: Band(
            name,
            path,
            tuple(
                Level(p, one(t), one(shape), sys.intern(dtype), nodata, scale, one(chunks), "", *linear)
                for p, t, shape, dtype, nodata, scale, chunks, *linear in levels
            ),
        )
        for name, path, levels in json.loads(text)
    }


def select_overview(overviews: Sequence[Any], target_res: float, native_res: float) -> Any:
    """The coarsest overview whose resolution is still <= target_res; the finest when none is.

    ``overviews`` are ``Overview`` (from read_multiscales) or ``Level`` objects; each level's own
    transform decides its resolution, ``native_res * scale`` where it has none.
    """
    if not overviews:
        return None

    def res(ov: Any) -> float:
        if isinstance(ov, Level):
            return ov.resolution
        return ov.resolution(native_res)

    ordered = sorted(overviews, key=res)
    best = ordered[0]
    for ov in ordered:
        if res(ov) <= target_res * (1 + 1e-9):
            best = ov
    return best
