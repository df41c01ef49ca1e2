"""The store layout's names: the /meta group, lazymerge's own /meta columns, and attributes that are not
source properties.

```
store/
  meta/                 one row per source (see lazymerge.catalog.meta)
  <source id>/<band>/   band group with a multiscales attribute
    0/  1/ ...          levels, each with its own spatial: and proj: attributes
```
"""

META_GROUP = "meta"
BANDS_COLUMN = "lazymerge:bands"  # /meta column: each source's bands and levels (JSON)
RESERVED_ATTRS = {"multiscales", "zarr_conventions", "nodata", "_FillValue", "id", "bbox"}
