"""Resumable, verified downloads over HTTP."""

from __future__ import annotations

from pathlib import Path

import requests
import urllib3

from spartan_formats.digest import sha256_file

from .cache import Cache
from .errors import ClientError, IntegrityError, Truncated

CHUNK = 64 * 1024
RETRYABLE = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout,
             urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError)


def _message(r: requests.Response) -> str:
    try:
        return r.json().get("message", r.text[:200])
    except ValueError:
        return r.text[:200]


def fetch(session: requests.Session, cache: Cache, url: str, sha256: str, size: int, *, params: dict | None = None,
          attempts: int = 4, timeout: float = 30.0) -> tuple[Path, int]:
    """Download `url` into the cache as `sha256`; return (path, bytes fetched over the network).

    A cut connection is resumed with `Range: bytes=<have>-` and `If-Range: "<sha256>"` (the server's strong ETag),
    so a continuation is only ever appended to bytes of the same file. After `attempts` tries a short file raises
    Truncated (the partial file stays for the next run); a complete file whose sha256 differs raises IntegrityError
    and is deleted. Nothing unverified ever reaches the cache's blobs/.
    """
    if cache.has(sha256):
        return cache.blob(sha256), 0
    part = cache.partial_path(sha256)
    fetched, last_error = 0, None
    for _ in range(attempts):
        have = part.stat().st_size if part.exists() else 0
        if have >= size:
            break
        headers = {"Accept-Encoding": "identity"}  # the sha256 is over the stored bytes, not a re-encoding
        if have:
            headers |= {"Range": f"bytes={have}-", "If-Range": f'"{sha256}"'}
        try:
            with session.get(url, params=params, headers=headers, stream=True, timeout=timeout) as r:
                if r.status_code == 206 and r.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                    mode = "ab"
                elif r.status_code == 200:
                    mode = "wb"  # server ignored the range (or the file changed): start over
                elif r.status_code == 416:
                    part.unlink(missing_ok=True)
                    continue
                else:
                    raise ClientError(f"GET {r.url}: HTTP {r.status_code}: {_message(r)}")
                with open(part, mode) as f:
                    # read1 hands over whatever has arrived; iter_content's fixed-size reads would drop the bytes
                    # of the last partial chunk when the connection breaks, and the resume would fetch them again.
                    while chunk := r.raw.read1(CHUNK):
                        f.write(chunk)
                        fetched += len(chunk)
                        if f.tell() > size:
                            break
        except RETRYABLE as e:
            last_error = e  # keep what arrived; the next attempt resumes from there
    have = part.stat().st_size if part.exists() else 0
    if have < size:
        raise Truncated(f"download of {url} stopped at {have} of {size} bytes"
                        + (f" ({type(last_error).__name__})" if last_error else "") + "; will resume next time")
    if have > size or sha256_file(part) != sha256:
        part.unlink()
        raise IntegrityError(f"{url}: the downloaded file ({have} bytes) does not match the manifest's sha256 "
                             f"{sha256[:16]}… ({size} bytes); refused")
    return cache.install(part, sha256), fetched
