"""The native runtime (apps/native, ExecuTorch C++ API) vs the Python pybindings on the same programs.

    .venv/bin/python benchmarks/native_vs_python.py --dist DIST --dist8 DIST8 [--rounds 12] [--calls 5]

DIST / DIST8: fp32 and int8 Android exports (`python -m pipeline.export --target android ...`, DIST8 with
`--quantize int8`) holding tasks sst2 and rte. Per round, every (runtime, program, S) cell runs `--calls` calls in
a random order (interleaved), so a busy machine disturbs all cells alike; medians and p10/p90 over all calls.
Measured: the program call alone and the whole classify (tokenize + inputs + program + softmax) in the native
process, the bare program call in the pybindings; cold start (process start to the first printed prediction); task
swap (read + validate the memory file + first inference); peak RSS of each process.
Writes docs/results/native.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # apps.client from this checkout
BIN = REPO / "apps" / "native" / "build" / "spartan-edge"
GOOD = 2204  # "good": one WordPiece token, so a text of S-2 "good"s is S ids (the native bench does the same)


def stats(xs: list[float]) -> dict:
    a = np.asarray(xs)
    return {"median": float(np.median(a)), "p10": float(np.percentile(a, 10)), "p90": float(np.percentile(a, 90)),
            "n": int(a.size)}


class Native:
    def __init__(self, dist: Path, task: str) -> None:
        self.p = subprocess.Popen([str(BIN), "bench", "--bundle", str(dist), "--task", task], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, line: str) -> dict:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def close(self) -> int:
        """Peak RSS of the bench process in MB (it held one program and swapped memories)."""
        self.p.stdin.close()
        _, _, ru = os.wait4(self.p.pid, 0)
        return ru.ru_maxrss / 1024


class Python:
    """The bare program call in the pybindings, as apps.client makes it (memory as float32 inputs)."""

    def __init__(self, dist: Path, task: str) -> None:
        import torch
        from executorch.runtime import Runtime

        from apps.client.memory import load_memory

        man = json.loads((dist / "manifest.json").read_text())
        self.bb = {**man["backbone"], **man["targets"]["android"]}
        self.dist, self.torch = dist, torch
        self.method = Runtime.get().load_program(str(dist / "android" / "backbone.pte")).load_method("forward")
        self.memory = [torch.from_numpy(a) for a in load_memory(self.mem_path(task), task, self.bb).inputs_fp32()]

    def mem_path(self, task: str) -> Path:
        return self.dist / "android" / "memories" / f"{task}.safetensors"

    def run(self, s: int, n: int) -> list[float]:
        ids = self.torch.tensor([[101] + [GOOD] * (s - 2) + [102]], dtype=self.torch.int64)
        mask = self.torch.ones_like(ids)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.method.execute([ids, mask, *self.memory])
            out.append((time.perf_counter() - t0) * 1e3)
        return out

    def swap(self, task: str) -> float:
        from apps.client.memory import load_memory

        t0 = time.perf_counter()  # apps.client's path: read + validate (spartan_formats) + float32 inputs
        mem = load_memory(self.mem_path(task), task, self.bb)
        self.memory = [self.torch.from_numpy(a) for a in mem.inputs_fp32()]
        self.run(16, 1)
        return (time.perf_counter() - t0) * 1e3


# Children are started by this small launcher, begun before torch is imported: a child's ru_maxrss includes the
# memory of the process it was forked from before exec, so forking from this (large) process would report its size.
LAUNCHER = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    cmd = json.loads(line)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    print(json.dumps([(time.perf_counter() - t0) * 1e3, ru.ru_maxrss / 1024, status]), flush=True)
"""


class Launcher:
    def __init__(self) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", LAUNCHER], cwd=REPO, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, bufsize=1)

    def cold_start(self, cmd: list[str]) -> tuple[float, float]:
        """Process start to its exit after printing one prediction (ms) and its peak RSS (MB)."""
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        ms, mb, status = json.loads(self.p.stdout.readline())
        assert status == 0, cmd
        return ms, mb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dist", type=Path, required=True)
    ap.add_argument("--dist8", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--seqs", default="16,32,64,128")
    ap.add_argument("--cold", type=int, default=5)
    ap.add_argument("--swaps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "native")
    args = ap.parse_args()
    seqs = [int(s) for s in args.seqs.split(",")]
    programs = {"fp32": args.dist, "int8": args.dist8}
    launcher = Launcher()
    native = {k: Native(d, "sst2") for k, d in programs.items()}
    python = {"fp32": Python(args.dist, "sst2")}
    # The int8 program needs the quantized kernels in the Python process; importing them registers ops globally,
    # so both Python programs share one process (as apps.client does).
    import executorch.kernels.quantized  # noqa: F401
    python["int8"] = Python(args.dist8, "sst2")
    cells = {(rt, prog, s): [] for rt in ("native_total", "native_execute", "python_execute") for prog in programs
             for s in seqs}
    rng = random.Random(0)
    for _ in range(2):  # warm-up
        for prog in programs:
            for s in seqs:
                native[prog].ask(f"run {s} 1")
                python[prog].run(s, 1)
    for _ in range(args.rounds):
        order = [(rt, prog, s) for rt in ("native", "python") for prog in programs for s in seqs]
        rng.shuffle(order)
        for rt, prog, s in order:
            if rt == "native":
                r = native[prog].ask(f"run {s} {args.calls}")
                cells[("native_total", prog, s)] += r["total_ms"]
                cells[("native_execute", prog, s)] += r["execute_ms"]
            else:
                cells[("python_execute", prog, s)] += python[prog].run(s, args.calls)
    swaps = {"native": [], "python": []}
    for i in range(args.swaps):
        task = "rte" if i % 2 == 0 else "sst2"
        swaps["native"].append(native["fp32"].ask(f"swap {task}")["load_and_first_ms"])
        swaps["python"].append(python["fp32"].swap(task))
    native_load = [native["fp32"].ask(f"swap {'rte' if i % 2 == 0 else 'sst2'}")["load_ms"] for i in range(10)]
    rss = {k: n.close() for k, n in native.items()}
    cold = {"native_fp32": [], "python_fp32": [], "native_int8": []}
    py_cold = ("import sys; from pathlib import Path; import json; from apps.client.runtime import BackboneRuntime; "
               "from apps.client.memory import load_memory; d = Path(sys.argv[1]); "
               "m = json.loads((d / 'manifest.json').read_text()); bb = {**m['backbone'], **m['targets']['android']}; "
               "rt = BackboneRuntime(d / 'android/backbone.pte', d / 'android/tokenizer.json', 128, bb['inputs']); "
               "mem = load_memory(d / 'android/memories/sst2.safetensors', 'sst2', bb).inputs_fp32(); "
               "print(rt.run('a fine film', mem)[0][:2])")
    cold_rss = {}
    for _ in range(args.cold):
        for k, cmd in (("native_fp32", [str(BIN), "--bundle", str(args.dist), "--task", "sst2", "a fine film"]),
                       ("native_int8", [str(BIN), "--bundle", str(args.dist8), "--task", "sst2", "a fine film"]),
                       ("python_fp32", [sys.executable, "-c", py_cold, str(args.dist)])):
            ms, mb = launcher.cold_start(cmd)
            cold[k].append(ms)
            cold_rss[k] = max(cold_rss.get(k, 0), mb)
    result = {
        "command": "python benchmarks/native_vs_python.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end "
                   "(a shared machine disturbs absolute times; ratios from this one interleaved run are robust)",
        "latency_ms": {f"{rt}/{prog}/S={s}": stats(v) for (rt, prog, s), v in cells.items()},
        "swap_ms": {k: stats(v) for k, v in swaps.items()} | {"native_read_validate_only": stats(native_load)},
        "cold_start_ms": {k: stats(v) for k, v in cold.items()},
        "peak_rss_mb": {"native_bench_process_" + k: v for k, v in rss.items()} | {f"cold_{k}": v for k, v in
                                                                                  cold_rss.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    lat = result["latency_ms"]
    lines = ["# Native runtime vs Python pybindings (same .pte programs)", "",
             f"Command: `{result['command']}`", "", f"Machine: {result['machine']}.", "",
             "Median ms (p10-p90) per call, batch 1. *native total* = `se_engine_classify` (tokenize, inputs, program, "
             "softmax); *native exec* = the program call inside it; *python exec* = `method.execute` in the "
             "pybindings (apps.client's call, without its tokenizer).", "",
             "| program | S | native total | native exec | python exec | native overhead (total/exec - 1) | "
             "native total / python exec |", "|---|---|---|---|---|---|---|"]
    for prog in programs:
        for s in seqs:
            t, e, p = (lat[f"{rt}/{prog}/S={s}"] for rt in ("native_total", "native_execute", "python_execute"))
            f = lambda x: f"{x['median']:.2f} ({x['p10']:.2f}-{x['p90']:.2f})"  # noqa: E731
            lines.append(f"| {prog} | {s} | {f(t)} | {f(e)} | {f(p)} | {100 * (t['median'] / e['median'] - 1):+.2f}% "
                         f"| {t['median'] / p['median']:.3f} |")
    sw, cs = result["swap_ms"], result["cold_start_ms"]
    lines += ["", "| task swap (read + validate + first inference, S=7) | median ms (p10-p90) |", "|---|---|"]
    for k, v in sw.items():
        lines.append(f"| {k} | {v['median']:.2f} ({v['p10']:.2f}-{v['p90']:.2f}) |")
    lines += ["", "| cold start (process start -> first prediction printed) | median ms (p10-p90) | peak RSS MB |",
              "|---|---|---|"]
    for k, v in cs.items():
        lines.append(f"| {k} | {v['median']:.0f} ({v['p10']:.0f}-{v['p90']:.0f}) | {cold_rss[k]:.0f} |")
    lines += ["", "Peak RSS of the long-running native bench process (one program, memories swapped): " +
              ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items()) + "."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
