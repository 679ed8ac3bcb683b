"""Side-by-side comparison of methods on one harness:
`python -m pipeline.compare --tasks sst2,rte --methods spartan,houlsby,lora --few-shot 200 --seeds 3`.

Every (setting, task, method, seed) cell is one `pipeline.trainer.train(TrainConfig(...))` in its own fresh process
(clean peak-RSS numbers, and a crash loses only that cell) under RUNS/<setting>/<task>/<method>/seed<k>. A cell whose
eval_results.json exists is finished and skipped, so the comparison resumes where it stopped. Results go to
OUT/compare_<setting>.{json,md,png}. Learning rates come from OUT/lr_sweep_<setting>.json (written by `--lr-sweep`,
which tunes on a slice held out of train, never on dev); methods missing there use --learning-rate. `--jobs N` trains
N cells at once (on a GPU machine; on 2 CPU cores one at a time is fastest). `--report-only` trains nothing and needs
no data; it writes OUT only when every requested cell is finished (a table of "(not run)" never replaces committed
results).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pipeline.config import LAYERNORM_METHODS, METHOD_NAMES, TrainConfig
from pipeline.errors import UserError

GLUE_TASKS = ("sst2", "mrpc", "rte", "cola", "stsb")  # pipeline.data.GLUE's keys; data imports torch

PRIMARY = {"sst2": "eval_accuracy", "mrpc": "eval_combined_score", "rte": "eval_accuracy",
           "cola": "eval_matthews_correlation", "stsb": "eval_combined_score"}
SWEEP_GRID = {"full": [1e-5, 3e-5, 1e-4]}
# Used for methods the sweep has not covered: 1e-3 for the parameter-efficient methods (the SPARTAN default),
# 3e-5 for full fine-tuning (a standard BERT fine-tuning rate; 1e-3 would wreck the pre-trained weights).
FALLBACK_LR = {"full": 3e-5}
DEFAULT_GRID = [3e-4, 1e-3, 3e-3, 1e-2]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.compare", description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default="sst2,mrpc,rte,cola,stsb")
    p.add_argument("--methods", default=",".join(METHOD_NAMES))
    p.add_argument("--few-shot", type=int, default=None)
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--epochs", type=float, default=None, help="default: 10 for few-shot, 1 otherwise")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=1e-3,
                   help="for methods the sweep has not covered (full fine-tuning: 3e-5)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model", default=None, help="backbone (default: the embedded MiniLM)")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--runs", default="runs/compare")
    p.add_argument("--out", default="docs/results")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: summarize the finished cells (unfinished ones show as 'not run')")
    p.add_argument("--lr-sweep", action="store_true", help="tune each method's learning rate on a held-out slice")
    p.add_argument("--sweep-task", default="sst2",
                   help="task the sweep tunes on; 'each' tunes every --tasks task on its own held-out slice")
    p.add_argument("--recipe", choices=["plain", "authors"], default="plain",
                   help="plain: mean pooling + linear head, frozen LayerNorms for every method; authors: the MLP "
                        "head for every method and trainable LayerNorms for spartan/houlsby/pfeiffer (their papers' "
                        "recipes); a separate setting (suffix _authors)")
    p.add_argument("--sweep-grid", default=None,
                   help=f"comma-separated rates for every method (default: {DEFAULT_GRID}, full fine-tuning "
                        f"{SWEEP_GRID['full']})")
    p.add_argument("--sweep-max-train-samples", type=int, default=None,
                   help="train sweep cells on the first N examples left after the hold-out (full-data setting)")
    p.add_argument("--holdout", type=int, default=500)
    p.add_argument("--jobs", type=int, default=1, help="cells trained at once")
    p.add_argument("--device", default=None, help="passed to pipeline.train (default: its auto choice)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per cell")
    p.add_argument("--save-steps", type=int, default=None, help="checkpoint interval passed to pipeline.train")
    return p


def setting_name(args: argparse.Namespace) -> str:
    if args.few_shot:
        name = f"fewshot{args.few_shot}"
    else:
        name = f"n{args.max_train_samples}" if args.max_train_samples else "full"
    return name + ("_authors" if getattr(args, "recipe", "plain") == "authors" else "")


def recipe_overrides(args: argparse.Namespace, method: str) -> dict:
    """A cell's TrainConfig fields for --recipe authors: the MLP head, and trainable LayerNorms where the method's
    paper trains them."""
    if getattr(args, "recipe", "plain") != "authors":
        return {}
    return {"head": "mlp", **({"train_layernorms": True} if method in LAYERNORM_METHODS else {})}


def run_cells(jobs: list[TrainConfig], args: argparse.Namespace) -> list[dict]:
    """Run cells (`--jobs` at a time, each in a fresh process); results come back in the order given."""
    if args.report_only:
        return [cell_result(cfg) for cfg in jobs]
    todo = [cfg for cfg in jobs if not (Path(cfg.output_dir) / "eval_results.json").exists()]
    if todo:
        ctx = multiprocessing.get_context("spawn")  # no torch state inherited; one process per cell
        with ProcessPoolExecutor(max(1, args.jobs), mp_context=ctx, max_tasks_per_child=1) as pool:
            futures = [(cfg, time.time(), pool.submit(train_quietly, cfg)) for cfg in todo]
            for cfg, t0, future in futures:
                try:
                    error = future.result()
                except Exception as e:  # a crash in the cell (its process, or a bug) loses only that cell
                    error = f"{type(e).__name__}: {e}"
                if error:
                    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
                    (Path(cfg.output_dir) / "error.txt").write_text(error + "\n")
                else:
                    print(f"  {cfg.output_dir} done in {time.time() - t0:.0f} s", file=sys.stderr)
    return [cell_result(cfg) for cfg in jobs]


def train_quietly(cfg: TrainConfig) -> str | None:
    """Train one cell (in a worker process) with its output silenced; the UserError message, or None."""
    import spartan_toolchain
    from pipeline.trainer import train

    spartan_toolchain.install()
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        try:
            train(cfg)
        except UserError as e:
            return str(e)
    return None


def cell_result(cfg: TrainConfig) -> dict:
    """A cell's results, or {"error": ...} ("not run" when it has not been trained)."""
    cell_dir = Path(cfg.output_dir)
    done = cell_dir / "eval_results.json"
    if not done.exists():
        err = cell_dir / "error.txt"
        return {"error": err.read_text().strip() if err.exists() else "not run"}
    (cell_dir / "error.txt").unlink(missing_ok=True)
    result = {**json.loads(done.read_text()), **json.loads((cell_dir / "train_results.json").read_text())}
    if result.get("learning_rate", cfg.learning_rate) != cfg.learning_rate:
        # Kept, never overwritten: a finished cell trained at another rate (e.g. before a sweep) is reported as such.
        return {"error": f"trained at lr {result['learning_rate']:g}, not {cfg.learning_rate:g}; remove {cell_dir} "
                         "to retrain"}
    return result


def sweep_file(out: Path, setting: str) -> Path:
    return out / f"lr_sweep_{setting}.json"


def learning_rates(out: Path, setting: str) -> dict:
    """{"best": {method: lr}, "per_task": {task: {method: lr}}} from the setting's sweep file (empty if none)."""
    f = sweep_file(out, setting)
    if not f.exists():
        return {}
    report = json.loads(f.read_text())
    return {"best": report.get("best", {}), "per_task": report.get("best_per_task", {})}


def lr_for(method: str, swept: dict, args: argparse.Namespace, task: str | None = None) -> float:
    """The task's own swept rate, else the sweep task's, else the fallback."""
    per_task = swept.get("per_task", {}).get(task, {})
    if method in per_task:
        return per_task[method]
    return swept.get("best", {}).get(method, FALLBACK_LR.get(method, args.learning_rate))


def cell_config(args: argparse.Namespace, cell_dir: Path, task: str, method: str, lr: float, seed: int,
                **overrides) -> TrainConfig:
    """One cell's TrainConfig: the comparison's shared options, TrainConfig's defaults for what was not given."""
    given = {name: getattr(args, name) for name in ("model", "data_dir", "few_shot", "max_train_samples", "device",
                                                    "threads", "save_steps") if getattr(args, name)}
    epochs = args.epochs if args.epochs is not None else (10 if args.few_shot else 1)
    return TrainConfig(output_dir=str(cell_dir), resume=True, task=task, method=method, learning_rate=lr, seed=seed,
                       batch_size=args.batch_size, max_seq_length=args.max_seq_length, epochs=epochs,
                       **{**given, **overrides})


def lr_sweep(args: argparse.Namespace, methods: list[str], tasks: list[str] | None = None) -> dict:
    """Tune every method's rate on `--holdout` examples held out of train (never dev), on the sweep task or, with
    --sweep-task each, on every task separately."""
    out = Path(args.out)
    sweep_tasks = tasks if args.sweep_task == "each" else [args.sweep_task]
    custom = [float(x) for x in args.sweep_grid.split(",")] if args.sweep_grid else None
    grid = [(task, method, lr) for task in sweep_tasks for method in methods
            for lr in custom or SWEEP_GRID.get(method, DEFAULT_GRID)]
    jobs = []
    extra = {"max_train_samples": args.sweep_max_train_samples} if args.sweep_max_train_samples else {}
    for task, method, lr in grid:
        cell = Path(args.runs) / f"lrsweep_{setting_name(args)}" / task / method / f"lr{lr:g}"
        jobs.append(cell_config(args, cell, task, method, lr, 0, holdout=args.holdout, **extra,
                                **recipe_overrides(args, method)))
    results: dict[str, dict[str, dict[str, float]]] = {t: {m: {} for m in methods} for t in sweep_tasks}
    for (task, method, lr), r in zip(grid, run_cells(jobs, args), strict=True):
        results[task][method][f"{lr:g}"] = r.get(PRIMARY[task], float("nan"))
        print(f"{task} {method} lr={lr:g}: {results[task][method][f'{lr:g}']}", file=sys.stderr)

    def best_of(rs: dict[str, float]) -> float:
        return float(max(rs, key=lambda k: rs[k] if rs[k] == rs[k] else -1))

    per_task = {t: {m: best_of(rs) for m, rs in by_method.items()} for t, by_method in results.items()}
    report = {"task": args.sweep_task, "setting": setting_name(args), "holdout_examples": args.holdout,
              "train_examples": args.few_shot or args.sweep_max_train_samples or "all but the hold-out",
              "metric": {t: PRIMARY[t] for t in sweep_tasks},
              "results": results if args.sweep_task == "each" else results[sweep_tasks[0]],
              "best": per_task[sweep_tasks[0]] if args.sweep_task != "each" else {},
              "command": " ".join(["python -m pipeline.compare", *sys.argv[1:]])}
    if args.sweep_task == "each":
        report["best_per_task"] = per_task
    sweep_file(out, setting_name(args)).write_text(json.dumps(report, indent=2) + "\n")
    return report


def summarize(args: argparse.Namespace, tasks: list[str], methods: list[str], cells: dict) -> dict:
    swept = learning_rates(Path(args.out), setting_name(args))
    rows = {}
    for method in methods:
        row = {"tasks": {}}
        for task in tasks:
            runs = [r for r in cells[(task, method)] if "error" not in r]
            errors = [r["error"] for r in cells[(task, method)] if "error" in r]
            if not runs:
                row["tasks"][task] = {"error": errors[0] if errors else "not run"}
                continue
            scores = [100 * r[PRIMARY[task]] for r in runs]
            row["tasks"][task] = {
                "metric": PRIMARY[task], "scores": scores, "mean": statistics.mean(scores),
                "std": statistics.stdev(scores) if len(scores) > 1 else 0.0, "seeds": len(scores),
                "trainable_parameters": runs[0]["trainable_parameters"], "artifact_bytes": runs[0]["artifact_bytes"],
                "train_seconds": statistics.mean(r["train_runtime"] for r in runs),
                "seconds_per_step": statistics.median(r["seconds_per_step"] for r in runs),
                "peak_rss_mb": max(r.get("peak_rss_mb", 0) for r in runs),
                "device": runs[0].get("device", "cpu"),
            }
        done = [v["mean"] for v in row["tasks"].values() if "mean" in v]
        row["average"] = statistics.mean(done) if len(done) == len(tasks) else None
        rows[method] = row
    return {"setting": setting_name(args), "tasks": tasks, "seeds": args.seeds,
            "command": " ".join(["python -m pipeline.compare", *sys.argv[1:]]),
            "learning_rates": {m: lr_for(m, swept, args) for m in methods},
            "learning_rates_per_task": {t: {m: lr_for(m, swept, args, t) for m in methods} for t in tasks},
            "recipe": getattr(args, "recipe", "plain"),
            "learning_rates_from": sweep_file(Path(args.out), setting_name(args)).name if swept
            else "fallback (no sweep run)",
            "methods": rows}


def write_reports(summary: dict, out: Path) -> None:
    name = f"compare_{summary['setting']}"
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / f"{name}.md").write_text(render_markdown(summary))
    plot(summary, out / f"{name}.png")


def render_markdown(summary: dict) -> str:
    tasks = summary["tasks"]
    devices = sorted({v["device"] for row in summary["methods"].values() for v in row["tasks"].values()
                      if "device" in v})
    lines = [f"# Comparison: {summary['setting']}, {summary['seeds']} seed(s)", "",
             f"Command: `{summary['command']}`", "",
             f"Trained on: {', '.join(devices) or '-'} (times and s/step are that device's; accuracy is comparable "
             "across devices). Learning rates: " + summary["learning_rates_from"] + ".", "",
             "Dev metric x100 (mean ± std over seeds when there are several; MRPC and STS-B: mean of their two "
             "metrics), trainable parameters incl. head, artifact bytes, mean training seconds, median seconds per "
             "step, peak RSS (the last four from the method's first task).", "",
             "| method | " + " | ".join(tasks) + " | avg | params | artifact bytes | train s | s/step | peak RSS MB |",
             "|---" * (len(tasks) + 7) + "|"]
    for method, row in summary["methods"].items():
        cells = []
        for t in tasks:
            v = row["tasks"][t]
            if "mean" not in v:
                cells.append(f"({v['error'][:40]})")
            else:
                cell = f"{v['mean']:.1f} ± {v['std']:.1f}" if v["seeds"] > 1 else f"{v['mean']:.1f}"
                per_task = summary.get("learning_rates_per_task", {}).get(t, {}).get(method)
                if per_task is not None and per_task != summary["learning_rates"][method]:
                    cell += f" (lr {per_task:g})"
                cells.append(cell)
        first = next((v for v in row["tasks"].values() if "mean" in v), {})
        avg = f"{row['average']:.1f}" if row["average"] is not None else "-"
        stats = (f"{first['trainable_parameters']:,} | {first['artifact_bytes']:,} | {first['train_seconds']:.0f} | "
                 f"{first['seconds_per_step']:.3f} | {first['peak_rss_mb']:.0f}") if first else "- | - | - | - | -"
        lines.append(f"| {method} (lr {summary['learning_rates'][method]:g}) | " + " | ".join(cells) +
                     f" | {avg} | {stats} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, methods = summary["tasks"], list(summary["methods"])
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(tasks)), 4))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        vals = [summary["methods"][m]["tasks"][t].get("mean", 0) for t in tasks]
        errs = [summary["methods"][m]["tasks"][t].get("std", 0) for t in tasks]
        ax.bar([j + i * width for j in range(len(tasks))], vals, width, yerr=errs, label=m)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks)
    ax.set_ylabel("dev metric x100")
    ax.set_title(f"{summary['setting']}, {summary['seeds']} seed(s)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    methods = [m for m in args.methods.split(",") if m]
    try:
        for m in methods:
            if m not in METHOD_NAMES:
                raise UserError(f"unknown method {m!r}; choose from {', '.join(METHOD_NAMES)}")
        for t in tasks:
            if t not in GLUE_TASKS:
                raise UserError(f"unknown task {t!r}; choose from {', '.join(GLUE_TASKS)}")
        if not args.report_only:  # fail before training anything if a task's data is missing
            from pipeline.data import load_glue

            for t in tasks:
                load_glue(t, args.data_dir)
        if args.lr_sweep:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            lr_sweep(args, methods, tasks)
            return 0
        out = Path(args.out)
        lrs = learning_rates(out, setting_name(args))
        keys, jobs = [], []
        for seed in range(args.seeds):  # seeds outermost: one full pass over methods gives a first comparison
            for task in tasks:
                for method in methods:
                    cell = Path(args.runs) / setting_name(args) / task / method / f"seed{seed}"
                    keys.append((task, method))
                    jobs.append(cell_config(args, cell, task, method, lr_for(method, lrs, args, task), seed,
                                            **recipe_overrides(args, method)))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cells: dict[tuple[str, str], list[dict]] = {}
    for key, result in zip(keys, run_cells(jobs, args), strict=True):
        cells.setdefault(key, []).append(result)
    summary = summarize(args, tasks, methods, cells)
    not_run = sum(r.get("error") == "not run" for rs in cells.values() for r in rs)
    if args.report_only and not_run:
        # Never replace a committed report with a table of "(not run)": show it, write nothing.
        print(render_markdown(summary))
        print(f"note: {not_run} of {len(jobs)} cell(s) are not trained under {args.runs}; nothing written to "
              f"{out} (run without --report-only to train them)", file=sys.stderr)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    write_reports(summary, out)
    print((out / f"compare_{summary['setting']}.md").read_text())
    failed = [f"{t}/{m}" for (t, m), rs in cells.items()
              if any("error" in r and r["error"] != "not run" for r in rs)]
    if failed:
        print(f"error: {len(failed)} cell(s) failed: {', '.join(failed[:5])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
