"""The SPARTAN Edge device client: manifest, sha256 cache, resumable downloads, ExecuTorch inference."""

from .client import EdgeClient, Prediction
from .errors import ClientError, IntegrityError, NotCached, Truncated

__all__ = ["ClientError", "EdgeClient", "IntegrityError", "NotCached", "Prediction", "Truncated"]
