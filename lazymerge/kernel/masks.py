"""Pixel masks: which pixels of a source count as nodata before compositing, from a classification band
(``Mask(band="SCL", values=[3, 8, 9, 10])``) or bit flags (``Mask(band="QA_PIXEL", bits=[1, 3, 4])``).

The mask band is read per source on its own grid (its own overview level); the masked pixels, optionally
dilated by ``dilate`` pixels of that grid, are sampled nearest onto the target and dropped from that
source's values, so lower-priority sources show through and reductions skip them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lazymerge.errors import InvalidRequestError


@dataclass(frozen=True)
class Mask:
    """Pixels to drop from each source: where its band ``band`` equals one of ``values``, or has any of
    ``bits`` set (bit 0 the least significant), grown by ``dilate`` pixels of the mask band's grid (a
    square of side ``2 * dilate + 1``). The mask band's nodata pixels mask nothing."""

    band: str
    values: tuple[int | float, ...] = field(default=())
    bits: tuple[int, ...] = field(default=())
    dilate: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.band, str) or not self.band:
            raise InvalidRequestError(f"Mask band {self.band!r} must be a band name, e.g. 'SCL'")
        set_(self, "values", _numbers(self.values, "values", self.band))
        set_(self, "bits", tuple(int(b) for b in _numbers(self.bits, "bits", self.band)))
        if not self.values and not self.bits:
            raise InvalidRequestError(
                f"Mask on band {self.band!r} names no values and no bits; pass values=[...] or bits=[...]"
            )
        if any(not 0 <= b < 64 or b != int(b) for b in self.bits):
            raise InvalidRequestError(f"Mask bits {self.bits!r} of band {self.band!r} must be integers 0-63")
        if isinstance(self.dilate, bool) or not isinstance(self.dilate, int) or self.dilate < 0:
            raise InvalidRequestError(
                f"Mask dilate={self.dilate!r} of band {self.band!r} must be a whole number of pixels >= 0"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (how a saved plan stores the mask)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def masked(self, data: np.ndarray, nodata: float | None) -> np.ndarray:
        """Where ``data`` (a window of the mask band) is masked, before dilation; nodata masks nothing."""
        bad = np.zeros(data.shape, dtype=bool)
        if self.values:
            bad |= np.isin(data, np.array(self.values))
        if self.bits:
            flags = np.uint64(sum(1 << b for b in self.bits))
            whole = np.isfinite(data) if data.dtype.kind == "f" else np.ones(data.shape, dtype=bool)
            ints = np.where(whole, data, 0).astype("i8").view("u8")
            bad |= whole & ((ints & flags) != 0)
        if nodata is not None:
            bad &= ~((data == nodata) | (np.isnan(data) if np.isnan(nodata) else False))
        if data.dtype.kind == "f":
            bad &= ~np.isnan(data)
        return dilate(bad, self.dilate)


def dilate(bad: np.ndarray, n: int) -> np.ndarray:
    """``bad`` grown by ``n`` pixels in every direction (a square structuring element)."""
    if n <= 0 or not bad.any():
        return bad
    h, w = bad.shape
    pad = np.pad(bad, n)
    rows = np.zeros((h + 2 * n, w), dtype=bool)
    for k in range(2 * n + 1):
        rows |= pad[:, k : k + w]
    out = np.zeros((h, w), dtype=bool)
    for k in range(2 * n + 1):
        out |= rows[k : k + h]
    return out


def _numbers(items: Any, what: str, band: str) -> tuple[int | float, ...]:
    if items is None:
        return ()
    if isinstance(items, (int, float, np.number)):
        items = (items,)
    try:
        values = tuple(v.item() if isinstance(v, np.generic) else v for v in items)
    except TypeError as exc:
        raise InvalidRequestError(
            f"Mask {what} {items!r} of band {band!r} must be a list of numbers"
        ) from exc
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise InvalidRequestError(f"Mask {what} {items!r} of band {band!r} must be a list of numbers")
    return values


def parse_masks(mask: Any) -> tuple[Mask, ...]:
    """``mask=``: None, a Mask, a dict of its fields, or a list of them -> a tuple of Masks."""
    if mask is None:
        return ()
    items: Sequence[Any] = [mask] if isinstance(mask, (Mask, dict)) else list(mask)
    out = []
    for m in items:
        if isinstance(m, dict):
            fields_: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in m.items()}
            m = Mask(**fields_)
        if not isinstance(m, Mask):
            raise InvalidRequestError(
                f"mask {m!r} is not a lazymerge.Mask; pass Mask(band='SCL', values=[3, 8, 9, 10]) or a list"
            )
        out.append(m)
    return tuple(out)


def source_masks(
    masks: Sequence[Mask], rows: Sequence[Sequence[Any]] | None
) -> dict[int, list[tuple[Mask, Any]]]:
    """Per source (its source table row): the (mask, plan row of its band) pairs that apply to it, from
    each mask's rows of one chunk (``TaskRow``)."""
    out: dict[int, list[tuple[Mask, Any]]] = {}
    for mask, tasks in zip(masks, rows or (), strict=False):
        for task in tasks:
            out.setdefault(task.source, []).append((mask, task))
    return out
