"""SPARTAN Edge training pipeline: memories on frozen Hugging Face encoders, task artifacts, evaluation.

The public names load on first use (PEP 562), so `python -m pipeline.train --help` answers without importing torch.
"""

from importlib import import_module

_PUBLIC = {"SpartanConfig": ".spartan", "SpartanMemory": ".spartan", "TaskModel": ".model", "TaskSpec": ".model",
           "TrainConfig": ".config", "UserError": ".errors", "load_task": ".artifact", "read_metadata": ".artifact",
           "save_task": ".artifact", "train": ".train"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    return getattr(import_module(_PUBLIC[name], __name__), name)
