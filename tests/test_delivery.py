"""Issue 11, the delivery path tried as an attacker and as a standard HTTP cache would behave, against gunicorn on a
loopback port: HTTP validators across versions, immutable URLs, whole-name matching, malformed bundles, request
size limits, wrong-token limiting, crash leftovers swept at start-up, `gc`, HEAD of a blob. Each test tries the
attack and fails on the code before the fix (see the issue's numbering in each docstring)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

import pytest
import requests
from conftest import DEPLOYMENTS, deployed_server
from edge_support import (
    FP,
    MAX_LABELS,
    REPO,
    SHAPE,
    TOKEN,
    ServerProcess,
    make_dist,
    memory_bytes,
    publish,
    raw_get,
    sha256,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    return make_dist(tmp_path_factory.mktemp("dist"), targets=("android",))


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def server(request, tmp_path_factory, dist):
    """Each attack against SQLite, PostgreSQL and two instances behind nginx (conftest.DEPLOYMENTS)."""
    yield from deployed_server(request, tmp_path_factory, dist)


def upload(url, task, data, target="android"):
    return requests.post(f"{url}/memories/{task}", params={"target": target}, data=data, timeout=30,
                         headers={**AUTH, "X-Content-SHA256": sha256(data)})


def put_blob(url, data):
    return requests.put(f"{url}/blobs/{sha256(data)}", data=data, headers=AUTH, timeout=30)


def bundle(files: dict[str, bytes], **over) -> dict:
    body = {"fingerprint": FP, "memory_shape": SHAPE, "max_labels": MAX_LABELS, "max_seq_length": 32,
            "program": "backbone.pte", "files": [{"path": p, "sha256": sha256(d), "bytes": len(d)}
                                                 for p, d in files.items()]}
    return body | over


def http_date(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(ts, UTC), usegmt=True)


# --- 2: validators on "latest" URLs change with the version ------------------------------------------------------

def test_latest_url_never_answers_stale_304_or_spliced_206(server):
    """Two versions published in the same second: a date validator from v1 must not yield 304 or a 206 of v2."""
    v1, v2 = memory_bytes("lm", seed=1), memory_bytes("lm", seed=2)
    url = server.url + "/memories/lm?target=android"
    for trial in range(5):
        assert upload(server.url, "lm", memory_bytes("lm", seed=100 + trial)).status_code == 201
        assert upload(server.url, "lm", v1).status_code == 201
        r1 = requests.get(url, timeout=10)
        assert r1.content == v1
        assert upload(server.url, "lm", v2).status_code == 201
        for date in (r1.headers.get("Date"), http_date(time.time() + 3600)):
            r = requests.get(url, headers={"If-Modified-Since": date}, timeout=10)
            assert r.status_code == 200 and r.content == v2, (trial, r.status_code)
            r = requests.get(url, headers={"Range": "bytes=100-", "If-Range": date}, timeout=10)
            assert r.status_code == 200 and r.content == v2, (trial, r.status_code)  # never a splice
        assert "Last-Modified" not in r1.headers  # a latest URL carries no date validator (its version changes)
        # the strong ETag is right across versions: v1's ETag gives all of v2, v2's gives 304 / the range
        r = requests.get(url, headers={"If-None-Match": r1.headers["ETag"]}, timeout=10)
        assert r.status_code == 200 and r.content == v2
        r = requests.get(url, headers={"Range": "bytes=100-", "If-Range": r1.headers["ETag"]}, timeout=10)
        assert r.status_code == 200 and r.content == v2
        r = requests.get(url, headers={"Range": "bytes=100-", "If-Range": f'"{sha256(v2)}"'}, timeout=10)
        assert r.status_code == 206 and r.content == v2[100:]


def test_pinned_url_dates_are_the_versions_publish_time(server):
    data = memory_bytes("pin", seed=3)
    v = upload(server.url, "pin", data).json()["version"]
    entry = requests.get(server.url + "/manifest", timeout=10).json()["tasks"]["pin"]["android"]
    r = requests.get(server.url + entry["url"], timeout=10)
    assert r.status_code == 200 and r.headers["X-Memory-Version"] == str(v)
    assert "immutable" in r.headers["Cache-Control"]
    assert parsedate_to_datetime(r.headers["Last-Modified"]).timestamp() == int(entry["published_at"])
    r = requests.get(server.url + entry["url"], headers={"Range": "bytes=10-", "If-Range": r.headers["Last-Modified"]},
                     timeout=10)
    assert r.status_code == 206 and r.content == data[10:]  # a pinned URL's bytes never change: a date is safe
    r = requests.get(server.url + entry["url"], headers={"If-Modified-Since": r.headers["Last-Modified"]}, timeout=10)
    assert r.status_code == 304


# --- 3: only URLs whose bytes can never change are immutable -----------------------------------------------------

def test_same_fingerprint_other_bundle_never_changes_an_immutable_url(tmp_path):
    srv = ServerProcess(tmp_path / "instance", workers=1)
    try:
        tok = b'{"model": {}}'
        a, b = b"program A " * 50, b"program B " * 50
        for blob in (a, b, tok):
            assert put_blob(srv.url, blob).status_code == 201
        r = requests.post(srv.url + "/backbone/android", json=bundle({"backbone.pte": a, "tokenizer.json": tok}),
                          headers=AUTH, timeout=10)
        assert r.status_code == 201 and r.json()["version"] == 1
        first = requests.get(srv.url + "/manifest", timeout=10).json()["backbones"]["android"]["files"][0]["url"]
        assert "version=1" in first
        r = requests.get(srv.url + first, timeout=10)
        assert r.content == a and "immutable" in r.headers["Cache-Control"]
        by_fp = f"/backbone/android/backbone.pte?fingerprint={FP}"
        r = requests.get(srv.url + by_fp, timeout=10)
        assert r.content == a and r.headers["Cache-Control"] == "no-cache"  # was immutable on the old code
        r = requests.post(srv.url + "/backbone/android", json=bundle({"backbone.pte": b, "tokenizer.json": tok}),
                          headers=AUTH, timeout=10)
        assert r.status_code == 201 and r.json()["version"] == 2 and r.json()["fingerprint"] == FP
        assert requests.get(srv.url + by_fp, timeout=10).content == b  # changed, and it never claimed otherwise
        r = requests.get(srv.url + first, timeout=10)
        assert r.content == a and "immutable" in r.headers["Cache-Control"]  # the pinned URL still serves A
        second = requests.get(srv.url + "/manifest", timeout=10).json()["backbones"]["android"]["files"][0]["url"]
        assert "version=2" in second and requests.get(srv.url + second, timeout=10).content == b
        assert requests.get(srv.url + "/backbone/android?version=1&fingerprint=" + "c" * 64,
                            timeout=10).status_code == 404
    finally:
        srv.stop()


# --- 4: names are matched whole (no trailing newline) --------------------------------------------------------------

def test_trailing_newline_names_are_refused(server, tmp_path):
    data = memory_bytes("sst2\n")
    r = requests.post(server.url + "/memories/sst2%0A", params={"target": "android"}, data=data, timeout=10,
                      headers={**AUTH, "X-Content-SHA256": sha256(data)})
    assert r.status_code == 400 and "task name" in r.json()["message"]
    status, _, _ = raw_get(server.port, "/memories/sst2%0A?target=android")
    assert status == 400
    tasks = requests.get(server.url + "/manifest", timeout=10).json()["tasks"]
    assert not any(t.endswith("\n") for t in tasks)
    prog = b"program N " * 40
    assert put_blob(server.url, prog).status_code == 201
    body = bundle({"backbone.pte\n": prog}, program="backbone.pte\n")
    r = requests.post(server.url + "/backbone/android", json=body, headers=AUTH, timeout=10)
    assert r.status_code == 400 and r.json()["code"] == "bad_path"
    assert requests.get(server.url + f"/backbone/android?fingerprint={FP}%0A", timeout=10).status_code == 400


# --- 5: malformed bundles are 4xx and never break later uploads ----------------------------------------------------

@pytest.mark.parametrize("over,code", [
    ({"max_labels": "8"}, "bad_field"),
    ({"max_labels": [8]}, "bad_field"),
    ({"memory_shape": {**SHAPE, "top_k": "2"}}, "bad_field"),
    ({"memory_shape": {k: v for k, v in SHAPE.items() if k != "temperature"}}, "missing_field"),
    ({"fingerprint": "../../" + "a" * 58}, "bad_fingerprint"),
    ({"inputs": "P"}, "bad_field"),
])
def test_malformed_bundle_is_400_and_uploads_keep_working(server, over, code):
    prog = b"program M " * 40
    assert put_blob(server.url, prog).status_code == 201
    r = requests.post(server.url + "/backbone/android", json=bundle({"backbone.pte": prog}, **over), headers=AUTH,
                      timeout=10)
    assert r.status_code == 400 and r.json()["code"] == code, r.text
    r = upload(server.url, "after", memory_bytes("after", seed=hash(code) % 1000))
    assert r.status_code in (200, 201), r.text  # on the old code: 500 for every upload after max_labels "8"


def test_json_body_that_is_not_an_object(server):
    for body in (b"[1, 2]", b"null", b"\"x\"", b"{bad json", b"\xff\xfe"):
        r = requests.post(server.url + "/backbone/android", data=body, timeout=10,
                          headers={**AUTH, "Content-Type": "application/json"})
        assert 400 <= r.status_code < 500 and r.json()["message"], (body, r.status_code)


# --- 6: a request-size limit on every endpoint ---------------------------------------------------------------------

def _send_headers_only(port: int, method: str, path: str, length: int, extra: str = "") -> bytes:
    """Declare a huge body, send 64 KB of it, and read the answer: the server must refuse without reading it all."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
                  f"Content-Length: {length}\r\n\r\n".encode() + b"{" + b" " * 65535)
        return s.recv(65536)
    finally:
        s.close()


@pytest.mark.parametrize("method,path", [("POST", "/backbone/android"), ("GET", "/manifest"),
                                         ("POST", "/memories/sst2?target=android"),
                                         ("GET", "/memories/sst2?target=android")])
def test_oversized_bodies_refused_before_reading(server, method, path):
    t0 = time.monotonic()
    answer = _send_headers_only(server.port, method, path, 200 * 1024 * 1024,
                                f"Authorization: Bearer {TOKEN}\r\nX-Content-SHA256: {'0' * 64}\r\n")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - t0 < 5


def test_chunked_json_body_is_cut_off(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        s.sendall(f"POST /backbone/android HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                  "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b" " * 65536
        answer = b""
        try:
            for _ in range(64):  # 4 MB, over the 1 MiB JSON limit
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except OSError:
            pass  # the server answered and closed
        s.settimeout(5)
        answer = s.recv(65536)
    finally:
        s.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


# --- weaker points ------------------------------------------------------------------------------------------------

def test_wrong_tokens_are_limited_per_client(tmp_path):
    """One budget per client address across worker processes and instances sharing the registry (it was per
    worker); X-Forwarded-For names the client only on an instance told it sits behind a proxy."""
    env = {"SPARTAN_EDGE_AUTH_MAX_FAILURES": "5", "SPARTAN_EDGE_AUTH_WINDOW_S": "60",
           "SPARTAN_EDGE_DATABASE": str(tmp_path / "shared.sqlite3")}
    direct = ServerProcess(tmp_path / "a", workers=2, env=env)
    proxied = ServerProcess(tmp_path / "b", workers=2, env={**env, "SPARTAN_EDGE_TRUSTED_PROXIES": "1"})
    data = memory_bytes("sst2")

    def guess(srv, i: int, **headers) -> int:
        return requests.post(srv.url + "/memories/sst2?target=android", data=data, timeout=10, headers={
            "Authorization": f"Bearer guess-{i}", "X-Content-SHA256": sha256(data), **headers}).status_code

    try:
        # Alternating instances (2 workers each); a spoofed X-Forwarded-For buys nothing where no proxy is trusted.
        codes = [guess(proxied, i) if i % 2 else guess(direct, i, **{"X-Forwarded-For": f"10.0.0.{i}"})
                 for i in range(20)]
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
        r = requests.head(direct.url + "/blobs/" + "0" * 64, headers=AUTH, timeout=10)  # even the right token waits
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        # Behind the trusted proxy, another client (its address in X-Forwarded-For) has a budget of its own.
        assert guess(proxied, 99, **{"X-Forwarded-For": "10.9.9.9"}) == 401
    finally:
        direct.stop()
        proxied.stop()


HALF_UPLOADER = r"""
import socket, sys
data = open(sys.argv[2], "rb").read()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall((f"POST /memories/sst2?target=android HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {sys.argv[3]}\r\n"
           f"X-Content-SHA256: {sys.argv[4]}\r\nContent-Length: {len(data)}\r\n\r\n").encode())
s.sendall(data[: len(data) // 2])
print("half sent", flush=True)
sys.stdin.readline()
s.sendall(data[len(data) // 2:])
print(s.recv(65536).split(b"\r\n")[0].decode(), flush=True)
"""


def _half_upload(port, tmp_path, data):
    f = tmp_path / "m.safetensors"
    f.write_bytes(data)
    p = subprocess.Popen([sys.executable, "-c", HALF_UPLOADER, str(port), str(f), TOKEN, sha256(data)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "half sent"
    return p


def test_crash_leftovers_swept_at_startup_live_uploads_kept(tmp_path, dist):
    instance = tmp_path / "instance"
    srv = ServerProcess(instance, workers=1)
    assert publish(srv.url, dist).returncode == 0
    p = _half_upload(srv.port, tmp_path, memory_bytes("sst2", seed=40))
    tmp = instance / "blobs" / ".tmp"
    deadline = time.time() + 10
    while not list(tmp.iterdir()) and time.time() < deadline:
        time.sleep(0.05)
    assert len(list(tmp.iterdir())) == 1
    srv.crash()  # the server dies mid-upload: its temporary file stays behind
    p.kill()
    p.wait()
    assert len(list(tmp.iterdir())) == 1
    srv = ServerProcess(instance, workers=1)  # on the old code it stayed an hour
    try:
        assert list(tmp.iterdir()) == []
        # an upload in flight survives another worker's start-up sweep, and completes
        data = memory_bytes("sst2", seed=41)
        p = _half_upload(srv.port, tmp_path, data)
        other = ServerProcess(instance, workers=1)
        other.stop()
        assert len(list(tmp.iterdir())) == 1
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "HTTP/1.1 201 CREATED"
        p.wait()
        assert requests.get(srv.url + "/memories/sst2?target=android", timeout=10).content == data
    finally:
        srv.stop()


def test_gc_deletes_only_unreferenced_blobs(tmp_path, dist):
    instance = tmp_path / "instance"
    srv = ServerProcess(instance, workers=1)
    try:
        assert publish(srv.url, dist).returncode == 0
        v2 = memory_bytes("sst2", seed=50)
        assert upload(srv.url, "sst2", v2).status_code == 201
        orphan = b"uploaded, never registered " * 10
        assert put_blob(srv.url, orphan).status_code == 201
        env = {**os.environ, "SPARTAN_EDGE_INSTANCE": str(instance), "PYTHONPATH": str(REPO)}
        gc = [sys.executable, "-m", "flask", "--app", "demo_server", "gc"]
        r = subprocess.run(gc, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "0 unreferenced" in r.stdout  # young blobs are kept by default
        r = subprocess.run(gc + ["--min-age-s", "0", "--dry-run"], env=env, cwd=REPO, capture_output=True,
                           text=True, timeout=60)
        assert r.stdout.splitlines()[0] == f"would delete {sha256(orphan)}" and "1 unreferenced" in r.stdout
        r = subprocess.run(gc + ["--min-age-s", "0"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and f"deleted {sha256(orphan)}" in r.stdout and "1 unreferenced" in r.stdout
        assert requests.head(srv.url + "/blobs/" + sha256(orphan), headers=AUTH, timeout=10).status_code == 404
        m = requests.get(srv.url + "/manifest", timeout=10).json()
        for f in m["backbones"]["android"]["files"]:
            assert sha256(requests.get(srv.url + f["url"], timeout=10).content) == f["sha256"]
        assert requests.get(srv.url + "/memories/sst2?target=android&version=1", timeout=10).status_code == 200
        assert requests.get(srv.url + "/memories/sst2?target=android", timeout=10).content == v2
    finally:
        srv.stop()


def test_head_blob_reports_its_length(server):
    data = b"a blob of known length " * 100
    assert put_blob(server.url, data).status_code == 201
    r = requests.head(server.url + "/blobs/" + sha256(data), headers=AUTH, timeout=10)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(data)  # was 0


def test_catalog_is_valid_for_the_formats_reader(server):
    from spartan_formats.catalog import read_catalog

    m = requests.get(server.url + "/manifest", timeout=10).content
    cat = read_catalog(m)
    assert cat["backbones"]["android"]["fingerprint"] == FP and "sst2" in cat["tasks"]
    assert json.loads(m)["format_version"] == 1
