"""The per-source error policy: a window that cannot be read raises SourceReadError naming the source array,
its window and the target block (``on_error="raise"``), or renders as nodata and is listed
(``on_error="skip"``); transient errors are retried with backoff."""

from __future__ import annotations

import re

import numpy as np
import pytest
import zarr

from lazymerge.api import merge
from lazymerge.errors import InvalidRequestError, SkippedReadWarning, SourceReadError

UTM = "EPSG:32618"
REQUEST = {
    "crs": UTM,
    "bbox": (500000.0, 5990000.0, 506400.0, 5996400.0),
    "resolution": 50.0,
    "chunk_size": (32, 32),
    "bands": "data",
    "sortby": "id",
    "datafusion": False,
}


@pytest.fixture
def two_sources(make_store):
    """Source a (first) over the west of the grid, b under all of it; random data."""
    rng = np.random.default_rng(5)
    a = rng.random((128, 128), dtype="f4")
    b = rng.random((128, 128), dtype="f4")
    return make_store(
        [
            ("a", UTM, (30.0, 0.0, 500000.0, 0.0, -30.0, 5996400.0), a),
            ("b", UTM, (50.0, 0.0, 500000.0, 0.0, -50.0, 5996400.0), b),
        ],
        meta=False,
    )


def corrupt(store, path: str = "a/data/0/c/0/0") -> None:
    """Truncate one stored chunk, as an interrupted upload leaves it."""
    chunk = store / path
    chunk.write_bytes(chunk.read_bytes()[:10])


def test_raise_names_source_window_and_block(two_sources):
    corrupt(two_sources)
    with pytest.raises(SourceReadError) as err:
        merge(str(two_sources), **REQUEST).array.compute()
    text = str(err.value)
    # whichever block failed first: one of the four whose window of a meets its truncated chunk (0, 0)
    assert re.search(r"'a/data/0' rows \d+:\d+ cols \d+:\d+ for target block \([01], [01]\)", text), text
    assert "on_error='skip'" in text


def test_skip_renders_nodata_and_lists_every_skipped_read(two_sources):
    full = merge(str(two_sources), **REQUEST).array.compute()
    only_b = merge(str(two_sources), where="id = 'b'", **REQUEST).array.compute()
    corrupt(two_sources)
    result = merge(str(two_sources), on_error="skip", **REQUEST)
    got = result.array.compute()
    skipped = result.skipped_reads()
    assert skipped and all(s.array == "a/data/0" and s.source == 0 for s in skipped)
    assert all("a/data/0" in str(s) and str(s.chunk) in str(s) for s in skipped)
    blocks = {s.chunk for s in skipped}
    expected = full.copy()
    for row, col in blocks:  # a's window there is nodata: b shows through
        sel = np.s_[row * 32 : (row + 1) * 32, col * 32 : (col + 1) * 32]
        expected[sel] = only_b[sel]
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, full)
    # every block whose window of a touches the truncated chunk (a's rows and columns 0..63) is listed
    assert all(s.window[0] < 64 and s.window[2] < 64 for s in skipped)
    assert (0, 0) in blocks


def test_skip_in_to_zarr_report(two_sources, tmp_path):
    corrupt(two_sources)
    result = merge(str(two_sources), on_error="skip", **REQUEST)
    report: list = []
    with pytest.warns(SkippedReadWarning, match="could not be read and rendered as nodata.*a/data/0"):
        result.to_zarr(str(tmp_path / "out.zarr"), report=report)
    listed = [r for r in report if isinstance(r, list)]
    assert listed and listed[0] == result.skipped_reads() and listed[0]


class FlakyStore(zarr.storage.WrapperStore):
    """Fails the first ``failures`` reads of every chunk with a connection error, then reads normally:
    the transient error the kernel retries."""

    def __init__(self, store, failures: int):
        super().__init__(store)
        self.failures = failures
        self.seen: dict[str, int] = {}

    async def get(self, key, prototype, byte_range=None):
        if "/c/" in key:
            self.seen[key] = self.seen.get(key, 0) + 1
            if self.seen[key] <= self.failures:
                raise ConnectionResetError(f"connection reset reading {key}")
        return await self._store.get(key, prototype, byte_range)


def test_transient_errors_are_retried(two_sources):
    expected = merge(str(two_sources), **REQUEST).array.compute()
    local = zarr.storage.LocalStore(str(two_sources), read_only=True)
    got = merge(FlakyStore(local, failures=2), **REQUEST).array.compute()  # READ_RETRIES = 2
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(SourceReadError, match="tried 3 times.*connection reset"):
        merge(FlakyStore(local, failures=50), **REQUEST).array.compute()


def test_on_error_is_checked():
    with pytest.raises(InvalidRequestError, match="on_error='ignore'"):
        merge("unused", on_error="ignore", **REQUEST)


def test_cli_run_on_error_skip(two_sources, tmp_path, capsys):
    from lazymerge.cli import main

    corrupt(two_sources)
    grid = ["--crs", UTM, "--bbox", ",".join(map(str, REQUEST["bbox"])), "--resolution", "50"]
    argv = ["run", str(two_sources), *grid, "--chunk-size", "32,32", "--bands", "data", "--scan"]
    assert main([*argv, "--out", str(tmp_path / "raise.zarr"), "--no-progress"]) != 0
    assert "a/data/0" in capsys.readouterr().err
    with pytest.warns(SkippedReadWarning):
        code = main([*argv, "--out", str(tmp_path / "skip.zarr"), "--on-error", "skip", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "source window(s) skipped (--on-error skip)" in out and "a/data/0 rows 0:54 cols 0:54" in out
