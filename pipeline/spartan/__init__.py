"""SPARTAN: sparse hierarchical memory for parameter-efficient transformers (Deshpande et al., 2022).

Names load on first use (PEP 562): SpartanConfig is torch-free, so the CLIs can build one before importing torch.
"""

from importlib import import_module

_PUBLIC = {"SpartanConfig": ".config", "SpartanMemory": ".layer", "attach_spartan": ".model"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'pipeline.spartan' has no attribute {name!r}")
    return getattr(import_module(_PUBLIC[name], __name__), name)
