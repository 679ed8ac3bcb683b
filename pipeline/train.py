"""Train one task: `python -m pipeline.train --task sst2 --method spartan --output-dir runs/sst2`.

The command line only fills a `TrainConfig` (pipeline/config.py) and calls `pipeline.trainer.train` with it; torch is
imported after the arguments are parsed, so `--help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import fields

from .config import HEAD_NAMES, LAYERNORM_METHODS, METHOD_NAMES, TrainConfig
from .errors import UserError
from .spartan.config import SpartanConfig

_D = {f.name: f.default for f in fields(TrainConfig) if f.name not in ("output_dir", "spartan")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.train", description=__doc__.split("\n")[0])
    p.add_argument("--task", default=None,
                   help="GLUE task: sst2 (default), mrpc, rte, cola, stsb; with --train-file, a name for your task")
    p.add_argument("--method", default=_D["method"], help=f"one of: {', '.join(METHOD_NAMES)}")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--model", default=None, help="backbone folder or hub id (default: the embedded MiniLM-L6)")
    data = p.add_argument_group("data")
    data.add_argument("--data-dir", default=None, help="GLUE folder (default: ./data/glue, then ../shared/data/glue)")
    data.add_argument("--hub", action="store_true", help="download the GLUE task from the Hugging Face hub")
    data.add_argument("--train-file", help="your own .csv/.tsv/.jsonl training file")
    data.add_argument("--validation-file", help="your own .csv/.tsv/.jsonl validation file")
    data.add_argument("--text-column", default=_D["text_column"])
    data.add_argument("--text-pair-column", default=None)
    data.add_argument("--label-column", default=_D["label_column"])
    data.add_argument("--task-type", choices=["auto", "classification", "regression"], default=_D["task_type"])
    data.add_argument("--max-train-samples", type=int, default=None, help="keep the first N training examples")
    data.add_argument("--few-shot", type=int, default=None, help="train on N examples drawn with --seed")
    data.add_argument("--max-seq-length", type=int, default=_D["max_seq_length"])
    data.add_argument("--holdout", type=int, default=None,
                      help="evaluate on N examples held out of train instead of dev (for learning-rate sweeps)")
    tr = p.add_argument_group("training")
    tr.add_argument("--head", choices=list(HEAD_NAMES), default=_D["head"],
                    help="linear (one layer on the mean-pooled vector) or mlp (dense + tanh + projection on it, "
                         "RoBERTa's head, as the SPARTAN authors train)")
    tr.add_argument("--train-layernorms", action="store_true",
                    help=f"also train the backbone's LayerNorms ({', '.join(LAYERNORM_METHODS)}: the authors' recipes)")
    tr.add_argument("--epochs", type=float, default=_D["epochs"], help="> 0; fractions train part of an epoch")
    tr.add_argument("--learning-rate", type=float, default=_D["learning_rate"])
    tr.add_argument("--weight-decay", type=float, default=_D["weight_decay"])
    tr.add_argument("--warmup-ratio", type=float, default=_D["warmup_ratio"])
    tr.add_argument("--batch-size", type=int, default=_D["batch_size"])
    tr.add_argument("--eval-batch-size", type=int, default=_D["eval_batch_size"])
    tr.add_argument("--seed", type=int, default=_D["seed"])
    tr.add_argument("--save-steps", type=int, default=_D["save_steps"],
                    help="write a checkpoint every N steps (and at the end)")
    tr.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output-dir")
    tr.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    tr.add_argument("--device", default=_D["device"], help="cpu, cuda, cuda:N or auto (cuda when available)")
    tr.add_argument("--bf16", action="store_true",
                    help="train under bfloat16 autocast (faster on CPUs with AVX512-BF16/AMX and on GPUs; the "
                         "artifact stays float32, evaluation runs in float32)")
    mem = p.add_argument_group("SPARTAN memory")
    d = SpartanConfig()
    mem.add_argument("--num-parents", type=int, default=d.num_parents, help="E")
    mem.add_argument("--num-children", type=int, default=d.num_children, help="C")
    mem.add_argument("--top-k", type=int, default=d.top_k)
    mem.add_argument("--temperature", type=float, default=d.temperature)
    mem.add_argument("--load-balance-coef", type=float, default=d.load_balance_coef)
    mem.add_argument("--memory-form", choices=["dense", "sparse"], default=d.form)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The flags as a TrainConfig; a SpartanConfig that refuses its values becomes a UserError naming them."""
    try:
        spartan = SpartanConfig(args.num_parents, args.num_children, args.top_k, args.temperature,
                                args.load_balance_coef, args.train_layernorms, args.memory_form)
    except ValueError as e:
        raise UserError(f"SPARTAN memory options: {e}") from None
    return TrainConfig(**{name: getattr(args, name) for name in (*_D, "output_dir")}, spartan=spartan)


def print_summary(cfg: TrainConfig, result) -> None:
    """What the run produced, readable: the dev metrics, the files, and a hint when the model ended unsure."""
    from pathlib import Path

    from .artifact import read_metadata

    out = Path(cfg.output_dir)
    task = read_metadata(result.artifact)["task"]
    names = ", ".join(f"{k.removeprefix('eval_')} {v:.4f}" for k, v in sorted(result.metrics.items())
                      if k != "eval_samples")
    print(f"{task['name']}/{cfg.method}: {names}  ({result.steps} steps)")
    for f in ("task.safetensors", "eval_results.json", "train_results.json"):
        if (out / f).is_file():
            print(f"  {out / f}  ({(out / f).stat().st_size:,} bytes)")
    # A classifier that guesses has cross-entropy ln(classes); above 75% of that it is still mostly unsure.
    classes = 0 if task["is_regression"] else len(task["label_names"])
    loss = result.final_loss
    if loss is not None and classes > 1 and loss > 0.75 * math.log(classes):
        print(f"hint: the training loss is still {loss:.2f} (guessing is {math.log(classes):.2f}); this short run "
              f"left the model unsure: train longer (--epochs {max(3, math.ceil(cfg.epochs * 3))}) or on more "
              "examples", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        import spartan_toolchain

        from .trainer import train

        spartan_toolchain.install()
        result = train(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_summary(cfg, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
