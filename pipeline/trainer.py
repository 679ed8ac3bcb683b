"""Train one task: `train(TrainConfig(...))` (the CLI is pipeline/train.py, which fills the config from its flags).

A plain loop (AdamW, linear warm-up/decay), in the spirit of nanoGPT's train.py. Only the method's trainable part
and the head get gradients. The output folder receives checkpoint.pt while training (removed when done),
task.safetensors (the task artifact), eval_results.json and train_results.json.
"""

from __future__ import annotations

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
from .config import TrainConfig
from .data import Examples, TaskData, hold_out, limit_train, load_glue, load_hub, load_user_files
from .errors import UserError
from .methods import default_options
from .metrics import compute_metrics, primary_metric
from .model import TaskModel

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainResult:
    metrics: dict
    artifact: Path
    seconds_per_step: float
    steps: int
    final_loss: float | None = None  # smoothed training loss at the end (None: the run was already finished)


def load_data(args: TrainConfig) -> TaskData:
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


def method_options(args: TrainConfig) -> dict:
    if args.method == "spartan":
        return {**args.spartan.to_dict(), "train_layernorms": args.spartan.train_layernorms or args.train_layernorms}
    options = default_options(args.method)
    if args.train_layernorms:  # TrainConfig allows it only for the adapters here
        options["train_layernorms"] = True
    return options


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


def train(args: TrainConfig, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Run one training; `on_step(step, loss)` is called after every optimizer step (progress hooks, tests)."""
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
    return TrainResult(metrics, artifact, sps, step, running)
