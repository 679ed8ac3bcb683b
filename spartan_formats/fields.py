"""Typed field access for JSON documents: every reader checks types the same way (bool is not an int, numbers are
finite, objects are dicts) and names the field in the error."""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import FormatError


def parse_json(raw: str | bytes, what: str, code: str = "not_json") -> Any:
    """Strict JSON: no NaN/Infinity literals, no duplicate keys (two readers could pick different values)."""

    def pairs(items: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for k, v in items:
            if k in out:
                raise FormatError(code, f"{what} has the key {k!r} twice")
            out[k] = v
        return out

    def no_constants(name: str) -> Any:
        raise FormatError(code, f"{what} uses {name}, which is not JSON")

    try:
        return json.loads(raw, object_pairs_hook=pairs, parse_constant=no_constants)
    except FormatError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FormatError(code, f"{what} is not JSON ({str(e)[:120]})") from None


def obj(doc: Any, what: str, code: str = "bad_field") -> dict:
    if not isinstance(doc, dict):
        raise FormatError(code, f"{what} must be a JSON object, not {type(doc).__name__}")
    return doc


def need(doc: dict, key: str, what: str) -> Any:
    if key not in doc:
        raise FormatError("missing_field", f"{what} has no {key!r}")
    return doc[key]


def integer(v: Any, what: str, lo: int | None = None, hi: int | None = None) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise FormatError("bad_field", f"{what} must be an integer, not {_show(v)}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise FormatError("bad_field", f"{what} is {v}, outside {lo}..{hi}")
    return v


def number(v: Any, what: str, positive: bool = False) -> float:
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        raise FormatError("bad_field", f"{what} must be a finite number, not {_show(v)}")
    if positive and v <= 0:
        raise FormatError("bad_field", f"{what} must be positive, not {v}")
    return v


def boolean(v: Any, what: str) -> bool:
    if not isinstance(v, bool):
        raise FormatError("bad_field", f"{what} must be true or false, not {_show(v)}")
    return v


def string(v: Any, what: str, max_len: int = 4096) -> str:
    if not isinstance(v, str) or len(v) > max_len:
        raise FormatError("bad_field", f"{what} must be a string of at most {max_len} characters, not {_show(v)}")
    return v


def optional_string(v: Any, what: str) -> str | None:
    return None if v is None else string(v, what)


def string_list(v: Any, what: str, max_items: int = 4096) -> list[str]:
    if not isinstance(v, list) or len(v) > max_items:
        raise FormatError("bad_field", f"{what} must be a list of strings")
    return [string(x, f"{what}[{i}]", 256) for i, x in enumerate(v)]


def format_version(doc: dict, want: int | tuple[int, ...], what: str) -> int:
    v = need(doc, "format_version", what)
    wanted = want if isinstance(want, tuple) else (want,)
    if not isinstance(v, int) or isinstance(v, bool) or v not in wanted:
        raise FormatError("bad_format_version", f"{what} has format_version {_show(v)}; this reader reads "
                                                f"{', '.join(map(str, wanted))}")
    return v


def _show(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def metadata_object(meta_raw: Any, key: str, missing: str) -> dict:
    """A safetensors header's metadata entry `key`: present (else `missing` names what the file is not), strict JSON,
    an object. The shared first checks of the memory file and the task artifact, with the same codes."""
    if meta_raw is None:
        raise FormatError("metadata_missing", f"no '{key}' metadata: {missing}")
    m = parse_json(meta_raw, f"'{key}' metadata", code="metadata_not_json")
    if not isinstance(m, dict):
        raise FormatError("memory_metadata_not_object", f"'{key}' metadata is not a JSON object")
    return m
