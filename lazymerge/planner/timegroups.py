"""Time groups: which slice of a ``(time, [band,] y, x)`` result each source composites into."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lazymerge import arrow
from lazymerge.errors import GroupByError

GROUPBY = ("time", "day", "solar_day", "week", "month", "year")
DURATION = re.compile(r"^P(\d+)([DWMY])$")  # ISO 8601 durations: P5D, P16D, P2W, P1M, P1Y
ORIGIN = np.datetime64("1970-01-01", "D")  # where duration bins start by default (groupby_origin)
HINT = (
    "give /meta a `datetime` column (timestamp) or each source group a `datetime` attribute (ISO 8601, UTC), "
    "then rebuild /meta with `lazymerge index STORE`"
)


def parse_groupby(groupby: Any) -> str | None:
    """None, a name in GROUPBY, or an ISO 8601 duration of days, weeks, months or years (``"P16D"``)."""
    if groupby is None or groupby in GROUPBY:
        return groupby
    if isinstance(groupby, str) and (m := DURATION.match(groupby.upper())) and int(m.group(1)) > 0:
        return groupby.upper()
    raise GroupByError(
        f"groupby {groupby!r} is not one of {list(GROUPBY)}, nor an ISO 8601 duration such as 'P5D', "
        "'P16D', 'P2W', 'P1M' or 'P1Y' (or None for one composite)"
    )


def parse_origin(origin: Any) -> np.datetime64 | None:
    """The start of the first duration bin (a date, ISO 8601), or None for the default (1970-01-01)."""
    if origin is None:
        return None
    try:
        return np.datetime64(str(origin).replace("Z", ""), "D")
    except ValueError as exc:
        raise GroupByError(
            f"groupby_origin {origin!r} is not an ISO 8601 date; pass e.g. '2024-01-01'"
        ) from exc


def centre_longitudes(n: int, part_index: np.ndarray, part_bounds: np.ndarray) -> np.ndarray:
    """Each source's mid-longitude from its EPSG:4326 footprint parts, across the antimeridian too."""
    mid = (part_bounds[:, 0] + part_bounds[:, 2]) / 2
    width = part_bounds[:, 2] - part_bounds[:, 0]
    first = np.full(n, np.nan)
    sources, at = np.unique(part_index, return_index=True)
    first[sources] = mid[at]  # each source's first part is the reference it unwraps against
    unwrapped = mid + 360.0 * np.round((first[part_index] - mid) / 360.0)
    total = np.bincount(part_index, weights=width, minlength=n)
    lon = np.bincount(part_index, weights=unwrapped * width, minlength=n) / np.where(total > 0, total, 1)
    return (lon + 180.0) % 360.0 - 180.0


def source_labels(
    how: str, datetimes: np.ndarray | None, lon: np.ndarray, origin: np.datetime64 | None = None
) -> np.ndarray:
    """Each source's group label (datetime64[ns], NaT where it has no datetime): the start of its bin.

    ``time``: its timestamp; ``day``: its UTC date; ``solar_day``: its local solar date at its
    mid-longitude (UTC + lon / 15 hours), so one satellite pass stays one group; ``week``: the Monday of its
    ISO week; ``month``, ``year``: the first day of its calendar month or year (UTC); ``PnD``, ``PnW``,
    ``PnM``, ``PnY``: bins of n days, weeks, months or years counted from ``origin`` (default 1970-01-01).
    """
    if datetimes is None or np.isnat(datetimes).all():
        raise GroupByError(f"groupby={how!r} needs a datetime for every source, but none has one; {HINT}")
    if how == "time":
        labels = datetimes
    elif how == "day":
        labels = datetimes.astype("datetime64[D]")
    elif how in ("week", "month", "year") or DURATION.match(how):
        labels = calendar_bins(datetimes.astype("datetime64[D]"), how, ORIGIN if origin is None else origin)
    else:
        offset = np.round(np.nan_to_num(lon) / 15.0 * 3600e6).astype("i8").astype("timedelta64[us]")
        labels = (datetimes + offset).astype("datetime64[D]")
    return labels.astype("datetime64[ns]")


def calendar_bins(days: np.ndarray, how: str, origin: np.datetime64) -> np.ndarray:
    """The first day of each date's bin (datetime64[D], NaT stays NaT)."""
    if how == "week":  # ISO weeks start on Monday; 1970-01-01 was a Thursday
        return days - ((days.astype("i8") + 3) % 7).astype("timedelta64[D]")
    if how in ("month", "year"):
        return days.astype("datetime64[M]" if how == "month" else "datetime64[Y]").astype("datetime64[D]")
    match = DURATION.match(how)
    assert match is not None  # parse_groupby admitted it
    n, unit = int(match.group(1)), match.group(2)
    if unit in "DW":
        step = n * (7 if unit == "W" else 1)
        offset = (days - origin).astype("i8")
        return origin + (np.floor_divide(offset, step) * step).astype("timedelta64[D]")
    months = n * (12 if unit == "Y" else 1)
    start = origin.astype("datetime64[M]")
    offset = (days.astype("datetime64[M]") - start).astype("i8")
    return (start + (np.floor_divide(offset, months) * months).astype("timedelta64[M]")).astype(
        "datetime64[D]"
    )


def label_ids(labels: np.ndarray | None) -> np.ndarray | None:
    """Dense integer id of each source's label (NaT last), for keying per-group state."""
    return None if labels is None else np.unique(labels, return_inverse=True)[1].astype("i8")


def time_groups(
    how: str, labels: np.ndarray, ids: list[str], used: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(group index per source, sorted labels of the groups that the ``used`` sources fall in); sources
    outside ``used`` may get any index. A used source without a datetime is an error naming it."""
    missing = [ids[i] for i in used if np.isnat(labels[i])]
    if missing:
        raise GroupByError(f"groupby={how!r}: source(s) {missing[:10]} have no datetime; {HINT}")
    coords = np.unique(labels[used])
    return np.searchsorted(coords, labels).astype("i4"), coords


def add_time_column(table: pa.Table, group_of_source: np.ndarray) -> pa.Table:
    """Prefix the plan table with each row's time group and re-sort by (time, band, chunk, priority)."""
    time = arrow.column(group_of_source[arrow.values(table["source"])].astype("i4"))
    table = table.add_column(0, "time", time)
    keys = ["time", "band", "chunk_row", "chunk_col", "priority"]
    return table.take(pc.sort_indices(table, sort_keys=[(k, "ascending") for k in keys]))
