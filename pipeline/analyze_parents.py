"""Where a SPARTAN memory's parents specialise: per layer, how the top-k parent choice depends on a label (topic).

    python -m pipeline.analyze_parents --artifact RUN --texts dev.csv [--text-column text --label-column label]
        --out docs/results/bbc_parents.png [--max-examples 444 --shuffles 20]

For every real token of every text, each memory layer keeps its top-k parents (the same rule as training:
pipeline.spartan.layer.top_k_mask). Per layer it reports
- usage[label, parent]: the share of that label's top-k slots that go to the parent (rows sum to 1), as a heat map;
- I(label; parent) in bits over all (token, kept parent) slots, against the same quantity with the labels shuffled
  across texts (`--shuffles` permutations: mean and max), so a value above the shuffled ones is dependence on the
  label rather than on the finite sample;
- the tokens that most select each parent (highest share of their occurrences routed to it, at least `--min-count`
  occurrences), which says what a parent responds to.
Writes the PNG, and JSON + markdown beside it (same stem).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .artifact import load_task
from .errors import UserError
from .spartan.layer import top_k_mask


def read_texts(path: str | Path, text_column: str, label_column: str, limit: int | None) -> tuple[list, list]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no text file at {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))
    if not rows or text_column not in rows[0] or label_column not in rows[0]:
        raise UserError(f"{path} needs columns {text_column!r} and {label_column!r}")
    rows = rows[:limit] if limit else rows
    return [r[text_column] for r in rows], [r[label_column] for r in rows]


@torch.inference_mode()
def parent_choices(model, tokenizer, texts: list[str], max_len: int, batch_size: int = 16):
    """Per text: token ids [T] and kept-parent masks [L, T, E] (bool) over its real tokens."""
    captured: list[torch.Tensor] = []

    def hook(memory, args, out):
        captured.append(top_k_mask(F.linear(args[0], memory.P), memory.config.top_k))

    handles = [m.register_forward_hook(hook) for m in model.delta]
    out = []
    try:
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_len, padding=True,
                            return_tensors="pt")
            captured.clear()
            model(**enc)
            masks = torch.stack(captured, 1)  # [B, L, S, E]
            for b in range(masks.shape[0]):
                real = enc["attention_mask"][b].bool()
                out.append((enc["input_ids"][b][real].numpy(), masks[b][:, real].numpy()))
    finally:
        for h in handles:
            h.remove()
    return out


def mutual_information(counts: np.ndarray) -> float:
    """I(X;Y) in bits from a joint count table."""
    p = counts / counts.sum()
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log2(p[nz] / (px @ py)[nz])).sum())


def label_parent_counts(per_text: np.ndarray, labels: np.ndarray, n_labels: int) -> np.ndarray:
    """per_text [N, L, E] kept-slot counts -> [L, labels, E]."""
    out = np.zeros((per_text.shape[1], n_labels, per_text.shape[2]))
    np.add.at(out, (slice(None), labels), per_text.transpose(1, 0, 2))
    return out


def analyse(choices, labels: list[str], tokenizer, shuffles: int, min_count: int, top_tokens: int,
            seed: int = 0) -> dict:
    names = sorted(set(labels))
    y = np.array([names.index(x) for x in labels])
    per_text = np.stack([m.sum(1) for _, m in choices]).astype(np.float64)  # [N, L, E] kept-slot counts
    L, E = per_text.shape[1:]
    counts = label_parent_counts(per_text, y, len(names))
    rng = np.random.default_rng(seed)
    shuffled = np.array([[mutual_information(c) for c in label_parent_counts(per_text, rng.permutation(y), len(names))]
                         for _ in range(shuffles)])  # [shuffles, L]
    token_total: Counter = Counter()
    vocab: dict[int, int] = {}
    rows = []
    for ids, masks in choices:
        for t, tok in enumerate(ids):
            vocab.setdefault(int(tok), len(vocab))
            rows.append((vocab[int(tok)], masks[:, t]))
    token_parent = np.zeros((L, len(vocab), E))
    for v, m in rows:
        token_parent[:, v] += m
        token_total[v] += 1
    inv = {i: tok for tok, i in vocab.items()}
    totals = np.array([token_total[i] for i in range(len(vocab))], dtype=np.float64)
    frequent = totals >= min_count
    layers = []
    for i in range(L):
        rate = token_parent[i] / totals[:, None]  # share of a token's occurrences that keep parent e
        tops = {}
        for e in range(E):
            order = [v for v in np.argsort(-rate[:, e], kind="stable") if frequent[v]][:top_tokens]
            tops[e] = [{"token": tokenizer.convert_ids_to_tokens(inv[v]), "rate": round(float(rate[v, e]), 3),
                        "count": int(totals[v])} for v in order]
        usage = counts[i] / counts[i].sum(1, keepdims=True)
        layers.append({
            "layer": i,
            "mutual_information_bits": mutual_information(counts[i]),
            "shuffled_mi_bits_mean": float(shuffled[:, i].mean()) if shuffles else None,
            "shuffled_mi_bits_max": float(shuffled[:, i].max()) if shuffles else None,
            "usage": usage.round(4).tolist(),
            "top_tokens": tops,
        })
    return {"labels": names, "num_texts": len(choices), "tokens": int(totals.sum()), "num_parents": int(E),
            "top_k": int(choices[0][1][0, 0].sum()) if choices else None, "shuffles": shuffles, "layers": layers}


def heat_maps(result: dict, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = result["layers"]
    fig, axes = plt.subplots(1, len(layers), figsize=(3.1 * len(layers), 3.2), sharey=True, constrained_layout=True)
    axes = np.atleast_1d(axes)
    vmax = max(float(np.max(layer["usage"])) for layer in layers)
    for ax, layer in zip(axes, layers, strict=True):
        im = ax.imshow(np.asarray(layer["usage"]), aspect="auto", cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(f"layer {layer['layer']}\nI={layer['mutual_information_bits']:.3f} b "
                     f"(shuffled {layer['shuffled_mi_bits_max']:.4f})", fontsize=8)
        ax.set_xlabel("parent")
        ax.set_xticks(range(result["num_parents"]))
        ax.tick_params(labelsize=6)
    axes[0].set_yticks(range(len(result["labels"])))
    axes[0].set_yticklabels(result["labels"], fontsize=7)
    fig.colorbar(im, ax=axes.tolist(), shrink=0.8, label="share of the topic's top-k slots")
    fig.suptitle(title, fontsize=9)
    fig.savefig(png, dpi=130)
    plt.close(fig)


def markdown(result: dict, command: str) -> str:
    lines = [f"# Where SPARTAN's parents specialise ({result['num_texts']} texts, {result['tokens']:,} tokens)", "",
             f"Command: `{command}`", "",
             "Mutual information between the text's label and each kept parent, over all (token, kept parent) "
             f"slots, against {result['shuffles']} label shuffles across texts:", "",
             "| layer | I(label; parent) bits | shuffled mean | shuffled max | most label-specific parent |",
             "|---|---|---|---|---|"]
    for layer in result["layers"]:
        u = np.asarray(layer["usage"])
        lift = u / u.mean(0, keepdims=True)
        lab, par = np.unravel_index(np.argmax(lift), lift.shape)
        lines.append(f"| {layer['layer']} | {layer['mutual_information_bits']:.4f} | "
                     f"{layer['shuffled_mi_bits_mean']:.5f} | {layer['shuffled_mi_bits_max']:.5f} | "
                     f"parent {par}: {lift[lab, par]:.2f}x its mean share in {result['labels'][lab]} |")
    last = result["layers"][-1]
    lines += ["", f"Tokens that most select each parent in layer {last['layer']} (share of the token's occurrences "
              "that keep the parent; count):", "", "| parent | tokens |", "|---|---|"]
    for e, toks in last["top_tokens"].items():
        lines.append(f"| {e} | " + ", ".join(f"`{t['token']}` {t['rate']:.2f} ({t['count']})" for t in toks) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.analyze_parents", description=__doc__.split("\n")[0])
    p.add_argument("--artifact", required=True, help="a SPARTAN task artifact (run folder or task.safetensors)")
    p.add_argument("--texts", required=True, help="CSV/TSV with a text and a label column")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--out", required=True, help="PNG path; the JSON and markdown go beside it")
    p.add_argument("--max-examples", type=int, default=None)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--shuffles", type=int, default=20)
    p.add_argument("--min-count", type=int, default=20, help="tokens seen fewer times are not listed")
    p.add_argument("--top-tokens", type=int, default=6)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        model, tokenizer, meta = load_task(args.artifact)
        if meta["method"] != "spartan":
            raise UserError(f"{args.artifact} is a {meta['method']} task; parents exist only in spartan memories")
        texts, labels = read_texts(args.texts, args.text_column, args.label_column, args.max_examples)
        choices = parent_choices(model, tokenizer, texts, args.max_seq_length)
        result = analyse(choices, labels, tokenizer, args.shuffles, args.min_count, args.top_tokens)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    command = "python -m pipeline.analyze_parents " + " ".join(argv if argv is not None else sys.argv[1:])
    result.update(command=command, artifact=str(args.artifact), task=meta["task"]["name"],
                  artifact_metrics=meta["metrics"], memory=meta["options"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    heat_maps(result, out, f"{meta['task']['name']}: parent usage per topic (rows sum to 1), top-{result['top_k']} "
                           f"of {result['num_parents']} parents")
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    out.with_suffix(".md").write_text(markdown(result, command))
    print(f"wrote {out}, {out.with_suffix('.json')}, {out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
