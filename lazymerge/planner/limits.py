"""Limits on the target grid, checked from the request's numbers before anything is allocated.

A typo in ``resolution`` (``1e-9``) or ``chunk_size`` (``(1, 1)``) must be refused at once, with the size
and the fix, not planned into a MemoryError or hundreds of thousands of tiny tasks.

``max_pixels`` (default ``MAX_PIXELS``, 5e11: a continent at 10 m, e.g. Europe's ~1.6e11, fits; the whole
Earth at 10 m, ~5e12, does not)
    Target pixels (rows x columns, per band). Override: ``max_pixels=`` or ``LAZYMERGE_MAX_PIXELS``.
``max_tasks`` (default ``MAX_TASKS``, 500,000)
    Kernel tasks: chunks x requested bands. At ~30 ms of scheduling per task on the local executors that is
    already four hours of overhead; a larger chunk_size does the same work in fewer tasks. Override:
    ``max_tasks=`` or ``LAZYMERGE_MAX_TASKS``.
"""

from __future__ import annotations

import math
import os
from typing import Any

from lazymerge.errors import GridTooLargeError, InvalidRequestError, SettingError

MAX_PIXELS = 500_000_000_000
MAX_TASKS = 500_000


def limit(value: Any, env: str, default: int) -> int:
    """The limit passed (a positive integer), else the environment variable ``env``, else ``default``."""
    if value is None:
        text = os.environ.get(env)
        if text is None:
            return default
        try:
            number = float(text)
        except ValueError:
            number = 0.0
        if not (number >= 1 and math.isfinite(number)):
            raise SettingError(f"{env}={text!r} is not a positive number; unset it or set e.g. {default}")
        return int(number)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1:
        raise InvalidRequestError(f"limit {value!r} must be a positive number (default {default})")
    return int(value)


def grid_size(bbox: tuple[float, float, float, float], resolution: float) -> tuple[float, float]:
    """(rows, cols) of the grid of ``bbox`` at ``resolution``, as ``TargetGrid.from_bbox`` will make it, in
    floats (no grid is built: a typo may make it astronomically large)."""
    xmin, ymin, xmax, ymax = bbox
    width = max(1.0, math.ceil((xmax - xmin) / resolution - 1e-9))
    height = max(1.0, math.ceil((ymax - ymin) / resolution - 1e-9))
    return float(height), float(width)


def check_size(
    height: float,
    width: float,
    chunk_size: tuple[int, int],
    n_bands: int = 1,
    max_pixels: Any = None,
    max_tasks: Any = None,
    resolution: float | None = None,
) -> None:
    """Raise GridTooLargeError when a ``height`` x ``width`` grid has more than ``max_pixels`` pixels, or
    more than ``max_tasks`` chunks x bands, saying which resolution or chunk_size would fit."""
    pixels = height * width
    most = limit(max_pixels, "LAZYMERGE_MAX_PIXELS", MAX_PIXELS)
    if pixels > most:
        coarser = (
            f"a resolution of at least {resolution * math.sqrt(pixels / most):.3g}, " if resolution else ""
        )
        at = f" at resolution {resolution:g}" if resolution else ""
        raise GridTooLargeError(
            f"the target grid{at} is {height:.0f} x {width:.0f} = {pixels:.3g} pixels, over max_pixels="
            f"{most:.3g}; check the resolution's units (those of the target CRS), use {coarser}or a smaller "
            "bbox, or raise the limit with max_pixels= (or LAZYMERGE_MAX_PIXELS)"
        )
    bands = max(n_bands, 1)
    tasks = math.ceil(height / chunk_size[0]) * math.ceil(width / chunk_size[1]) * bands
    most = limit(max_tasks, "LAZYMERGE_MAX_TASKS", MAX_TASKS)
    if tasks > most:
        side = 2 ** math.ceil(math.log2(max(math.sqrt(pixels * bands / most), 1.0)))
        raise GridTooLargeError(
            f"chunk_size {chunk_size} over the {height:.0f} x {width:.0f} px grid (x {bands} band(s)) makes "
            f"{tasks:,} tasks, over max_tasks={most:,}; use a larger chunk_size, e.g. ({side}, {side}), or "
            "raise the limit with max_tasks= (or LAZYMERGE_MAX_TASKS)"
        )
