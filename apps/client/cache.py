"""The on-device cache: verified files named by their sha256, partial downloads, and a small state file.

    <cache>/blobs/<sha256>        complete, verified files (never modified; a new version is a new name)
    <cache>/partial/<sha256>.part downloads in progress (resumed with Range)
    <cache>/state.json            last manifest, the backbone in use, the last good memory per task
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Cache:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.blobs, self.partial = self.root / "blobs", self.root / "partial"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.partial.mkdir(parents=True, exist_ok=True)
        self.state_path = self.root / "state.json"

    def blob(self, sha256: str) -> Path:
        return self.blobs / sha256

    def has(self, sha256: str) -> bool:
        return self.blob(sha256).is_file()

    def partial_path(self, sha256: str) -> Path:
        return self.partial / f"{sha256}.part"

    def install(self, part: Path, sha256: str) -> Path:
        """Move a verified download into the cache (atomic rename)."""
        dest = self.blob(sha256)
        os.replace(part, dest)
        return dest

    def verified(self, sha256: str) -> bool:
        """Re-hash a cached file before use: storage can rot and files can be tampered with."""
        p = self.blob(sha256)
        if not p.is_file():
            return False
        if sha256_file(p) != sha256:
            p.unlink()
            return False
        return True

    def load_state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def save_state(self, state: dict) -> None:
        atomic_write(self.state_path, json.dumps(state, indent=1, sort_keys=True).encode())
