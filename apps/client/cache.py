"""The on-device cache: verified files named by their sha256, partial downloads, and a small state file.

    <cache>/blobs/<sha256>        complete, verified files (never modified; a new version is a new name)
    <cache>/partial/<sha256>.part downloads in progress (resumed with Range)
    <cache>/state.json            spartan_formats.cache_state: last catalog, the backbone in use, last good memories

A file name is only ever built from a string that is exactly 64 lowercase hex digits (spartan_formats.names), so
nothing a server (or a tampered state file) says can name another file.
"""

from __future__ import annotations

import os
from pathlib import Path

from spartan_formats import FormatError
from spartan_formats.cache_state import empty_state, load_cache_state, write_cache_state
from spartan_formats.digest import sha256_file
from spartan_formats.names import is_sha256

from .errors import IntegrityError


class Cache:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.blobs, self.partial = self.root / "blobs", self.root / "partial"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.partial.mkdir(parents=True, exist_ok=True)
        self.state_path = self.root / "state.json"

    def blob(self, sha256: str) -> Path:
        return self.blobs / _checked(sha256)

    def has(self, sha256: str) -> bool:
        return self.blob(sha256).is_file()

    def partial_path(self, sha256: str) -> Path:
        return self.partial / f"{_checked(sha256)}.part"

    def install(self, part: Path, sha256: str) -> Path:
        """Move a verified download into the cache (atomic rename)."""
        dest = self.blob(sha256)
        os.replace(part, dest)
        return dest

    def verified(self, sha256: str) -> bool:
        """Re-hash a cached file before use: storage can rot and files can be tampered with. A corrupt file is
        deleted (so the next fetch of that one file replaces it)."""
        p = self.blob(sha256)
        if not p.is_file():
            return False
        if sha256_file(p) != sha256:
            p.unlink()
            return False
        return True

    def load_state(self) -> tuple[dict, str | None]:
        """(state, warning): an unreadable or invalid state file gives an empty state and says why."""
        try:
            return load_cache_state(self.state_path), None
        except FormatError as e:
            if e.code == "missing_file":
                return empty_state(), None
            return empty_state(), f"ignoring the cache state {self.state_path} ({e}); starting from an empty state"
        except OSError as e:
            return empty_state(), f"cannot read the cache state {self.state_path} ({e}); starting from an empty state"

    def save_state(self, state: dict) -> None:
        write_cache_state(self.state_path, state)


def _checked(sha256: str) -> str:
    if not is_sha256(sha256):
        raise IntegrityError(f"refusing {sha256[:80]!r} as a cache file name: not a 64-hex sha256")
    return sha256
