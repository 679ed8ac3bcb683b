"""Helpers for the server/client tests: fixture export folders (numpy + safetensors), a real server process on a
loopback port, a toy ExecuTorch program with the backbone's input contract, and small fault-injecting HTTP servers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from safetensors.numpy import save as st_save

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `apps` and `demo_server` import from the checkout, installed or not
    sys.path.insert(0, str(REPO))
from demo_server.localstack import Gunicorn, free_port  # noqa: E402, F401 - free_port is re-exported for tests
from spartan_formats.memory import MEMORY_METADATA_KEY, memory_metadata  # noqa: E402

TOKEN = "test-token-0123456789"
FP = "a" * 64
OTHER_FP = "b" * 64
SHAPE = {"num_layers": 2, "num_parents": 4, "num_children": 3, "top_k": 2, "temperature": 1.0, "hidden_size": 8}
MAX_LABELS = 4
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "movie", "great", "awful", "the", "a", "is", "not"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def memory_bytes(task: str, labels: list[str] | None = None, *, fp: str = FP, shape: dict | None = None,
                 dtype: str = "fp32", is_regression: bool = False, seed: int = 0, pad_to: int | None = MAX_LABELS,
                 nan: bool = False, tensor_shapes: dict | None = None, meta_overrides: dict | None = None) -> bytes:
    """A memory file in the contract format: P [L,E,H], K [L,E*C,H], Vt [L,H,E*C], head_weight [O,H], head_bias [O]."""
    labels = ["negative", "positive"] if labels is None and not is_regression else (labels or [])
    s = {**SHAPE, **(shape or {})}
    L, E, C, H = s["num_layers"], s["num_parents"], s["num_children"], s["hidden_size"]
    n_out = 1 if is_regression else len(labels)
    O = pad_to or n_out  # noqa: E741
    rng = np.random.default_rng(seed)
    dt = np.float16 if dtype in ("fp16", "float16") else np.float32
    shapes = {"P": (L, E, H), "K": (L, E * C, H), "Vt": (L, H, E * C), "head_weight": (O, H), "head_bias": (O,)}
    shapes.update(tensor_shapes or {})
    tensors = {k: (rng.standard_normal(v) * 0.5).astype(dt) for k, v in shapes.items()}
    if O > n_out:  # padded outputs are zero; the client keeps only the first n_out logits
        tensors["head_weight"][n_out:] = 0
        tensors["head_bias"][n_out:] = 0
    if nan:
        tensors["K"].flat[3] = np.nan
    meta = memory_metadata(task=task, label_names=labels, is_regression=is_regression, max_labels=MAX_LABELS,
                           metric="accuracy", backbone_fingerprint=fp, memory_shape=s, dtype=dtype)
    meta.update(meta_overrides or {})
    # written without the formats writer's checks: tests also need files the readers must refuse
    return st_save(tensors, metadata={MEMORY_METADATA_KEY: json.dumps(meta)})


def tokenizer_json() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                                ("[SEP]", 3)])
    return tok.to_str()


def make_dist(root: Path, tasks: dict[str, dict] | None = None, *, fp: str = FP, pte: bytes | None = None,
              targets: tuple[str, ...] = ("android", "ios")) -> Path:
    """An export folder in the dist/ contract. `tasks` maps name -> memory_bytes kwargs."""
    tasks = tasks if tasks is not None else {"sst2": {}, "rte": {"labels": ["entailment", "not_entailment"]}}
    root.mkdir(parents=True, exist_ok=True)
    man = {"format_version": 1,
           "backbone": {"id": "toy", "fingerprint": fp, "hidden_size": SHAPE["hidden_size"],
                        "num_layers": SHAPE["num_layers"], "memory_shape": SHAPE, "max_seq_length": 32,
                        "max_labels": MAX_LABELS},
           "targets": {}, "tasks": {}}

    def write(rel: str, data: bytes) -> dict:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return {"path": rel, "sha256": sha256(data), "bytes": len(data)}

    tok = tokenizer_json().encode()
    for target in targets:
        program = f"{target}/backbone.pte" if target == "android" else f"{target}/backbone.mlpackage.zip"
        blob = (pte or b"toy program " * 100) if target == "android" else b"PK toy mlpackage " * 50
        files = [write(program, blob), write(f"{target}/tokenizer.json", tok)]
        man["targets"][target] = {"files": files, "program": program,
                                  "inputs": ["input_ids", "attention_mask", "P", "K", "Vt", "head_weight",
                                             "head_bias"],
                                  "outputs": ["logits"], "quantize": None}
    for task, kw in tasks.items():
        data = memory_bytes(task, **kw)
        entry = {"label_names": kw.get("labels", ["negative", "positive"]), "is_regression": False,
                 "metric": "accuracy", "metrics": {}, "backbone_fingerprint": kw.get("fp", fp), "files": {}}
        for target in targets:
            entry["files"][target] = {**write(f"{target}/memories/{task}.safetensors", data),
                                      "dtype": kw.get("dtype", "fp32")}
        man["tasks"][task] = entry
    (root / "manifest.json").write_text(json.dumps(man, indent=1))
    return root


class ServerProcess(Gunicorn):
    """gunicorn (2 workers, threads) serving demo_server from `instance` on a loopback port; `env` adds
    SPARTAN_EDGE_* settings (another database, offload)."""

    def __init__(self, instance: Path, token: str | None = TOKEN, workers: int = 2, threads: int = 4,
                 env: dict[str, str] | None = None, port: int | None = None) -> None:
        super().__init__(instance, env, token, workers, threads, port=port)

    def crash(self) -> None:
        """kill -9 the master and every worker at once (a power cut, an OOM kill)."""
        self.kill()


def publish(url: str, dist: Path, token: str = TOKEN) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "demo_server", "publish", str(dist), "--server", url,
                           "--token", token], cwd=REPO, capture_output=True, text=True, timeout=120)


def raw_get(port: int, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """An HTTP/1.1 GET with the path sent byte-for-byte (requests would normalise '../' away)."""
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.putrequest("GET", path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


# --- a toy ExecuTorch program with the backbone's input contract, for client tests without the real export ---

def toy_pte(cache_dir: Path) -> bytes:
    """forward(input_ids, attention_mask, P, K, Vt, head_weight, head_bias) -> logits [1, O], lowered to .pte.

    Built once per cache_dir (~5 s). The math is a small stand-in, not SPARTAN; it only has to use every input."""
    out = cache_dir / "toy.pte"
    if out.exists():
        return out.read_bytes()
    code = f"""
import torch, torch.nn.functional as F
from torch.export import Dim, export
from executorch.exir import to_edge_transform_and_lower
torch.manual_seed(0)
class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__(); self.emb = torch.nn.Embedding({len(VOCAB)}, {SHAPE['hidden_size']})
    def forward(self, input_ids, attention_mask, P, K, Vt, head_weight, head_bias):
        h = self.emb(input_ids)
        for l in range(P.shape[0]):
            h = h + F.linear(torch.softmax(F.linear(h, K[l]), -1), Vt[l]) + 0.1 * F.linear(h, P[l]).mean(-1, True)
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return F.linear((h * m).sum(1) / m.sum(1).clamp(min=1.0), head_weight, head_bias)
L, E, C, H, O = {SHAPE['num_layers']}, {SHAPE['num_parents']}, {SHAPE['num_children']}, {SHAPE['hidden_size']}, \
    {MAX_LABELS}
ids = torch.ones(1, 5, dtype=torch.long)
args = (ids, ids, torch.randn(L, E, H), torch.randn(L, E * C, H), torch.randn(L, H, E * C), torch.randn(O, H),
        torch.randn(O))
s = Dim("seq", min=1, max=32)
ep = export(Toy().eval(), args, dynamic_shapes=({{1: s}}, {{1: s}}, None, None, None, None, None), strict=False)
open({str(out) + '.tmp'!r}, "wb").write(to_edge_transform_and_lower(ep).to_executorch().buffer)
"""
    cache_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    os.replace(str(out) + ".tmp", out)
    return out.read_bytes()


class FakeServer:
    """A programmable HTTP server for client fault tests: routes map a path to bytes (or a callable)."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.truncate: dict[str, int] = {}  # path -> send only this many bytes, then close (always)
        self.hits: list[tuple[str, str | None]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                path = self.path.split("?")[0]  # routes ignore the query string
                outer.hits.append((self.path, self.headers.get("Range")))
                data = outer.routes.get(path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start, status = int(rng[6:-1]), 206
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{sha256(data)}"')
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                cut = outer.truncate.get(path)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class CuttingProxy:
    """Forwards to `upstream_port`; the first `cuts` connections are closed after `after` response body bytes."""

    def __init__(self, upstream_port: int, after: int, cuts: int = 1) -> None:
        self.upstream, self.after, self.cuts = upstream_port, after, cuts
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[bytes] = []
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            cut = self.cuts > 0
            self.cuts -= 1 if cut else 0
            threading.Thread(target=self._pipe, args=(client, cut), daemon=True).start()

    def _pipe(self, client: socket.socket, cut: bool) -> None:
        up = socket.create_connection(("127.0.0.1", self.upstream))
        req = b""
        while b"\r\n\r\n" not in req:
            chunk = client.recv(65536)
            if not chunk:
                break
            req += chunk
        self.requests.append(req)
        up.sendall(req.replace(b"Connection: keep-alive", b"Connection: close"))
        buf = b""
        try:
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    client.sendall(buf)
                    break
                if not cut:
                    client.sendall(chunk)
                    continue
                buf += chunk
                end = buf.find(b"\r\n\r\n")
                if end >= 0 and len(buf) >= end + 4 + self.after:  # headers + `after` body bytes, then drop
                    client.sendall(buf[: end + 4 + self.after])
                    break
        finally:
            client.close()
            up.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
