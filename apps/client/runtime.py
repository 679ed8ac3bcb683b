"""The ExecuTorch program and the tokenizer, loaded once and reused for every task."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


class BackboneRuntime:
    def __init__(self, program: Path, tokenizer: Path, max_seq_length: int, inputs: list | None = None) -> None:
        import spartan_toolchain

        spartan_toolchain.install()  # before torchao/executorch: their known start-up noise reads like failures
        import torch  # the ExecuTorch Python runtime exchanges torch tensors
        from tokenizers import Tokenizer

        Runtime = spartan_toolchain.executorch_runtime()  # with the quantized kernels, without the compiler

        self._torch = torch
        t0 = time.perf_counter()
        with spartan_toolchain.native_stderr_filtered():  # cpuinfo's Info lines, printed from C++ at first load
            self.method = Runtime.get().load_program(str(program)).load_method("forward")
        self.load_ms = (time.perf_counter() - t0) * 1e3
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        int_dtype = next((i.get("dtype") for i in inputs or [] if isinstance(i, dict) and i.get("name") ==
                          "input_ids"), "int64")
        self.int_dtype = torch.int32 if int_dtype == "int32" else torch.int64

    def encode(self, text: str, pair: str | None = None) -> tuple:
        enc = self.tokenizer.encode(text, pair) if pair is not None else self.tokenizer.encode(text)
        ids = self._torch.tensor([enc.ids], dtype=self.int_dtype)
        mask = self._torch.tensor([enc.attention_mask], dtype=self.int_dtype)
        return ids, mask

    def run(self, text: str, memory: list[np.ndarray], pair: str | None = None) -> tuple[np.ndarray, float]:
        """Logits (all program outputs, padded to max_labels) and the execute latency in ms."""
        ids, mask = self.encode(text, pair)
        tensors = [self._torch.from_numpy(a) for a in memory]
        t0 = time.perf_counter()
        out = self.method.execute([ids, mask, *tensors])
        ms = (time.perf_counter() - t0) * 1e3
        return out[0].detach().numpy().reshape(-1), ms
