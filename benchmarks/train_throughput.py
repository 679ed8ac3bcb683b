"""Training throughput per method (examples/s) on this CPU, few-shot setting, methods interleaved in one run.

    python -m benchmarks.train_throughput [--methods spartan,houlsby,...] [--rounds 7] [--steps 3]

Each round times `--steps` optimizer steps of every method in turn (same batches, same order), so machine noise hits
all methods alike; we report median, p10 and p90 over rounds, and each method's step time relative to SPARTAN.

`floor` is not a method: the probe plus one trainable scalar added after the first encoder layer. Gradients must
then flow back through every frozen layer above it, which any method that trains something after the first layer
(SPARTAN, adapters, LoRA, BitFit) has to pay; what a method costs above the floor is its own work.
A name ending in `:bf16` (e.g. `spartan:bf16`) trains that method under bfloat16 autocast (`pipeline.train --bf16`);
`spartan:sparse` trains SPARTAN's gather form (`--memory-form sparse`: only the kept parents' children are scored).
Writes docs/results/NAME.{json,md} (default train_throughput). A benchmark, not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from pipeline.backbone import encoder_layers, load_backbone
from pipeline.data import limit_train, load_glue
from pipeline.methods import default_options
from pipeline.model import TaskModel
from pipeline.trainer import encode, train_step

REPO = Path(__file__).resolve().parent.parent


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def floor_model(backbone: nn.Module, spec) -> TaskModel:
    """The probe plus a trainable scalar after encoder layer 0 (see the module docstring)."""
    model = TaskModel(backbone, "probe", default_options("probe"), spec)
    model.shift = nn.Parameter(torch.zeros(()))

    def hook(module, args, output):
        return output + model.shift if isinstance(output, torch.Tensor) else (output[0] + model.shift, *output[1:])

    encoder_layers(backbone)[0].register_forward_hook(hook)
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default="spartan,houlsby,pfeiffer,lora,bitfit,probe,full,floor")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--few-shot", type=int, default=200)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--out", default=str(REPO / "docs" / "results"))
    p.add_argument("--name", default="train_throughput", help="output file stem")
    args = p.parse_args()
    methods = args.methods.split(",")
    data = limit_train(load_glue("sst2"), None, args.few_shot, seed=0)
    models = {}
    for m in methods:
        backbone, tok = load_backbone()
        torch.manual_seed(0)
        name = m.removesuffix(":bf16").removesuffix(":sparse")
        options = default_options(name)
        if m.endswith(":sparse"):
            options["form"] = "sparse"
        model = (floor_model(backbone, data.spec) if name == "floor" else
                 TaskModel(backbone, name, options, data.spec)).train()
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
        models[m] = (model, opt, m.endswith(":bf16"))
    batches = [list(range(i, i + args.batch_size)) for i in range(0, args.few_shot - args.batch_size + 1,
                                                                     args.batch_size)]
    enc = [(encode(tok, data.train, b, args.max_seq_length), torch.tensor([data.train.labels[i] for i in b]))
           for b in batches]
    def step(m: str, batch: tuple) -> None:
        model, opt, bf16 = models[m]
        train_step(model, opt, *batch, bf16=bf16)

    for m in methods:  # warm-up: first steps allocate optimizer state and caches
        step(m, enc[0])
    times: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(args.rounds):
        for m in methods:
            t0 = time.perf_counter()
            for s in range(args.steps):
                step(m, enc[(r * args.steps + s) % len(enc)])
            times[m].append((time.perf_counter() - t0) / args.steps)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{m} {times[m][-1]:.3f}s" for m in methods),
              file=sys.stderr)
    ref = "spartan" if "spartan" in methods else methods[0]
    report = {"command": "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:]),
              "batch_size": args.batch_size, "few_shot": args.few_shot, "rounds": args.rounds,
              "steps_per_round": args.steps, "threads": torch.get_num_threads(), "methods": {}}
    for m in methods:
        eps = [args.batch_size / t for t in times[m]]
        ratio = [t / tr for t, tr in zip(times[m], times[ref], strict=True)]  # same round: noise cancels
        report["methods"][m] = {
            "seconds_per_step_median": statistics.median(times[m]),
            "examples_per_s": {"median": statistics.median(eps), "p10": quantile(eps, 0.1),
                               "p90": quantile(eps, 0.9)},
            f"step_time_vs_{ref}": {"median": statistics.median(ratio), "p10": quantile(ratio, 0.1),
                                    "p90": quantile(ratio, 0.9)},
        }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Training throughput (few-shot setting, this CPU)", "", f"Command: `{report['command']}`", "",
             "Measured on a shared machine (other engineers' jobs running): absolute numbers are noisy, the per-round "
             "ratios are the robust figure.", "",
             f"Batch {args.batch_size}, SST-2 few-shot {args.few_shot}, max length {args.max_seq_length}, "
             f"{report['threads']} threads; {args.rounds} interleaved rounds of {args.steps} steps per method.", "",
             f"| method | examples/s median | p10 | p90 | step time / {ref} (median, p10-p90) |",
             "|---|---|---|---|---|"]
    for m, r in report["methods"].items():
        e, q = r["examples_per_s"], r[f"step_time_vs_{ref}"]
        lines.append(f"| {m} | {e['median']:.1f} | {e['p10']:.1f} | {e['p90']:.1f} | "
                     f"{q['median']:.2f} ({q['p10']:.2f}-{q['p90']:.2f}) |")
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
