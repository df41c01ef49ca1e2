"""The seed's import path for the conventions helpers; they live in ``lazymerge.catalog.conventions``."""

from lazymerge.catalog.conventions import (
    Overview,
    ProjAttrs,
    SpatialAttrs,
    has_spatial,
    read_multiscales,
    read_proj,
    read_spatial,
    write_multiscales,
    write_proj,
    write_spatial,
)

__all__ = [
    "Overview",
    "ProjAttrs",
    "SpatialAttrs",
    "has_spatial",
    "read_multiscales",
    "read_proj",
    "read_spatial",
    "write_multiscales",
    "write_proj",
    "write_spatial",
]
