"""Bounded loopback load test of demo_server under gunicorn: GET /memories/<task> (full body) and the 304 path.

    python benchmarks/server_load.py                      # 20,000 requests x 2 paths, 32 clients, 2 workers
    python benchmarks/server_load.py --requests 2000      # smoke run
    python benchmarks/server_load.py --compare --driver wrk   # direct gunicorn vs 2 instances behind nginx

--compare runs, interleaved in random order per round: `direct` (one gunicorn, SQLite, Flask sends the bytes),
`nginx-proxy` (two instances on PostgreSQL behind nginx, Flask still sends the bytes through it) and
`nginx-offload` (the same, nginx sends the bytes by X-Accel-Redirect); then a chaos phase on nginx-offload: every
body hashed and checked while versions are published and one instance is SIGKILLed. Writes
docs/results/server_scale.{json,md}.

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
DEFAULT_OUT = str(REPO / "docs" / "results" / "server_load")
SHAPE = {"num_layers": 6, "num_parents": 16, "num_children": 3, "top_k": 8, "temperature": 1.6, "hidden_size": 384}


def synthetic_memory(seed: int = 0, max_labels: int = 8) -> bytes:
    """A task memory of the real MiniLM size; another seed is another version."""
    L, E, C, H = (SHAPE[k] for k in ("num_layers", "num_parents", "num_children", "hidden_size"))
    rng = np.random.default_rng(seed)
    t = {"P": rng.standard_normal((L, E, H)), "K": rng.standard_normal((L, E * C, H)),
         "Vt": rng.standard_normal((L, H, E * C)), "head_weight": rng.standard_normal((max_labels, H)),
         "head_bias": rng.standard_normal(max_labels)}
    t["head_weight"][2:] = 0  # zero padding beyond the task's two outputs (docs/formats.md)
    t["head_bias"][2:] = 0
    meta = memory_metadata(task="sst2", label_names=["negative", "positive"], is_regression=False,
                           max_labels=max_labels, metric="accuracy", backbone_fingerprint=FP, memory_shape=SHAPE,
                           dtype="fp32")
    return memory_bytes(t, meta)


def synthetic_dist(root: Path, max_labels: int = 8, big_mb: int = 0) -> Path:
    """One backbone (placeholder program bytes) and one task memory of the real MiniLM size. `big_mb` adds a
    bundle file `android/weights.bin` of that many MB (a backbone-sized download for the slow-client phase)."""
    L, H = SHAPE["num_layers"], SHAPE["hidden_size"]
    mem = synthetic_memory(0, max_labels)
    prog = b"placeholder program" * 1000
    (root / "android" / "memories").mkdir(parents=True)
    (root / "android" / "backbone.pte").write_bytes(prog)
    (root / "android" / "memories" / "sst2.safetensors").write_bytes(mem)

    def entry(rel: str, data: bytes) -> dict:
        return {"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    big = []
    if big_mb:
        weights = np.random.default_rng(1).bytes(big_mb * 1_000_000)
        (root / "android" / "weights.bin").write_bytes(weights)
        big = [entry("android/weights.bin", weights)]

    man = {"format_version": 1,
           "backbone": {"id": "synthetic", "fingerprint": FP, "hidden_size": H, "num_layers": L,
                        "memory_shape": SHAPE, "max_seq_length": 128, "max_labels": max_labels},
           "targets": {"android": {"files": [entry("android/backbone.pte", prog), *big],
                                   "program": "android/backbone.pte"}},
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
    for attempt in range(2):  # on the busy shared machine wrk has once printed no latency distribution
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
        pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)$", out, re.M))
        if {"50", "90", "99"} <= set(pct) and "requests in" in out:
            break
        if attempt:
            raise RuntimeError(f"wrk output without latency percentiles:\n{out}")
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


def _publish(url: str, dist: Path, env: dict) -> None:
    pub = subprocess.run([sys.executable, "-m", "demo_server", "publish", str(dist), "--server", url, "--token", TOKEN,
                          "--target", "android"], cwd=REPO, env=env, capture_output=True, text=True)
    if pub.returncode:
        raise RuntimeError(pub.stderr)


def chaos(stack, seconds: float, concurrency: int, kill_at: float) -> dict:
    """Full-body downloads through nginx, each body hashed, while new versions are published every 0.5 s and one
    instance is SIGKILLed after `kill_at` s. A torn read is a body whose sha256 is not the one its headers name, or
    not a version that was ever published."""
    path = "/memories/sst2?target=android"
    known = {hashlib.sha256(synthetic_memory(0)).hexdigest()}
    lock = threading.Lock()
    stats = {"requests": 0, "errors": 0, "torn": 0, "published": 0, "lat": []}
    stop = threading.Event()

    def reader() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
        while not stop.is_set():
            t0 = time.perf_counter()
            err = torn = 0
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                sha = hashlib.sha256(body).hexdigest()
                with lock:
                    ok_sha = sha in known
                if r.status != 200:
                    err = 1
                elif sha != r.getheader("X-Content-SHA256") or not ok_sha:
                    torn = 1
            except (OSError, http.client.HTTPException):
                err = 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
            with lock:
                stats["requests"] += 1
                stats["errors"] += err
                stats["torn"] += torn
                stats["lat"].append(time.perf_counter() - t0)
        conn.close()

    def publisher() -> None:
        seed = 1
        while not stop.is_set():
            data = synthetic_memory(seed)
            sha = hashlib.sha256(data).hexdigest()
            with lock:
                known.add(sha)  # before it can be served
            c = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
            c.request("POST", path, body=data, headers={"Authorization": f"Bearer {TOKEN}", "X-Content-SHA256": sha})
            if c.getresponse().status == 201:
                stats["published"] += 1
            c.close()
            seed += 1
            stop.wait(0.5)

    threads = [threading.Thread(target=reader) for _ in range(concurrency)] + [threading.Thread(target=publisher)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    stop.wait(kill_at)
    stack.apps[0].kill()
    stop.wait(max(0.0, seconds - kill_at))
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(stats.pop("lat")) * 1e3
    return {**stats, "wall_s": round(wall, 2), "req_per_s": round(stats["requests"] / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "killed_instance_after_s": kill_at, "concurrency": concurrency}


def slow_clients(port: int, etag: str, n_slow: int, rate_mb_s: float, seconds: float) -> dict:
    """`n_slow` phones on a slow link each downloading the big bundle file (android/weights.bin) at `rate_mb_s`,
    while 4 fast clients revalidate the memory (304). Whoever sends the bytes holds a connection per slow phone:
    gunicorn a worker thread each, nginx an event-loop entry. Reports the fast clients' req/s and latency."""
    stop = threading.Event()
    chunk = 64 * 1024
    pause = chunk / (rate_mb_s * 1e6)
    slow_bytes = [0]

    def slow() -> None:
        while not stop.is_set():
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sk:
                sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, chunk)  # a small window, like a phone's
                sk.sendall(b"GET /backbone/android/weights.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while not stop.is_set():
                    data = sk.recv(chunk)
                    if not data:
                        break
                    slow_bytes[0] += len(data)
                    time.sleep(pause)

    lat: list[float] = []
    errors = [0]

    def fast() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("GET", "/memories/sst2?target=android", headers={"If-None-Match": etag})
                r = conn.getresponse()
                r.read()
                errors[0] += r.status != 304
            except (OSError, http.client.HTTPException):
                errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            lat.append(time.perf_counter() - t0)
        conn.close()

    slows = [threading.Thread(target=slow, daemon=True) for _ in range(n_slow)]
    for t in slows:
        t.start()
    time.sleep(2.0)  # every slow download under way
    fasts = [threading.Thread(target=fast) for _ in range(4)]
    t0 = time.perf_counter()
    for t in fasts:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in fasts:
        t.join()
    wall = time.perf_counter() - t0
    arr = np.array(lat) * 1e3
    return {"slow_clients": n_slow, "slow_rate_MB_s": rate_mb_s, "fast_requests": len(lat), "fast_errors": errors[0],
            "fast_req_per_s": round(len(lat) / wall, 1), "fast_p50_ms": round(float(np.percentile(arr, 50)), 2),
            "fast_p99_ms": round(float(np.percentile(arr, 99)), 2), "slow_MB_received": round(slow_bytes[0] / 1e6, 1),
            "slow_MB_at_full_rate": round(n_slow * rate_mb_s * (2.0 + wall), 1)}


def _summary(rounds: list[dict]) -> dict:
    keys = ("req_per_s", "p50_ms", "p99_ms")
    out = {k: round(float(np.median([r[k] for r in rounds])), 2) for k in keys}
    out.update({f"{k}_range": [min(r[k] for r in rounds), max(r[k] for r in rounds)] for k in keys})
    out["errors"] = sum(r["errors"] for r in rounds)
    out["requests"] = sum(r["requests"] for r in rounds)
    return out


def compare(args) -> int:
    """Interleaved rounds over the three setups, then the chaos phase; writes OUT.json and OUT.md."""
    import random

    sys.path.insert(0, str(REPO))
    from demo_server.localstack import Gunicorn, Postgres, Stack

    out = Path(args.out if args.out != DEFAULT_OUT else REPO / "docs" / "results" / "server_scale")
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dist = synthetic_dist(tmp / "dist", big_mb=args.big_mb)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        pg = Postgres(durable=True)
        setups: dict = {}
        try:
            setups["direct"] = Gunicorn(tmp / "direct" / "instance", token=TOKEN, workers=args.workers,
                                        threads=args.threads)
            per = max(1, args.workers // 2)  # the same number of app worker processes in every setup
            for name, offload in (("nginx-proxy", ""), ("nginx-offload", "nginx")):
                setups[name] = Stack(tmp / name, instances=2, token=TOKEN, database=pg.create_database(
                    name.replace("-", "_")), workers=per, threads=args.threads,
                    extra_env={"SPARTAN_EDGE_BLOB_OFFLOAD": offload})
            for srv in setups.values():
                _publish(srv.url, dist, env)
            path = f"/memories/{args.task}?target=android"
            size = len(synthetic_memory(0))
            results: dict = {name: {"full_body": [], "not_modified_304": []} for name in setups}
            etag = '"' + hashlib.sha256(synthetic_memory(0)).hexdigest() + '"'
            for srv in setups.values():  # warm-up
                drive(srv.port, path, None, min(1000, args.requests), args.concurrency, args.procs, size)
            for rnd in range(args.rounds):
                order = list(setups)
                rng.shuffle(order)
                for name in order:
                    port = setups[name].port
                    for kind, tag in (("full_body", None), ("not_modified_304", etag)):
                        if args.driver == "wrk":
                            r = drive_wrk(port, path, tag, args.seconds, args.concurrency, size)
                        else:
                            r = drive(port, path, tag, args.requests, args.concurrency, args.procs, size)
                        results[name][kind].append({**r, "round": rnd})
                print(f"round {rnd + 1}/{args.rounds}: " + ", ".join(
                    f"{n} {results[n]['full_body'][-1]['req_per_s']} req/s" for n in setups), flush=True)
            slow_result = {}
            order = ["direct", "nginx-offload"]
            rng.shuffle(order)
            for name in order:
                slow_result[name] = slow_clients(setups[name].port, etag, args.slow_clients, 2.0, args.slow_seconds)
                print(f"slow clients, {name}:", json.dumps(slow_result[name]), flush=True)
                time.sleep(3.0)  # the slow downloads of this setup wind down before the next
            chaos_result = chaos(setups["nginx-offload"], args.chaos_seconds, 8, args.chaos_seconds / 2)
            print("chaos:", json.dumps(chaos_result))
        finally:
            for srv in setups.values():
                srv.stop()
            pg.stop()

    ratios = {}
    for kind in ("full_body", "not_modified_304"):
        for name in ("nginx-proxy", "nginx-offload"):
            per_round = [b["req_per_s"] / a["req_per_s"] for a, b in zip(results["direct"][kind], results[name][kind],
                                                                        strict=True)]
            ratios[f"{name}/direct {kind} req/s"] = round(float(np.median(per_round)), 3)
    summary = {name: {kind: _summary(rs) for kind, rs in v.items()} for name, v in results.items()}
    load = os.getloadavg()
    result = {"command": "python benchmarks/server_load.py " + " ".join(sys.argv[1:]),
              "setups": {"direct": f"gunicorn -w {args.workers} -k gthread --threads {args.threads}, SQLite",
                         "nginx-proxy": f"nginx (1 worker) -> 2 x gunicorn -w {per} --threads {args.threads}, "
                                        "PostgreSQL 15, Flask sends the bytes",
                         "nginx-offload": "the same, nginx sends the bytes (X-Accel-Redirect)"},
              "driver": args.driver, "concurrency": args.concurrency, "rounds": args.rounds,
              "per_round": f"{args.seconds} s (wrk)" if args.driver == "wrk" else f"{args.requests} requests",
              "memory_bytes": size, "cpus": os.cpu_count(), "loadavg_at_end": [round(x, 2) for x in load],
              "machine": f"{platform.machine()} {platform.system()} {platform.release()}",
              "date": time.strftime("%Y-%m-%d %H:%M"), "summary": summary, "ratios_median_per_round": ratios,
              "slow_clients": slow_result, "big_file_bytes": args.big_mb * 1_000_000,
              "chaos": chaos_result, "rounds_raw": results,
              "note": "shared machine (other engineers' jobs running); client, nginx, gunicorn and PostgreSQL share "
                      "the same cores over loopback: ratios from this one interleaved run are the robust numbers"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")

    def row(name: str, kind: str) -> str:
        r = summary[name][kind]
        return (f"| {name} | {kind.replace('_', ' ')} | {r['req_per_s']:,} ({r['req_per_s_range'][0]:,}-"
                f"{r['req_per_s_range'][1]:,}) | {r['p50_ms']} ({r['p50_ms_range'][0]}-{r['p50_ms_range'][1]}) | "
                f"{r['p99_ms']} ({r['p99_ms_range'][0]}-{r['p99_ms_range'][1]}) | {r['errors']} |")

    rows = "\n".join(row(n, k) for k in ("full_body", "not_modified_304") for n in summary)
    c = chaos_result
    out.with_suffix(".md").write_text(
        f"# demo_server scaled out: direct gunicorn vs nginx (loopback)\n\n`{result['command']}`\n\n"
        f"{result['date']}; {result['machine']}; {result['cpus']} CPUs **shared with other engineers' jobs** "
        f"(load average {load[0]:.2f} at the end), and shared by the load generator, nginx, gunicorn and PostgreSQL. "
        f"Absolute numbers move with the load; the per-round ratios of this one interleaved run are the robust "
        f"numbers.\n\nSetups: " + "; ".join(f"**{k}**: {v}" for k, v in result["setups"].items()) +
        f".\n\nGET /memories/sst2 ({size:,} bytes), {args.concurrency} keep-alive clients ({args.driver}), "
        f"{args.rounds} rounds of {result['per_round']} per setup and path, setups in random order each round. "
        "Median over rounds (min-max):\n\n"
        "| setup | path | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|\n"
        f"{rows}\n\nMedian per-round ratios: " + ", ".join(f"{k} **{v}**" for k, v in ratios.items()) + ".\n\n"
        "## Slow phones\n\n"
        f"{args.slow_clients} clients each download a {args.big_mb} MB bundle file at 2 MB/s (small receive window)"
        f" while 4 fast clients revalidate the memory (304), {args.slow_seconds:.0f} s per setup, one run each:\n\n"
        "| setup | fast req/s | fast p50 ms | fast p99 ms | fast errors | MB received by the slow clients "
        "(at full rate) |\n|---|---|---|---|---|---|\n" + "\n".join(
            f"| {n} | {r['fast_req_per_s']} | {r['fast_p50_ms']} | {r['fast_p99_ms']} | {r['fast_errors']} | "
            f"{r['slow_MB_received']} ({r['slow_MB_at_full_rate']}) |" for n, r in slow_result.items()) +
        f"\n\n## Publishes and a killed instance\n\nnginx-offload, {c['concurrency']} clients hashing every body for "
        f"{c['wall_s']} s while a new version was published every 0.5 s ({c['published']} published) and one of the "
        f"two instances was SIGKILLed after {c['killed_instance_after_s']} s: {c['requests']:,} downloads, "
        f"**{c['errors']} errors, {c['torn']} torn reads**, {c['req_per_s']} req/s, p50 {c['p50_ms']} ms, "
        f"p99 {c['p99_ms']} ms (Python clients, hashing: slower than the rows above).\n")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


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
    ap.add_argument("--out", default=DEFAULT_OUT, help="writes OUT.json, OUT.md (--compare: docs/results/server_scale)")
    ap.add_argument("--compare", action="store_true", help="direct gunicorn vs two instances behind nginx (above)")
    ap.add_argument("--rounds", type=int, default=5, help="--compare: interleaved rounds")
    ap.add_argument("--chaos-seconds", type=float, default=12.0, help="--compare: length of the chaos phase")
    ap.add_argument("--slow-clients", type=int, default=24, help="--compare: slow phones in the slow-client phase")
    ap.add_argument("--slow-seconds", type=float, default=10.0, help="--compare: length of each slow-client run")
    ap.add_argument("--big-mb", type=int, default=20, help="--compare: size of the slow clients' download")
    args = ap.parse_args(argv)
    if args.compare:
        return compare(args)

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
