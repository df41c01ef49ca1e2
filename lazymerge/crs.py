"""CRS helpers: a CRS's short code, and pyproj Transformers cached per thread and CRS pair."""

from __future__ import annotations

import threading
import warnings
from functools import lru_cache
from typing import Any

from pyproj import CRS, Transformer
from pyproj.transformer import TransformerGroup

_local = threading.local()
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


def crs_code(crs: CRS) -> str:
    """``AUTH:CODE`` when the CRS has one, else its WKT2."""
    auth = crs.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else crs.to_wkt()


CRSLike = CRS | str | int | dict[str, Any]  # what pyproj.CRS.from_user_input accepts


@lru_cache(maxsize=512)
def crs_from(text: str) -> CRS:
    """A pyproj CRS from a code or WKT, parsed once per process (parsing costs ~0.3 ms)."""
    return CRS.from_user_input(text)
