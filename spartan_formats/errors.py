"""The one exception every reader raises: a stable `code` (docs/formats.md, "Error codes") and a message."""

from __future__ import annotations


class FormatError(ValueError):
    """A file or document does not follow its format. `code` is stable across implementations (Python, C++,
    Kotlin): the conformance vectors pin it; the message is for people and may change."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} [{code}]")
        self.code, self.message = code, message
