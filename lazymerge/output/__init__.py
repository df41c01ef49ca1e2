"""Writing results: Zarr (resumable, with overviews), xarray views, run progress."""
