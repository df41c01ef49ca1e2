"""Time groups: which slice of a ``(time, [band,] y, x)`` result each source composites into."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lazymerge.errors import GroupByError

GROUPBY = ("time", "day", "solar_day")
HINT = (
    "give /meta a `datetime` column (timestamp) or each source group a `datetime` attribute (ISO 8601, UTC), "
    "then rebuild /meta with `lazymerge index STORE`"
)


def parse_groupby(groupby: Any) -> str | None:
    if groupby is None or groupby in GROUPBY:
        return groupby
    raise GroupByError(f"groupby {groupby!r} is not one of {list(GROUPBY)} (or None for one composite)")


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


def source_labels(how: str, datetimes: np.ndarray | None, lon: np.ndarray) -> np.ndarray:
    """Each source's group label (datetime64[ns], NaT where it has no datetime).

    ``time``: its timestamp; ``day``: its UTC date; ``solar_day``: its local solar date at its
    mid-longitude (UTC + lon / 15 hours), so one satellite pass stays one group.
    """
    if datetimes is None or np.isnat(datetimes).all():
        raise GroupByError(f"groupby={how!r} needs a datetime for every source, but none has one; {HINT}")
    if how == "time":
        labels = datetimes
    elif how == "day":
        labels = datetimes.astype("datetime64[D]")
    else:
        offset = np.round(np.nan_to_num(lon) / 15.0 * 3600e6).astype("i8").astype("timedelta64[us]")
        labels = (datetimes + offset).astype("datetime64[D]")
    return labels.astype("datetime64[ns]")


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
    time = pa.array(group_of_source[table["source"].to_numpy()].astype("i4"))
    table = table.add_column(0, "time", time)
    keys = ["time", "band", "chunk_row", "chunk_col", "priority"]
    return table.take(pc.sort_indices(table, sort_keys=[(k, "ascending") for k in keys]))
