"""lazymerge.arrow builds and reads the columns pyarrow's own pa.array / to_numpy would, on random data."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lazymerge import arrow

DTYPES = [
    "i1",
    "i2",
    "i4",
    "i8",
    "u1",
    "u2",
    "u4",
    "u8",
    "f4",
    "f8",
    "bool",
    "datetime64[us]",
    "datetime64[s]",
]


def _random(dtype: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if dtype == "bool":
        return rng.random(n) < 0.5
    if dtype.startswith("datetime64"):
        return rng.integers(-(10**9), 10**9, n).astype("i8").view(dtype)
    if dtype[0] == "f":
        return rng.normal(0, 1e6, n).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    n=st.integers(0, 70),
    with_nulls=st.booleans(),
    cut=st.tuples(st.integers(0, 9), st.integers(0, 9)),
    chunks=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_column_and_values_agree_with_pyarrow(dtype, n, with_nulls, cut, chunks, seed):
    """column() builds what pa.array builds; values() reads what to_numpy(zero_copy_only=False) reads,
    through sliced (offset) arrays and chunked arrays, with and without nulls."""
    rng = np.random.default_rng(seed)
    data = _random(dtype, n, rng)
    nulls = rng.random(n) < 0.3 if with_nulls else None
    built = arrow.column(data, nulls)
    assert built.equals(pa.array(data, mask=nulls))
    lo, hi = min(cut[0], n), max(n - cut[1], min(cut[0], n))
    sliced = built.slice(lo, hi - lo)
    parts = np.array_split(np.arange(len(sliced)), chunks)
    chunked = pa.chunked_array([sliced.slice(p[0], len(p)) for p in parts if len(p)], type=sliced.type)
    for col in (sliced, chunked):
        got, want = arrow.values(col), col.to_numpy(zero_copy_only=False)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=6)), max_size=30), st.booleans())
def test_strings_agree_with_pyarrow(items, binary):
    type = pa.binary() if binary else pa.string()
    values = [None if v is None else v.encode() if binary else v for v in items]
    built = arrow.strings(values, type)
    assert built.equals(pa.array(values, type))
    np.testing.assert_array_equal(arrow.values(built), np.array(built.to_pylist(), dtype=object))


@pytest.mark.parametrize(
    "items",
    [
        [True, None, False],
        [1, None, -(2**62)],
        [1, 2.5, None],
        ["a", None, "ü"],
        [None, None],  # no type to infer: pa.array's null column
        [[1, 2], [3]],  # nested: pa.array's list column
        [2**70, 1],  # beyond int64: OverflowError, as pa.array
        [1, "a"],  # mixed: pa.array's own error
    ],
)
def test_infer_agrees_with_pyarrow(items):
    try:
        want = pa.array(items)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        with pytest.raises(type(exc)):
            arrow.infer(items)
        return
    assert arrow.infer(items).equals(want)


def test_table_builds_a_schema_from_lists_and_arrays():
    schema = pa.schema([("a", pa.int16()), ("b", pa.float64()), ("c", pa.string()), ("d", pa.bool_())])
    columns = {
        "a": [1, None, 3],
        "b": np.array([0.5, -1.0, 2.0]),
        "c": ["x", None, "z"],
        "d": [True, False, True],
    }
    assert arrow.table(columns, schema).equals(pa.Table.from_pydict(columns, schema=schema))


def test_column_refuses_2d_arrays_and_values_has_no_layout_for_strings():
    with pytest.raises(ValueError, match="1-D"):
        arrow.column(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="no numpy layout"):
        arrow._numpy_dtype(pa.string())
