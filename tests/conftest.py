"""Shared fixtures: tiny random encoders of each supported family, saved like real checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import spartan_toolchain  # noqa: E402  (torch-free; before any test imports torchao or coremltools)

spartan_toolchain.install()

REPO = Path(__file__).resolve().parent.parent
SHARED_GLUE = REPO.parent / "shared" / "data" / "glue"


def _save_tiny(kind: str, folder: Path) -> Path:
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertModel,
        DistilBertConfig,
        DistilBertModel,
        RobertaConfig,
        RobertaModel,
    )

    from pipeline.backbone import default_backbone

    torch.manual_seed(0)
    if kind == "bert":
        model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=37, max_position_embeddings=130), add_pooling_layer=False)
    elif kind == "roberta":
        model = RobertaModel(RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                           intermediate_size=37, max_position_embeddings=132, vocab_size=30522,
                                           pad_token_id=0), add_pooling_layer=False)
    elif kind == "distilbert":
        model = DistilBertModel(DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=37,
                                                 max_position_embeddings=130))
    else:
        raise ValueError(kind)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(default_backbone()).save_pretrained(folder)  # a real WordPiece vocabulary
    return folder


@pytest.fixture(scope="session")
def tiny_backbones(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny")
    return {kind: str(_save_tiny(kind, root / kind)) for kind in ("bert", "roberta", "distilbert")}


@pytest.fixture(scope="session")
def tiny_bert(tiny_backbones) -> str:
    return tiny_backbones["bert"]


def write_csv(path: Path, rows: list[tuple], header: tuple) -> Path:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def sentiment_csvs(tmp_path_factory) -> tuple[str, str]:
    """A small two-class task with string labels, learnable from words."""
    import random

    rng = random.Random(0)
    good, bad = ["great", "lovely", "superb", "fine", "good"], ["awful", "bad", "poor", "dull", "terrible"]
    def rows(n):
        out = []
        for _ in range(n):
            pos = rng.random() < 0.5
            words = rng.sample(good if pos else bad, 2) + ["movie", "plot"]
            rng.shuffle(words)
            out.append((" ".join(words), "pos" if pos else "neg"))
        return out
    d = tmp_path_factory.mktemp("csv")
    return (str(write_csv(d / "train.csv", rows(96), ("text", "label"))),
            str(write_csv(d / "dev.csv", rows(32), ("text", "label"))))


@pytest.fixture(scope="module")
def server(tmp_path_factory, dist):
    """A real demo server process on a loopback port with the requesting module's `dist` published."""
    from edge_support import ServerProcess, publish

    srv = ServerProcess(tmp_path_factory.mktemp("srv") / "instance")
    r = publish(srv.url, dist)
    assert r.returncode == 0, r.stderr
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def postgres_cluster():
    """One throwaway PostgreSQL cluster (initdb + postgres on a loopback port) for the session; each server gets
    its own database in it. Skipped only where PostgreSQL's binaries or the driver are missing."""
    from demo_server.localstack import Postgres, postgres_bindir

    if postgres_bindir() is None:
        pytest.skip("PostgreSQL binaries (initdb, postgres) not installed: apt-get install postgresql")
    pytest.importorskip("psycopg", reason="psycopg not installed: pip install 'psycopg[binary]'")
    pg = Postgres(durable=False)
    pg.databases = 0
    yield pg
    pg.stop()


def new_postgres_database(cluster) -> str:
    cluster.databases += 1
    return cluster.create_database(f"test{cluster.databases}")


def nginx_available() -> bool:
    import shutil

    return bool(shutil.which("nginx") or os.access("/usr/sbin/nginx", os.X_OK))


# The deployments the HTTP suites (test_server.py, test_delivery.py) run against: the embedded default (SQLite, one
# gunicorn), the registry on PostgreSQL, and the scaled-out stack (two gunicorn instances on one PostgreSQL and one
# blob folder behind nginx, which sends the file bodies by X-Accel-Redirect).
DEPLOYMENTS = ["sqlite", "postgresql", "nginx-2x-postgresql"]


def deployed_server(request, tmp_path_factory, dist):
    """Body of a module's parametrized `server` fixture: start request.param's deployment, publish `dist`."""
    from edge_support import TOKEN, ServerProcess, publish

    from demo_server.localstack import Stack

    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    if kind == "sqlite":
        srv = ServerProcess(root / "instance")
    else:
        database = new_postgres_database(request.getfixturevalue("postgres_cluster"))
        if kind == "postgresql":
            srv = ServerProcess(root / "instance", env={"SPARTAN_EDGE_DATABASE": database})
        else:
            if not nginx_available():
                pytest.skip("nginx not installed: apt-get install nginx")
            srv = Stack(root, instances=2, token=TOKEN, database=database, workers=1)
    try:
        r = publish(srv.url, dist)
        assert r.returncode == 0, r.stderr
        yield srv
    finally:
        srv.stop()
