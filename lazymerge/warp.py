"""pyproj Transformers, one per thread and CRS pair (they are not thread-safe)."""

from __future__ import annotations

import threading

from pyproj import Transformer

_local = threading.local()


def transformer(src: str, dst: str) -> Transformer:
    """A Transformer per thread (pyproj transformers are not thread-safe), cached by CRS pair."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    key = (src, dst)
    if key not in cache:
        cache[key] = Transformer.from_crs(src, dst, always_xy=True)
    return cache[key]
