"""Check a bundle in the real runtimes: the program + a task's memory file against the eager TaskModel.

Each sentence runs alone and unpadded (what a phone does); eager runs the same tokens. Used by the tests and by
report.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .memory import read_memory
from .model import MEMORY_INPUTS


def load_android(dist: str | Path):
    """The bundle's ExecuTorch program, loaded once; feed it any task's memory."""
    from executorch.runtime import Runtime

    return Runtime.get().load_program(str(Path(dist) / "android" / "backbone.pte")).load_method("forward")


def run_android(method, encoded: dict, memory: dict[str, torch.Tensor], num_outputs: int) -> np.ndarray:
    ids = encoded["input_ids"].to(torch.int64)
    mask = encoded["attention_mask"].to(torch.int64)
    out = method.execute([ids, mask, *(memory[k] for k in MEMORY_INPUTS)])[0]
    return out[:, :num_outputs].numpy()


def encode_one(tokenizer, text_a: str, text_b: str | None, max_len: int) -> dict:
    return dict(tokenizer(text_a, text_b, truncation=True, max_length=max_len, return_tensors="pt"))


@dataclass
class Parity:
    task: str
    n: int
    max_abs_diff: float
    agreement: float  # share of equal predictions (argmax; for regression, always 1)
    program_predictions: np.ndarray
    eager_predictions: np.ndarray


@torch.inference_mode()
def android_parity(method, task_model, tokenizer, memory_file: str | Path, examples, n: int, max_len: int) -> Parity:
    """Logits of `n` examples (pipeline Examples) from the program fed `memory_file` vs the eager task model."""
    memory, header = read_memory(memory_file)
    k = header["num_outputs"]
    diffs, prog_pred, eager_pred = [], [], []
    for i in range(min(n, len(examples))):
        enc = encode_one(tokenizer, examples.text_a[i], examples.text_b[i] if examples.text_b else None, max_len)
        got = run_android(method, enc, memory, k)[0]
        want = task_model(**enc).reshape(-1).numpy()
        diffs.append(float(np.abs(got - want).max()))
        prog_pred.append(got[0] if header["is_regression"] else int(got.argmax()))
        eager_pred.append(want[0] if header["is_regression"] else int(want.argmax()))
    prog_pred, eager_pred = np.asarray(prog_pred), np.asarray(eager_pred)
    agree = 1.0 if header["is_regression"] else float((prog_pred == eager_pred).mean())
    return Parity(header["task"], len(diffs), max(diffs), agree, prog_pred, eager_pred)
