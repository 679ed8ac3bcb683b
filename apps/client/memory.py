"""Reading a task memory file on the device: spartan_formats.memory validates it completely (numpy + safetensors;
no torch, no pipeline) against the task and the cached backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spartan_formats import FormatError
from spartan_formats.memory import MEMORY_TENSORS, MemoryFile, read_memory_file

from .errors import IntegrityError


def load_memory(path: Path, task: str, backbone: dict) -> MemoryFile:
    """The memory must be for this task and for exactly the cached backbone (fingerprint, memory shape, max_labels)."""
    try:
        return read_memory_file(path, backbone=backbone, task=task)
    except FormatError as e:
        raise IntegrityError(f"memory file for {task!r}: {e}; refused") from None


DEFAULTS_FILE = "defaults.safetensors"  # the recipe program's defaults (docs/formats.md, "feeding rule")


def task_input_names(backbone: dict) -> list[str]:
    """The program's inputs after input_ids and attention_mask, in order, from the manifest's `inputs` list (a bundle
    description without one is a plain program: the memory file's five tensors)."""
    names = [i["name"] if isinstance(i, dict) else i for i in backbone.get("inputs") or []]
    return names[2:] if names else list(MEMORY_TENSORS)


def task_inputs(mem: MemoryFile, backbone: dict, defaults: dict[str, np.ndarray] | None) -> list[np.ndarray]:
    """The program's task inputs: the memory file's tensor of each name, else the bundle's defaults file's."""
    try:
        return mem.inputs_fp32(task_input_names(backbone), defaults)
    except FormatError as e:
        raise IntegrityError(f"memory file for {mem.meta['task']!r}: {e}; refused") from None


def load_defaults(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001  (safetensors raises its own error types for a corrupt file)
        raise IntegrityError(f"the bundle's {DEFAULTS_FILE} is not readable: {e}; refused") from None
