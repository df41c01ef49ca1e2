"""Sources found from a store's conventions: ScanIndex, scan_store() and select_overview().

Layout: source groups -> band groups (with ``multiscales``) -> level arrays, each level carrying its own
spatial:/proj:. A plain array carrying spatial:/proj: is a single-level band of its parent group; at the
store root it is a source of its own, with the band name ``None``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import zarr
from affine import Affine
from pyproj import CRS

from lazymerge.conventions import (
    Overview,
    ProjAttrs,
    has_spatial,
    read_multiscales,
    read_proj,
    read_spatial,
)
from lazymerge.datetimes import to_datetimes
from lazymerge.errors import ConventionError, StoreError
from lazymerge.geometry import lonlat_bounds
from lazymerge.stores import resolve_store

META_GROUP = "meta"
BANDS_COLUMN = "lazymerge:bands"  # /meta column: each source's bands and levels (JSON)
RESERVED_ATTRS = {"multiscales", "zarr_conventions", "nodata", "_FillValue", "id", "bbox"}


@dataclass(frozen=True)
class Level:
    """One readable array of a band: its path in the store and its own pixel grid."""

    path: str
    transform: tuple[float, float, float, float, float, float]
    shape: tuple[int, int]
    dtype: str
    nodata: float | None
    scale: float = 1.0
    chunks: tuple[int, int] = (0, 0)  # the array's chunk shape (rows, cols); what one read fetches

    @property
    def resolution(self) -> float:
        a, b, _, d, e, _ = self.transform
        return float(abs(a * e - b * d) ** 0.5)


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
        if key in arr.attrs and arr.attrs[key] is not None:
            return float(arr.attrs[key])
    if np.dtype(arr.dtype).kind == "f":
        return None
    fv = arr.fill_value
    return None if fv is None else float(fv)


def _level(arr: zarr.Array, scale: float = 1.0) -> Level:
    spatial = read_spatial(arr)
    return Level(
        path=arr.path,
        transform=spatial.transform,
        shape=tuple(int(v) for v in arr.shape[-2:]),
        dtype=str(np.dtype(arr.dtype)),
        nodata=_nodata(arr),
        scale=scale,
        chunks=tuple(int(v) for v in arr.chunks[-2:]),
    )


def read_band(group_or_array: zarr.Group | zarr.Array, name: str | None) -> tuple[Band, ProjAttrs]:
    """A band from a multiscales group (every level) or a plain array (one level), with its CRS."""
    if isinstance(group_or_array, zarr.Array):
        return Band(name, group_or_array.path, (_level(group_or_array),)), read_proj(group_or_array)
    overviews: list[Overview] = read_multiscales(group_or_array)
    levels = tuple(_level(group_or_array[ov.asset], ov.scale[0]) for ov in overviews)
    base = group_or_array[overviews[0].asset]
    try:
        proj = read_proj(base)
    except ConventionError:
        proj = read_proj(group_or_array)
    return Band(name, group_or_array.path, levels), proj


def _has_multiscales(group: zarr.Group) -> bool:
    attrs = group.attrs
    return "multiscales" in attrs


@dataclass
class ScanIndex:
    """Every source of a store, found from its conventions, in id order."""

    entries: list[SourceEntry]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    @property
    def band_names(self) -> list[str | None]:
        """Bands that every source has, in the first source's order."""
        if not self.entries:
            return []
        common = set(self.entries[0].bands)
        for e in self.entries[1:]:
            common &= set(e.bands)
        return [b for b in self.entries[0].bands if b in common]

    def table(self) -> pa.Table:
        """The /meta columns, one row per source, from the conventions (bbox as EPSG:4326 WKB)."""
        from lazymerge.geometry import bounds_to_wkb

        footprints = source_footprints(self.entries)
        epsg = [e.crs.to_epsg() for e in self.entries]
        cols: dict[str, Any] = {
            "id": pa.array([e.id for e in self.entries], pa.string()),
            "bbox": pa.array(bounds_to_wkb(footprints), pa.binary()),
            "proj:epsg": pa.array([-1 if v is None else v for v in epsg], pa.int64()),
            "proj:code": pa.array([crs_code(e.crs) for e in self.entries], pa.string()),
        }
        for i in range(6):
            cols[f"transform_{i}"] = pa.array([e.base.transform[i] for e in self.entries], pa.float64())
        cols["shape_x"] = pa.array([e.base.shape[1] for e in self.entries], pa.int64())
        cols["shape_y"] = pa.array([e.base.shape[0] for e in self.entries], pa.int64())
        if any(e.datetime for e in self.entries):
            cols["datetime"] = pa.array(to_datetimes([e.datetime for e in self.entries]), pa.timestamp("us"))
        cols[BANDS_COLUMN] = pa.array([bands_json(e.bands) for e in self.entries], pa.string())
        for key in sorted({k for e in self.entries for k in e.properties} - set(cols)):
            values = [e.properties.get(key) for e in self.entries]
            try:
                cols[key] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: keep them as text
                cols[key] = pa.array([None if v is None else str(v) for v in values], pa.string())
        return pa.table(cols)


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
                    ]
                    for lv in band.levels
                ],
            ]
            for name, band in bands.items()
        ],
        separators=(",", ":"),
    )


def bands_from_json(text: str) -> dict[str | None, Band]:
    """The inverse of ``bands_json``."""
    return {
        name: Band(
            name,
            path,
            tuple(
                Level(p, tuple(t), tuple(shape), dtype, nodata, scale, tuple(chunks))
                for p, t, shape, dtype, nodata, scale, chunks in levels
            ),
        )
        for name, path, levels in json.loads(text)
    }


def crs_code(crs: CRS) -> str:
    """``AUTH:CODE`` when the CRS has one, else its WKT2."""
    auth = crs.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else crs.to_wkt()


def source_footprints(entries: Sequence[SourceEntry]) -> np.ndarray:
    """(n, 4) EPSG:4326 bounds of each source's base level, densified, grouped by CRS for one call each."""
    out = np.full((len(entries), 4), np.nan)
    by_crs: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        by_crs.setdefault(crs_code(e.crs), []).append(i)
    for code, idx in by_crs.items():
        boxes = np.array([entries[i].bounds for i in idx])
        out[idx] = lonlat_bounds(CRS.from_user_input(code), boxes)
    return out


def scan_store(store: Any) -> ScanIndex:
    """Walk a store (any form ``merge`` accepts) and index every source it holds."""
    root = resolve_store(store).open_root()
    sources: dict[str, tuple[ProjAttrs, dict[str | None, Band]]] = {}

    def add(source_id: str, band_name: str | None, node: Any) -> None:
        band, proj = read_band(node, band_name)
        entry = sources.setdefault(source_id, (proj, {}))
        entry[1][band_name] = band

    def walk(group: zarr.Group, depth: int) -> None:
        for name, child in sorted(group.members(), key=lambda m: m[0]):
            if depth == 0 and name == META_GROUP:
                continue
            if isinstance(child, zarr.Group):
                if _has_multiscales(child):
                    parent = child.path.rpartition("/")[0]
                    add(parent or child.path, name if parent else None, child)
                else:
                    walk(child, depth + 1)
            elif has_spatial(child):
                parent = child.path.rpartition("/")[0]
                add(parent or child.path, name if parent else None, child)

    walk(root, 0)
    if not sources:
        raise StoreError(
            f"no sources found in {root.store}: expected groups with a multiscales attribute or arrays with "
            "spatial:/proj: attributes"
        )
    entries = []
    for sid, (proj, bands) in sorted(sources.items()):
        attrs = dict(root[sid].attrs)
        when = attrs.pop("datetime", None)
        entries.append(SourceEntry(sid, proj, bands, None if when is None else str(when), _properties(attrs)))
    return ScanIndex(entries)


def _properties(attrs: dict[str, Any]) -> dict[str, Any]:
    """A source group's own scalar attributes (e.g. ``cloud_cover``), which become /meta columns;
    convention attributes (``spatial:``, ``proj:``, ``multiscales`` ...) are not properties."""
    return {
        k: v
        for k, v in attrs.items()
        if ":" not in k and k not in RESERVED_ATTRS and isinstance(v, (bool, int, float, str))
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
