"""Bounded soak of the delivery path on loopback: publishers + downloaders + server restarts, every byte checked.

    python benchmarks/soak.py                     # 300 s, 2 publishers, 8 downloaders, 2 restarts
    python benchmarks/soak.py --duration 30       # smoke run

Starts gunicorn (2 workers, gthread) on 127.0.0.1 with a fresh instance, registers a bundle (a 4 MB placeholder
program), then for --duration seconds:
- publishers POST new versions of a MiniLM-sized memory (1.04 MB, spartan_formats writer) of one task;
- downloaders loop over: the catalog (GET /manifest, with If-None-Match), the latest memory (full GET, and a resume:
  Range + If-Range with the ETag of the version they hold), a pinned memory version, and the pinned program file;
- at 1/3 the server is restarted gracefully (SIGTERM, new master on the same port), at 2/3 it is killed (SIGKILL
  of master and workers) and started again.
Every 200/206 body is checked: sha256 == ETag == X-Content-SHA256, one of the published versions, a valid memory
file (spartan_formats.memory.read_memory); a resumed download must assemble to one version. A mismatch is a torn
read (must be 0). Connection errors while the server is down are counted as "unavailable", not errors.
Writes docs/results/soak.{json,md}. Not a test: the numbers depend on the machine and what else runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from spartan_formats import FormatError  # noqa: E402
from spartan_formats.memory import memory_bytes, memory_metadata, read_memory  # noqa: E402

TOKEN = "soak-token"
FP = "5" * 64
SHAPE = {"num_layers": 6, "num_parents": 16, "num_children": 3, "top_k": 8, "temperature": 1.6, "hidden_size": 384}
MAX_LABELS = 8
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def memory(seed: int) -> bytes:
    L, E, C, H = (SHAPE[k] for k in ("num_layers", "num_parents", "num_children", "hidden_size"))
    rng = np.random.default_rng(seed)
    t = {"P": rng.standard_normal((L, E, H)), "K": rng.standard_normal((L, E * C, H)),
         "Vt": rng.standard_normal((L, H, E * C)), "head_weight": rng.standard_normal((MAX_LABELS, H)),
         "head_bias": rng.standard_normal(MAX_LABELS)}
    t["head_weight"][2:] = 0
    t["head_bias"][2:] = 0
    return memory_bytes(t, memory_metadata(task="soak", label_names=["a", "b"], is_regression=False,
                                           max_labels=MAX_LABELS, metric="accuracy", backbone_fingerprint=FP,
                                           memory_shape=SHAPE, dtype="fp32"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, instance: Path, port: int, log: Path) -> None:
        self.instance, self.port, self.logpath = instance, port, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "SPARTAN_EDGE_INSTANCE": str(self.instance), "SPARTAN_EDGE_PUBLISH_TOKEN": TOKEN,
               "PYTHONPATH": str(REPO)}
        log = open(self.logpath, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads", "8", "-b",
             f"127.0.0.1:{self.port}", "--graceful-timeout", "5", "demo_server:create_app()"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start; see {self.logpath}")

    def stop(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)
        self.proc.wait(30)


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lat: dict[str, list[float]] = {}
        self.status: dict[str, dict[str, int]] = {}
        self.errors: list[str] = []
        self.torn: list[str] = []
        self.unavailable = 0
        self.down: list[list[float]] = []  # [start, end] of each planned outage
        self.published: dict[str, int] = {}  # sha256 -> seed, added before the POST (so a reader may see it)

    def is_down(self, t0: float, t1: float) -> bool:
        return any(a - 0.5 <= t1 and t0 <= b + 1.0 for a, b in self.down)

    def record(self, kind: str, status: int, ms: float) -> None:
        with self.lock:
            self.lat.setdefault(kind, []).append(ms)
            d = self.status.setdefault(kind, {})
            d[str(status)] = d.get(str(status), 0) + 1


def publisher(url: str, stats: Stats, stop: threading.Event, seeds) -> None:
    s = requests.Session()
    while not stop.is_set():
        seed = next(seeds)
        data = memory(seed)
        with stats.lock:
            stats.published[sha(data)] = seed
        t0 = time.monotonic()
        try:
            r = s.post(f"{url}/memories/soak?target=android", data=data, timeout=60,
                       headers={**AUTH, "X-Content-SHA256": sha(data)})
        except requests.RequestException as e:
            if not stats.is_down(t0, time.monotonic()):
                stats.errors.append(f"publish: {type(e).__name__}")
            else:
                stats.unavailable += 1
            time.sleep(0.2)
            continue
        stats.record("publish", r.status_code, (time.monotonic() - t0) * 1e3)
        if r.status_code not in (200, 201):
            stats.errors.append(f"publish: HTTP {r.status_code} {r.text[:200]}")


def check_memory_body(stats: Stats, what: str, r: requests.Response, body: bytes) -> None:
    digest = sha(body)
    if digest != r.headers.get("X-Content-SHA256") or r.headers.get("ETag") != f'"{digest}"':
        stats.torn.append(f"{what}: body {digest[:12]} vs ETag {r.headers.get('ETag')}")
        return
    if digest not in stats.published:
        stats.torn.append(f"{what}: {digest[:12]} is no published version")
        return
    try:
        read_memory(body)
    except FormatError as e:
        stats.torn.append(f"{what}: not a valid memory file: {e}")


def downloader(url: str, stats: Stats, stop: threading.Event, program: bytes, program_url: str, seed: int) -> None:
    s = requests.Session()
    rng = np.random.default_rng(seed)
    held: tuple[str, bytes] | None = None  # (etag, bytes) of the version this device has
    cat_etag: str | None = None
    while not stop.is_set():
        kind = rng.choice(["catalog", "latest", "resume", "pinned", "program"], p=[0.15, 0.35, 0.25, 0.15, 0.10])
        t0 = time.monotonic()
        try:
            if kind == "catalog":
                r = s.get(f"{url}/manifest", headers={"If-None-Match": cat_etag} if cat_etag else {}, timeout=30)
                if r.status_code == 200:
                    cat_etag = r.headers.get("ETag")
                    entry = r.json()["tasks"].get("soak", {}).get("android")
                    if entry and entry["sha256"] not in stats.published:
                        stats.torn.append("catalog names an unpublished sha256")
                elif r.status_code != 304:
                    stats.errors.append(f"catalog: HTTP {r.status_code}")
            elif kind == "latest":
                r = s.get(f"{url}/memories/soak?target=android", timeout=30)
                if r.status_code == 200:
                    check_memory_body(stats, "latest", r, r.content)
                    held = (r.headers["ETag"], r.content)
                else:
                    stats.errors.append(f"latest: HTTP {r.status_code}")
            elif kind == "resume" and held is not None:
                cut = int(rng.integers(1, len(held[1]) - 1))
                r = s.get(f"{url}/memories/soak?target=android", timeout=30,
                          headers={"Range": f"bytes={cut}-", "If-Range": held[0]})
                if r.status_code == 206:
                    body = held[1][:cut] + r.content  # the device appends to the bytes it has
                    if f'"{sha(body)}"' != r.headers.get("ETag"):
                        stats.torn.append("resume: 206 spliced two versions")
                    check_memory_body(stats, "resume", r, body)
                elif r.status_code == 200:
                    check_memory_body(stats, "resume", r, r.content)
                    held = (r.headers["ETag"], r.content)
                else:
                    stats.errors.append(f"resume: HTTP {r.status_code}")
            elif kind == "pinned":
                v = int(rng.integers(1, 4))
                r = s.get(f"{url}/memories/soak?target=android&version={v}", timeout=30)
                if r.status_code == 200:
                    check_memory_body(stats, "pinned", r, r.content)
                    if "immutable" not in r.headers.get("Cache-Control", ""):
                        stats.errors.append("pinned: not immutable")
                elif r.status_code != 404:
                    stats.errors.append(f"pinned: HTTP {r.status_code}")
            elif kind == "program":
                r = s.get(url + program_url, timeout=60)
                if r.status_code != 200 or r.content != program:
                    stats.torn.append(f"program: HTTP {r.status_code}, {len(r.content)} bytes")
            else:
                continue
        except requests.RequestException as e:
            if stats.is_down(t0, time.monotonic()):
                stats.unavailable += 1
            else:
                stats.errors.append(f"{kind}: {type(e).__name__}: {str(e)[:120]}")
            time.sleep(0.05)
            continue
        stats.record(str(kind), r.status_code, (time.monotonic() - t0) * 1e3)


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=300.0)
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--downloaders", type=int, default=8)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="soak-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    srv = Server(work / "instance", port, work / "server.log")
    srv.start()
    program = os.urandom(4 * 1024 * 1024)
    tok = b'{"version": "1.0"}'
    for blob in (program, tok):
        requests.put(f"{url}/blobs/{sha(blob)}", data=blob, headers=AUTH, timeout=60).raise_for_status()
    body = {"fingerprint": FP, "memory_shape": SHAPE, "max_labels": MAX_LABELS, "max_seq_length": 128,
            "program": "backbone.pte",
            "files": [{"path": "backbone.pte", "sha256": sha(program), "bytes": len(program)},
                      {"path": "tokenizer.json", "sha256": sha(tok), "bytes": len(tok)}]}
    requests.post(f"{url}/backbone/android", json=body, headers=AUTH, timeout=60).raise_for_status()
    program_url = requests.get(f"{url}/manifest", timeout=10).json()["backbones"]["android"]["files"][0]["url"]

    stats = Stats()
    first = memory(0)
    stats.published[sha(first)] = 0
    requests.post(f"{url}/memories/soak?target=android", data=first, timeout=60,
                  headers={**AUTH, "X-Content-SHA256": sha(first)}).raise_for_status()
    seeds = iter(range(1, 10**9))
    seed_lock = threading.Lock()

    def next_seed():
        while True:
            with seed_lock:
                yield next(seeds)

    stop = threading.Event()
    gen = next_seed()
    threads = [threading.Thread(target=publisher, args=(url, stats, stop, gen)) for _ in range(args.publishers)]
    threads += [threading.Thread(target=downloader, args=(url, stats, stop, program, program_url, i))
                for i in range(args.downloaders)]
    t_start = time.monotonic()
    for t in threads:
        t.start()
    restarts = []
    for frac, sig in ((1 / 3, signal.SIGTERM), (2 / 3, signal.SIGKILL)):
        time.sleep(max(0.0, t_start + frac * args.duration - time.monotonic()))
        down = [time.monotonic(), float("inf")]
        stats.down.append(down)
        srv.stop(sig)
        srv.start()
        down[1] = time.monotonic()
        restarts.append({"signal": signal.Signals(sig).name, "at_s": round(down[0] - t_start, 1),
                         "down_s": round(down[1] - down[0], 2)})
    time.sleep(max(0.0, t_start + args.duration - time.monotonic()))
    stop.set()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - t_start

    final = requests.get(f"{url}/memories/soak/versions?target=android", timeout=30).json()["versions"]
    versions_ok = [v["version"] for v in final] == list(range(1, len(final) + 1))
    served = {sha(requests.get(f"{url}/memories/soak?target=android&version={v['version']}", timeout=30).content)
              == v["sha256"] for v in final}
    tmp_left = len(list((work / "instance" / "blobs" / ".tmp").iterdir()))
    srv.stop(signal.SIGTERM)

    kinds = {k: {"requests": len(v), "p50_ms": round(pct(v, 50), 2), "p99_ms": round(pct(v, 99), 2),
                 "status": stats.status[k]} for k, v in sorted(stats.lat.items())}
    result = {
        "command": "python benchmarks/soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "duration_s": round(elapsed, 1), "publishers": args.publishers, "downloaders": args.downloaders,
        "memory_bytes": len(first), "program_bytes": len(program), "restarts": restarts,
        "requests": sum(len(v) for v in stats.lat.values()), "errors": len(stats.errors),
        "error_samples": stats.errors[:10], "torn_reads": len(stats.torn), "torn_samples": stats.torn[:10],
        "unavailable_during_restarts": stats.unavailable, "versions_published": len(final),
        "versions_consecutive": versions_ok, "every_version_serves_its_sha256": served == {True},
        "temp_uploads_left": tmp_left, "by_kind": kinds,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other engineers' jobs (busy)",
        "server": "gunicorn -w 2 -k gthread --threads 8, loopback, clients in the same process",
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    rows = "\n".join(f"| {k} | {v['requests']:,} | {v['p50_ms']} | {v['p99_ms']} | "
                     f"{', '.join(f'{s}: {n:,}' for s, n in sorted(v['status'].items()))} |" for k, v in kinds.items())
    md = f"""# Soak: publishers + downloaders + restarts (loopback)

`{result['command']}`, measured {result['measured']} on a **shared machine** ({result['machine']}); latencies
include client and server competing for the same cores, so treat them as an upper bound and the counts as the result.

{result['duration_s']} s, {args.publishers} publishers (new versions of a {len(first):,}-byte memory),
{args.downloaders} downloaders, server {result['server']}; restarts: {', '.join(f"{r['signal']} at {r['at_s']} s "
f"(down {r['down_s']} s)" for r in restarts)}.

| | value |
|---|---|
| requests | {result['requests']:,} |
| errors (outside the planned outages) | {result['errors']} |
| torn reads (body != ETag/sha256, unpublished bytes, invalid file, spliced resume) | **{result['torn_reads']}** |
| requests refused while the server was down | {result['unavailable_during_restarts']} |
| memory versions published | {result['versions_published']} (consecutive: {versions_ok}; each serves its sha256: \
{served == {True}}) |
| temporary uploads left after the SIGKILL restart | {tmp_left} |

| request | count | p50 ms | p99 ms | status |
|---|---|---|---|---|
{rows}
"""
    (args.out / "soak.md").write_text(md)
    print(md)
    return 0 if not stats.torn and not stats.errors else 1


if __name__ == "__main__":
    sys.exit(main())
