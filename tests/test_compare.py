"""The comparison harness: every cell trained once, reports written, reruns skip finished cells."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def glue_folder(root: Path) -> Path:
    """A tiny GLUE-format SST-2 and RTE (same layout as the real files)."""
    words = [("a great and lovely film", 1), ("awful , dull and bad", 0), ("superb acting", 1), ("poor plot", 0)]
    sst = root / "SST-2"
    sst.mkdir(parents=True)
    for split, n in (("train", 24), ("dev", 8)):
        (sst / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(
            f"{words[i % 4][0]} \t{words[i % 4][1]}\n" for i in range(n)))
    rte = root / "RTE"
    rte.mkdir()
    for split, n in (("train", 24), ("dev", 8)):
        (rte / f"{split}.tsv").write_text("index\tsentence1\tsentence2\tlabel\n" + "".join(
            f"{i}\tit rains .\tit is wet .\t{'entailment' if i % 2 else 'not_entailment'}\n" for i in range(n)))
    return root


def compare(tmp_path, tiny_bert, *extra):
    argv = [sys.executable, "-m", "pipeline.compare", "--tasks", "sst2,rte", "--methods", "spartan,probe",
            "--model", tiny_bert, "--data-dir", str(tmp_path / "glue"), "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out"), "--batch-size", "8", "--max-seq-length", "16", "--epochs", "1", *extra]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True)


@pytest.mark.slow
def test_compare_runs_every_cell_and_resumes(tmp_path, tiny_bert):
    glue_folder(tmp_path / "glue")
    p = compare(tmp_path, tiny_bert, "--tasks", "sst2", "--seeds", "1")
    assert p.returncode == 0, p.stderr[-2000:]
    first = sorted((tmp_path / "runs").rglob("eval_results.json"))
    stamps = [r.stat().st_mtime_ns for r in first]
    assert len(first) == 2
    # Asking for a second seed trains only the new cells; the finished ones are kept as they were.
    p = compare(tmp_path, tiny_bert, "--tasks", "sst2", "--seeds", "2")
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stderr.count("done in") == 2
    assert [r.stat().st_mtime_ns for r in first] == stamps
    summary = json.loads((tmp_path / "out" / "compare_full.json").read_text())
    for method in ("spartan", "probe"):
        cell = summary["methods"][method]["tasks"]["sst2"]
        assert cell["seeds"] == 2 and 0 <= cell["mean"] <= 100 and cell["peak_rss_mb"] > 0
        assert summary["methods"][method]["average"] == cell["mean"]
    assert (tmp_path / "out" / "compare_full.png").stat().st_size > 1000
    assert "| spartan (lr 0.001) |" in (tmp_path / "out" / "compare_full.md").read_text()


@pytest.mark.slow
def test_compare_bad_input(tmp_path, tiny_bert):
    glue_folder(tmp_path / "glue")
    p = compare(tmp_path, tiny_bert, "--methods", "spartan,magic")
    assert p.returncode == 2 and "unknown method 'magic'" in p.stderr.strip().splitlines()[-1]
    p = compare(tmp_path, tiny_bert, "--tasks", "sst2,cola")
    assert p.returncode == 2 and "no CoLA/dev.tsv" in p.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_lr_sweep_in_parallel_feeds_the_comparison(tmp_path, tiny_bert):
    glue_folder(tmp_path / "glue")
    p = compare(tmp_path, tiny_bert, "--tasks", "sst2", "--methods", "spartan")  # before any sweep: lr 1e-3
    assert p.returncode == 0, p.stderr[-2000:]
    early = tmp_path / "runs" / "full" / "sst2" / "spartan" / "seed0" / "eval_results.json"
    stamp = early.stat().st_mtime_ns
    p = compare(tmp_path, tiny_bert, "--tasks", "sst2", "--lr-sweep", "--sweep-grid", "1e-4,1e-2",
                "--holdout", "8", "--jobs", "2", "--device", "cpu", "--threads", "1")
    assert p.returncode == 0, p.stderr[-2000:]
    sweep = json.loads((tmp_path / "out" / "lr_sweep_full.json").read_text())
    assert set(sweep["results"]) == {"spartan", "probe"}
    assert all(set(r) == {"0.0001", "0.01"} for r in sweep["results"].values())
    # Sweep cells are evaluated on the hold-out slice of train, never on dev.
    evaluated = {json.loads(f.read_text())["evaluated_on"]
                 for f in (tmp_path / "runs" / "lrsweep_full").rglob("train_results.json")}
    assert evaluated == {"8 examples held out of train"}
    p = compare(tmp_path, tiny_bert, "--tasks", "sst2", "--jobs", "2")
    # The cell trained before the sweep is kept as it was and reported, not silently mixed in or overwritten.
    assert p.returncode == 1 and "1 cell(s) failed: sst2/spartan" in p.stderr
    assert early.stat().st_mtime_ns == stamp
    summary = json.loads((tmp_path / "out" / "compare_full.json").read_text())
    assert summary["learning_rates"] == sweep["best"]
    assert summary["learning_rates_from"] == "lr_sweep_full.json"
    assert summary["methods"]["spartan"]["tasks"]["sst2"]["error"].startswith("trained at lr 0.001, not ")
    assert summary["methods"]["probe"]["tasks"]["sst2"]["seeds"] == 1
    # Another setting has no sweep yet: it falls back and says so. Nothing trained there: --report-only shows the
    # table and writes nothing.
    p = compare(tmp_path, tiny_bert, "--tasks", "sst2", "--max-train-samples", "16", "--report-only")
    assert p.returncode == 0 and "fallback" in p.stdout and "(not run)" in p.stdout and "nothing written" in p.stderr
    assert not (tmp_path / "out" / "compare_n16.json").exists()


def test_report_only_needs_no_data_and_keeps_committed_results(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    committed = {name: f"committed {name}" for name in ("compare_full.json", "compare_full.md")}
    for name, text in committed.items():
        (out / name).write_text(text)
    # no --data-dir, and a task whose data exists nowhere in a repo-only clone: nothing is trained, so none is needed
    argv = [sys.executable, "-m", "pipeline.compare", "--tasks", "sst2,mrpc", "--report-only", "--data-dir",
            str(tmp_path / "no-such-folder"), "--runs", str(tmp_path / "runs"), "--out", str(out)]
    p = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "nothing written" in p.stderr and "| spartan" in p.stdout
    assert {name: (out / name).read_text() for name in committed} == committed


@pytest.mark.slow
def test_authors_recipe_with_per_task_sweep(tmp_path, tiny_bert):
    """--recipe authors is its own setting (MLP head, trainable LayerNorms for spartan) and --sweep-task each gives
    every task its own rate, which the comparison then uses per task."""
    glue_folder(tmp_path / "glue")
    p = compare(tmp_path, tiny_bert, "--methods", "spartan", "--recipe", "authors", "--lr-sweep", "--sweep-task",
                "each", "--sweep-grid", "1e-4,1e-2", "--holdout", "8", "--threads", "1")
    assert p.returncode == 0, p.stderr[-2000:]
    sweep = json.loads((tmp_path / "out" / "lr_sweep_full_authors.json").read_text())
    assert set(sweep["best_per_task"]) == {"sst2", "rte"}
    assert all(set(r["spartan"]) == {"0.0001", "0.01"} for r in sweep["results"].values())
    p = compare(tmp_path, tiny_bert, "--methods", "spartan", "--recipe", "authors", "--threads", "1")
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "compare_full_authors.json").read_text())
    assert summary["recipe"] == "authors"
    assert summary["learning_rates_per_task"] == {t: {"spartan": best["spartan"]}
                                                  for t, best in sweep["best_per_task"].items()}
    for task in ("sst2", "rte"):
        cell = tmp_path / "runs" / "full_authors" / task / "spartan" / "seed0"
        results = json.loads((cell / "train_results.json").read_text())
        assert results["head"] == "mlp" and results["learning_rate"] == sweep["best_per_task"][task]["spartan"]
        from pipeline import read_metadata

        assert read_metadata(cell)["options"]["train_layernorms"] is True
