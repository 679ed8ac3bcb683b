"""Check a bundle in the real runtimes: the program + a task's memory file against the eager TaskModel.

Each sentence runs alone and unpadded (what a phone does); eager runs the same tokens. Used by the tests and by
report.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .memory import DEFAULTS_FILE, program_inputs, read_defaults, read_memory
from .model import MEMORY_INPUTS, RECIPE_INPUTS


def load_android(dist: str | Path):
    """The bundle's ExecuTorch program, loaded once; feed it any task's memory."""
    from .android import load_forward

    return load_forward(Path(dist) / "android" / "backbone.pte")


def bundle_defaults(dist: str | Path) -> dict[str, torch.Tensor] | None:
    """The android target's defaults file (None for a bundle made before it existed: a plain program)."""
    path = Path(dist) / "android" / DEFAULTS_FILE
    return read_defaults(path) if path.is_file() else None


def run_android(method, encoded: dict, memory: dict[str, torch.Tensor], num_outputs: int,
                defaults: dict[str, torch.Tensor] | None = None) -> np.ndarray:
    """Run one example; the program's task inputs are the memory file's tensors, else the bundle's `defaults`
    (a program with the recipe inputs needs them: bundle_defaults; None = a plain program)."""
    ids = encoded["input_ids"].to(torch.int64)
    mask = encoded["attention_mask"].to(torch.int64)
    names = MEMORY_INPUTS if defaults is None else (*MEMORY_INPUTS, *RECIPE_INPUTS)
    out = method.execute([ids, mask, *program_inputs(memory, defaults or {}, names)])[0]
    return out[:, :num_outputs].numpy()


def encode_one(tokenizer, text_a: str, text_b: str | None, max_len: int) -> dict:
    return dict(tokenizer(text_a, text_b, truncation=True, max_length=max_len, return_tensors="pt"))


# A top-k boundary closer than this (k-th vs (k+1)-th parent logit, any layer, any real token) is a near-tie: fp32
# rounding differences between two correct implementations (~1e-6 in the logits) may keep different parents there.
NEAR_TIE = 1e-5


@dataclass
class Parity:
    task: str
    n: int
    max_abs_diff: float
    agreement: float  # share of equal predictions (argmax; for regression, always 1)
    program_predictions: np.ndarray
    eager_predictions: np.ndarray
    diffs: np.ndarray  # max |logit diff| per example
    margins: np.ndarray  # smallest top-k margin per example (eager), see NEAR_TIE

    @property
    def near_ties(self) -> int:
        return int((self.margins < NEAR_TIE).sum())

    @property
    def max_abs_diff_clear(self) -> float:
        """Max |logit diff| over the examples without a near-tie top-k boundary."""
        clear = self.diffs[self.margins >= NEAR_TIE]
        return float(clear.max()) if clear.size else 0.0


@torch.inference_mode()
def top_k_margin(task_model, encoded: dict) -> float:
    """Smallest gap between the k-th and (k+1)-th parent logit over every memory layer and token (eager SPARTAN)."""
    gaps: list[float] = []

    def hook(memory, args, out):
        logits = torch.nn.functional.linear(args[0], memory.P)
        k = memory.config.top_k
        if k < logits.shape[-1]:
            top = logits.topk(k + 1, dim=-1).values
            gaps.append(float((top[..., k - 1] - top[..., k]).min()))

    handles = [m.register_forward_hook(hook) for m in task_model.delta]
    try:
        task_model(**encoded)
    finally:
        for h in handles:
            h.remove()
    return min(gaps, default=float("inf"))


@torch.inference_mode()
def eager_logits(task_model, tokenizer, examples, n: int, max_len: int, batch_size: int = 32) -> np.ndarray:
    """Eager reference in padded batches (padding cannot change a real token's output; it is just faster)."""
    out = []
    for start in range(0, n, batch_size):
        idx = range(start, min(start + batch_size, n))
        a = [examples.text_a[i] for i in idx]
        b = [examples.text_b[i] for i in idx] if examples.text_b else None
        enc = dict(tokenizer(a, b, truncation=True, max_length=max_len, padding=True, return_tensors="pt"))
        out.append(task_model(**enc).reshape(len(a), -1).numpy())
    return np.concatenate(out)


def android_parity(method, task_model, tokenizer, memory_file: str | Path, examples, n: int, max_len: int,
                   defaults: dict[str, torch.Tensor] | None = None) -> Parity:
    """Logits of `n` examples (pipeline Examples) from the program fed `memory_file` vs the eager task model, with
    each example's top-k margin so near-ties can be told apart from real differences."""
    memory, header = read_memory(memory_file)
    n = min(n, len(examples))
    k, reg = header["num_outputs"], header["is_regression"]
    encoded = [encode_one(tokenizer, examples.text_a[i], examples.text_b[i] if examples.text_b else None, max_len)
               for i in range(n)]
    got = np.concatenate([run_android(method, enc, memory, k, defaults) for enc in encoded])
    want = eager_logits(task_model, tokenizer, examples, n, max_len)
    prog_pred, eager_pred = (got[:, 0], want[:, 0]) if reg else (got.argmax(1), want.argmax(1))
    agree = 1.0 if reg else float((prog_pred == eager_pred).mean())
    diffs = np.abs(got - want).max(axis=1)
    margins = np.array([top_k_margin(task_model, enc) for enc in encoded])
    return Parity(header["task"], n, float(diffs.max()), agree, prog_pred, eager_pred, diffs, margins)
