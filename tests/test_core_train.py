"""Training end to end on small real data: artifacts, resume after a kill, frozen backbone, bad input."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pipeline.artifact import load_task, read_metadata, read_tensors, save_task
from pipeline.backbone import load_backbone
from pipeline.errors import UserError
from pipeline.train import build_parser, config_from_args
from pipeline.trainer import encode, train

REPO = Path(__file__).resolve().parent.parent


def _cli(out, model, csvs, *extra) -> list[str]:
    return ["--output-dir", str(out), "--model", model, "--train-file", csvs[0], "--validation-file", csvs[1],
            "--task", "sentiment", "--batch-size", "8", "--max-seq-length", "16", "--learning-rate", "3e-3", *extra]


def args_for(out, model, csvs, *extra):
    return config_from_args(build_parser().parse_args(_cli(out, model, csvs, *extra)))


def test_train_writes_artifact_and_results(tmp_path, tiny_bert, sentiment_csvs):
    result = train(args_for(tmp_path / "run", tiny_bert, sentiment_csvs, "--epochs", "2"))
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir()) == ["eval_results.json", "task.safetensors", "train_results.json"]
    evals = json.loads((out / "eval_results.json").read_text())
    assert set(evals) == {"eval_accuracy", "eval_samples"} and evals["eval_samples"] == 32
    meta = read_metadata(out)
    assert meta["task"] == {"name": "sentiment", "label_names": ["neg", "pos"], "is_regression": False}
    assert meta["method"] == "spartan" and meta["options"]["num_parents"] == 16
    assert meta["metrics"] == {k: v for k, v in evals.items() if k != "eval_samples"}
    # The artifact holds only what the task adds.
    assert set(read_tensors(out)) == {f"delta.{i}.{p}" for i in range(2) for p in ("P", "K", "Vt")} | {
        "head.weight", "head.bias"}
    assert result.steps == 24


def test_bf16_training_keeps_a_float32_artifact(tmp_path, tiny_bert, sentiment_csvs):
    losses = []
    train(args_for(tmp_path / "run", tiny_bert, sentiment_csvs, "--epochs", "2", "--bf16"),
          on_step=lambda step, loss: losses.append(loss))
    assert all(math.isfinite(x) for x in losses) and len(losses) == 24
    tensors = read_tensors(tmp_path / "run")
    assert {t.dtype for t in tensors.values()} == {torch.float32}
    assert json.loads((tmp_path / "run" / "train_results.json").read_text())["bf16"] is True


@pytest.fixture
def trained_backbone(monkeypatch):
    """Remembers the backbone object a training run loads, so a test can inspect it afterwards."""
    import pipeline.trainer as T

    seen = {}
    real = T.load_backbone
    monkeypatch.setattr(T, "load_backbone", lambda name: seen.setdefault("bb", real(name)))
    return seen


def test_backbone_is_bit_identical_after_training(tmp_path, tiny_bert, sentiment_csvs, trained_backbone):
    before = {k: v.clone() for k, v in load_backbone(tiny_bert)[0].state_dict().items()}
    train(args_for(tmp_path / "run", tiny_bert, sentiment_csvs))
    after = trained_backbone["bb"][0].state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_trained_layernorms_belong_to_the_task(tmp_path, tiny_bert, sentiment_csvs, trained_backbone):
    before = {k: v.clone() for k, v in load_backbone(tiny_bert)[0].state_dict().items()}
    train(args_for(tmp_path / "run", tiny_bert, sentiment_csvs, "--train-layernorms"))
    after = trained_backbone["bb"][0].state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("LayerNorm" in k for k in changed)  # only the LayerNorms moved...
    assert {f"backbone.{k}" for k in changed} <= set(read_tensors(tmp_path / "run"))  # ...and the artifact has them


def test_artifact_roundtrip_gives_identical_logits(tmp_path, tiny_bert, sentiment_csvs):
    train(args_for(tmp_path / "run", tiny_bert, sentiment_csvs))
    model, tok, meta = load_task(tmp_path / "run")
    model2, _, _ = load_task(tmp_path / "run" / "task.safetensors")
    from pipeline.data import Examples

    ex = Examples(["great movie", "awful plot dull"], None, [1, 0])
    inputs = encode(tok, ex, [0, 1], 16)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs), model2(**inputs), atol=0, rtol=0)
    # and it reproduces the metric recorded at training time
    from pipeline.data import load_user_files
    from pipeline.trainer import evaluate

    data = load_user_files(sentiment_csvs[0], sentiment_csvs[1], "text", None, "label", name="sentiment")
    assert evaluate(model, tok, data, 16)["eval_accuracy"] == meta["metrics"]["eval_accuracy"]


def test_mismatched_backbone_names_both_fingerprints(tmp_path, tiny_backbones, sentiment_csvs):
    train(args_for(tmp_path / "run", tiny_backbones["bert"], sentiment_csvs))
    other, _ = load_backbone(tiny_backbones["roberta"])
    want = read_metadata(tmp_path / "run")["backbone"]["fingerprint"]
    with pytest.raises(UserError) as e:
        load_task(tmp_path / "run", backbone=other)
    from pipeline.backbone import fingerprint

    assert want[:16] in str(e.value) and fingerprint(other)[:16] in str(e.value)


def test_corrupt_and_truncated_artifacts_are_refused(tmp_path, tiny_bert, sentiment_csvs):
    train(args_for(tmp_path / "run", tiny_bert, sentiment_csvs))
    good = (tmp_path / "run" / "task.safetensors").read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_task(bad)
    flipped = bytearray(good)
    flipped[-10] ^= 0xFF
    bad.write_bytes(bytes(flipped))
    with pytest.raises(UserError, match="corrupt"):
        load_task(bad)
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(UserError, match="not a readable task artifact"):
        load_task(bad)
    with pytest.raises(UserError, match="no task artifact"):
        load_task(tmp_path / "missing")


def test_save_is_atomic_when_the_write_crashes(tmp_path, tiny_bert, sentiment_csvs, monkeypatch):
    train(args_for(tmp_path / "run", tiny_bert, sentiment_csvs))
    path = tmp_path / "run" / "task.safetensors"
    original = path.read_bytes()
    model, _, meta = load_task(path)
    import safetensors.torch

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)  # save_task imports it at call time
    with pytest.raises(KeyboardInterrupt):
        save_task(model, path, backbone_id="x", backbone_fingerprint="y", metric="accuracy")
    assert path.read_bytes() == original
    assert sorted(p.name for p in path.parent.iterdir()) == ["eval_results.json", "task.safetensors",
                                                             "train_results.json"]


def test_resume_after_interruption_matches_uninterrupted(tmp_path, tiny_bert, sentiment_csvs):
    straight = train(args_for(tmp_path / "a", tiny_bert, sentiment_csvs, "--epochs", "2", "--save-steps", "5"))

    class Killed(Exception):
        pass

    def die(step, loss):
        if step == 13:  # mid-epoch, 3 steps after the last checkpoint
            raise Killed

    args = args_for(tmp_path / "b", tiny_bert, sentiment_csvs, "--epochs", "2", "--save-steps", "5")
    with pytest.raises(Killed):
        train(args, on_step=die)
    assert (tmp_path / "b" / "checkpoint.pt").exists() and not (tmp_path / "b" / "task.safetensors").exists()
    with pytest.raises(UserError, match="--resume"):
        train(args)
    resumed = train(dataclasses.replace(args, resume=True))
    assert resumed.metrics == straight.metrics
    a, b = read_tensors(tmp_path / "a"), read_tensors(tmp_path / "b")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)
    assert not (tmp_path / "b" / "checkpoint.pt").exists()


@pytest.mark.slow
def test_sigkill_mid_training_then_resume(tmp_path, tiny_bert, sentiment_csvs):
    """A real process killed with SIGKILL right after its first checkpoint finishes like an uninterrupted run."""
    common = ["--epochs", "6", "--save-steps", "3"]
    ref = train(args_for(tmp_path / "ref", tiny_bert, sentiment_csvs, *common))
    argv = [sys.executable, "-m", "pipeline.train", *_cli(tmp_path / "run", tiny_bert, sentiment_csvs, *common)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "the run finished or failed before it could be killed"
    assert not (tmp_path / "run" / "task.safetensors").exists()
    done = subprocess.run(argv + ["--resume"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from step" in done.stderr
    assert json.loads((tmp_path / "run" / "eval_results.json").read_text())["eval_accuracy"] == \
        ref.metrics["eval_accuracy"]
    a, b = read_tensors(tmp_path / "ref"), read_tensors(tmp_path / "run")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path):
    def run(*argv):
        p = subprocess.run([sys.executable, "-m", "pipeline.train", "--output-dir", str(tmp_path / "x"), *argv],
                           cwd=REPO, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        return p.returncode, p.stderr.strip().splitlines()[-1]

    code, line = run("--task", "qqp")
    assert code == 2 and line.startswith("error: unknown task 'qqp'")
    code, line = run("--method", "magic")
    assert code == 2 and "unknown method 'magic'" in line
    code, line = run("--device", "nonsense")
    assert code == 2 and line.startswith("error: --device 'nonsense'")
    if not torch.cuda.is_available():
        code, line = run("--device", "cuda")
        assert code == 2 and "no CUDA device" in line


def test_config_errors_are_one_line_and_help_imports_no_torch(tmp_path):
    def run(*argv):
        p = subprocess.run([sys.executable, "-m", "pipeline.train", "--output-dir", str(tmp_path / "x"), *argv],
                           cwd=REPO, capture_output=True, text=True)
        return p.returncode, p.stderr.strip().splitlines()[-1]

    code, line = run("--epochs", "0")
    assert code == 2 and line == "error: --epochs must be > 0, got 0"
    code, line = run("--top-k", "99")
    assert code == 2 and line.startswith("error: SPARTAN memory options: top_k must be in 1..num_parents (16)")
    assert not (tmp_path / "x").exists()
    probe = ("import sys, pipeline.train, pipeline.compare, benchmarks.compare, mobile_export.cli; "
             "[m.build_parser() for m in (pipeline.train, benchmarks.compare, mobile_export.cli)]; "
             "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stderr
    for module in ("pipeline.train", "pipeline.compare", "pipeline.export"):
        p = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True)
        assert p.returncode == 0 and "usage: python -m" in p.stdout


def test_train_config_is_the_api(tmp_path, tiny_bert, sentiment_csvs):
    from pipeline.config import TrainConfig
    from pipeline.spartan.config import SpartanConfig

    cfg = TrainConfig(output_dir=str(tmp_path / "run"), task="sentiment", model=tiny_bert, train_file=sentiment_csvs[0],
                      validation_file=sentiment_csvs[1], max_seq_length=16, epochs=0.25,
                      spartan=SpartanConfig(num_parents=4, top_k=2))
    assert cfg == config_from_args(build_parser().parse_args(
        ["--output-dir", cfg.output_dir, "--task", "sentiment", "--model", tiny_bert, "--train-file", sentiment_csvs[0],
         "--validation-file", sentiment_csvs[1], "--max-seq-length", "16", "--epochs", "0.25", "--num-parents", "4",
         "--top-k", "2"]))
    result = train(cfg)
    assert result.steps == 3 and read_metadata(tmp_path / "run")["options"]["num_parents"] == 4
    with pytest.raises(UserError, match="unknown method 'magic'"):
        TrainConfig(output_dir="x", method="magic")


def test_cli_summary_lists_outputs_and_hints_when_unsure(tmp_path, tiny_bert, sentiment_csvs, capsys):
    from pipeline.train import main

    argv = _cli(tmp_path / "run", tiny_bert, sentiment_csvs, "--epochs", "0.25")
    argv[argv.index("--learning-rate") + 1] = "1e-7"  # learns nothing: the loss stays at guessing (ln 2)
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("sentiment/spartan: accuracy ")
    assert f"{tmp_path / 'run' / 'task.safetensors'}  (" in out and " bytes)" in out
    assert re.search(r"hint: the training loss is still 0\.[67]\d \(guessing is 0\.69\)", err) and "--epochs 3" in err
