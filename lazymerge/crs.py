"""CRS helpers: a CRS's short code, and pyproj Transformers cached per thread and CRS pair."""

from __future__ import annotations

import threading
import warnings
from functools import lru_cache
from typing import Any

from pyproj import CRS, Transformer
from pyproj.transformer import TransformerGroup

_local = threading.local()
_composed = threading.local()
_TO_DEG = " step proj=unitconvert xy_in=rad xy_out=deg"  # how PROJ ends a projected CRS's inverse
_FROM_DEG = "proj=pipeline step proj=unitconvert xy_in=deg xy_out=rad step "  # and starts its forward
_definitions: dict[tuple[str, str], str | None] = {}  # per CRS pair: its one operation's PROJ pipeline


def transformer(src: str, dst: str) -> Transformer:
    """A Transformer per thread (pyproj transformers are not thread-safe), cached by CRS pair."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    key = (src, dst)
    if key not in cache:
        cache[key] = _build(src, dst)
    return cache[key]


def _build(src: str, dst: str) -> Transformer:
    """``Transformer.from_crs(src, dst, always_xy=True)``, or the one operation every candidate of it
    runs when they all share one definition (e.g. a null datum shift and its ballpark twin): the same
    numbers, built in ~20 ms instead of ~100 ms (``from_crs`` prepares per-point operation choice). That
    operation's pipeline is kept for the process, so another thread builds it in ~0.2 ms, without
    searching again."""
    key = (src, dst)
    if key in _definitions:
        definition = _definitions[key]
        if definition is not None:
            return Transformer.from_pipeline(definition)
        return Transformer.from_crs(src, dst, always_xy=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a missing grid: from_crs below says it, if it must
        group = TransformerGroup(src, dst, always_xy=True)
    shared = {t.definition for t in group.transformers}
    if len(shared) == 1 and not group.unavailable_operations:
        _definitions[key] = shared.pop()
        return group.transformers[0]
    _definitions[key] = None
    return Transformer.from_crs(src, dst, always_xy=True)


def composed_transformer(target_wkt: str, source_wkt: str) -> Transformer:
    """``transformer(target_wkt, source_wkt)``, without PROJ's operation search where both
    CRSs are projected and every operation between their datums is none (e.g. ETRS89 and WGS 84): the
    pipeline is then the target's inverse projection followed by the source's projection -- the operation
    the search finds, in ~3 ms instead of 45-400 ms per source CRS (the search tries other routes when the
    two areas of use do not meet). Anything else (a datum shift, a missing grid, a geographic CRS, a
    pipeline of another shape) falls back to the search. Cached per thread and CRS pair. For the planner,
    whose windows only bound what a chunk reads; the kernel takes ``transformer``."""
    cache = getattr(_composed, "cache", None)
    if cache is None:
        cache = _composed.cache = {}
    key = (target_wkt, source_wkt)
    if key not in cache:
        cache[key] = _composed_pipeline(target_wkt, source_wkt) or transformer(target_wkt, source_wkt)
    return cache[key]


def _composed_pipeline(target_wkt: str, source_wkt: str) -> Transformer | None:
    """``composed_transformer``'s pipeline, or None where it does not apply."""
    t, s = crs_from(target_wkt), crs_from(source_wkt)
    if t.type_name != "Projected CRS" or s.type_name != "Projected CRS":  # not bound (towgs84), compound
        return None
    if t.geodetic_crs is None or s.geodetic_crs is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a missing grid: the search says it, if it must
        datum = TransformerGroup(t.geodetic_crs, s.geodetic_crs, always_xy=True)
        if datum.unavailable_operations or not datum.transformers:
            return None
        if any(op.definition.split(" ")[0] != "proj=noop" for op in datum.transformers):
            return None
        back = {op.definition for op in TransformerGroup(t, t.geodetic_crs, always_xy=True).transformers}
        forth = {op.definition for op in TransformerGroup(s.geodetic_crs, s, always_xy=True).transformers}
    if len(back) != 1 or len(forth) != 1:
        return None
    inverse, forward = back.pop(), forth.pop()
    if not (inverse.startswith("proj=pipeline step ") and inverse.endswith(_TO_DEG)):
        return None
    if not forward.startswith(_FROM_DEG) or " step " in forward[len(_FROM_DEG) :]:
        return None
    return Transformer.from_pipeline(inverse[: -len(_TO_DEG)] + " step " + forward[len(_FROM_DEG) :])


def crs_code(crs: CRS) -> str:
    """``AUTH:CODE`` when the CRS has one, else its WKT2."""
    auth = crs.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else crs.to_wkt()


CRSLike = CRS | str | int | dict[str, Any]  # what pyproj.CRS.from_user_input accepts


@lru_cache(maxsize=512)
def crs_from(text: str) -> CRS:
    """A pyproj CRS from a code or WKT, parsed once per process (parsing costs ~0.3 ms)."""
    return CRS.from_user_input(text)
