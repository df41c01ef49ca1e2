"""The seed's import path for ``select_overview``; sources live in ``lazymerge.catalog``."""

from lazymerge.catalog.scan import scan_store
from lazymerge.catalog.sources import select_overview

__all__ = ["scan_store", "select_overview"]
