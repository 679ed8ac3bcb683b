"""Content-addressed blob storage.

Every stored file is named by its sha256 and never changes after it appears, which is what makes downloads safe
while publishing: a reader opens an immutable file, and a new version is a different file. A new blob is streamed
to a temporary file in the same file system, fsynced, and renamed into place (atomic on POSIX), and only then is
the registry row that points at it committed. A crash before the rename leaves a temporary file that no registry
row names; `sweep_tmp` removes those at start-up: a live upload holds an exclusive `flock` on its temporary file
for its whole life (the kernel drops it when the process dies), so a sweep deletes exactly the files of dead
uploads, whatever their age, even while another worker is receiving one.

Scale-out note: `BlobStore` is the whole interface the app uses. An S3-compatible store would implement `put_stream`
as a multipart upload to a temporary key followed by a server-side copy to `blobs/<sha256>` (or upload straight
to the content-addressed key with a checksum header), `open` as a GET (or a presigned-URL redirect), and `size`
as a HEAD. Content addressing keeps that consistent without locks: a key is written once with fixed content.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from spartan_formats.atomic import fsync_dir
from spartan_formats.names import is_sha256

CHUNK = 1024 * 1024


class IncompleteUpload(Exception):
    """The body ended before its declared length (client went away, connection cut)."""


class TooLarge(Exception):
    pass


class StagedBlob:
    """An uploaded body on disk, hashed, not yet visible. `commit()` publishes it; `discard()` deletes it."""

    def __init__(self, store: FolderBlobStore, tmp_path: Path, sha256: str, size: int, lock_fd: int) -> None:
        self.store, self.path, self.sha256, self.size = store, tmp_path, sha256, size
        self._lock_fd: int | None = lock_fd  # open + flocked until commit/discard: sweeps leave the file alone

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()

    def commit(self) -> str:
        try:
            return self.store._commit(self)
        finally:
            self._release()

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __del__(self) -> None:  # a request that died between stage and commit: drop the file and the lock
        if self._lock_fd is not None:
            self.discard()


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
        if not is_sha256(sha256):
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
        # Created under a name the sweep ignores, locked, then renamed to upload-*: no sweep can see it unlocked.
        fd, creating = tempfile.mkstemp(prefix="creating-", dir=self.tmp)
        fcntl.flock(fd, fcntl.LOCK_EX)
        tmp = Path(creating).with_name("upload-" + Path(creating).name.removeprefix("creating-"))
        os.replace(creating, tmp)
        h, got = hashlib.sha256(), 0
        try:
            with os.fdopen(os.dup(fd), "wb") as f:
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
            tmp.unlink(missing_ok=True)
            os.close(fd)
            raise
        return StagedBlob(self, tmp, h.hexdigest(), got, fd)

    def _commit(self, staged: StagedBlob) -> str:
        dest = self.path(staged.sha256)
        if dest.is_file():  # same content already stored: nothing to write; refresh its age for `gc`
            os.utime(dest)
            staged.path.unlink(missing_ok=True)
            return staged.sha256
        dest.parent.mkdir(exist_ok=True)
        # mkstemp made it 0600; blobs are public bytes, and the web server sending them (nginx) is another user.
        os.chmod(staged.path, 0o644)
        os.replace(staged.path, dest)
        fsync_dir(dest.parent)
        return staged.sha256

    def sweep_tmp(self) -> int:
        """Delete temporary uploads whose writer is gone (their flock is free). Safe while other workers upload."""
        n = 0
        for p in self.tmp.iterdir():
            if p.name.startswith("creating-") and time.time() - _mtime(p) < 60:
                continue  # being created this instant (the lock follows within microseconds)
            try:
                fd = os.open(p, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live upload
            finally:
                os.close(fd)
            p.unlink(missing_ok=True)
            n += 1
        return n

    def all_blobs(self) -> Iterator[tuple[str, Path]]:
        for p in self.root.glob("??/*"):
            if is_sha256(p.name) and p.parent.name == p.name[:2]:
                yield p.name, p

    def gc(self, referenced: set[str], min_age_s: float, dry_run: bool = False) -> list[str]:
        """Delete stored blobs that no registry row names and that are older than `min_age_s` (a blob uploaded
        for a bundle that is being registered right now is young and kept)."""
        removed, now = [], time.time()
        for sha, p in self.all_blobs():
            if sha in referenced or now - _mtime(p) < min_age_s:
                continue
            if not dry_run:
                p.unlink(missing_ok=True)
            removed.append(sha)
        return removed


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except FileNotFoundError:
        return time.time()
