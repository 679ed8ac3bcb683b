"""Export the variants through mobile_export and time them in the ExecuTorch runtime, interleaved.

Interleaving: every round runs every program (and the eager references) once, in a random order per round, so a
load spike from another process hits all of them alike; ratios are also taken per round (paired) before the median.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mobile_export import android
from spartan_formats.memory import MEMORY_TENSORS

from .variants import MAX_LABELS, Variant


def log(msg: str) -> None:
    print(f"[latency {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Program:
    variant: Variant
    precision: str  # fp32 | int8
    batch: int
    path: Path
    summary: dict = field(default_factory=dict)
    method: object = None  # the loaded ExecuTorch method

    @property
    def key(self) -> str:
        return f"{self.variant.name}/et-{self.precision}"


def build_program(variant: Variant, precision: str, batch: int, max_len: int, out_dir: Path) -> Program:
    """torch.export + XNNPACK lowering with the same functions as `python -m pipeline.export`."""
    t0 = time.perf_counter()
    ep = android.export_program(variant.edge, MAX_LABELS, max_len, "int8" if precision == "int8" else None,
                                batch_size=batch)
    edge = android.lower_edge(ep, infer_views=variant.infer_views)
    summary = android.delegation_summary(edge)
    path = out_dir / f"{variant.name.replace('/', '_')}_{precision}_b{batch}.pte"
    path.write_bytes(edge.to_executorch().buffer)
    summary.update(bytes=path.stat().st_size, export_seconds=round(time.perf_counter() - t0, 1))
    return Program(variant, precision, batch, path, summary)


def load(program: Program) -> None:
    program.method = android.load_forward(program.path)


def warm_runtime(program: Program, vocab: int) -> None:
    """Load and run a throwaway instance of `program`, so no timed program is the runtime's first."""
    method = android.load_forward(program.path)
    ids, mask = token_inputs(program.batch, 16, vocab)
    for _ in range(3):
        method.execute([ids, mask, *program.variant.inputs])
    del method


def token_inputs(batch: int, seq: int, vocab: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + seq)
    ids = torch.randint(1000, min(vocab, 20000), (batch, seq), generator=g)
    return ids, torch.ones_like(ids)


def parity(program: Program, vocab: int, seq: int = 16) -> float:
    """Max |logit difference| between the program and the eager TaskModel on one random input."""
    ids, mask = token_inputs(program.batch, seq, vocab, seed=1)
    got = program.method.execute([ids, mask, *program.variant.inputs])[0][:, :2]
    with torch.inference_mode():
        want = program.variant.eager(ids, mask)
    return float((got - want).abs().max())


PAUSE_S = 0.005  # untimed pause after every call (see round_robin)


def round_robin(calls: dict[str, Callable[[], object]], runs: int, warmup: int, seed: int = 0
                ) -> dict[str, list[float]]:
    """ms per call, `runs` rounds, every call once per round in a fresh random order.

    Random order, not a rotation: a rotation keeps each call's predecessor fixed, and a program that always follows
    an eager torch call ran ~25% slower (torch's worker threads still spinning on the 2 cores). The short pause after
    every call lets either runtime's threads settle before the next one starts."""
    import random

    rng = random.Random(seed)
    names = list(calls)
    for _ in range(warmup):
        for n in names:
            calls[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(runs):
        for n in rng.sample(names, len(names)):
            t0 = time.perf_counter()
            calls[n]()
            times[n].append((time.perf_counter() - t0) * 1e3)
            time.sleep(PAUSE_S)
    return times


def stats(times: dict[str, list[float]], baseline: Callable[[str], str | None]) -> dict[str, dict]:
    """median/p10/p90 ms and paired per-round ratios to each entry's baseline (`baseline(name)`)."""
    out = {}
    for n, t in times.items():
        a = np.asarray(t)
        row = {"median_ms": float(np.median(a)), "p10_ms": float(np.percentile(a, 10)),
               "p90_ms": float(np.percentile(a, 90))}
        base = baseline(n)
        if base in times:
            r = a / np.asarray(times[base])
            row["ratio_to_bare"] = {"median": float(np.median(r)), "p10": float(np.percentile(r, 10)),
                                    "p90": float(np.percentile(r, 90))}
        out[n] = row
    return out


def time_config(programs: list[Program], eager: list[Variant], batch: int, seq: int, vocab: int, runs: int,
                warmup: int) -> dict[str, list[float]]:
    ids, mask = token_inputs(batch, seq, vocab)
    calls: dict[str, Callable[[], object]] = {}
    for p in programs:
        args = [ids, mask, *p.variant.inputs]
        calls[p.key] = lambda p=p, args=args: p.method.execute(args)

    def run_eager(v: Variant):
        with torch.inference_mode():
            return v.eager(ids, mask)

    for v in eager:
        calls[f"{v.name}/eager"] = lambda v=v: run_eager(v)
    return round_robin(calls, runs, warmup)


def peak_rss(program: Program, seq: int, threads: int) -> dict:
    """Peak resident memory of a fresh process that loads the program and runs it (benchmarks.latency.rss)."""
    shapes = [list(t.shape) for t in program.variant.inputs]
    cmd = [sys.executable, "-m", "benchmarks.latency.rss", str(program.path), "--seq", str(seq), "--batch",
           str(program.batch), "--threads", str(threads), "--shapes", json.dumps(shapes)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                          os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def task_switch(program: Program, seq: int, vocab: int, repeats: int = 5) -> dict:
    """Time to switch a loaded backbone to another task: load what the task needs + first inference.

    SPARTAN (and bare: only the head): the task is a safetensors file of program inputs, read while the program stays
    loaded. Adapters/LoRA: their weights are constants inside the program, so a task is a whole program to load."""
    from safetensors.torch import load_file, save_file

    ids, mask = token_inputs(program.batch, seq, vocab, seed=2)
    loads, firsts = [], []
    names = MEMORY_TENSORS
    with tempfile.TemporaryDirectory() as d:
        if program.variant.method in ("spartan", "bare"):
            files = []
            for i in range(2):  # two tasks, alternated so every switch really changes the inputs
                g = torch.Generator().manual_seed(i)
                tensors = {n: t + 0.01 * torch.randn(t.shape, generator=g)
                           for n, t in zip(names, program.variant.inputs[:5], strict=True)}
                files.append(Path(d) / f"task{i}.safetensors")
                save_file(tensors, str(files[-1]))
            for r in range(repeats):
                t0 = time.perf_counter()
                loaded = load_file(str(files[r % 2]))
                t1 = time.perf_counter()
                program.method.execute([ids, mask, *(loaded[n] for n in names), *program.variant.inputs[5:]])
                loads.append((t1 - t0) * 1e3)
                firsts.append((time.perf_counter() - t1) * 1e3)
            kind = "memory file read into the loaded program"
        else:
            for _ in range(max(2, repeats // 2)):
                t0 = time.perf_counter()
                method = android.load_forward(program.path)
                t1 = time.perf_counter()
                method.execute([ids, mask, *program.variant.inputs])
                loads.append((t1 - t0) * 1e3)
                firsts.append((time.perf_counter() - t1) * 1e3)
                del method
            kind = "whole program loaded (adapter weights are program constants)"
    return {"what": kind, "load_ms": float(np.median(loads)), "first_inference_ms": float(np.median(firsts)),
            "total_ms": float(np.median(np.asarray(loads) + np.asarray(firsts))), "seq": seq, "repeats": len(loads)}
