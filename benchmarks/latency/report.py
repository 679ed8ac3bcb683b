"""Turn a latency run into the goal checks, a markdown page and a PNG plot."""

from __future__ import annotations

import numpy as np

GOALS = {"et_fp32_over_eager": 0.67, "spartan_over_bare": 1.03, "spartan_added_over_houlsby_added": 0.5,
         "int8_over_fp32": 0.6}


def baseline_of(key: str) -> str:
    """'spartan/et-fp32' -> 'bare/et-fp32'; every entry is compared with the bare backbone on its own engine."""
    return f"bare/{key.rsplit('/', 1)[1]}"


def _med(result: dict, batch: str, seq: str, key: str) -> float | None:
    row = result["latency"].get(batch, {}).get(seq, {}).get(key)
    return row["median_ms"] if row else None


def summary(result: dict) -> dict:
    """The issue's goals at the longest batch-1 length (S=128 by default), each with its measured value."""
    seq = str(max(result["config"]["lengths"]))
    m = {k: _med(result, "b1", seq, k) for k in ("bare/et-fp32", "bare/eager", "spartan/et-fp32",
                                                  "houlsby/et-fp32", "bare/et-int8", "spartan/et-int8")}
    out: dict = {"seq": int(seq), "batch": 1, "medians_ms": m, "goals": {}}

    def goal(name: str, value: float | None, note: str) -> None:
        if value is not None:
            out["goals"][name] = {"value": round(value, 3), "limit": GOALS[name], "met": bool(value <= GOALS[name]),
                                  "what": note}

    if m["bare/et-fp32"] and m["bare/eager"]:
        goal("et_fp32_over_eager", m["bare/et-fp32"] / m["bare/eager"], "ExecuTorch fp32 bare / eager torch bare")
    row = result["latency"]["b1"][seq].get("spartan/et-fp32", {}).get("ratio_to_bare")
    if row:
        goal("spartan_over_bare", row["median"], "SPARTAN / bare on ExecuTorch fp32 (paired per round, median)")
    if m["spartan/et-fp32"] and m["houlsby/et-fp32"] and m["bare/et-fp32"]:
        added_h = m["houlsby/et-fp32"] - m["bare/et-fp32"]
        added_s = m["spartan/et-fp32"] - m["bare/et-fp32"]
        out["added_ms"] = {"spartan": round(added_s, 3), "houlsby": round(added_h, 3)}
        if added_h > 0:
            goal("spartan_added_over_houlsby_added", added_s / added_h,
                 "SPARTAN's added ms / Houlsby's added ms (ExecuTorch fp32, medians)")
    if m["bare/et-int8"] and m["bare/et-fp32"]:
        goal("int8_over_fp32", m["bare/et-int8"] / m["bare/et-fp32"], "bare int8 / bare fp32 on ExecuTorch")
        if m["spartan/et-int8"] and m["spartan/et-fp32"]:
            out["spartan_int8_over_fp32"] = round(m["spartan/et-int8"] / m["spartan/et-fp32"], 3)
    return out


def _fmt_ms(row: dict) -> str:
    s = f"{row['median_ms']:.2f} ({row['p10_ms']:.2f}-{row['p90_ms']:.2f})"
    r = row.get("ratio_to_bare")
    return s + (f" x{r['median']:.3f}" if r else "")


def markdown(result: dict, stem: str) -> str:
    cfg = result["config"]
    lines = [f"# On-device latency: {result['model']}", "",
             f"Measured {result['date']} with", "", "```bash", result["command"], "```", "",
             f"Machine: {result['machine']}. Load average {result['loadavg_start'][0]:.2f} at start, "
             f"{result['loadavg_end'][0]:.2f} at end; {cfg['threads']} threads for ExecuTorch and torch; "
             f"{cfg['runs']} rounds after {cfg['warmup']} warm-up rounds; every round runs every program once "
             "(random order, 5 ms pause after each call). Ratios (`xR`) are to the bare backbone on the same "
             "engine, taken per round and then the median. Raw numbers: `" + stem + ".json`.", ""]
    s = result.get("summary", {})
    if s.get("goals"):
        lines += [f"## Goals (S={s['seq']}, batch 1)", "", "| goal | measured | limit | met |", "|---|---|---|---|"]
        for g in s["goals"].values():
            lines.append(f"| {g['what']} | {g['value']:.3f} | {g['limit']} | {'yes' if g['met'] else 'no'} |")
        if "added_ms" in s:
            lines += ["", f"Added ms over bare: SPARTAN {s['added_ms']['spartan']:.2f}, Houlsby "
                          f"{s['added_ms']['houlsby']:.2f}."]
        if "spartan_int8_over_fp32" in s:
            lines += [f"SPARTAN int8 / fp32: {s['spartan_int8_over_fp32']:.3f}."]
        lines.append("")
    for batch, table in result["latency"].items():
        seqs = sorted(table, key=int)
        keys = list(next(iter(table.values())))
        b = int(batch[1:])
        title = "Latency, batch 1: median (p10-p90) ms, x ratio to bare" if b == 1 else \
            f"Throughput, batch {b}: sequences/s (median), and ms per batch"
        lines += [f"## {title}", "", "| program | " + " | ".join(f"S={q}" for q in seqs) + " |",
                  "|---|" + "---|" * len(seqs)]
        for k in keys:
            if b == 1:
                cells = [_fmt_ms(table[q][k]) for q in seqs]
            else:
                cells = [f"{b * 1000 / table[q][k]['median_ms']:.1f} seq/s; {_fmt_ms(table[q][k])}" for q in seqs]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Programs", "", "| program | bytes | delegate partitions | ops left outside XNNPACK | parity vs eager "
              "(max abs logit diff) | export s |", "|---|---|---|---|---|---|"]
    for k, p in result["programs"].items():
        left = ", ".join(f"{op.replace('aten_', '').replace('_default', '')} {n}"
                         for op, n in sorted(p["non_delegated_ops"].items()) if op not in ("getitem", "sym_size"))
        lines.append(f"| {k} | {p['bytes']:,} | {p['delegated_subgraphs']} | {left} | "
                     f"{p['parity_max_abs_logit_diff_vs_eager']:.1e} | {p['export_seconds']} |")
    lines += ["", "## Tasks: download and switch time", "",
              "Per-task download: SPARTAN's memory file (P, K, Vt + head, fp32); for Houlsby/Pfeiffer/LoRA the "
              "adapter weights + head as one safetensors file, which is what a task would cost *if* the program "
              "took them as inputs. In these programs they are constants, so switching task means loading another "
              "whole program (the switch column).", "",
              "| method | per-task download bytes | switch: what | fp32 load + first inference ms | "
              "int8 load + first inference ms |", "|---|---|---|---|---|"]
    for name, t in result["tasks"].items():
        sw = [t.get(f"switch_{p}") for p in ("fp32", "int8")]
        what = next((x["what"] for x in sw if x), "")
        cells = [f"{x['load_ms']:.1f} + {x['first_inference_ms']:.1f} = {x['total_ms']:.1f}" if x else "-" for x in sw]
        lines.append(f"| {name} | {t['download_bytes']:,} | {what} | {cells[0]} | {cells[1]} |")
    if result["rss"]:
        lines += ["", f"## Peak RSS (fresh process: load the program, run S={max(cfg['lengths'])} three times)", "",
                  "| program | runtime before load MB | peak MB | program's share MB |", "|---|---|---|---|"]
        for k, r in result["rss"].items():
            if "error" in r:
                lines.append(f"| {k} | error: {r['error']} | | |")
            else:
                lines.append(f"| {k} | {r['rss_before_load_mb']} | {r['peak_rss_mb']} | {r['program_peak_mb']} |")
    lines.append("")
    return "\n".join(lines)


def plot(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result["latency"]["b1"]
    seqs = sorted(table, key=int)
    keys = list(table[seqs[0]])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for k in keys:
        style = "--" if k.endswith("eager") else (":" if "int8" in k else "-")
        ax1.plot([int(q) for q in seqs], [table[q][k]["median_ms"] for q in seqs], style, marker="o", label=k)
    ax1.set_xlabel("sequence length (batch 1)")
    ax1.set_ylabel("median ms")
    ax1.set_xscale("log", base=2)
    ax1.set_title(f"{result['model']}: latency")
    ax1.legend(fontsize=7)
    last = table[seqs[-1]]
    ratios = [(k, last[k]["ratio_to_bare"]) for k in keys if "ratio_to_bare" in last[k]]
    y = np.arange(len(ratios))
    med = np.array([r["median"] for _, r in ratios])
    err = np.array([[r["median"] - r["p10"] for _, r in ratios], [r["p90"] - r["median"] for _, r in ratios]])
    ax2.barh(y, med, xerr=err, color=["#888" if k.startswith("bare") else "#4a7" for k, _ in ratios])
    ax2.axvline(1.0, color="k", lw=0.8)
    ax2.set_yticks(y, [k for k, _ in ratios], fontsize=8)
    ax2.set_xlabel(f"time / bare on the same engine, S={seqs[-1]} (median, p10-p90 of per-round ratios)")
    ax2.set_title("cost over the bare backbone")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
