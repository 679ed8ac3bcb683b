"""Data loading: GLUE files (with their layout quirks), user files, and every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SHARED_GLUE, write_csv

from pipeline.data import load_glue, load_hub, load_user_files
from pipeline.errors import UserError
from pipeline.metrics import compute_metrics

REPO = Path(__file__).resolve().parent.parent
needs_shared = pytest.mark.skipif(not SHARED_GLUE.is_dir(), reason="../shared/data/glue is not present")


def test_vendored_sst2_is_complete():
    import hashlib

    sums = {"dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
            "train.tsv.gz": "1c4843303462f8f93e006ff618a9e61d207468cafd030046d7d7fd6b78af342b"}  # data/README.md
    for name, want in sums.items():
        assert hashlib.sha256((REPO / "data" / "glue" / "SST-2" / name).read_bytes()).hexdigest() == want
    d = load_glue("sst2", REPO / "data" / "glue")
    assert (len(d.train), len(d.validation)) == (67_349, 872)
    assert d.spec.label_names == ["negative", "positive"] and d.metric == "accuracy"
    assert sum(d.validation.labels) == 444 and d.train.text_b is None


@needs_shared
@pytest.mark.parametrize("task,sizes,pair", [
    ("mrpc", (3_668, 408), True), ("rte", (2_490, 277), True), ("cola", (8_551, 1_043), False),
    ("stsb", (5_749, 1_500), True),
])
def test_shared_glue_tasks(task, sizes, pair):
    d = load_glue(task, SHARED_GLUE)
    assert (len(d.train), len(d.validation)) == sizes
    assert (d.train.text_b is not None) == pair
    if task == "stsb":
        assert d.spec.is_regression and 0.0 <= min(d.train.labels) and max(d.train.labels) <= 5.0
    if task == "mrpc":
        assert not d.train.text_a[0].startswith("\\ufeff") and sum(d.validation.labels) == 279
    if task == "cola":
        assert sum(d.validation.labels) == 721


def test_metrics_follow_glue():
    import numpy as np

    m = compute_metrics("f1_accuracy", np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]))
    assert m["accuracy"] == 0.75 and m["f1"] == pytest.approx(0.8) and m["combined_score"] == pytest.approx(0.775)
    assert compute_metrics("matthews", np.array([1, 0, 1, 0]), np.array([1, 0, 1, 0]))["matthews_correlation"] == 1.0
    s = compute_metrics("pearson_spearman", np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0]))
    assert s["spearmanr"] == pytest.approx(1.0) and 0.98 < s["pearson"] < 1.0


def test_user_files_csv_tsv_jsonl_with_string_labels(tmp_path):
    rows = [("good film", "yes"), ("bad film", "no"), ("fine", "maybe")]
    csv = write_csv(tmp_path / "a.csv", rows, ("review", "verdict"))
    tsv = tmp_path / "a.tsv"
    tsv.write_text("review\tverdict\n" + "".join(f'{a} "quoted\t{b}\n' for a, b in rows))
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("".join(json.dumps({"review": a, "verdict": b}) + "\n" for a, b in rows))
    for f in (csv, tsv, jsonl):
        d = load_user_files(str(f), str(f), "review", None, "verdict")
        assert d.spec.label_names == ["maybe", "no", "yes"] and d.train.labels == [2, 1, 0]
    assert load_user_files(str(tsv), str(tsv), "review", None, "verdict").train.text_a[0] == 'good film "quoted'


def test_user_regression_and_pairs(tmp_path):
    f = write_csv(tmp_path / "r.csv", [("a", "b", 0.5), ("c", "d", 4.25)], ("s1", "s2", "score"))
    d = load_user_files(str(f), str(f), "s1", "s2", "score")
    assert d.spec.is_regression and d.metric == "pearson_spearman" and d.train.text_b == ["b", "d"]


@pytest.mark.parametrize("problem,match", [
    ("missing_column", "has no column 'text'; its columns are"),
    ("empty", "no examples"),
    ("unknown_label", "label 'maybe' is not one of the task's labels"),
    ("nan_target", "regression target is missing or nan"),
    ("bad_target", "is not a number"),
    ("missing_file", "data file not found"),
    ("bad_suffix", "unsupported file type"),
])
def test_bad_user_data(tmp_path, problem, match):
    good = write_csv(tmp_path / "good.csv", [("x", "pos"), ("y", "neg")], ("text", "label"))
    kw = dict(text_column="text", text_pair_column=None, label_column="label")
    train, val = str(good), str(good)
    if problem == "missing_column":
        train = str(write_csv(tmp_path / "t.csv", [("x", "pos")], ("sentence", "label")))
    elif problem == "empty":
        (tmp_path / "e.csv").write_text("text,label\n")
        val = str(tmp_path / "e.csv")
    elif problem == "unknown_label":
        val = str(write_csv(tmp_path / "v.csv", [("x", "maybe")], ("text", "label")))
    elif problem in ("nan_target", "bad_target"):
        val_rows = [("x", "nan")] if problem == "nan_target" else [("x", "lots")]
        train = str(write_csv(tmp_path / "t.csv", [("x", "0.5"), ("y", "1.5")], ("text", "label")))
        val = str(write_csv(tmp_path / "v.csv", val_rows, ("text", "label")))
        kw["task_type"] = "regression"
    elif problem == "missing_file":
        val = str(tmp_path / "nope.csv")
    elif problem == "bad_suffix":
        (tmp_path / "d.parquet").write_text("x")
        val = str(tmp_path / "d.parquet")
    with pytest.raises(UserError, match=match):
        load_user_files(train, val, **kw)


def test_unknown_task_and_missing_glue_folder(tmp_path):
    with pytest.raises(UserError, match="unknown task 'mnli'"):
        load_glue("mnli")
    with pytest.raises(UserError, match="pass --data-dir"):
        load_glue("rte", tmp_path)


def test_hub_offline_fails_fast_naming_the_local_alternative(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="--data-dir ../shared/data/glue"):
        load_hub("rte")


@pytest.mark.slow
def test_hub_without_network_fails_fast(tmp_path):
    """With the offline switch unset, the real download path runs and fails (no network here) with the hint."""
    env = {k: v for k, v in __import__("os").environ.items() if not k.endswith("_OFFLINE")}
    env["HF_HOME"] = str(tmp_path / "hf")  # no cached copy to fall back on
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "pipeline.train", "--task", "rte", "--hub", "--output-dir",
                        str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2, p.stderr[-1500:]
    assert "--data-dir ../shared/data/glue" in p.stderr.strip().splitlines()[-1]
    assert time.time() - t0 < 90


def test_errors_name_the_file_line(tmp_path):
    rows = [("fine film", "pos")] * 50 + [("odd", "maybe")]  # the bad row is the 52nd line (after the header)
    path = write_csv(tmp_path / "v.csv", rows, ("text", "label"))
    good = write_csv(tmp_path / "t.csv", [("x", "pos"), ("y", "neg")], ("text", "label"))
    with pytest.raises(UserError, match=r"v\.csv line 52: label 'maybe'"):
        load_user_files(str(good), str(path), "text", None, "label")
    jsonl = tmp_path / "v.jsonl"
    jsonl.write_text('{"text": "a", "label": "pos"}\n{"text": "b", "label": "maybe"}\n')
    with pytest.raises(UserError, match=r"v\.jsonl line 2:"):
        load_user_files(str(good), str(jsonl), "text", None, "label")


def test_missing_glue_task_names_every_place_looked(monkeypatch, tmp_path):
    import pipeline.data as D

    monkeypatch.setattr(D, "REPO_DATA", tmp_path / "repo" / "data" / "glue")
    monkeypatch.setattr(D, "SHARED_DATA", tmp_path / "shared" / "data" / "glue")
    (tmp_path / "repo" / "data" / "glue").mkdir(parents=True)
    with pytest.raises(UserError) as e:
        load_glue("mrpc")
    msg = str(e.value)
    assert str(tmp_path / "repo" / "data" / "glue" / "MRPC" / "dev.tsv") in msg
    assert str(tmp_path / "shared" / "data" / "glue" / "MRPC" / "dev.tsv") in msg and "does not exist" in msg
    assert "--data-dir" in msg and "--hub" in msg
