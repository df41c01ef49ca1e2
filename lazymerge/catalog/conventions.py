"""spatial:, proj: and multiscales attributes, read and written through zarr-cm.

Reading accepts both attributes declared in ``zarr_conventions`` and the bare form (keys present,
no declaration) that older writers -- the seed among them -- produce.
"""

from __future__ import annotations

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
    node.attrs.update(attrs)


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
    _write(group, zcm_multiscales, {"multiscales": {"layout": layout}})


def read_spatial(node: Any) -> SpatialAttrs:
    """spatial: attributes of an array or group (declared or bare).

    Raises ConventionError when there is no spatial:transform.
    """
    data = _extract(zcm_spatial, _attrs_of(node), zcm_spatial.CONVENTION_KEYS)
    if "spatial:transform" not in data:
        raise ConventionError(
            f"{getattr(node, 'path', node)!r} has no spatial:transform; write one with "
            "lazymerge.catalog.conventions.write_spatial"
        )
    return SpatialAttrs(
        dimensions=data.get("spatial:dimensions", ("y", "x")),
        transform=data["spatial:transform"],
        bbox=data.get("spatial:bbox"),
        shape=data.get("spatial:shape") or getattr(node, "shape", None),
        registration=data.get("spatial:registration", "pixel"),
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
    layout = (data.get("multiscales") or {}).get("layout")
    if not layout:
        raise ConventionError(f"group {group.path!r} has no multiscales layout")
    overviews = []
    for entry in layout:
        tr = entry.get("transform") or {}
        transform = shape = None
        try:
            arr = group[entry["asset"]]
        except KeyError as exc:
            raise ConventionError(
                f"multiscales of {group.path!r} names asset {entry['asset']!r}, which does not exist"
            ) from exc
        if not isinstance(arr, zarr.Array):
            raise ConventionError(
                f"multiscales of {group.path!r} names asset {entry['asset']!r}, which is a group; "
                "each layout entry must name an array"
            )
        if has_spatial(arr):
            transform = read_spatial(arr).transform
        shape = yx(arr, arr.shape)
        overviews.append(
            Overview(
                asset=str(entry["asset"]),
                scale=_pair(tr.get("scale", (1.0, 1.0)), f"multiscales scale of {group.path!r}"),
                translation=_pair(
                    tr.get("translation", (0.0, 0.0)), f"multiscales translation of {group.path!r}"
                ),
                derived_from=entry.get("derived_from"),
                transform=transform,
                shape=shape,
            )
        )
    return sorted(overviews, key=lambda ov: ov.scale[0])
