"""End to end with the real export: train two tasks -> `python -m pipeline.export` -> publish the dist folder to a
real server -> the device client downloads the backbone once, runs task A, switches to task B fetching only B's
memory -> the ExecuTorch outputs equal eager PyTorch (pipeline.load_task). Task B joins the export afterwards with
`--into` (no re-export), as a new task would."""

from __future__ import annotations

import subprocess
import sys

import pytest
from edge_support import REPO, ServerProcess, publish

from apps.client import EdgeClient

MAX_SEQ = 32
TEXTS = ["a gripping, beautifully acted film", "dull and far too long", "superb movie plot"]


def run(*args: str) -> None:
    r = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, sentiment_csvs):
    root = tmp_path_factory.mktemp("e2e")
    run("-m", "pipeline.train", "--task", "sst2", "--max-train-samples", "64", "--max-seq-length", str(MAX_SEQ),
        "--output-dir", str(root / "sst2"))
    train, dev = sentiment_csvs
    run("-m", "pipeline.train", "--task", "mytask", "--train-file", train, "--validation-file", dev,
        "--max-train-samples", "64", "--max-seq-length", str(MAX_SEQ), "--output-dir", str(root / "mytask"))
    run("-m", "pipeline.export", "--target", "android", "--memories", str(root / "sst2"),
        "--out", str(root / "dist"), "--max-seq-length", str(MAX_SEQ), "--quiet")
    program = (root / "dist" / "android" / "backbone.pte").read_bytes()
    run("-m", "pipeline.export", "--memories", str(root / "mytask"), "--into", str(root / "dist"), "--quiet")
    assert (root / "dist" / "android" / "backbone.pte").read_bytes() == program
    return root


@pytest.mark.slow
def test_export_publish_client_matches_eager(exported, tmp_path):
    import torch

    from pipeline import load_task

    dist = exported / "dist"
    srv = ServerProcess(tmp_path / "instance")
    try:
        r = publish(srv.url, dist)
        assert r.returncode == 0, r.stderr
        client = EdgeClient(srv.url, tmp_path / "cache")
        backbone_bytes = sum(p.stat().st_size for p in (dist / "android").iterdir() if p.is_file())
        mem = {t: (dist / "android" / "memories" / f"{t}.safetensors").stat().st_size for t in ("sst2", "mytask")}

        a = client.predict("sst2", TEXTS[0])
        assert a.bytes_fetched == backbone_bytes + mem["sst2"]  # backbone once + task A's memory
        runtime = client.runtime
        b = client.predict("mytask", TEXTS[0])
        assert b.bytes_fetched == mem["mytask"]  # switching tasks: only B's memory crosses the network
        assert client.runtime is runtime  # and the loaded backbone program is reused

        for task in ("sst2", "mytask"):
            model, tok, meta = load_task(exported / task)
            for text in TEXTS:
                p = client.predict(task, text)
                assert p.bytes_fetched == 0
                enc = tok(text, truncation=True, max_length=MAX_SEQ, return_tensors="pt")
                assert enc["input_ids"][0].tolist() == client.runtime.tokenizer.encode(text).ids
                with torch.no_grad():
                    eager = model(enc["input_ids"], enc["attention_mask"])[0]
                assert torch.allclose(torch.tensor(p.logits), eager, atol=2e-4), (task, text, p.logits, eager)
                assert p.label == meta["task"]["label_names"][int(eager.argmax())]
    finally:
        srv.stop()
