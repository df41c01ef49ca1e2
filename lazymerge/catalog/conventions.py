"""spatial:, proj: and multiscales attributes, read and written through zarr-cm.

Reading accepts both attributes declared in ``zarr_conventions`` and the bare form (keys present,
no declaration) that older writers -- the seed among them -- produce.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import zarr
from zarr_cm import multiscales as zcm_multiscales
from zarr_cm import proj as zcm_proj
from zarr_cm import spatial as zcm_spatial

from lazymerge.errors import ConventionError


@dataclass(frozen=True)
class SpatialAttrs:
    """The spatial: convention: pixel grid of a 2-D array (transform is GDAL-ordered a, b, c, d, e, f)."""

    dimensions: Sequence[str] = ("y", "x")
    transform: tuple[float, float, float, float, float, float] | None = None
    bbox: tuple[float, float, float, float] | None = None
    shape: tuple[int, int] | None = None
    registration: str = "pixel"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dimensions", tuple(self.dimensions))
        if self.transform is not None:
            object.__setattr__(self, "transform", tuple(float(v) for v in self.transform))
        if self.bbox is not None:
            object.__setattr__(self, "bbox", tuple(float(v) for v in self.bbox))
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))

    def to_attrs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"spatial:dimensions": list(self.dimensions)}
        if self.transform is not None:
            out["spatial:transform_type"] = "affine"
            out["spatial:transform"] = list(self.transform)
        if self.bbox is not None:
            out["spatial:bbox"] = list(self.bbox)
        if self.shape is not None:
            out["spatial:shape"] = list(self.shape)
        out["spatial:registration"] = self.registration
        return out


@dataclass(frozen=True)
class ProjAttrs:
    """The proj: convention: one of an authority code, WKT2 or PROJJSON."""

    code: str | None = None
    wkt2: str | None = None
    projjson: Mapping[str, Any] | None = None

    def to_attrs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.code is not None:
            out["proj:code"] = self.code
        if self.wkt2 is not None:
            out["proj:wkt2"] = self.wkt2
        if self.projjson is not None:
            out["proj:projjson"] = dict(self.projjson)
        return out

    @property
    def crs_input(self) -> Any:
        """What pyproj.CRS accepts: the code, else WKT2, else PROJJSON."""
        return self.code or self.wkt2 or self.projjson


@dataclass(frozen=True)
class Overview:
    """One multiscales level of a band group: its asset path and its own pixel grid."""

    asset: str
    scale: tuple[float, float] = (1.0, 1.0)
    translation: tuple[float, float] = (0.0, 0.0)
    derived_from: str | None = None
    transform: tuple[float, float, float, float, float, float] | None = None
    shape: tuple[int, int] | None = None

    def resolution(self, native_res: float | None = None) -> float:
        """Pixel size of this level: from its own spatial:transform, else native_res * scale."""
        if self.transform is not None:
            a, b, _, d, e, _ = self.transform
            return float((abs(a * e - b * d)) ** 0.5)
        if native_res is None:
            raise ConventionError(
                f"overview {self.asset!r} has no spatial:transform; pass native_res to derive its resolution"
            )
        return float(native_res * self.scale[0])


def array_member(group: zarr.Group, name: str) -> zarr.Array:
    """The array ``name`` of ``group``; ConventionError, naming the path, when it is missing or a group."""
    try:
        node = group[name]
    except KeyError as exc:
        raise ConventionError(
            f"group {group.path!r} has no member {name!r}; an array is expected there"
        ) from exc
    if not isinstance(node, zarr.Array):
        raise ConventionError(f"{node.path!r} is a group; an array is expected there")
    return node


def yx(arr: zarr.Array, values: tuple[int, ...]) -> tuple[int, int]:
    """The (y, x) pair -- the last two entries -- of an array's shape or chunks.

    Raises ConventionError, naming the array, when it has fewer than two dimensions."""
    if len(values) < 2:
        raise ConventionError(
            f"array {arr.path!r} has shape {arr.shape}; a raster needs at least two dimensions (y, x)"
        )
    return int(values[-2]), int(values[-1])


def _pair(values: Sequence[Any], what: str) -> tuple[float, float]:
    """The first two values as floats; ConventionError naming ``what`` when there are fewer."""
    if len(values) < 2:
        raise ConventionError(f"{what} is {values!r}; it needs two values")
    return float(values[0]), float(values[1])


def _attrs_of(node: Any) -> dict[str, Any]:
    attrs = getattr(node, "attrs", node)
    return dict(attrs.asdict() if hasattr(attrs, "asdict") else attrs)


def _extract(module: Any, attrs: Mapping[str, Any], keys: set[str]) -> dict[str, Any]:
    """Convention data from declared attrs via zarr-cm; the bare keys when undeclared."""
    if attrs.get("zarr_conventions"):
        try:
            _, data = module.extract(attrs)
            if data:
                return dict(data)
        except (ValueError, KeyError, TypeError):
            pass  # declared as something else: fall through to the bare form
    return {k: attrs[k] for k in keys if k in attrs}


def _write(node: Any, module: Any, data: Mapping[str, Any]) -> None:
    try:
        attrs = module.insert(_attrs_of(node), dict(data), overwrite=True)
    except (ValueError, TypeError) as exc:
        raise ConventionError(
            f"invalid {module.__name__.split('.')[-1]} attributes {dict(data)}: {exc}"
        ) from exc
    node.update_attributes(attrs)  # one metadata write (attrs.update writes once per key)


def write_spatial(node: zarr.Array | zarr.Group, spatial: SpatialAttrs) -> None:
    """Write spatial: attributes (declared in zarr_conventions) onto an array or group."""
    _write(node, zcm_spatial, spatial.to_attrs())


def write_proj(node: zarr.Array | zarr.Group, proj: ProjAttrs) -> None:
    """Write proj: attributes (declared in zarr_conventions) onto an array or group."""
    _write(node, zcm_proj, proj.to_attrs())


def write_multiscales(group: zarr.Group, overviews: Sequence[Overview]) -> None:
    """Write a multiscales layout (declared in zarr_conventions) onto a band group."""
    layout = []
    for ov in overviews:
        entry: dict[str, Any] = {"asset": ov.asset}
        if ov.derived_from is not None:
            entry["derived_from"] = ov.derived_from
        entry["transform"] = {"scale": list(ov.scale), "translation": list(ov.translation)}
        layout.append(entry)
    _write(group, zcm_multiscales, {"layout": layout})  # stored as the "multiscales" attribute


def _where(node: Any) -> str:
    """How an error names a node: its path in the store."""
    path = getattr(node, "path", None)
    return (
        f"array {path!r}" if isinstance(node, zarr.Array) else f"node {path if path is not None else node!r}"
    )


def numbers(node: Any, key: str, value: Any, n: int | tuple[int, ...]) -> tuple[float, ...]:
    """``value`` (the attribute ``key`` of ``node``) as ``n`` finite floats, else ConventionError naming the
    node, the attribute and the value."""
    counts = (n,) if isinstance(n, int) else n
    ok = isinstance(value, (list, tuple)) and len(value) in counts
    if ok:
        try:
            out = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            ok = False
        else:
            ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            ok = ok and all(math.isfinite(v) for v in out)
    if not ok:
        what = " or ".join(map(str, counts))
        raise ConventionError(
            f"{_where(node)}: attribute {key} = {value!r} is not {what} finite numbers; rewrite it "
            "(e.g. with lazymerge.catalog.conventions.write_spatial) and re-run `lazymerge index`"
        )
    return out


def check_transform(node: Any, transform: Sequence[float]) -> tuple[float, ...]:
    """A GDAL-ordered affine (a, b, c, d, e, f) that is six finite numbers with a non-zero determinant."""
    t = numbers(node, "spatial:transform", transform, 6)
    a, b, _, d, e, _ = t
    det = a * e - b * d
    if not (math.isfinite(det) and det != 0.0):
        raise ConventionError(
            f"{_where(node)}: spatial:transform {list(t)} is not invertible (its pixel size a*e - b*d is "
            f"{det}); write the transform of the array's pixel grid and re-run `lazymerge index`"
        )
    return t


def read_spatial(node: Any) -> SpatialAttrs:
    """spatial: attributes of an array or group (declared or bare), checked.

    Raises ConventionError naming the node and the attribute when there is no spatial:transform, when it
    is not six finite numbers with a non-zero determinant, or when spatial:shape / spatial:bbox are
    malformed or contradict the array's shape and transform.
    """
    data = _extract(zcm_spatial, _attrs_of(node), zcm_spatial.CONVENTION_KEYS)
    if "spatial:transform" not in data:
        raise ConventionError(
            f"{getattr(node, 'path', node)!r} has no spatial:transform; write one with "
            "lazymerge.catalog.conventions.write_spatial"
        )
    transform = check_transform(node, data["spatial:transform"])
    array_shape = yx(node, node.shape) if isinstance(node, zarr.Array) else None
    shape = array_shape
    if data.get("spatial:shape") is not None:
        declared = numbers(node, "spatial:shape", data["spatial:shape"], 2)
        if any(v != int(v) or v < 1 for v in declared):
            raise ConventionError(
                f"{_where(node)}: spatial:shape {data['spatial:shape']!r} is not two positive integers"
            )
        shape = (int(declared[0]), int(declared[1]))
        if array_shape is not None and shape != array_shape:
            raise ConventionError(
                f"{_where(node)}: spatial:shape {list(shape)} contradicts the array's shape "
                f"{list(array_shape)} (rows, cols); fix the attribute and re-run `lazymerge index`"
            )
    bbox = None
    if data.get("spatial:bbox") is not None and shape is not None:
        x0, y0, x1, y1 = numbers(node, "spatial:bbox", data["spatial:bbox"], 4)
        bbox = (x0, y0, x1, y1)
        _check_bbox(node, transform, shape, bbox)
    a, b, c, d, e, f = transform
    return SpatialAttrs(
        dimensions=data.get("spatial:dimensions", ("y", "x")),
        transform=(a, b, c, d, e, f),
        bbox=bbox,
        shape=shape,
        registration=data.get("spatial:registration", "pixel"),
    )


def _check_bbox(
    node: Any, transform: tuple[float, ...], shape: tuple[int, ...], bbox: tuple[float, ...]
) -> None:
    """spatial:bbox must be the extent of the transform over the shape, to one pixel (writers round
    extents differently, and node registration shifts them by half a pixel)."""
    a, b, c, d, e, f = transform
    h, w = shape
    xs = [c + a * col + b * row for col, row in ((0, 0), (w, 0), (0, h), (w, h))]
    ys = [f + d * col + e * row for col, row in ((0, 0), (w, 0), (0, h), (w, h))]
    extent = (min(xs), min(ys), max(xs), max(ys))
    tol = max(math.hypot(a, d), math.hypot(b, e))
    if any(abs(u - v) > tol for u, v in zip(extent, bbox, strict=True)):
        raise ConventionError(
            f"{_where(node)}: spatial:bbox {list(bbox)} contradicts spatial:transform {list(transform)} over "
            f"shape {list(shape)}, whose extent is {[round(v, 9) for v in extent]}; fix one of them and "
            "re-run `lazymerge index`"
        )


def read_proj(node: Any) -> ProjAttrs:
    """proj: attributes of an array or group (declared or bare).

    Raises ConventionError when none of proj:code, proj:wkt2, proj:projjson is present.
    """
    data = _extract(zcm_proj, _attrs_of(node), zcm_proj.CONVENTION_KEYS)
    proj = ProjAttrs(
        code=data.get("proj:code"), wkt2=data.get("proj:wkt2"), projjson=data.get("proj:projjson")
    )
    if proj.crs_input is None:
        raise ConventionError(
            f"{getattr(node, 'path', node)!r} has no proj:code, proj:wkt2 or proj:projjson; write one with "
            "lazymerge.catalog.conventions.write_proj"
        )
    return proj


def has_spatial(node: Any) -> bool:
    """True when the node carries a spatial:transform (declared or bare)."""
    return "spatial:transform" in _extract(zcm_spatial, _attrs_of(node), zcm_spatial.CONVENTION_KEYS)


def read_multiscales(group: zarr.Group) -> list[Overview]:
    """The levels of a band group, finest first, each with its own spatial:transform when it has one.

    Accepts the declared convention and the bare ``multiscales`` attribute. Raises ConventionError
    when the group has no multiscales layout.
    """
    data = _extract(zcm_multiscales, _attrs_of(group), zcm_multiscales.CONVENTION_KEYS)
    # declared: zarr-cm returns the attribute's value; bare: {"multiscales": value}; stores written before
    # this fix nested the value once more under "multiscales"
    while isinstance(data, dict) and "layout" not in data and isinstance(data.get("multiscales"), dict):
        data = data["multiscales"]
    layout = data.get("layout") if isinstance(data, dict) else None
    if not layout:
        raise ConventionError(f"group {group.path!r} has no multiscales layout")
    if not isinstance(layout, list):
        raise ConventionError(f"group {group.path!r}: multiscales layout {layout!r} is not a list of levels")
    overviews = []
    for entry in layout:
        if not isinstance(entry, dict) or not isinstance(entry.get("asset"), str):
            raise ConventionError(
                f"group {group.path!r}: multiscales layout entry {entry!r} has no asset (the level's path)"
            )
        tr = entry.get("transform") or {}
        if not isinstance(tr, dict):
            raise ConventionError(f"group {group.path!r}: multiscales transform {tr!r} is not an object")
        transform = shape = None
        try:
            arr = group[entry["asset"]]
        except KeyError as exc:
            raise ConventionError(
                f"multiscales of {group.path!r} names asset {entry['asset']!r}, which does not exist"
            ) from exc
        except (ValueError, TypeError) as exc:  # a torn or hand-edited zarr.json
            raise ConventionError(
                f"{group.path}/{entry['asset']}/zarr.json cannot be read ({type(exc).__name__}: {exc}); "
                "restore or rewrite that level"
            ) from exc
        if not isinstance(arr, zarr.Array):
            raise ConventionError(
                f"multiscales of {group.path!r} names asset {entry['asset']!r}, which is a group; "
                "each layout entry must name an array"
            )
        if has_spatial(arr):
            transform = read_spatial(arr).transform
        shape = yx(arr, arr.shape)
        key = f"multiscales {entry['asset']!r} transform"
        scale = numbers(group, f"{key} scale", tr.get("scale", [1.0, 1.0]), (2, 3, 4, 5))[:2]
        if min(scale) <= 0:
            raise ConventionError(f"group {group.path!r}: {key} scale {tr.get('scale')!r} is not positive")
        overviews.append(
            Overview(
                asset=str(entry["asset"]),
                scale=(scale[0], scale[1]),
                translation=_pair(
                    numbers(group, f"{key} translation", tr.get("translation", [0.0, 0.0]), (2, 3, 4, 5)),
                    f"multiscales translation of {group.path!r}",
                ),
                derived_from=entry.get("derived_from"),
                transform=transform,
                shape=shape,
            )
        )
    return sorted(overviews, key=lambda ov: ov.scale[0])
