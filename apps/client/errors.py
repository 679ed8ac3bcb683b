class ClientError(Exception):
    """Something the user should read: a refused file, an unreachable server, a missing cache entry."""


class IntegrityError(ClientError):
    """A file does not match what the manifest or the cached backbone says it must be."""


class Truncated(ClientError):
    """A download ended short and could not be completed (the partial file is kept for a later resume)."""


class NotCached(ClientError):
    """--offline and the cache does not hold what is needed."""
