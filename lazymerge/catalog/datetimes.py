"""Acquisition times as datetime64[us], from /meta columns or source attributes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lazymerge import arrow


def to_datetimes(values: Any) -> np.ndarray:
    """datetime64[us] (NaT where missing) from an Arrow timestamp column, int64 microseconds since the
    epoch (the prototype /meta layout), or ISO 8601 strings / None."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_timestamp(values.type):
            return arrow.values(pc.cast(values, pa.timestamp("us"))).astype("datetime64[us]")
        if pa.types.is_integer(values.type):
            missing = arrow.column(np.array([np.iinfo("i8").min]))[0]  # not pa.scalar: see lazymerge.arrow
            ints = arrow.values(pc.fill_null(pc.cast(values, pa.int64()), missing))
            return ints.view("datetime64[us]")
        values = values.to_pylist()
    return np.array([_parse(v) for v in values], dtype="datetime64[us]")


def _parse(value: Any) -> np.datetime64:
    """One ISO 8601 time (``Z`` or an offset is converted to UTC; a naive time is taken as UTC)."""
    if value is None:
        return np.datetime64("NaT", "us")
    if isinstance(value, str):
        when = datetime.fromisoformat(value)
        if when.tzinfo is not None:
            when = when.astimezone(UTC).replace(tzinfo=None)
        return np.datetime64(when, "us")
    return np.datetime64(value, "us")
