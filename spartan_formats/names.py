"""Names and digests that come from files or the network, matched as whole strings (`re.fullmatch`: `$` would
accept a trailing newline)."""

from __future__ import annotations

import re

from .errors import FormatError

# Task and target names become URL segments, cache keys and file names: a conservative charset rules out traversal,
# separators, control characters and odd encodings. ".." anywhere is refused as well.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
SHA256_PATTERN = r"[0-9a-f]{64}"
# A file path inside an export or bundle: relative, "/"-separated segments of the name charset, no "." or "..".
PATH_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}"
MAX_PATH = 255

_NAME = re.compile(NAME_PATTERN)
_SHA256 = re.compile(SHA256_PATTERN)
_SEGMENT = re.compile(PATH_SEGMENT)


def is_name(s: object) -> bool:
    return isinstance(s, str) and _NAME.fullmatch(s) is not None and ".." not in s


def is_sha256(s: object) -> bool:
    """Lowercase 64-hex: the only form a digest or fingerprint takes anywhere in these formats."""
    return isinstance(s, str) and _SHA256.fullmatch(s) is not None


def is_relative_path(s: object) -> bool:
    if not isinstance(s, str) or not 0 < len(s) <= MAX_PATH:
        return False
    return all(_SEGMENT.fullmatch(seg) and ".." not in seg for seg in s.split("/"))


def is_memory_dtype(s: object) -> bool:
    return isinstance(s, str) and s in ("fp32", "fp16")


def check_name(s: object, what: str = "name") -> str:
    if not is_name(s):
        raise FormatError("bad_name", f"{what} {_show(s)} is not 1-64 characters of A-Z a-z 0-9 _ . - "
                                      "(starting with a letter or digit, no '..')")
    return s  # type: ignore[return-value]


def check_sha256(s: object, what: str = "sha256") -> str:
    if not is_sha256(s):
        raise FormatError("bad_sha256", f"{what} {_show(s)} is not 64 lowercase hex digits")
    return s  # type: ignore[return-value]


def check_fingerprint(s: object, what: str = "backbone fingerprint") -> str:
    if not is_sha256(s):
        raise FormatError("bad_fingerprint", f"{what} {_show(s)} is not 64 lowercase hex digits")
    return s  # type: ignore[return-value]


def check_path(s: object, what: str = "path") -> str:
    if not is_relative_path(s):
        raise FormatError("bad_path", f"{what} {_show(s)} is not a relative '/'-separated path of plain names "
                                      "(no absolute path, no '.' or '..', no backslash)")
    return s  # type: ignore[return-value]


def _show(s: object) -> str:
    r = repr(s)
    return r if len(r) <= 80 else r[:77] + "..."
