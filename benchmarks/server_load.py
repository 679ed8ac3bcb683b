"""Bounded loopback load test of demo_server under gunicorn: GET /memories/<task> (full body) and the 304 path.

    python benchmarks/server_load.py                      # 20,000 requests x 2 paths, 32 clients, 2 workers
    python benchmarks/server_load.py --requests 2000      # smoke run

It starts gunicorn on 127.0.0.1 with a fresh instance folder, publishes one MiniLM-sized task memory (or the tasks
of --dist), drives it with `--concurrency` keep-alive clients spread over `--procs` processes, and writes
docs/results/server_load.{json,md}. Not a test: the numbers depend on the machine and on what else runs.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing as mp
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from spartan_formats.memory import memory_bytes, memory_metadata  # noqa: E402

TOKEN = "bench-token"
FP = "f" * 64
# MiniLM-L6 with E=16, C=3: the size of a real memory file (~1.04 MB fp32)
SHAPE = {"num_layers": 6, "num_parents": 16, "num_children": 3, "top_k": 8, "temperature": 1.6, "hidden_size": 384}


def synthetic_dist(root: Path, max_labels: int = 8) -> Path:
    """One backbone (placeholder program bytes) and one task memory of the real MiniLM size."""
    L, E, C, H = (SHAPE[k] for k in ("num_layers", "num_parents", "num_children", "hidden_size"))
    rng = np.random.default_rng(0)
    t = {"P": rng.standard_normal((L, E, H)), "K": rng.standard_normal((L, E * C, H)),
         "Vt": rng.standard_normal((L, H, E * C)), "head_weight": rng.standard_normal((max_labels, H)),
         "head_bias": rng.standard_normal(max_labels)}
    t["head_weight"][2:] = 0  # zero padding beyond the task's two outputs (docs/formats.md)
    t["head_bias"][2:] = 0
    meta = memory_metadata(task="sst2", label_names=["negative", "positive"], is_regression=False,
                           max_labels=max_labels, metric="accuracy", backbone_fingerprint=FP, memory_shape=SHAPE,
                           dtype="fp32")
    mem = memory_bytes(t, meta)
    prog = b"placeholder program" * 1000
    (root / "android" / "memories").mkdir(parents=True)
    (root / "android" / "backbone.pte").write_bytes(prog)
    (root / "android" / "memories" / "sst2.safetensors").write_bytes(mem)

    def entry(rel: str, data: bytes) -> dict:
        return {"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    man = {"format_version": 1,
           "backbone": {"id": "synthetic", "fingerprint": FP, "hidden_size": H, "num_layers": L,
                        "memory_shape": SHAPE, "max_seq_length": 128, "max_labels": max_labels},
           "targets": {"android": {"files": [entry("android/backbone.pte", prog)], "program": "android/backbone.pte"}},
           "tasks": {"sst2": {"label_names": ["negative", "positive"], "is_regression": False, "metric": "accuracy",
                              "backbone_fingerprint": FP,
                              "files": {"android": {**entry("android/memories/sst2.safetensors", mem),
                                                    "dtype": "fp32"}}}}}
    (root / "manifest.json").write_text(json.dumps(man))
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(port: int, path: str, etag: str | None, counts: list[int], size: int, q) -> None:
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client(n: int) -> None:
        mine, errs = [], 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"If-None-Match": etag} if etag else {}
        for _ in range(n):
            t0 = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                r = conn.getresponse()
                body = r.read()
                ok = (r.status == 304 and body == b"") if etag else (r.status == 200 and len(body) == size)
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine.append(time.perf_counter() - t0)
            errs += not ok
        conn.close()
        with lock:
            lat.extend(mine)
            errors[0] += errs

    threads = [threading.Thread(target=client, args=(n,)) for n in counts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    q.put((lat, errors[0]))


def drive(port: int, path: str, etag: str | None, total: int, concurrency: int, procs: int, size: int) -> dict:
    per_client = [total // concurrency + (i < total % concurrency) for i in range(concurrency)]
    q = mp.Queue()
    groups = [per_client[i::procs] for i in range(procs)]  # clients spread over the load processes
    ps = [mp.Process(target=_worker, args=(port, path, etag, g, size, q)) for g in groups if g]
    t0 = time.perf_counter()
    for p in ps:
        p.start()
    results = [q.get() for _ in ps]
    wall = time.perf_counter() - t0
    for p in ps:
        p.join()
    lat = np.array([x for r in results for x in r[0]]) * 1e3
    n = len(lat)
    return {"requests": n, "errors": int(sum(r[1] for r in results)), "wall_s": round(wall, 3),
            "req_per_s": round(n / wall, 1), "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p90_ms": round(float(np.percentile(lat, 90)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "max_ms": round(float(lat.max()), 2), "body_bytes": size if etag is None else 0,
            "MB_per_s": round(n * (size if etag is None else 0) / wall / 1e6, 1)}


def _ms(text: str) -> float:
    """wrk's latency strings (850.00us, 1.20ms, 2.00s) in milliseconds."""
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return round(float(text[: -len(unit)]) * scale, 2)
    raise ValueError(text)


def drive_wrk(port: int, path: str, etag: str | None, seconds: int, concurrency: int, size: int) -> dict:
    """The same load from wrk (a C load generator: far less client CPU on the shared cores), time-bounded."""
    import re

    cmd = ["wrk", "-t2", f"-c{concurrency}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{path}"]
    if etag:
        cmd[1:1] = ["-H", f"If-None-Match: {etag}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)$", out, re.M))
    total = int(re.search(r"(\d+) requests in ([\d.]+)s", out).group(1))
    wall = float(re.search(r"(\d+) requests in ([\d.]+)s", out).group(2))
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = bad + (sum(int(g) for g in sock.groups()) if sock else 0)
    rps = total / wall
    return {"requests": total, "errors": errors, "wall_s": wall, "req_per_s": round(rps, 1),
            "p50_ms": _ms(pct["50"]), "p90_ms": _ms(pct["90"]), "p99_ms": _ms(pct["99"]), "max_ms": None,
            "body_bytes": 0 if etag else size, "MB_per_s": round(rps * (0 if etag else size) / 1e6, 1),
            "driver": "wrk"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20000, help="per path (full body, then 304)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--procs", type=int, default=4, help="load-generator processes (threads spread over them)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-class", default="gthread")
    ap.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker (gthread)")
    ap.add_argument("--dist", help="publish this export folder instead of the synthetic MiniLM-sized memory")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--driver", choices=["python", "wrk"], default="python",
                    help="load generator: Python keep-alive clients, or wrk (apt-get install wrk) for --seconds")
    ap.add_argument("--seconds", type=int, default=20, help="duration per path with --driver wrk")
    ap.add_argument("--out", default=str(REPO / "docs" / "results" / "server_load"), help="writes OUT.json, OUT.md")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dist = Path(args.dist) if args.dist else synthetic_dist(tmp / "dist")
        port = free_port()
        env = {**os.environ, "SPARTAN_EDGE_INSTANCE": str(tmp / "instance"), "SPARTAN_EDGE_PUBLISH_TOKEN": TOKEN,
               "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "gunicorn", "-w", str(args.workers), "-k", args.worker_class,
               "--threads", str(args.threads), "-b", f"127.0.0.1:{port}", "--log-level", "warning",
               "demo_server:create_app()"]
        srv = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)
        try:
            for _ in range(300):
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                    c.request("GET", "/healthz")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    time.sleep(0.1)
            pub = subprocess.run([sys.executable, "-m", "demo_server", "publish", str(dist), "--server",
                                  f"http://127.0.0.1:{port}", "--token", TOKEN, "--target", "android"],
                                 cwd=REPO, env=env, capture_output=True, text=True)
            if pub.returncode:
                print(pub.stderr, file=sys.stderr)
                return 1
            path = f"/memories/{args.task}?target=android"
            c = http.client.HTTPConnection("127.0.0.1", port)
            c.request("GET", path)
            r = c.getresponse()
            size, etag = len(r.read()), r.getheader("ETag")
            drive(port, path, None, min(2000, args.requests), args.concurrency, args.procs, size)  # warm-up
            if args.driver == "wrk":
                full = drive_wrk(port, path, None, args.seconds, args.concurrency, size)
                print("200 (full body):", json.dumps(full))
                cached = drive_wrk(port, path, etag, args.seconds, args.concurrency, size)
            else:
                full = drive(port, path, None, args.requests, args.concurrency, args.procs, size)
                print("200 (full body):", json.dumps(full))
                cached = drive(port, path, etag, args.requests, args.concurrency, args.procs, size)
            print("304 (If-None-Match):", json.dumps(cached))
        finally:
            os.killpg(srv.pid, signal.SIGTERM)
            srv.wait(10)

    argv_s = " ".join(sys.argv[1:])
    result = {"command": f"python benchmarks/server_load.py {argv_s}".strip(), "server": " ".join(cmd[2:]),
              "concurrency": args.concurrency, "load_procs": args.procs, "cpus": os.cpu_count(),
              "machine": f"{platform.machine()} {platform.system()} {platform.release()}",
              "python": platform.python_version(), "memory_bytes": size,
              "date": time.strftime("%Y-%m-%d %H:%M"), "full_body": full, "not_modified_304": cached,
              "driver": args.driver, "note": "client and server share the same cores over loopback"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    rows = "\n".join(f"| {name} | {r['requests']:,} | {r['errors']} | {r['req_per_s']:,} | {r['p50_ms']} | "
                     f"{r['p99_ms']} | {r['max_ms']} | {r['MB_per_s']} |"
                     for name, r in (("GET memory, 200 full body", full), ("GET memory, 304 If-None-Match", cached)))
    driver_text = (f"wrk, 2 threads, {args.seconds} s per path" if args.driver == "wrk"
                   else f"{args.procs} Python processes")
    out.with_suffix(".md").write_text(
        f"# demo_server load (loopback)\n\n`{result['command']}`\n\nServer: `gunicorn {result['server']}`; "
        f"{args.concurrency} keep-alive clients ({driver_text}); memory file {size:,} bytes; "
        f"{result['cpus']} CPUs shared by client and server; {result['machine']}; {result['date']}.\n\n"
        "| path | requests | errors | req/s | p50 ms | p99 ms | max ms | MB/s |\n|---|---|---|---|---|---|---|---|\n"
        f"{rows}\n\nAim (issue 5): >= 500 req/s, p99 < 50 ms, zero errors.\n")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
