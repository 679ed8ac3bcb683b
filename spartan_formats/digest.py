"""sha256 of a file (the digest every format uses for file identity)."""

from __future__ import annotations

import hashlib
import os


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def named_tensors_digest(items) -> str:
    """sha256 over named tensors: for each, `name|dtype|shape` then its raw bytes. `items` yields (name, dtype,
    shape, raw bytes) in name order (lazily: a backbone's bytes are never all in memory at once), with dtype spelled
    as torch spells it ("torch.float32"), so the digest is the same whether the tensors were read with torch
    (pipeline.backbone.tensors_digest) or numpy (arrays_digest)."""
    h = hashlib.sha256()
    for name, dtype, shape, raw in items:
        h.update(f"{name}|{dtype}|{tuple(shape)}\n".encode())
        h.update(raw)
    return h.hexdigest()


def arrays_digest(arrays: dict) -> str:
    """named_tensors_digest of numpy arrays (a task artifact read without torch)."""
    return named_tensors_digest((name, f"torch.{a.dtype.name}", a.shape, a.tobytes(order="C"))
                                for name, a in sorted(arrays.items()))
