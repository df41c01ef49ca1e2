"""How overlapping sources combine into one block: compositing methods as plain, picklable classes.

A method is a class built with the block's shape; the kernel calls ``add(values, valid, index)`` for each
source in priority order (``index``: its position in that order) and ``result()`` at the end. ``first``
tells the kernel when the block is full, so it stops reading. Users can pass their own class.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

from lazymerge.errors import InvalidRequestError


class First:
    """The first valid value in priority order (stops reading once every pixel has one)."""

    float_result = False
    picks_one = True  # each pixel's value comes from one source, recorded in ``winner`` (provenance)

    def __init__(self, shape: tuple[int, int]) -> None:
        self.values = np.zeros(shape)
        self.count = np.zeros(shape, dtype="i4")
        self.winner = np.full(shape, -1, dtype="i4")  # index (priority order) of the pixel's source

    def add(self, values: np.ndarray, valid: np.ndarray, index: int) -> None:
        take = valid & (self.count == 0)
        self.values[take] = values[take]
        self.winner[take] = index
        self.count[take] = 1

    def full(self) -> bool:
        return bool(self.count.all())

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(values, has_value)."""
        return self.values, self.count > 0


class Last(First):
    """The last valid value in priority order."""

    def add(self, values: np.ndarray, valid: np.ndarray, index: int) -> None:
        self.values[valid] = values[valid]
        self.winner[valid] = index
        self.count[valid] += 1

    def full(self) -> bool:
        return False


class Min(Last):
    """The smallest valid value."""

    @staticmethod
    def pick(values: np.ndarray, current: np.ndarray) -> np.ndarray:
        """Where ``values`` beat the ``current`` ones."""
        return np.less(values, current)

    def add(self, values: np.ndarray, valid: np.ndarray, index: int) -> None:
        take = valid & ((self.count == 0) | self.pick(values, self.values))
        self.values[take] = values[take]
        self.winner[take] = index
        self.count[valid] += 1


class Max(Min):
    """The largest valid value."""

    @staticmethod
    def pick(values: np.ndarray, current: np.ndarray) -> np.ndarray:
        return np.greater(values, current)


class Sum(Last):
    """The sum of valid values."""

    picks_one = False

    def add(self, values: np.ndarray, valid: np.ndarray, index: int) -> None:
        self.values[valid] += values[valid]
        self.count[valid] += 1


class Count(Sum):
    """How many sources have a valid value (0 where none: every pixel has a value)."""

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        return self.count.astype("f8"), np.ones(self.count.shape, dtype=bool)


class Mean(Sum):
    """The mean of valid values (a float result)."""

    float_result = True

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        has = self.count > 0
        return np.where(has, self.values / np.maximum(self.count, 1), 0.0), has


class Median(Last):
    """The median of valid values (a float result); keeps one layer per source."""

    float_result = True
    picks_one = False

    def __init__(self, shape: tuple[int, int]) -> None:
        super().__init__(shape)
        self.layers: list[np.ndarray] = []

    def add(self, values: np.ndarray, valid: np.ndarray, index: int) -> None:
        self.layers.append(np.where(valid, values, np.nan))
        self.count[valid] += 1

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        has = self.count > 0
        if not self.layers:
            return self.values, has
        stack = np.stack(self.layers)
        with np.errstate(all="ignore"):
            med = np.nanmedian(np.where(has[None], stack, 0.0), axis=0)
        return med, has


class Percentile(Median):
    """The ``q``-th percentile of valid values (linear interpolation between ranks, as numpy's default; a
    float result): ``method="percentile:25"``. ``median`` is ``percentile:50``."""

    q = 50.0

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        has = self.count > 0
        if not self.layers:
            return self.values, has
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: no value, masked by ``has``
            value = np.nanpercentile(np.stack(self.layers), self.q, axis=0)
        return np.where(has, value, 0.0), has


class Std(Sum):
    """The standard deviation of valid values (population, ddof=0, as numpy's default; a float result),
    accumulated in float64 sums of values and squares, so no layer per source is kept."""

    float_result = True

    def __init__(self, shape: tuple[int, int]) -> None:
        super().__init__(shape)
        self.squares = np.zeros(shape)
        self.first = np.zeros(shape)  # each pixel's first value: sums of deviations from it stay small

    def add(self, values: np.ndarray, valid: np.ndarray, index: int) -> None:
        fresh = valid & (self.count == 0)
        self.first[fresh] = values[fresh]
        d = np.where(valid, values - self.first, 0.0)
        self.values += d
        self.squares += d * d
        self.count[valid] += 1

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        has = self.count > 0
        n = np.maximum(self.count, 1)
        mean = self.values / n
        return np.sqrt(np.maximum(self.squares / n - mean * mean, 0.0)), has


TIE = 1e-9  # relative difference of medoid distances taken as a tie


class Medoid(First):
    """Per pixel, the source whose vector of every output band is closest (squared Euclidean distance)
    to the per-band median of the sources valid in every band; ties (within a relative ``TIE``) keep
    priority order. It needs all bands of a pixel at once, so the kernel renders every band of a block in
    one task (``kernel.block.medoid_block``), not through ``add``."""

    multiband = True
    picks_one = False  # (provenance is not recorded for it)

    @staticmethod
    def pick(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values (bands, y, x), has (y, x)) from ``stack`` (sources, bands, y, x), NaN where missing."""
        valid = np.isfinite(stack).all(axis=1)  # (sources, y, x)
        has = valid.any(axis=0)
        kept = np.where(valid[:, None], stack, np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # pixels with no valid source
            median = np.nanmedian(kept, axis=0)  # (bands, y, x)
        distance = np.where(valid, np.nansum((kept - median[None]) ** 2, axis=1), np.inf)
        best = distance.min(axis=0)
        # the first (highest-priority) source within rounding of the smallest distance: with an even
        # count the median lies between sources, and two of them are equally close
        win = np.argmax(distance <= best * (1 + TIE) + 1e-300, axis=0)
        values = np.take_along_axis(stack, win[None, None], axis=0)[0]
        return values, has


PERCENTILE = "percentile:"


@lru_cache(maxsize=64)
def _percentile(q: float) -> type:
    """The Percentile method for ``q`` (one class per q, so a task rebuilds the same one by name)."""
    return type(f"Percentile{q:g}", (Percentile,), {"q": q})


def _parse_percentile(method: str) -> type:
    text = method[len(PERCENTILE) :]
    try:
        q = float(text)
    except ValueError:
        q = float("nan")
    if not 0.0 <= q <= 100.0:  # NaN fails too
        raise InvalidRequestError(
            f"method {method!r}: the percentile must be a number from 0 to 100, e.g. 'percentile:25'"
        )
    return _percentile(q)


class Quality(First):
    """``quality:<band>``: per pixel, the value of the source whose quality band (sampled nearest at the
    pixel) is highest, like Earth Engine's ``qualityMosaic``; ties, and pixels whose quality is missing,
    keep priority order. (``quality:<column>`` needs no class: the sources are ranked by the column.)"""

    def __init__(self, shape: tuple[int, int]) -> None:
        super().__init__(shape)
        self.best = np.full(shape, -np.inf)

    def add(
        self, values: np.ndarray, valid: np.ndarray, index: int, quality: np.ndarray | None = None
    ) -> None:
        q = (
            np.full(values.shape, -np.inf)
            if quality is None
            else np.where(np.isnan(quality), -np.inf, quality)
        )
        take = valid & ((self.count == 0) | (q > self.best))
        self.values[take] = values[take]
        self.best[take] = q[take]
        self.winner[take] = index
        self.count[take] = 1

    def full(self) -> bool:
        return False


QUALITY = "quality:"

METHODS: dict[str, type] = {
    "first": First,
    "last": Last,
    "min": Min,
    "max": Max,
    "sum": Sum,
    "count": Count,
    "mean": Mean,
    "median": Median,
    "std": Std,
    "medoid": Medoid,
}


ENTRY_POINTS = "lazymerge.methods"  # packages register compositing methods by name under this group


def register_method(name: str, cls: type) -> None:
    """Make ``cls`` (with ``add``, ``full``, ``result``) the method called ``name``: usable as
    ``method=name``, and how a saved plan names it."""
    if not all(hasattr(cls, m) for m in ("add", "full", "result")):
        raise InvalidRequestError(f"method class {cls!r} for {name!r} lacks add/full/result")
    METHODS[name] = cls


def method_name(method: object) -> str | None:
    """The registered name of a method (a name or a class), or None for an unregistered class."""
    if isinstance(method, str):
        return method
    return next((name for name, cls in METHODS.items() if cls is method), None)


def _from_entry_points(name: str) -> type | None:
    """A method that an installed package registered under ``ENTRY_POINTS`` (loaded by name only)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINTS, name=name):
        register_method(name, ep.load())
        return METHODS[name]
    return None


def parse_method(method: object) -> type:
    """A method name (built in, registered with ``register_method``, or an installed package's
    ``lazymerge.methods`` entry point), ``quality:<band-or-column>``, or a class with the same protocol
    (``add``, ``full``, ``result``)."""
    if isinstance(method, str) and method in METHODS:
        return METHODS[method]
    if isinstance(method, str) and method.startswith(PERCENTILE):
        return _parse_percentile(method)
    if isinstance(method, str) and not method.startswith(QUALITY) and _from_entry_points(method):
        return METHODS[method]
    if isinstance(method, str) and method.startswith(QUALITY) and len(method) > len(QUALITY):
        return Quality
    if isinstance(method, type) and all(hasattr(method, m) for m in ("add", "full", "result")):
        return method
    raise InvalidRequestError(
        f"method {method!r} is not one of {[*METHODS, PERCENTILE + '<0-100>', QUALITY + '<band-or-column>']} "
        "nor a class with "
        "add/full/result methods"
    )
