"""Reading a task memory file on the device: spartan_formats.memory validates it completely (numpy + safetensors;
no torch, no pipeline) against the task and the cached backbone."""

from __future__ import annotations

from pathlib import Path

from spartan_formats import FormatError
from spartan_formats.memory import MemoryFile, read_memory_file

from .errors import IntegrityError


def load_memory(path: Path, task: str, backbone: dict) -> MemoryFile:
    """The memory must be for this task and for exactly the cached backbone (fingerprint, memory shape, max_labels)."""
    try:
        return read_memory_file(path, backbone=backbone, task=task)
    except FormatError as e:
        raise IntegrityError(f"memory file for {task!r}: {e}; refused") from None
