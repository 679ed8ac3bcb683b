"""The fast export graph (mobile_export.encoder + the delegated memory read) and the latency benchmark
(benchmarks/latency, run as apps.latency).

Tiny random encoders only: parity of the new graph with eager pipeline models (in torch and in the ExecuTorch
runtime), that XNNPACK takes it in few pieces, and that `python -m apps.latency` runs end to end and refuses bad
arguments with one clear line.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.latency.__main__ import main as latency_main
from mobile_export import android
from mobile_export.model import (
    _DROP,
    EdgeModel,
    MemoryShape,
    memory_constants,
    spartan_delegated,
    spartan_dense,
    top_k_drop,
)
from mobile_export.parity import NEAR_TIE, top_k_margin
from pipeline import TaskModel, TaskSpec
from pipeline.backbone import load_backbone
from pipeline.spartan import SpartanConfig
from pipeline.spartan.layer import top_k_mask

REPO = Path(__file__).resolve().parent.parent


def spartan_pair(folder: str, seed: int = 0, fast: bool = True):
    """(eager SPARTAN TaskModel with strong random memories, EdgeModel on a clean copy, memory inputs)."""
    backbone, tokenizer = load_backbone(folder)
    torch.manual_seed(seed)
    model = TaskModel(copy.deepcopy(backbone), "spartan", SpartanConfig().to_dict(), TaskSpec("t", ["a", "b"])).eval()
    with torch.no_grad():
        for m in model.delta:
            m.Vt.normal_(std=0.5)
        model.head.weight.normal_()
    cfg, H = SpartanConfig(), backbone.config.hidden_size
    shape = MemoryShape(len(model.delta), cfg.num_parents, cfg.num_children, cfg.top_k, cfg.temperature, H)
    sep = tokenizer.sep_token_id if "token_type_ids" in tokenizer.model_input_names else None
    edge = EdgeModel(backbone, shape, sep, fast=fast)
    w, b = model.head.weight.detach(), model.head.bias.detach()
    inputs = [torch.stack([getattr(m, n).detach() for m in model.delta]) for n in ("P", "K", "Vt")]
    inputs += [torch.cat([w, torch.zeros(6, H)]), torch.cat([b, torch.zeros(6)])]
    return model, edge, inputs, tokenizer


def test_top_k_drop_is_pipelines_top_k_with_ties():
    torch.manual_seed(0)
    e = 16
    for k in (1, 8, 15, 16):
        consts = memory_constants(MemoryShape(1, e, 3, k, 1.6, 8))
        for trial in range(60):
            x = torch.randn(32, e) * 10.0 ** (trial % 7 - 3)
            if trial % 2:
                x = torch.round(x * 4) / 4  # many exact ties
            drop = top_k_drop(x, consts)
            keep = top_k_mask(x, k)
            assert torch.equal(drop == 0, keep) and bool((drop[~keep] <= -_DROP).all())
            # the softmax over kept parents is bit-identical to masking with -inf
            assert torch.equal(torch.softmax(x + drop, -1), torch.softmax(x.masked_fill(~keep, float("-inf")), -1))


def test_delegated_read_is_the_dense_read_even_with_extreme_child_logits():
    """The child softmax as 1 / sum exp(differences): same values, including where one child's logit is far above its
    siblings (plain exp would overflow) and where whole parents are tied."""
    torch.manual_seed(0)
    shape = MemoryShape(1, 16, 3, 8, 1.6, 24)
    consts = memory_constants(shape)
    for scale in (0.1, 1.0, 100.0):
        h = torch.randn(2, 10, 24)
        P, K, Vt = torch.randn(16, 24), torch.randn(48, 24) * scale, torch.randn(24, 48)
        P[5] = P[3]  # a tie between two parents on every token
        want = spartan_dense(h, P, K, Vt, shape)
        got = spartan_delegated(h, P, K / shape.temperature, Vt, consts)
        torch.testing.assert_close(got, want, atol=1e-5 * max(1.0, scale), rtol=1e-5)


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_edge_model_matches_eager_task_model(tiny_backbones, kind):
    """Fast forward for BERT/RoBERTa, Hugging Face forward + hooks for DistilBERT; padded batches included."""
    model, edge, inputs, tok = spartan_pair(tiny_backbones[kind])
    assert edge.fast == (kind != "distilbert")
    enc = tok(["a gentle and moving film", "flat", "the plot holds"], ["it is", "no", "yes"], padding=True,
              return_tensors="pt")
    with torch.no_grad():
        want = model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
        got = edge(enc["input_ids"], enc["attention_mask"], *inputs)[:, :2]
        with edge.coreml_ops():  # the form the Core ML package is converted from
            got_coreml = edge(enc["input_ids"], enc["attention_mask"], *inputs)[:, :2]
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)
    torch.testing.assert_close(got_coreml, want, atol=2e-5, rtol=0)


@pytest.mark.slow
def test_fast_program_is_one_delegate_and_matches_in_executorch(tiny_bert, tmp_path):
    from executorch.runtime import Runtime

    model, edge, inputs, tok = spartan_pair(tiny_bert, seed=1)
    edge_fast = android.lower_edge(android.export_program(edge, 8, 32))
    summary = android.delegation_summary(edge_fast)
    # everything after the embedding gathers and token-type derivation is one XNNPACK piece (the embedding sum is a
    # second): no LayerNorm, reshape, mask or top-k op is left to the portable kernels
    assert summary["delegated_subgraphs"] <= 2, summary
    left = set(summary["non_delegated_ops"])
    for op in ("native_layer_norm", "view_copy", "where", "logical", "gt_tensor", "eq_tensor", "bmm", "softmax",
               "linear", "mm"):
        assert not any(op in name for name in left), (op, left)
    pte = tmp_path / "fast.pte"  # a file: a program loaded from a temporary bytes object outlives its buffer
    pte.write_bytes(edge_fast.to_executorch().buffer)
    method = Runtime.get().load_program(str(pte)).load_method("forward")
    for text in ("a gentle and moving film", "flat and dull from start to finish , sadly"):
        enc = tok(text, return_tensors="pt")
        if top_k_margin(model, dict(enc)) < NEAR_TIE:
            continue
        got = method.execute([enc["input_ids"], enc["attention_mask"], *inputs])[0][:, :2]
        with torch.no_grad():
            want = model(**enc)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_latency_script_end_to_end(tiny_bert, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "apps.latency", "--model", tiny_bert, "--methods", "spartan,lora",
           "--precisions", "fp32", "--lengths", "8,16", "--batch", "2", "--throughput-lengths", "8", "--runs", "2",
           "--warmup", "1", "--out", str(out), "--name", "tiny"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[latency" in r.stderr  # progress on stderr
    data = json.loads((out / "tiny.json").read_text())
    b1 = data["latency"]["b1"]
    assert set(b1) == {"8", "16"} and set(data["latency"]["b2"]) == {"8"}
    assert {"bare/et-fp32", "spartan/et-fp32", "lora/et-fp32", "bare/eager", "spartan/eager"} <= set(b1["16"])
    row = b1["16"]["spartan/et-fp32"]
    assert row["p10_ms"] <= row["median_ms"] <= row["p90_ms"] and row["ratio_to_bare"]["median"] > 0
    assert b1["16"]["bare/et-fp32"]["ratio_to_bare"]["median"] == 1.0
    for key, prog in data["programs"].items():
        assert prog["bytes"] > 0 and prog["parity_max_abs_logit_diff_vs_eager"] < 1e-4, key
    assert data["tasks"]["spartan"]["download_bytes"] > 0 and data["tasks"]["lora"]["switch_fp32"]["total_ms"] > 0
    assert data["rss"]["spartan/et-fp32/b1"]["peak_rss_mb"] > 0
    assert "et_fp32_over_eager" in data["summary"]["goals"] and "spartan_over_bare" in data["summary"]["goals"]
    md = (out / "tiny.md").read_text()
    assert data["command"] in md and "| spartan/et-fp32 |" in md and "## Goals" in md
    assert (out / "tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["--methods", "spartan,adapter"], "--methods: unknown 'adapter'"),
    (["--precisions", "fp16"], "--precisions: unknown 'fp16'"),
    (["--lengths", "16,1024"], "sequence lengths must be in 2..512"),
    (["--lengths", "sixteen"], "--lengths: expected comma-separated integers"),
    (["--runs", "0"], "--runs must be >= 1"),
    (["--batch", "1"], "--batch is the throughput batch size"),
    (["--model", "/nonexistent/model"], "not minilm, roberta-base-random or a folder"),
])
def test_latency_bad_arguments(args, message, capsys, tmp_path):
    assert latency_main([*args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "r").exists()
