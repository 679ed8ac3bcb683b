"""SPARTAN Edge mobile export: one shared backbone program per target, one small memory file per task.

The public names load on first use (PEP 562), so the export CLI's --help answers without importing torch.
"""

from importlib import import_module

_PUBLIC = {"INPUT_NAMES": ".model", "EdgeModel": ".model", "MemoryShape": ".shape", "add_memories": ".bundle",
           "export_bundle": ".bundle", "read_memory": ".memory"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'mobile_export' has no attribute {name!r}")
    return getattr(import_module(_PUBLIC[name], __name__), name)
