"""Train one task: `python -m pipeline.train --task sst2 --method spartan --output-dir runs/sst2`.

A plain loop (AdamW, linear warm-up/decay), in the spirit of nanoGPT's train.py. Only the method's trainable part
and the head get gradients. The output folder receives checkpoint.pt while training (removed when done),
task.safetensors (the task artifact), eval_results.json and train_results.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .artifact import ARTIFACT_NAME, DEFAULT_BACKBONE_ID, save_task
from .atomic import atomic_write
from .backbone import fingerprint, load_backbone
from .data import Examples, TaskData, hold_out, limit_train, load_glue, load_hub, load_user_files
from .errors import UserError
from .methods import ADAPTER_CONFIGS, METHODS, default_options
from .metrics import compute_metrics, primary_metric
from .model import HEADS, TaskModel
from .spartan import SpartanConfig

CHECKPOINT = "checkpoint.pt"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.train", description=__doc__.split("\n")[0])
    p.add_argument("--task", default=None,
                   help="GLUE task: sst2 (default), mrpc, rte, cola, stsb; with --train-file, a name for your task")
    p.add_argument("--method", default="spartan", help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--model", default=None, help="backbone folder or hub id (default: the embedded MiniLM-L6)")
    data = p.add_argument_group("data")
    data.add_argument("--data-dir", default=None, help="GLUE folder (default: ./data/glue, then ../shared/data/glue)")
    data.add_argument("--hub", action="store_true", help="download the GLUE task from the Hugging Face hub")
    data.add_argument("--train-file", help="your own .csv/.tsv/.jsonl training file")
    data.add_argument("--validation-file", help="your own .csv/.tsv/.jsonl validation file")
    data.add_argument("--text-column", default="text")
    data.add_argument("--text-pair-column", default=None)
    data.add_argument("--label-column", default="label")
    data.add_argument("--task-type", choices=["auto", "classification", "regression"], default="auto")
    data.add_argument("--max-train-samples", type=int, default=None, help="keep the first N training examples")
    data.add_argument("--few-shot", type=int, default=None, help="train on N examples drawn with --seed")
    data.add_argument("--max-seq-length", type=int, default=128)
    data.add_argument("--holdout", type=int, default=None,
                      help="evaluate on N examples held out of train instead of dev (for learning-rate sweeps)")
    tr = p.add_argument_group("training")
    tr.add_argument("--head", choices=list(HEADS), default="linear",
                    help="linear (one layer on the mean-pooled vector) or mlp (dense + tanh + projection on it, "
                         "RoBERTa's head, as the SPARTAN authors train)")
    tr.add_argument("--train-layernorms", action="store_true",
                    help="also train the backbone's LayerNorms (spartan, houlsby, pfeiffer; the authors' recipes)")
    tr.add_argument("--epochs", type=float, default=1.0)
    tr.add_argument("--learning-rate", type=float, default=1e-3)
    tr.add_argument("--weight-decay", type=float, default=0.0)
    tr.add_argument("--warmup-ratio", type=float, default=0.06)
    # 8 is Hugging Face run_glue's default; with lr 1e-3 it gives the memory 250 updates per 2,000 examples (see
    # docs/results/core.md: at batch 32 one epoch is too few updates for SPARTAN to move off the probe's accuracy).
    tr.add_argument("--batch-size", type=int, default=8)
    tr.add_argument("--eval-batch-size", type=int, default=64)
    tr.add_argument("--seed", type=int, default=42)
    tr.add_argument("--save-steps", type=int, default=100, help="write a checkpoint every N steps (and at the end)")
    tr.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output-dir")
    tr.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    tr.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
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


@dataclass
class TrainResult:
    metrics: dict
    artifact: Path
    seconds_per_step: float
    steps: int


def load_data(args: argparse.Namespace) -> TaskData:
    if args.train_file or args.validation_file:
        if not (args.train_file and args.validation_file):
            raise UserError("--train-file and --validation-file go together")
        data = load_user_files(args.train_file, args.validation_file, args.text_column, args.text_pair_column,
                               args.label_column, args.task_type, args.task or "custom")
    elif args.hub:
        data = load_hub(args.task or "sst2")
    else:
        data = load_glue(args.task or "sst2", args.data_dir)
    if args.holdout:
        data = hold_out(data, args.holdout, args.seed)
    return limit_train(data, args.max_train_samples, args.few_shot, args.seed)


def method_options(args: argparse.Namespace) -> dict:
    if args.method != "spartan":
        options = default_options(args.method)
        if args.train_layernorms:
            if args.method not in ADAPTER_CONFIGS:
                raise UserError(f"--train-layernorms applies to spartan, houlsby and pfeiffer, not {args.method}")
            options["train_layernorms"] = True
        return options
    return SpartanConfig(args.num_parents, args.num_children, args.top_k, args.temperature, args.load_balance_coef,
                         args.train_layernorms, args.memory_form).to_dict()


def batches(examples: Examples, batch_size: int, order: list[int] | None = None):
    order = order if order is not None else list(range(len(examples)))
    for i in range(0, len(order), batch_size):
        yield order[i:i + batch_size]


def encode(tokenizer, examples: Examples, idx: list[int], max_len: int,
           device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    a = [examples.text_a[i] for i in idx]
    b = [examples.text_b[i] for i in idx] if examples.text_b else None
    enc = tokenizer(a, b, truncation=True, max_length=max_len, padding=True, return_tensors="pt")
    return {k: v.to(device) for k, v in enc.items()}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise UserError(f"--device {name!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: this torch build or machine has no CUDA device")
    return device


def compute_loss(model: TaskModel, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    loss = F.mse_loss(logits, labels.float()) if model.task.is_regression else F.cross_entropy(logits, labels)
    aux = model.auxiliary_loss()
    return loss + aux if aux is not None else loss


def train_step(model: TaskModel, optimizer: torch.optim.Optimizer, inputs: dict, labels: torch.Tensor,
               bf16: bool = False) -> torch.Tensor:
    """One optimizer step on one batch; returns the loss."""
    with torch.autocast(labels.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = compute_loss(model, model(**inputs), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


@torch.inference_mode()
def evaluate(model: TaskModel, tokenizer, data: TaskData, max_len: int, batch_size: int = 64) -> dict[str, float]:
    model.eval()
    device = next(model.parameters()).device
    preds = []
    for idx in batches(data.validation, batch_size):
        logits = model(**encode(tokenizer, data.validation, idx, max_len, device))
        preds.append(logits if model.task.is_regression else logits.argmax(-1))
    predictions = torch.cat(preds).cpu().numpy()
    labels = np.asarray(data.validation.labels)
    return {f"eval_{k}": v for k, v in compute_metrics(data.metric, predictions, labels).items()}


def _write_json(path: Path, obj: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def train(args: argparse.Namespace, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Run one training; `on_step(step, loss)` is called after every optimizer step (progress hooks, tests)."""
    if args.method not in METHODS:
        raise UserError(f"unknown method {args.method!r}; choose one of: {', '.join(METHODS)}")
    out = Path(args.output_dir)
    ckpt_path = out / CHECKPOINT
    if out.exists() and not args.resume and (ckpt_path.exists() or (out / ARTIFACT_NAME).exists()):
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --output-dir")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_data(args)
    options = method_options(args)

    backbone, tokenizer = load_backbone(args.model)
    backbone_fp = fingerprint(backbone)  # of the pre-trained weights, before the method touches anything
    torch.manual_seed(args.seed)
    model = TaskModel(backbone, args.method, options, data.spec, head=args.head).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    steps_per_epoch = -(-len(data.train) // args.batch_size)
    total_steps = max(1, int(round(args.epochs * steps_per_epoch)))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total_steps), total_steps)

    step, train_seconds = 0, 0.0
    if args.resume and ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False, map_location=device)
        if state["fingerprint"] != backbone_fp or state["options"] != options or state["method"] != args.method \
                or state.get("head", "linear") != args.head:
            raise UserError(f"{ckpt_path} was made with another backbone or method settings; use another --output-dir")
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"].cpu())
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
        step, train_seconds = state["step"], state["train_seconds"]
        print(f"resuming from step {step}/{total_steps}", file=sys.stderr)
    elif args.resume and (out / ARTIFACT_NAME).exists() and (out / "eval_results.json").exists():
        print(f"{out} is already finished; nothing to do", file=sys.stderr)
        metrics = json.loads((out / "eval_results.json").read_text())
        tr = json.loads((out / "train_results.json").read_text())
        return TrainResult(metrics, out / ARTIFACT_NAME, tr["seconds_per_step"], tr["train_steps"])
    out.mkdir(parents=True, exist_ok=True)

    def save_checkpoint() -> None:
        atomic_write(ckpt_path, lambda tmp: torch.save({
            "step": step, "train_seconds": train_seconds, "fingerprint": backbone_fp, "method": args.method,
            "options": options, "head": args.head, "trainable": model.trainable_state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }, tmp))

    model.train()
    bar = tqdm(total=total_steps, initial=step, desc=f"{data.spec.name}/{args.method}", unit="step", dynamic_ncols=True)
    running = None
    while step < total_steps:
        epoch, pos = divmod(step, steps_per_epoch)
        g = torch.Generator().manual_seed(args.seed * 1000 + epoch)  # data order depends only on (seed, epoch)
        order = torch.randperm(len(data.train), generator=g).tolist()
        for idx in list(batches(data.train, args.batch_size, order))[pos:]:
            if step >= total_steps:
                break
            t0 = time.perf_counter()
            inputs = encode(tokenizer, data.train, idx, args.max_seq_length, device)
            labels = torch.tensor([data.train.labels[i] for i in idx], device=device)
            loss = train_step(model, optimizer, inputs, labels, args.bf16)
            scheduler.step()
            train_seconds += time.perf_counter() - t0
            step += 1
            running = loss.item() if running is None else 0.9 * running + 0.1 * loss.item()
            bar.set_postfix(loss=f"{running:.4f}")
            bar.update()
            if step % args.save_steps == 0 or step == total_steps:
                save_checkpoint()
            if on_step:
                on_step(step, loss.item())
    bar.close()

    metrics = evaluate(model, tokenizer, data, args.max_seq_length, args.eval_batch_size)
    model.to("cpu")  # the artifact and its digest are written from CPU tensors
    backbone_id = args.model or DEFAULT_BACKBONE_ID
    artifact = save_task(model, out, backbone_id=backbone_id, backbone_fingerprint=backbone_fp,
                         metric=data.metric, metrics=metrics)
    sps = train_seconds / max(step, 1)
    _write_json(out / "eval_results.json", {**metrics, "eval_samples": len(data.validation)})
    _write_json(out / "train_results.json", {
        "train_steps": step, "train_samples": len(data.train), "epochs": args.epochs,
        "learning_rate": args.learning_rate, "bf16": args.bf16, "train_runtime": train_seconds, "seconds_per_step": sps,
        "batch_size": args.batch_size, "head": args.head,
        "trainable_parameters": sum(p.numel() for p in params), "artifact_bytes": artifact.stat().st_size,
        "primary_metric": "eval_" + primary_metric(data.metric), "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "evaluated_on": f"{args.holdout} examples held out of train" if args.holdout else "dev",
    })
    ckpt_path.unlink(missing_ok=True)
    print(json.dumps(metrics, indent=2))
    return TrainResult(metrics, artifact, sps, step)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        train(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
