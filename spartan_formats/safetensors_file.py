"""Bounds-checked parsing of a safetensors file from bytes, with error codes.

Parsed by hand rather than with `safetensors.numpy.load` so that every defect has a stable error code that the
C++ and Kotlin readers reproduce (the library's messages are not a contract), and so that nothing in the file is
trusted before it is checked: the 8-byte header length against the file size, the header as strict JSON, each
tensor entry's dtype/shape/offsets, and that the tensors tile the payload exactly (no gaps, no overlaps, no
trailing bytes). Writing uses the library (`safetensors.numpy.save`).

Layout: u64 little-endian N, then N bytes of JSON (may end with spaces), then the payload.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from .errors import FormatError
from .fields import parse_json

MAX_HEADER_BYTES = 16 * 1024 * 1024
# safetensors dtype names -> little-endian numpy dtypes (the ones these formats can contain or a reader must name)
DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8"), "BF16": None,
          "I8": np.dtype("i1"), "U8": np.dtype("u1"), "I16": np.dtype("<i2"), "I32": np.dtype("<i4"),
          "I64": np.dtype("<i8"), "BOOL": np.dtype("?")}
ITEMSIZE = {"BF16": 2} | {k: v.itemsize for k, v in DTYPES.items() if v is not None}


@dataclass
class TensorEntry:
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass
class SafetensorsFile:
    metadata: dict[str, str]
    tensors: dict[str, TensorEntry]
    payload: memoryview

    def array(self, name: str) -> np.ndarray:
        """The tensor as a read-only numpy array over the payload (no copy)."""
        e = self.tensors[name]
        dt = DTYPES[e.dtype]
        if dt is None:
            raise FormatError("tensor_dtype", f"tensor {name} has dtype {e.dtype}, which numpy cannot read")
        return np.frombuffer(self.payload[e.begin:e.end], dtype=dt).reshape(e.shape)


def parse(data: bytes | memoryview) -> SafetensorsFile:
    data = memoryview(data)
    if len(data) < 8:
        raise FormatError("truncated", f"not a safetensors file: {len(data)} bytes, shorter than the 8-byte "
                                       "header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n == 0 or n > MAX_HEADER_BYTES or n > len(data) - 8:
        raise FormatError("bad_header_length", f"not a safetensors file (corrupt or truncated): header length {n} "
                                               f"does not fit a {len(data)}-byte file (limit {MAX_HEADER_BYTES})")
    header = parse_json(bytes(data[8:8 + n]), "safetensors header", code="header_not_json")
    if not isinstance(header, dict):
        raise FormatError("header_not_object", "safetensors header is not a JSON object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise FormatError("metadata_not_object", "__metadata__ must be an object whose values are strings")
    payload = data[8 + n:]
    tensors: dict[str, TensorEntry] = {}
    for name, e in header.items():
        tensors[name] = _entry(name, e)
    spans = sorted((e.begin, e.end, name) for name, e in tensors.items())
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            raise FormatError("bad_tensor_entry", f"tensor {name} starts at {begin}, expected {pos} "
                                                  "(tensors must tile the payload without gaps or overlaps)")
        pos = end
    if pos > len(payload):
        raise FormatError("truncated", f"file is truncated: tensors need {pos} payload bytes, it has {len(payload)}")
    if pos != len(payload):
        raise FormatError("trailing_bytes", f"{len(payload) - pos} bytes after the last tensor")
    return SafetensorsFile(meta, tensors, payload)


def _entry(name: str, e: object) -> TensorEntry:
    if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
        raise FormatError("bad_tensor_entry", f"tensor {name!r} entry must have exactly dtype, shape, data_offsets")
    dtype, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
    if not isinstance(dtype, str) or dtype not in ITEMSIZE:
        raise FormatError("bad_tensor_entry", f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or len(shape) > 8 or not all(_uint(d) for d in shape):
        raise FormatError("bad_tensor_entry", f"tensor {name!r} shape must be a list of non-negative integers")
    if not isinstance(offs, list) or len(offs) != 2 or not all(_uint(x) for x in offs) or offs[0] > offs[1]:
        raise FormatError("bad_tensor_entry", f"tensor {name!r} data_offsets must be [begin, end], begin <= end")
    if (offs[1] - offs[0]) != math.prod(shape) * ITEMSIZE[dtype]:
        raise FormatError("bad_tensor_entry", f"tensor {name!r}: {offs[1] - offs[0]} bytes for shape {shape} "
                                              f"of {dtype}")
    return TensorEntry(dtype, tuple(shape), offs[0], offs[1])


def _uint(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**53


def parse_header_only(raw: bytes) -> dict[str, str]:
    """The `__metadata__` of a header given as its JSON bytes (for readers that do not load the payload)."""
    header = parse_json(raw, "safetensors header", code="header_not_json")
    if not isinstance(header, dict):
        raise FormatError("header_not_object", "safetensors header is not a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise FormatError("metadata_not_object", "__metadata__ must be an object whose values are strings")
    return meta
