"""From the files users have to a lazymerge store: GeoTIFFs/COGs (paths or URLs) and STAC catalogues
(ItemCollection JSON, or stac-geoparquet read a batch of rows at a time).

``ingest`` writes the store layout (``lazymerge.catalog.layout``): one source group per file or STAC item,
one band group per band or asset, levels ``0 .. n`` with spatial:/proj: and a ``multiscales`` layout, the
item's ``datetime`` and scalar properties on the source group, ``nodata`` and ``scale_factor``/``add_offset``
on the levels; then ``/meta``. A COG's internal overviews become the levels as they are; missing levels are
built from the level before, 2 x 2 pixels at a time. Files are read and written window by window (one chunk
at a time), so memory does not grow with the files.

One Cubed task per source, on the same executors as ``merge``. A source group appears under its final name
only when complete (on a local store it is written aside and renamed; on an object store its attributes,
written last, mark it complete), so an interrupted ingest leaves no half-written source and running it again
writes only the missing sources.
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.storage
from affine import Affine

from lazymerge.catalog.conventions import (
    Overview,
    ProjAttrs,
    SpatialAttrs,
    write_multiscales,
    write_proj,
    write_spatial,
)
from lazymerge.catalog.layout import META_GROUP
from lazymerge.errors import InvalidRequestError, StoreError

COMPLETE_ATTR = "lazymerge:ingested"  # written last on a source group: the group is complete
TIFF_MEDIA = ("image/tiff", "image/geotiff", "image/vnd.stac.geotiff")
SKIPPED_PROPERTIES = ("datetime", "start_datetime", "end_datetime", "created", "updated")
STAC_JSON = (".json", ".geojson")
STAC_PARQUET = (".parquet", ".geoparquet")
PARQUET_BATCH = 1024  # stac-geoparquet rows decoded at a time: a large catalogue is never held whole


@dataclass(frozen=True)
class BandFile:
    """One band of a source: the file (path or URL) and the band's 1-based index in it; or, with
    ``zarr=True``, a band group of a store in this layout, copied as it is."""

    name: str
    href: str
    index: int = 1
    zarr: bool = False


@dataclass(frozen=True)
class SourceSpec:
    """What one ingest task writes: a source group ``id`` with its bands, time and properties."""

    id: str
    bands: tuple[BandFile, ...]
    datetime: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    zarr: str | None = None  # a source group in this layout (a STAC item's Zarr asset) that bands copy


@dataclass(frozen=True)
class IngestOptions:
    """How every source is written (the same for all tasks)."""

    store: str
    overviews: int | str = "auto"
    chunks: int = 512
    resampling: str = "average"


def _check_id(text: str) -> str:
    sid = text.strip().replace("/", "_")
    if not sid or sid.startswith(".") or sid == META_GROUP:
        raise InvalidRequestError(
            f"source id {text!r} cannot name a source group (empty, hidden or {META_GROUP!r}); rename it"
        )
    return sid


def _file_bands(href: str, wanted: Sequence[str] | None) -> tuple[BandFile, ...]:
    """A file's bands: ``data`` for a one-band file, else its band descriptions (or b1, b2 ...)."""
    import rasterio

    with rasterio.open(href) as ds:
        names = ["data"] if ds.count == 1 else [d or f"b{i}" for i, d in enumerate(ds.descriptions, start=1)]
    if len(set(names)) != len(names):
        names = [f"b{i}" for i in range(1, len(names) + 1)]
    bands = tuple(BandFile(n, href, i) for i, n in enumerate(names, start=1) if not wanted or n in wanted)
    if not bands:
        raise InvalidRequestError(
            f"{href!r} has bands {names}, none of {list(wanted or [])}; pick from those"
        )
    return bands


def _stac_property(key: str) -> str:
    """``eo:cloud_cover`` -> ``cloud_cover``: STAC's namespaced names as /meta columns (which carry no
    ``:``)."""
    return key.rpartition(":")[2]


def stac_properties(item: Any) -> dict[str, Any]:
    """A STAC item's scalar properties as source attributes (``eo:cloud_cover`` -> ``cloud_cover``),
    without its times and proj: fields."""
    return {
        _stac_property(k): v
        for k, v in item.properties.items()
        if k not in SKIPPED_PROPERTIES
        and not k.startswith("proj:")
        and isinstance(v, (bool, int, float, str))
    }


def zarr_hrefs(item: Any) -> list[str]:
    """The hrefs of a STAC item's Zarr assets (media type ``application/vnd+zarr``, or ``.zarr`` in the
    href)."""
    return [
        a.get_absolute_href() or a.href
        for a in item.assets.values()
        if "zarr" in (a.media_type or "").lower() or ".zarr" in a.href
    ]


def _open_group(href: str) -> zarr.Group:
    """A group of a store in this layout, read-only (a local path or an object-store URL)."""
    try:
        if "://" in href and not href.startswith("file://"):
            from obstore.store import from_url

            return zarr.open_group(zarr.storage.ObjectStore(from_url(href), read_only=True), mode="r")
        return zarr.open_group(str(Path(href.removeprefix("file://")).expanduser()), mode="r")
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise StoreError(
            f"{href!r} is not a Zarr group ({exc}); a STAC item's Zarr asset must name a source group"
        ) from exc


def _zarr_spec(item: Any, href: str, bands: Sequence[str] | None) -> SourceSpec:
    """A SourceSpec copying the source group ``href`` (a Zarr asset): its band groups (``bands``: those
    to take) as they are."""
    names = sorted(_open_group(href).group_keys())
    missing = [b for b in bands or () if b not in names]
    if missing or not names:
        raise InvalidRequestError(
            f"STAC item {item.id!r}: its Zarr source group {href!r} has no band group(s) "
            f"{missing or 'at all'}; it has {names}"
        )
    chosen = tuple(
        BandFile(n, f"{href.rstrip('/')}/{n}", 0, zarr=True) for n in names if not bands or n in bands
    )
    when = item.datetime or item.common_metadata.start_datetime
    iso = when.isoformat() if when else None
    return SourceSpec(_check_id(item.id), chosen, iso, stac_properties(item), zarr=href)


def specs_from_stac(items: Any, bands: Sequence[str] | None = None) -> list[SourceSpec]:
    """One SourceSpec per STAC item: its GeoTIFF/COG assets (``bands``: the asset keys to take) as bands,
    or, for an item whose one data asset is Zarr in this layout, that source group's band groups
    (``bands``: the band groups to take); its datetime, and its scalar properties (``eo:cloud_cover`` ->
    ``cloud_cover``; proj: ones skipped)."""
    specs = []
    for item in items:
        tiffs = [
            a
            for a in item.assets.values()
            if any((a.media_type or "").lower().startswith(t) for t in TIFF_MEDIA)
        ]
        if not tiffs and len(zarr := zarr_hrefs(item)) == 1:
            specs.append(_zarr_spec(item, zarr[0], bands))
            continue
        assets = []
        for key, asset in item.assets.items():
            media = (asset.media_type or "").lower()
            if bands is not None and key not in bands:
                continue
            if bands is None and not (
                any(media.startswith(t) for t in TIFF_MEDIA) and "data" in (asset.roles or ["data"])
            ):
                continue
            assets.append(BandFile(key, asset.get_absolute_href() or asset.href, 1))
        if bands is not None:
            missing = [b for b in bands if b not in {a.name for a in assets}]
            if missing:
                raise InvalidRequestError(
                    f"STAC item {item.id!r} has no asset(s) {missing}; it has {sorted(item.assets)}"
                )
        if not assets:
            raise InvalidRequestError(
                f"STAC item {item.id!r} has no GeoTIFF/COG data asset (media type image/tiff) nor one Zarr "
                "asset; name the assets to ingest with bands=[...]"
            )
        when = item.datetime or item.common_metadata.start_datetime
        props = stac_properties(item)
        specs.append(SourceSpec(_check_id(item.id), tuple(assets), when.isoformat() if when else None, props))
    return specs


def is_stac_file(src: Any) -> bool:
    """True for a path or URL that names a STAC catalogue file (ItemCollection JSON or stac-geoparquet)."""
    return isinstance(src, (str, os.PathLike)) and str(src).lower().endswith(STAC_JSON + STAC_PARQUET)


def _parquet_items(path: str, batch_size: int) -> Iterator[Any]:
    """The items of a stac-geoparquet file, decoded by stac-geoparquet ``batch_size`` rows at a time, with
    relative asset hrefs made absolute against the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pystac
    from pystac.utils import make_absolute_href

    try:
        from stac_geoparquet.arrow import stac_table_to_items
    except ImportError as exc:
        raise InvalidRequestError(
            f"{path!r} is stac-geoparquet, read with stac-geoparquet: pip install 'lazymerge[formats]'"
        ) from exc
    try:
        parquet = pq.ParquetFile(path)
        batches = pa.RecordBatchReader.from_batches(parquet.schema_arrow, parquet.iter_batches(batch_size))
        for row in stac_table_to_items(batches):
            item = pystac.Item.from_dict(row, preserve_dict=False)
            for asset in item.assets.values():
                asset.href = make_absolute_href(asset.href, os.path.abspath(path))
            yield item
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException, pystac.STACError) as exc:
        raise InvalidRequestError(
            f"{path!r} is not a stac-geoparquet catalogue of STAC items ({type(exc).__name__}: {exc}); write "
            "it with stac-geoparquet (stac_geoparquet.arrow.to_parquet(parse_stac_items_to_arrow(items), "
            "path)) or rustac, or pass the items as an ItemCollection .json"
        ) from exc


def read_stac(path: str | os.PathLike[str], batch_size: int = PARQUET_BATCH) -> Iterator[Any]:
    """The pystac Items of a STAC ItemCollection JSON (``.json``/``.geojson``) or a stac-geoparquet file
    (``.parquet``/``.geoparquet``, as the stac-geoparquet package and rustac write it), the latter read
    ``batch_size`` rows at a time."""
    location = os.fspath(path)
    if location.lower().endswith(STAC_PARQUET):
        return _parquet_items(location, batch_size)
    import pystac

    return iter(pystac.ItemCollection.from_file(location))


def _from_catalogue(path: str | os.PathLike[str], bands: Sequence[str] | None) -> list[SourceSpec]:
    """The SourceSpecs of a STAC catalogue file; an item's error names the file too."""
    try:
        return specs_from_stac(read_stac(path), bands)
    except InvalidRequestError as exc:
        if os.fspath(path) in str(exc):
            raise
        raise InvalidRequestError(f"{os.fspath(path)!r}: {exc}") from exc


def source_specs(sources: Iterable[Any], bands: Sequence[str] | None = None) -> list[SourceSpec]:
    """SourceSpecs from paths/URLs of GeoTIFFs (one source each, named by the file's stem), STAC
    catalogue files (ItemCollection ``.json``/``.geojson``, stac-geoparquet ``.parquet``/``.geoparquet``),
    and pystac Items or ItemCollections."""
    specs: list[SourceSpec] = []
    for src in sources:
        if hasattr(src, "assets"):  # a pystac Item
            specs += specs_from_stac([src], bands)
        elif hasattr(src, "items") and not isinstance(src, (str, os.PathLike)):  # a pystac ItemCollection
            specs += specs_from_stac(list(src), bands)
        elif is_stac_file(src):
            specs += _from_catalogue(src, bands)
        else:
            href = os.fspath(src)
            stem = href.rstrip("/").rpartition("/")[2].rsplit(".", 1)[0]
            specs.append(SourceSpec(_check_id(stem), _file_bands(href, bands)))
    ids = [s.id for s in specs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InvalidRequestError(
            f"source ids {duplicates} occur more than once (files with the same name, or repeated items); "
            "give each file a distinct name"
        )
    return specs


def _nodata_and_fill(ds: Any, index: int) -> tuple[float | None, Any]:
    nodata = ds.nodatavals[index - 1]
    dtype = np.dtype(ds.dtypes[index - 1])
    if nodata is not None:
        return float(nodata), dtype.type(nodata)
    return None, (np.nan if dtype.kind == "f" else 0)


def _reduce(block: np.ndarray, nodata: float | None, resampling: str) -> np.ndarray:
    """One level down: every 2 x 2 pixels -> one, by nearest (top-left) or the mean of the valid ones."""
    h, w = block.shape
    if resampling == "nearest":
        return block[::2, ::2]
    pad = np.pad(
        block.astype("f8"), ((0, h % 2), (0, w % 2)), constant_values=np.nan
    )  # the missing half-pixel at odd edges counts as missing
    if nodata is not None and not np.isnan(nodata):
        pad[pad == nodata] = np.nan
    quads = pad.reshape(pad.shape[0] // 2, 2, pad.shape[1] // 2, 2)
    count = np.sum(~np.isnan(quads), axis=(1, 3))
    total = np.nansum(quads, axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    fill = np.nan if nodata is None else nodata
    mean[count == 0] = fill
    if block.dtype.kind in "iu":
        mean = np.rint(mean)
    return mean.astype(block.dtype)


def level_count(shape: tuple[int, int], chunks: int, overviews: int | str, internal: int) -> int:
    """Overview levels to write: ``auto`` is the file's internal overviews, or, without any, halving until
    the level fits one chunk; a number is that many."""
    if overviews == "auto":
        return internal or max(0, math.ceil(math.log2(max(max(shape) / chunks, 1.0))))
    if isinstance(overviews, bool) or not isinstance(overviews, int) or overviews < 0:
        raise InvalidRequestError(f"overviews={overviews!r}; pass 'auto', 0 (none) or a number of levels")
    return overviews


def _copy_band(group: zarr.Group, band: BandFile) -> None:
    """A band group of a store in this layout, copied as it is: its attributes, and each level chunk by
    chunk with its shape, chunks, dtype, fill value, dimension names and attributes."""
    import itertools

    source = _open_group(band.href)
    target = group.create_group(band.name, attributes=dict(source.attrs))
    for name, level in source.arrays():
        copy = target.create_array(
            name,
            shape=level.shape,
            chunks=level.chunks,
            dtype=level.dtype,
            fill_value=level.fill_value,
            dimension_names=level.metadata.dimension_names,  # type: ignore[union-attr]
            attributes=dict(level.attrs),
        )
        for corner in itertools.product(
            *(range(0, n, c) for n, c in zip(level.shape, level.chunks, strict=True))
        ):
            window = tuple(slice(o, o + c) for o, c in zip(corner, level.chunks, strict=True))
            copy[window] = level[window]


def _write_band(group: zarr.Group, band: BandFile, options: IngestOptions) -> ProjAttrs:
    """The band group: level 0 from the file, levels 1.. from its internal overviews or built."""
    import rasterio
    from rasterio.windows import Window

    c = options.chunks
    bgroup = group.create_group(band.name)
    with rasterio.open(band.href) as ds:
        if ds.crs is None:
            raise StoreError(f"{band.href!r} has no CRS; only georeferenced GeoTIFFs can be ingested")
        proj = (
            ProjAttrs(wkt2=ds.crs.to_wkt())
            if ds.crs.to_epsg() is None
            else ProjAttrs(code=f"EPSG:{ds.crs.to_epsg()}")
        )
        nodata, fill = _nodata_and_fill(ds, band.index)
        dtype = np.dtype(ds.dtypes[band.index - 1])
        scale, offset = ds.scales[band.index - 1], ds.offsets[band.index - 1]
        internal = ds.overviews(band.index)
        n = level_count(ds.shape, c, options.overviews, len(internal))
        base_transform = ds.transform
    levels = [Overview("0", (1.0, 1.0))]
    prev: zarr.Array | None = None  # the level below, which a built level averages
    for k in range(n + 1):
        reuse = 0 < k <= len(internal) and internal[k - 1] == 2**k
        open_options = {"overview_level": k - 1} if reuse else {}
        with rasterio.open(band.href, **open_options) as ds:
            if k == 0 or reuse:
                shape, transform = ds.shape, ds.transform
            else:
                assert prev is not None  # k >= 1
                shape = (-(-prev.shape[0] // 2), -(-prev.shape[1] // 2))
                transform = base_transform @ Affine.scale(2**k)
            arr = bgroup.create_array(
                str(k),
                shape=shape,
                chunks=(min(c, shape[0]), min(c, shape[1])),
                dtype=dtype,
                fill_value=fill,
                dimension_names=["y", "x"],
            )
            for r0 in range(0, shape[0], c):
                for c0 in range(0, shape[1], c):
                    h, w = min(c, shape[0] - r0), min(c, shape[1] - c0)
                    if k == 0 or reuse:
                        block = ds.read(band.index, window=Window(c0, r0, w, h))
                    else:
                        below = np.asarray(prev[2 * r0 : 2 * (r0 + h), 2 * c0 : 2 * (c0 + w)])  # type: ignore[index]
                        block = _reduce(below, nodata, options.resampling)
                    arr[r0 : r0 + h, c0 : c0 + w] = block
        if nodata is not None:
            arr.attrs["nodata"] = nodata
        if scale != 1.0 or offset != 0.0:
            arr.update_attributes({"scale_factor": scale, "add_offset": offset})
        write_spatial(arr, SpatialAttrs(("y", "x"), tuple(transform)[:6], shape=shape))
        write_proj(arr, proj)
        if k:
            levels.append(Overview(str(k), (float(2**k), float(2**k)), derived_from=str(k - 1)))
        prev = arr
    write_proj(bgroup, proj)
    write_multiscales(bgroup, levels)
    return proj


def _open_store(store: str) -> tuple[zarr.Group, Path | None]:
    """The store's root group (created when missing) and its local directory, if it is local."""
    if "://" in store and not store.startswith("file://"):
        from obstore.store import from_url

        return zarr.open_group(zarr.storage.ObjectStore(from_url(store)), mode="a"), None
    path = Path(store.removeprefix("file://")).expanduser().resolve()
    return zarr.open_group(zarr.storage.LocalStore(str(path)), mode="a"), path


def is_complete(root: zarr.Group, source_id: str) -> bool:
    """True when the source group exists and was finished (its completion attribute is written last)."""
    try:
        group = root[source_id]
    except KeyError:
        return False
    return isinstance(group, zarr.Group) and bool(group.attrs.get(COMPLETE_ATTR))


def ingest_source(spec: SourceSpec, options: IngestOptions) -> None:
    """Write one source group. Locally it is built under a hidden name and renamed into place; the
    completion attribute, written last, marks it done on any store."""
    root, local = _open_store(options.store)
    name = spec.id if local is None else f".ingest-{spec.id}-{uuid.uuid4().hex[:12]}"
    if local is None and spec.id in root:
        del root[spec.id]  # an unfinished group from an interrupted run
    group = root.create_group(name)
    try:
        attrs: dict[str, Any] = {}
        for band in spec.bands:
            if band.zarr:
                _copy_band(group, band)
            else:
                _write_band(group, band, options)
        if spec.zarr:  # a copied source group's own attributes, under the item's
            attrs.update((k, v) for k, v in _open_group(spec.zarr).attrs.items() if k != COMPLETE_ATTR)
        attrs.update(spec.properties)
        if spec.datetime:
            attrs["datetime"] = spec.datetime
        group.update_attributes(attrs)
        group.attrs[COMPLETE_ATTR] = True
        if local is not None:
            final = local / spec.id
            if final.exists():  # an unfinished group left by an older, interrupted writer
                shutil.rmtree(final)
            (local / name).rename(final)
    finally:
        if local is not None:
            shutil.rmtree(local / name, ignore_errors=True)


def _ingest_task(ids: np.ndarray, *, specs: list[SourceSpec], options: IngestOptions) -> np.ndarray:
    """Cubed task: ingest the sources named by ``ids`` (indices into ``specs``)."""
    for i in ids.ravel():
        ingest_source(specs[int(i)], options)
    return ids


def ingest(
    sources: Iterable[Any] | str | os.PathLike[str],
    store: str | os.PathLike[str],
    *,
    overviews: int | str = "auto",
    chunks: int = 512,
    bands: Sequence[str] | str | None = None,
    resampling: str = "average",
    executor: Any = None,
    spec: Any = None,
    progress: bool | None = None,
    meta: bool = True,
) -> list[str]:
    """Ingest GeoTIFFs/COGs and STAC items into a lazymerge store, then write its /meta.

    Parameters
    ----------
    sources
        Paths or URLs of GeoTIFFs/COGs (``s3://`` etc. read through GDAL), STAC catalogue files
        (ItemCollection ``.json``, stac-geoparquet ``.parquet``), pystac Items or ItemCollections; or one of
        these alone.
    store
        The store to write (a local path or an object-store URL); created when missing. Sources already
        complete in it are skipped, so an interrupted ingest resumes (one ingest per store at a time).
    overviews
        ``"auto"`` (a COG's internal overviews, else halve until one chunk), 0, or a number of levels.
    chunks
        The Zarr chunk side in pixels.
    bands
        Band names (a file's band descriptions, ``data`` for one-band files) or STAC asset keys to take.
    resampling
        How built overviews combine 2 x 2 pixels: ``average`` (of the valid ones) or ``nearest``.
    executor, spec, progress
        The Cubed executor (``lazymerge.executors.get_executor``; default threads), Spec and progress bar,
        as for ``merge``: one task per source.
    meta
        Write /meta afterwards (``lazymerge.catalog.meta.write_meta``).

    Returns
    -------
    list of str
        The ids of the sources written by this call (not those already complete).
    """
    import cubed

    try:
        import rasterio  # noqa: F401  (every ingest reads through it)
    except ImportError as exc:
        raise InvalidRequestError(
            "ingest reads GeoTIFFs with rasterio: pip install 'lazymerge[formats]'"
        ) from exc
    from lazymerge.output.progress import run_callbacks
    from lazymerge.output.write import _ids_array

    if isinstance(sources, (str, os.PathLike)) or hasattr(sources, "assets"):
        sources = [sources]
    if isinstance(bands, str):
        bands = [b for b in bands.split(",") if b]
    if resampling not in ("average", "nearest"):
        raise InvalidRequestError(f"resampling={resampling!r}; overviews are built by 'average' or 'nearest'")
    if chunks <= 0:
        raise InvalidRequestError(f"chunks={chunks}; pass a positive chunk side in pixels, e.g. 512")
    level_count((1, 1), chunks, overviews, 0)  # validates overviews
    specs = source_specs(sources, bands)
    options = IngestOptions(str(os.fspath(store)), overviews, chunks, resampling)
    root, local = _open_store(options.store)
    if local is not None:  # groups left aside by an interrupted ingest (never renamed: incomplete)
        for leftover in local.glob(".ingest-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    pending = [i for i, s in enumerate(specs) if not is_complete(root, s.id)]
    if pending:
        spec = spec or cubed.Spec(allowed_mem="2GB", reserved_mem="100MB")
        per_chunk = chunks * chunks * 8
        tasks = cubed.map_blocks(
            _ingest_task,
            _ids_array(np.array(pending, dtype="i8"), spec, 1),
            dtype="i8",
            specs=specs,
            options=options,
            extra_projected_mem=6 * per_chunk,  # a window read, the level below and the averaging arrays
        )
        callbacks, _ = run_callbacks(progress)
        tasks.compute(executor=executor, callbacks=callbacks, optimize_graph=False)
    if meta:
        from lazymerge.catalog.meta import write_meta

        write_meta(options.store)
    return [specs[i].id for i in pending]


def _relative_to_store(href: str, store: str) -> str | None:
    """``href``'s path inside ``store`` (a local path or URL), or None when it lies elsewhere."""
    if "://" in store and not store.startswith("file://"):
        prefix = store.rstrip("/") + "/"
        return href[len(prefix) :] if href.startswith(prefix) else None
    base = Path(store.removeprefix("file://")).expanduser().resolve()
    try:
        return Path(href.removeprefix("file://")).expanduser().resolve().relative_to(base).as_posix()
    except ValueError:
        return None


def index_stac(items: Any, store: str | os.PathLike[str]) -> Any:
    """Write ``store``'s /meta from STAC items (pystac Items, or an ItemCollection JSON or stac-geoparquet
    file) whose assets are already Zarr in this layout, in ``store``: nothing is copied. Each item's Zarr
    asset (media type ``application/vnd+zarr``, or an href with ``.zarr``) names its source group, or a
    band group in it; the row takes the item's ``datetime`` and scalar properties (``eo:cloud_cover`` ->
    ``cloud_cover``) over the group's own attributes. Sources of the store that no item names are left out
    of /meta. Returns the /meta table."""
    from dataclasses import replace

    from lazymerge.catalog.meta import write_meta_table
    from lazymerge.catalog.scan import ScanIndex, scan_store

    if isinstance(items, (str, os.PathLike)):
        items = read_stac(items)
    location = os.fspath(store)
    by_id = {e.id: e for e in scan_store(location)}
    entries = []
    for item in items:
        hrefs = zarr_hrefs(item)
        ids = {rel.split("/")[0] for h in hrefs if (rel := _relative_to_store(h, location))}
        if len(ids) != 1 or next(iter(ids)) not in by_id:
            raise InvalidRequestError(
                f"STAC item {item.id!r}: its Zarr assets {hrefs} must name one source group of {location!r} "
                f"(it has {sorted(by_id)[:5]}...); copy files from elsewhere in with lazymerge ingest"
            )
        entry = by_id[next(iter(ids))]
        when = item.datetime or item.common_metadata.start_datetime
        props = {**entry.properties, **stac_properties(item)}
        entries.append(
            replace(entry, datetime=when.isoformat() if when else entry.datetime, properties=props)
        )
    table = ScanIndex(sorted(entries, key=lambda e: e.id)).table()
    write_meta_table(location, table)
    return table
