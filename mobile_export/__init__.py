"""SPARTAN Edge mobile export: one shared backbone program per target, one small memory file per task."""

from .bundle import export_bundle
from .memory import read_memory
from .model import INPUT_NAMES, EdgeModel, MemoryShape

__all__ = ["INPUT_NAMES", "EdgeModel", "MemoryShape", "export_bundle", "read_memory"]
