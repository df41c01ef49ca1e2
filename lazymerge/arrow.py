"""Columns between numpy and Arrow through their buffers, never through pyarrow's pandas shim.

``pa.array(...)``, ``Array.to_numpy()``, ``pa.scalar(...)`` and compute functions given Python values first
ask pyarrow's pandas shim whether their input is a pandas object, and the shim's first question imports
pandas: 0.3 s of every fresh process that plans, in a package that never uses pandas. These helpers build
and read primitive and string columns from their buffers instead (zero copy where the layout allows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

_INT_MAX = np.iinfo("i4").max


def _bits(flags: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(flags, bitorder="little"))


def _flags(buffer: pa.Buffer, offset: int, n: int) -> np.ndarray:
    """The ``n`` bits of a bitmap from bit ``offset`` on, as booleans."""
    bits = np.frombuffer(buffer, dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little", count=offset + n)[offset:].astype(bool)


def _validity(nulls: np.ndarray | None) -> tuple[pa.Buffer | None, int]:
    if nulls is None or not nulls.any():
        return None, 0
    return _bits(~nulls), int(nulls.sum())


def column(values: np.ndarray, nulls: np.ndarray | None = None) -> pa.Array:
    """A 1-D numeric, boolean or ``datetime64`` numpy array as an Arrow array; ``nulls`` marks null rows."""
    v = np.ascontiguousarray(values)
    if v.ndim != 1:
        raise ValueError(f"an Arrow column is 1-D; got an array of shape {v.shape}")
    validity, null_count = _validity(None if nulls is None else np.asarray(nulls, dtype=bool))
    if v.dtype == bool:
        return pa.Array.from_buffers(pa.bool_(), len(v), [validity, _bits(v)], null_count=null_count)
    return pa.Array.from_buffers(
        pa.from_numpy_dtype(v.dtype), len(v), [validity, pa.py_buffer(v)], null_count=null_count
    )


def strings(values: Sequence[str | bytes | None], type: pa.DataType | None = None) -> pa.Array:
    """Python strings (``type`` string, the default) or bytes (``type`` binary) as an Arrow array; ``None``
    is null."""
    type = pa.string() if type is None else type
    encoded = [b"" if v is None else v.encode() if isinstance(v, str) else bytes(v) for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype="i8")
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    if offsets[-1] > _INT_MAX:
        raise ValueError(f"{offsets[-1]} bytes of strings do not fit one Arrow {type} array (2 GiB at most)")
    validity, null_count = _validity(np.array([v is None for v in values], dtype=bool))
    buffers = [validity, pa.py_buffer(offsets.astype("i4")), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(type, len(encoded), buffers, null_count=null_count)


def _numpy_dtype(type: pa.DataType) -> np.dtype:
    if pa.types.is_timestamp(type):
        return np.dtype(f"datetime64[{type.unit}]")
    if pa.types.is_integer(type):
        return np.dtype(f"{'i' if pa.types.is_signed_integer(type) else 'u'}{type.bit_width // 8}")
    if pa.types.is_floating(type):
        return np.dtype(f"f{type.bit_width // 8}")
    raise TypeError(f"no numpy layout for an Arrow {type} column")


def values(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow column as numpy, as ``to_numpy(zero_copy_only=False)`` gives it: integers, floats and
    timestamps as their numpy dtype (read-only, zero copy without nulls; with nulls, integers become float64
    and nulls NaN or NaT), booleans as ``bool``, strings and anything else as Python objects."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n, offset, type = len(arr), arr.offset, arr.type
    if pa.types.is_boolean(type):
        if arr.null_count:
            return np.array(arr.to_pylist(), dtype=object)
        data = arr.buffers()[1]
        return _flags(data, offset, n) if n else np.zeros(0, dtype=bool)
    try:
        dtype = _numpy_dtype(type)
    except TypeError:
        return np.array(arr.to_pylist(), dtype=object)
    data = arr.buffers()[1]
    out = (
        np.frombuffer(data, dtype=dtype, count=n, offset=offset * dtype.itemsize)
        if n
        else np.zeros(0, dtype=dtype)
    )
    if not arr.null_count:
        return out
    nulls = ~_flags(arr.buffers()[0], offset, n)
    out = out.astype("f8") if dtype.kind in "iu" else out.copy()
    out[nulls] = np.datetime64("NaT") if dtype.kind == "M" else np.nan
    return out


def infer(items: Sequence[Any]) -> pa.Array:
    """Python values as the Arrow column ``pa.array`` would infer when they are all bools, all ints, ints
    and floats, or all strings (``None`` is null); anything else (nested, mixed, all null) through
    ``pa.array`` itself, which may raise ``ArrowInvalid``, ``ArrowTypeError`` or ``OverflowError``."""
    nulls = np.array([v is None for v in items], dtype=bool)
    kinds = {type(v) for v in items if v is not None}
    if kinds == {str}:
        return strings(items)
    filled = [0 if v is None else v for v in items]
    if kinds == {bool}:
        return column(np.array(filled, dtype=bool), nulls)
    if kinds and kinds <= {int, float}:
        try:
            return column(np.array(filled, dtype="i8" if kinds == {int} else "f8"), nulls)
        except OverflowError:
            pass
    return pa.array(list(items))


def table(columns: Mapping[str, Any], schema: pa.Schema) -> pa.Table:
    """A table of ``schema`` from a sequence or numpy array per field (``None`` in a sequence is null)."""
    arrays = []
    for field in schema:
        items = columns[field.name]
        if pa.types.is_string(field.type) or pa.types.is_binary(field.type):
            arrays.append(strings([None if v is None else v for v in items], field.type))
            continue
        dtype = np.dtype(bool) if pa.types.is_boolean(field.type) else _numpy_dtype(field.type)
        if isinstance(items, np.ndarray):
            arrays.append(column(items.astype(dtype, copy=False)))
            continue
        nulls = np.array([v is None for v in items], dtype=bool)
        arrays.append(column(np.array([0 if v is None else v for v in items], dtype=dtype), nulls))
    return pa.Table.from_arrays(arrays, schema=schema)
