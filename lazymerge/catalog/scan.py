"""Finding sources from a store's conventions alone: ``scan_store`` -> ``ScanIndex`` (the /meta table's
rows, without /meta)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import zarr
from pyproj import CRS
from zarr.core.sync import sync as zarr_sync

from lazymerge import arrow
from lazymerge.catalog.conventions import ProjAttrs, has_spatial
from lazymerge.catalog.datetimes import to_datetimes
from lazymerge.catalog.footprints import lonlat_bounds
from lazymerge.catalog.layout import BANDS_COLUMN, META_GROUP, RESERVED_ATTRS
from lazymerge.catalog.sources import Band, SourceEntry, bands_json, read_band
from lazymerge.catalog.stores import resolve_store
from lazymerge.catalog.validate import column_name_problem, footprint_problem, source_crs
from lazymerge.crs import crs_code
from lazymerge.errors import (
    ConventionError,
    InvalidSourceError,
    MetaColumnWarning,
    SkippedSourceWarning,
    StoreError,
)


def _has_multiscales(group: zarr.Group) -> bool:
    attrs = group.attrs
    return "multiscales" in attrs


@dataclass
class ScanIndex:
    """Every source of a store, found from its conventions, in id order."""

    entries: list[SourceEntry]
    footprints: np.ndarray | None = None  # (n, 4) EPSG:4326 bounds, computed when validated

    def lonlat(self) -> np.ndarray:
        """(n, 4) EPSG:4326 bounds of each source's base level (west > east across the antimeridian)."""
        if self.footprints is None:
            self.footprints = source_footprints(self.entries)
        return self.footprints

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
        from lazymerge.catalog.footprints import bounds_to_wkb

        footprints = self.lonlat()
        epsg = [e.crs.to_epsg() for e in self.entries]
        cols: dict[str, Any] = {
            "id": arrow.strings([e.id for e in self.entries]),
            "bbox": arrow.strings(bounds_to_wkb(footprints), pa.binary()),
            "proj:epsg": arrow.column(np.array([-1 if v is None else v for v in epsg], dtype="i8")),
            "proj:code": arrow.strings([crs_code(e.crs) for e in self.entries]),
        }
        for i in range(6):
            cols[f"transform_{i}"] = arrow.column(np.array([e.base.transform[i] for e in self.entries], "f8"))
        cols["shape_x"] = arrow.column(np.array([e.base.shape[1] for e in self.entries], dtype="i8"))
        cols["shape_y"] = arrow.column(np.array([e.base.shape[0] for e in self.entries], dtype="i8"))
        if any(e.datetime for e in self.entries):
            times = to_datetimes([e.datetime for e in self.entries])
            cols["datetime"] = arrow.column(times, np.isnat(times))
        cols[BANDS_COLUMN] = arrow.strings([bands_json(e.bands) for e in self.entries])
        keys = sorted({k for e in self.entries for k in e.properties} - set(cols))
        unfit = [k for k in keys if column_name_problem(k)]
        if unfit:
            warnings.warn(
                f"source attribute(s) {unfit} not indexed: {column_name_problem(unfit[0])}. Rename the "
                "attribute to use it in where=/sortby",
                MetaColumnWarning,
                stacklevel=3,
            )
        for key in (k for k in keys if k not in unfit):
            values = [e.properties.get(key) for e in self.entries]
            try:
                cols[key] = arrow.infer(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # mixed or huge: keep them as text
                cols[key] = arrow.strings([None if v is None else str(v) for v in values])
        return pa.table(cols)


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


def scan_store(store: Any, skip_invalid: bool = False) -> ScanIndex:
    """Walk a store (any form ``merge`` accepts) and index every source it holds, validated
    (``lazymerge.catalog.validate``).

    Every invalid source is reported at once: InvalidSourceError lists each by path with what is wrong;
    with ``skip_invalid=True`` they are left out instead, with a SkippedSourceWarning naming each.
    """
    handle = resolve_store(store)
    root = handle.open_root()
    sources: dict[str, tuple[ProjAttrs, dict[str | None, Band]]] = {}
    problems: dict[str, list[str]] = {}

    def add(source_id: str, band_name: str | None, node: Any) -> None:
        try:
            band, proj = read_band(node, band_name)
        except (ConventionError, ValueError, TypeError, KeyError) as exc:  # bad attributes or metadata
            problems.setdefault(source_id, []).append(_reason(exc, node.path))
            return
        entry = sources.setdefault(source_id, (proj, {}))
        entry[1][band_name] = band

    def walk(group: zarr.Group, depth: int) -> None:
        for name, child in _members(group, problems):
            if depth == 0 and (name == META_GROUP or name.startswith(".")):  # hidden: not sources
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
    entries = []
    for sid, (proj, bands) in sorted(sources.items()):
        if sid in problems:  # one of its bands is bad: the source is
            continue
        attrs = dict(root[sid].attrs)
        when = attrs.pop("datetime", None)
        entries.append(SourceEntry(sid, proj, bands, None if when is None else str(when), _properties(attrs)))
    entries, footprints = _validate(entries, problems)
    if problems:
        listing = "; ".join(f"{path}: {' / '.join(why)}" for path, why in sorted(problems.items()))
        if not skip_invalid:
            raise InvalidSourceError(
                f"{len(problems)} invalid source(s) in {handle.description}: {listing}. Fix them, or index "
                "the others with `lazymerge index --skip-invalid` (write_meta(store, skip_invalid=True))",
                problems,
            )
        warnings.warn(
            f"skipped {len(problems)} invalid source(s) in {handle.description}: {listing}",
            SkippedSourceWarning,
            stacklevel=2,
        )
    if not entries:
        raise StoreError(
            f"no {'valid ' if problems else ''}sources found in {handle.description}: expected groups with a "
            "multiscales attribute or arrays with spatial:/proj: attributes"
        )
    return ScanIndex(entries, footprints)


def _reason(exc: Exception, path: str) -> str:
    """What a validation error says, naming the node when the error does not."""
    if isinstance(exc, ConventionError):
        return str(exc)
    return f"{path!r} cannot be read ({type(exc).__name__}: {exc})"


def _members(group: zarr.Group, problems: dict[str, list[str]]) -> list[tuple[str, Any]]:
    """The group's children by name; one whose metadata cannot be read (a torn ``zarr.json``) is recorded
    in ``problems`` under its path, and the others are still returned."""
    try:
        return sorted(group.members(), key=lambda m: m[0])
    except (ValueError, TypeError, KeyError):
        pass

    async def names() -> list[str]:
        return [n async for n in group.store.list_dir(group.path)]

    out = []
    for name in sorted(zarr_sync(names())):
        if name in ("zarr.json", ".zgroup", ".zattrs", ".zarray", ".zmetadata"):
            continue
        path = f"{group.path}/{name}" if group.path else name
        try:
            out.append((name, group[name]))
        except KeyError:
            continue  # not a node (a stray directory or key)
        except (ValueError, TypeError) as exc:
            problems.setdefault(path, []).append(
                f"{path}/zarr.json cannot be read ({type(exc).__name__}: {exc}); rewrite or remove that node"
            )
    return out


def _validate(
    entries: list[SourceEntry], problems: dict[str, list[str]]
) -> tuple[list[SourceEntry], np.ndarray]:
    """The entries whose CRS is horizontal and whose footprint lies in its area of use, with their
    EPSG:4326 footprints; the others are recorded in ``problems``."""
    good = []
    for e in entries:
        try:
            source_crs(e.proj.crs_input, f"source {e.id!r}")
        except ConventionError as exc:
            problems.setdefault(e.id, []).append(str(exc))
            continue
        good.append(e)
    footprints = source_footprints(good)
    keep = []
    for e, fp in zip(good, footprints, strict=True):
        why = footprint_problem(e.crs, fp)
        if why:
            problems.setdefault(e.id, []).append(f"source {e.id!r} ({crs_code(e.crs)}): {why}")
        keep.append(not why)
    return [e for e, k in zip(good, keep, strict=True) if k], footprints[np.asarray(keep, dtype=bool)]


def _properties(attrs: dict[str, Any]) -> dict[str, Any]:
    """A source group's own scalar attributes (e.g. ``cloud_cover``), which become /meta columns;
    convention attributes (``spatial:``, ``proj:``, ``multiscales`` ...) are not properties."""
    return {
        k: v
        for k, v in attrs.items()
        if ":" not in k and k not in RESERVED_ATTRS and isinstance(v, (bool, int, float, str))
    }
