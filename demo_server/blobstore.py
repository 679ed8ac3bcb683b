"""Content-addressed blob storage.

Every stored file is named by its sha256 and never changes after it appears, which is what makes downloads safe
while publishing: a reader opens an immutable file, and a new version is a different file. A new blob is streamed
to a temporary file in the same file system, fsynced, and renamed into place (atomic on POSIX), and only then is
the registry row that points at it committed. A crash before the rename leaves a temporary file that no registry
row names; `sweep_tmp` removes those at start-up.

Scale-out note: `BlobStore` is the whole interface the app uses. An S3-compatible store would implement `put_stream`
as a multipart upload to a temporary key followed by a server-side copy to `blobs/<sha256>` (or upload straight
to the content-addressed key with a checksum header), `open` as a GET (or a presigned-URL redirect), and `size`
as a HEAD. Content addressing keeps that consistent without locks: a key is written once with fixed content.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Protocol

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024


class IncompleteUpload(Exception):
    """The body ended before its declared length (client went away, connection cut)."""


class TooLarge(Exception):
    pass


class StagedBlob:
    """An uploaded body on disk, hashed, not yet visible. `commit()` publishes it; `discard()` deletes it."""

    def __init__(self, store: FolderBlobStore, tmp_path: Path, sha256: str, size: int) -> None:
        self.store, self.path, self.sha256, self.size = store, tmp_path, sha256, size

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()

    def commit(self) -> str:
        return self.store._commit(self)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class BlobStore(Protocol):
    def stage(self, stream: BinaryIO, length: int, max_bytes: int) -> StagedBlob: ...
    def path(self, sha256: str) -> Path: ...
    def exists(self, sha256: str) -> bool: ...
    def size(self, sha256: str) -> int: ...


class FolderBlobStore:
    """Blobs under <root>/<sha[:2]>/<sha>; uploads in progress under <root>/.tmp (same file system: atomic rename)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.tmp = self.root / ".tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not SHA256_RE.match(sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def size(self, sha256: str) -> int:
        return self.path(sha256).stat().st_size

    def stage(self, stream: BinaryIO, length: int, max_bytes: int) -> StagedBlob:
        """Copy exactly `length` bytes from `stream` to a temporary file, hashing as it goes."""
        if length > max_bytes:
            raise TooLarge(f"{length} bytes is over the limit of {max_bytes}")
        fd, tmp = tempfile.mkstemp(prefix="upload-", dir=self.tmp)
        h, got = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as f:
                while got < length:
                    chunk = stream.read(min(CHUNK, length - got))
                    if not chunk:
                        break
                    h.update(chunk)
                    f.write(chunk)
                    got += len(chunk)
                if got != length:
                    raise IncompleteUpload(f"body ended after {got} of {length} bytes")
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StagedBlob(self, Path(tmp), h.hexdigest(), got)

    def _commit(self, staged: StagedBlob) -> str:
        dest = self.path(staged.sha256)
        if dest.is_file():  # same content already stored: nothing to write
            staged.discard()
            return staged.sha256
        dest.parent.mkdir(exist_ok=True)
        # mkstemp made it 0600; blobs are public bytes, and the web server sending them (nginx) is another user.
        os.chmod(staged.path, 0o644)
        os.replace(staged.path, dest)
        _fsync_dir(dest.parent)
        return staged.sha256

    def sweep_tmp(self, older_than_s: float = 3600.0) -> int:
        """Delete temporary uploads left by a crash. Only old ones: another worker may be writing a fresh one."""
        n, now = 0, time.time()
        for p in self.tmp.glob("upload-*"):
            try:
                if now - p.stat().st_mtime > older_than_s:
                    p.unlink()
                    n += 1
            except FileNotFoundError:
                pass
        return n


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
