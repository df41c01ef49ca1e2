"""What both discovery paths hand to the planner core: sources, their footprint parts, their bands."""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lazymerge.catalog.sources import Band, Level
from lazymerge.errors import BandNotFoundError, BandsInferredWarning
from lazymerge.planner.windows import Candidates


class SharedBands(Mapping[str | None, Band]):
    """A source's bands whose level grids are a template's, shared with other sources (the revisits of a
    tile), their paths filled in on demand."""

    __slots__ = ()

    @abstractmethod
    def grids(self, name: str | None) -> tuple[Level, ...]:
        """Band ``name``'s levels for their grids only (transform, shape, resolution): the template's own
        tuple, its paths unfilled."""

    @abstractmethod
    def level(self, name: str | None, i: int) -> Level:
        """Level ``i`` of band ``name``, its path filled in alone."""


JoinFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Iterator[tuple[np.ndarray, np.ndarray]]]


@dataclass
class SourceSet:
    """Sources of one path, with EPSG:4326 footprint parts and a way to read each source's bands."""

    candidates: Candidates
    part_index: np.ndarray
    part_bounds: np.ndarray
    read_bands: Callable[[int], dict[str | None, Band]]
    columns: tuple[str, ...] = ()  # of the source table (/meta or the scan index)
    read_many: Callable[[np.ndarray], dict[int, Mapping[str | None, Band]]] | None = None  # rows at once
    _bands: dict[int, Mapping[str | None, Band]] = field(default_factory=dict)

    def bands_of(self, s: int) -> Mapping[str | None, Band]:
        if s not in self._bands:
            self._bands[s] = self.read_bands(s)
        return self._bands[s]

    def prefetch(self, rows: np.ndarray) -> None:
        """Read the bands of many rows at once (``read_many``), those not read yet."""
        if self.read_many is not None:
            todo = np.array([int(s) for s in rows if int(s) not in self._bands], dtype="i8")
            self._bands.update(self.read_many(todo))

    def band_of(self, s: int, band: str | None) -> Band:
        bands = self.bands_of(s)
        if band not in bands:
            raise BandNotFoundError(
                f"source {self.candidates.ids[s]!r} has no band {band!r}; it has {sorted(map(str, bands))}. "
                "Pass bands= with a band every contributing source has"
            )
        return bands[band]

    def levels_of(self, s: int, band: str | None) -> tuple[Level, ...]:
        """Source ``s``'s levels of ``band``, for their grids only (transform, shape, resolution):
        revisits of one template (``SharedBands``) share its tuple, with its paths."""
        bands = self.bands_of(s)
        if isinstance(bands, SharedBands) and band in bands:
            return bands.grids(band)
        return self.band_of(s, band).levels

    def level_of(self, s: int, band: str | None, i: int) -> Level:
        """Source ``s``'s level ``i`` of ``band``, its path filled in (alone, for ``SharedBands``)."""
        bands = self.bands_of(s)
        if isinstance(bands, SharedBands) and band in bands:
            return bands.level(band, i)
        return self.band_of(s, band).levels[i]

    def resolve_bands(self, requested: tuple[str | None, ...] | None, used: np.ndarray) -> list[str | None]:
        """The bands to merge: the requested ones (checked against the contributing sources), or the one
        band they all share when none was requested."""
        if len(used) == 0:
            return list(requested) if requested else [None]
        self.prefetch(used)
        per_source = [set(self.bands_of(int(s))) for s in used]
        everywhere = set.intersection(*per_source)
        anywhere = set.union(*per_source)
        if requested is None:
            if len(everywhere) == 1:
                return [next(iter(everywhere))]
            if not everywhere:
                raise BandNotFoundError(
                    f"bands=None, but the contributing sources share no band (bands present: "
                    f"{sorted(map(str, anywhere))}); pass bands='name' or a list of names"
                )
            taken = sorted(everywhere, key=str)
            warnings.warn(
                f"bands=None took every band the contributing sources share: {taken}; pass bands=[...] to "
                "choose bands and their order",
                BandsInferredWarning,
                stacklevel=4,
            )
            return taken
        for band in requested:
            if band not in anywhere:
                raise BandNotFoundError(
                    f"no source has band {band!r}; bands present: {sorted(map(str, anywhere))}"
                )
            if band not in everywhere:
                lacking = [
                    self.candidates.ids[int(s)]
                    for s, b in zip(used, per_source, strict=True)
                    if band not in b
                ]
                raise BandNotFoundError(
                    f"band {band!r} is missing from source(s) {lacking[:10]}; pass bands that every "
                    "contributing source has"
                )
        return list(requested)


def pair_keys(chunk: np.ndarray, source: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """One int64 per pair that sorts by chunk, then priority: ``chunk * n + priority[source]``."""
    key = chunk.astype("i8")  # a copy, updated in place
    key *= max(len(priority), 1)
    key += priority[source]
    return key


def order_pairs(key: np.ndarray, priority: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique (chunk, source) pairs of ``pair_keys`` (sorted in place) ordered by chunk, then priority,
    as int32 arrays (ids < 2**31: ``max_tasks``)."""
    n = max(len(priority), 1)
    key.sort()  # then drop repeats: several times faster than np.unique's hash table at millions of keys
    key = key[np.r_[True, key[1:] != key[:-1]]] if len(key) else key
    by_prio = np.empty(n, dtype="i4")
    by_prio[priority] = np.arange(len(priority), dtype="i4")
    source = by_prio[key % n]
    key //= n
    return key.astype("i4"), source


def collect_pairs(
    batches: Iterable[tuple[np.ndarray, np.ndarray]], priority: np.ndarray, cull: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Consume the join's batches, culling each as it arrives (``cull.update``/``cull.final``), then
    dedupe and order the survivors by chunk, then priority. Memory grows with survivors only: one int64
    key per pair without culling."""
    if cull is None:
        keys = [np.zeros(0, dtype="i8")] + [pair_keys(c, s, priority) for c, s in batches]
    else:
        chunks, sources = [np.zeros(0, dtype="i4")], [np.zeros(0, dtype="i4")]  # ids < 2**31 (max_tasks)
        for chunk, source in batches:
            keep = cull.update(chunk, source)
            chunks.append(chunk[keep])
            sources.append(source[keep])
        chunk, source = np.concatenate(chunks), np.concatenate(sources)
        del chunks, sources
        keep = cull.final(chunk, source)
        keys = [pair_keys(chunk[keep], source[keep], priority)]
        del chunk, source
    key = np.concatenate(keys)
    del keys
    return order_pairs(key, priority)


def bin_size(chunk_parts: np.ndarray, source_parts: np.ndarray) -> float:
    """Grid cell (degrees) for the binned join: a quarter of a source, at least a chunk."""

    def extent(p: np.ndarray) -> float:
        return float(np.median(np.maximum(p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]))) if len(p) else 1.0

    return max(extent(source_parts) / 4.0, extent(chunk_parts), 1e-6)
