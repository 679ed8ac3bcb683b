"""python -m apps.latency [--model minilm|roberta-base-random|DIR] [--out docs/results] [options]

Exports bare backbone, SPARTAN, Houlsby, Pfeiffer and LoRA (unmerged) through mobile_export (fp32 and dynamic int8),
times them interleaved in the ExecuTorch runtime (XNNPACK) next to eager PyTorch, and writes
OUT/NAME.{json,md,png}. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

from .variants import ABLATIONS, METHODS, PRECISIONS


class UsageError(Exception):
    pass


def _csv(value: str, allowed: tuple[str, ...] | None, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise UsageError(f"--{what}: give at least one value")
    bad = [v for v in items if allowed is not None and v not in allowed]
    if bad:
        raise UsageError(f"--{what}: unknown {bad[0]!r}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def _ints(value: str, what: str) -> list[int]:
    try:
        items = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise UsageError(f"--{what}: expected comma-separated integers, got {value!r}") from None
    if not items:
        raise UsageError(f"--{what}: give at least one value")
    return items


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m apps.latency", description=__doc__.split("\n\n")[1].strip())
    p.add_argument("--model", default="minilm", help="minilm (default), roberta-base-random, or a local HF folder")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help="fp32,int8")
    p.add_argument("--lengths", default="16,32,64,128", help="sequence lengths timed at batch 1")
    p.add_argument("--batch", type=int, default=8, help="batch size of the throughput programs (0: skip them)")
    p.add_argument("--throughput-lengths", default="128", help="sequence lengths timed at --batch")
    p.add_argument("--threads", type=int, default=2, help="ExecuTorch and torch threads")
    p.add_argument("--runs", type=int, default=30, help="timed rounds (each runs every program once)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    p.add_argument("--no-eager", action="store_true", help="skip the eager PyTorch references")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    p.add_argument("--ablation", nargs="?", const="all", default=None,
                   help="also time programs with one export change left out or added (all, or a comma list of: "
                        f"{', '.join(ABLATIONS)})")
    p.add_argument("--out", default="docs/results", help="output folder")
    p.add_argument("--name", default=None, help="file stem (default latency_<model>)")
    return p


def check_args(args: argparse.Namespace) -> dict:
    cfg = {
        "methods": _csv(args.methods, METHODS, "methods"),
        "precisions": _csv(args.precisions, PRECISIONS, "precisions"),
        "lengths": _ints(args.lengths, "lengths"),
        "throughput_lengths": _ints(args.throughput_lengths, "throughput-lengths") if args.batch else [],
        "ablations": [] if args.ablation is None else list(ABLATIONS) if args.ablation == "all"
        else _csv(args.ablation, tuple(ABLATIONS), "ablation"),
    }
    if "bare" not in cfg["methods"]:
        cfg["methods"].insert(0, "bare")  # every ratio is to the bare backbone
    for what in ("threads", "runs"):
        if getattr(args, what) < 1:
            raise UsageError(f"--{what} must be >= 1, got {getattr(args, what)}")
    if args.warmup < 0 or args.batch < 0:
        raise UsageError("--warmup and --batch must be >= 0")
    if args.batch == 1:
        raise UsageError("--batch is the throughput batch size: use 0 (skip) or >= 2; batch 1 is always timed")
    lengths = cfg["lengths"] + cfg["throughput_lengths"]
    if min(lengths) < 2 or max(lengths) > 512:
        raise UsageError(f"sequence lengths must be in 2..512, got {min(lengths)}..{max(lengths)}")
    if args.model not in ("minilm", "roberta-base-random") and not Path(args.model).is_dir():
        raise UsageError(f"--model {args.model!r}: not minilm, roberta-base-random or a folder")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    cfg["max_len"] = max(lengths)
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = check_args(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import torch
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    from . import bench, report
    from .variants import ablation_precisions, build_variant, load_encoder

    torch.set_num_threads(args.threads)
    _unsafe_reset_threadpool(args.threads)
    t_start = time.time()
    load_start = os.getloadavg()
    backbone, sep, model_desc = load_encoder(args.model)
    vocab = backbone.config.vocab_size
    max_pos = getattr(backbone.config, "max_position_embeddings", 512) - (2 if backbone.config.model_type == "roberta"
                                                                         else 0)
    if cfg["max_len"] > max_pos:
        print(f"error: sequence length {cfg['max_len']} exceeds the model's {max_pos} positions", file=sys.stderr)
        return 2
    names = cfg["methods"] + cfg["ablations"]
    variants = {}
    for name in names:
        opts = ABLATIONS.get(name, {})
        variants[name] = build_variant(name, backbone, sep, **opts)
        bench.log(f"built {name} (per-task download {variants[name].task_bytes:,} bytes)")
    result: dict = {
        "command": "python -m apps.latency " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                 else sys.argv[1:])),
        "model": model_desc, "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}; shared with other work, so "
                   "absolute times are noisy: compare ratios (methods interleaved in one run)",
        "config": {**cfg, "batch": args.batch, "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
                   "eager": not args.no_eager, "ablation": args.ablation},
        "loadavg_start": load_start, "programs": {}, "latency": {}, "tasks": {}, "rss": {},
    }
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        batches = [1] + ([args.batch] if args.batch else [])
        programs: dict[int, list] = {b: [] for b in batches}
        for b in batches:
            for name, v in variants.items():
                for precision in cfg["precisions"]:
                    if name in ABLATIONS and (precision not in ablation_precisions(name) or b != 1):
                        continue
                    bench.log(f"exporting {name} {precision} batch {b} ...")
                    prog = bench.build_program(v, precision, b, cfg["max_len"], work_dir)
                    bench.log(f"  {prog.summary['bytes'] / 1e6:.1f} MB, {prog.summary['delegated_subgraphs']} "
                              f"delegate partitions, {prog.summary['export_seconds']} s")
                    result["programs"][f"{prog.key}/b{b}"] = prog.summary
                    programs[b].append(prog)
        # Load only after every export (exports churn memory and threads), behind one throwaway instance
        bench.warm_runtime(programs[1][0], vocab)
        for b in batches:
            for prog in programs[b]:
                bench.load(prog)
                prog.summary["parity_max_abs_logit_diff_vs_eager"] = bench.parity(prog, vocab)
                diff = prog.summary["parity_max_abs_logit_diff_vs_eager"]
                bench.log(f"loaded {prog.key} batch {b}: parity {diff:.1e}")
        eager = [] if args.no_eager else [v for n, v in variants.items() if n not in ABLATIONS]
        for b in batches:
            lengths = cfg["lengths"] if b == 1 else cfg["throughput_lengths"]
            for s in lengths:
                bench.log(f"timing batch {b}, S={s}: {len(programs[b]) + len(eager)} programs x {args.runs} rounds")
                times = bench.time_config(programs[b], eager, b, s, vocab, args.runs, args.warmup)
                result["latency"].setdefault(f"b{b}", {})[str(s)] = bench.stats(times, report.baseline_of)
        rss_seq = max(cfg["lengths"])
        for prog in programs[1]:
            if prog.variant.name in ABLATIONS:
                continue
            result["tasks"].setdefault(prog.variant.name, {"download_bytes": prog.variant.task_bytes})
            result["tasks"][prog.variant.name][f"switch_{prog.precision}"] = bench.task_switch(prog, rss_seq, vocab)
            if not args.no_rss:
                for p in [q for bb in batches for q in programs[bb] if q.key == prog.key]:
                    bench.log(f"peak RSS of {p.key} batch {p.batch}")
                    result["rss"][f"{p.key}/b{p.batch}"] = bench.peak_rss(p, rss_seq, args.threads)
    result["loadavg_end"] = os.getloadavg()
    result["wall_seconds"] = round(time.time() - t_start, 1)
    result["summary"] = report.summary(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    short = {"minilm": "minilm", "roberta-base-random": "roberta"}.get(args.model, Path(args.model).name)
    stem = args.name or f"latency_{short}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    (out / f"{stem}.md").write_text(report.markdown(result, stem))
    report.plot(result, out / f"{stem}.png")
    bench.log(f"wrote {out / stem}.{{json,md,png}} in {result['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
