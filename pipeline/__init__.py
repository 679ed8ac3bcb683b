"""SPARTAN Edge training pipeline: memories on frozen Hugging Face encoders, task artifacts, evaluation."""

from .artifact import load_task, read_metadata, save_task
from .errors import UserError
from .model import TaskModel, TaskSpec
from .spartan import SpartanConfig, SpartanMemory

__all__ = ["SpartanConfig", "SpartanMemory", "TaskModel", "TaskSpec", "UserError", "load_task", "read_metadata",
           "save_task"]
