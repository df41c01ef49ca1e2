"""Finding sources from a store's conventions alone: ``scan_store`` -> ``ScanIndex`` (the /meta table's
rows, without /meta)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import zarr
from pyproj import CRS

from lazymerge.catalog.conventions import ProjAttrs, has_spatial
from lazymerge.catalog.datetimes import to_datetimes
from lazymerge.catalog.footprints import lonlat_bounds
from lazymerge.catalog.layout import BANDS_COLUMN, META_GROUP, RESERVED_ATTRS
from lazymerge.catalog.sources import Band, SourceEntry, bands_json, read_band
from lazymerge.catalog.stores import resolve_store
from lazymerge.crs import crs_code
from lazymerge.errors import StoreError


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
        from lazymerge.catalog.footprints import bounds_to_wkb

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
