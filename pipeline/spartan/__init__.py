"""SPARTAN: sparse hierarchical memory for parameter-efficient transformers (Deshpande et al., 2022)."""

from .config import SpartanConfig
from .layer import SpartanMemory
from .model import attach_spartan

__all__ = ["SpartanConfig", "SpartanMemory", "attach_spartan"]
