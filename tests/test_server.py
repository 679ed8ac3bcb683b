"""demo_server over real HTTP: gunicorn on a loopback port, publishing with the CLI, every file-serving rule,
bad input, bad uploads, concurrency, and a publisher killed mid-upload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests
from conftest import DEPLOYMENTS, deployed_server
from edge_support import (
    FP,
    MAX_LABELS,
    OTHER_FP,
    REPO,
    SHAPE,
    TOKEN,
    CuttingProxy,
    ServerProcess,
    free_port,
    make_dist,
    memory_bytes,
    publish,
    raw_get,
    sha256,
)
from safetensors.numpy import load as st_load

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    return make_dist(tmp_path_factory.mktemp("dist"))


# Every test that takes `server` runs against each deployment (conftest.DEPLOYMENTS): SQLite, PostgreSQL, and two
# instances on PostgreSQL behind nginx sending the file bodies. Same requests, same expected answers.
@pytest.fixture(scope="module", params=DEPLOYMENTS)
def server(request, tmp_path_factory, dist):
    yield from deployed_server(request, tmp_path_factory, dist)


def manifest(server) -> dict:
    r = requests.get(server.url + "/manifest", timeout=10)
    assert r.status_code == 200
    return r.json()


def upload(server, task, data, target="android", claimed=None, token=TOKEN):
    headers = {"X-Content-SHA256": claimed or sha256(data)}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(f"{server.url}/memories/{task}", params={"target": target}, data=data, headers=headers,
                         timeout=30)


def tmp_leftovers(server) -> list:
    return list((server.instance / "blobs" / ".tmp").iterdir())


# --- publishing an export folder, the manifest ---------------------------------------------------------------

def test_publish_cli_fills_manifest_and_is_idempotent(server, dist):
    m = manifest(server)
    assert set(m["backbones"]) == {"android", "ios"}
    bb = m["backbones"]["android"]
    assert bb["fingerprint"] == FP and bb["program"] == "backbone.pte" and bb["max_labels"] == MAX_LABELS
    assert {f["path"] for f in bb["files"]} == {"backbone.pte", "tokenizer.json"}
    local = json.loads((dist / "manifest.json").read_text())
    for task in ("sst2", "rte"):
        for target in ("android", "ios"):
            e = m["tasks"][task][target]
            want = local["tasks"][task]["files"][target]
            assert (e["version"], e["sha256"], e["bytes"]) == (1, want["sha256"], want["bytes"])
            assert e["backbone_fingerprint"] == FP and e["metric"] == "accuracy" and e["label_names"]
    again = publish(server.url, dist)
    assert again.returncode == 0 and "unchanged" in again.stdout and "new" not in again.stdout
    assert manifest(server)["tasks"]["sst2"]["android"]["version"] == 1


def test_manifest_etag_304(server):
    r = requests.get(server.url + "/manifest", timeout=10)
    r2 = requests.get(server.url + "/manifest", headers={"If-None-Match": r.headers["ETag"]}, timeout=10)
    assert r2.status_code == 304 and r2.content == b""


# --- file responses: ETag / 304 / Range / 206 ----------------------------------------------------------------

def test_memory_download_headers_and_304(server, dist):
    want = (dist / "android/memories/sst2.safetensors").read_bytes()
    r = requests.get(server.url + "/memories/sst2", params={"target": "android"}, timeout=10)
    assert r.status_code == 200 and r.content == want
    assert r.headers["ETag"] == f'"{sha256(want)}"'  # strong, the sha256
    assert r.headers["Content-Length"] == str(len(want))
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["X-Memory-Version"] == "1" and r.headers["X-Backbone-Fingerprint"] == FP
    r304 = requests.get(server.url + "/memories/sst2", params={"target": "android"},
                        headers={"If-None-Match": r.headers["ETag"]}, timeout=10)
    assert r304.status_code == 304 and r304.content == b"" and r304.headers["ETag"] == r.headers["ETag"]
    other = requests.get(server.url + "/memories/sst2", params={"target": "android"},
                         headers={"If-None-Match": '"' + "0" * 64 + '"'}, timeout=10)
    assert other.status_code == 200


def test_range_206_and_416(server, dist):
    want = (dist / "android/memories/sst2.safetensors").read_bytes()
    url = server.url + "/memories/sst2?target=android"
    r = requests.get(url, headers={"Range": "bytes=100-"}, timeout=10)
    assert r.status_code == 206 and r.content == want[100:]
    assert r.headers["Content-Range"] == f"bytes 100-{len(want) - 1}/{len(want)}"
    assert r.headers["Content-Length"] == str(len(want) - 100)
    r = requests.get(url, headers={"Range": "bytes=0-9"}, timeout=10)
    assert r.status_code == 206 and r.content == want[:10]
    # If-Range with a stale ETag: the whole (current) file, never a splice of two versions
    r = requests.get(url, headers={"Range": "bytes=100-", "If-Range": '"' + "0" * 64 + '"'}, timeout=10)
    assert r.status_code == 200 and r.content == want
    r = requests.get(url, headers={"Range": f"bytes={len(want) + 10}-"}, timeout=10)
    assert r.status_code == 416


def test_resume_after_cut_connection(server, dist):
    want = (dist / "android/backbone.pte").read_bytes()
    proxy = CuttingProxy(server.port, after=300)  # headers + 300 body bytes, then the line drops
    try:
        got = b""
        with pytest.raises(requests.RequestException):
            with requests.get(proxy.url + "/backbone/android/backbone.pte", stream=True, timeout=10) as r:
                etag = r.headers["ETag"]
                for chunk in r.iter_content(64):
                    got += chunk
        assert 0 < len(got) < len(want)
        r = requests.get(proxy.url + "/backbone/android/backbone.pte", timeout=10,
                         headers={"Range": f"bytes={len(got)}-", "If-Range": etag})
        assert r.status_code == 206
        assert got + r.content == want
    finally:
        proxy.close()


def test_backbone_bundle_and_files(server, dist):
    b = requests.get(server.url + "/backbone/android", timeout=10).json()
    assert b["fingerprint"] == FP and b["version"] == 1
    for f in b["files"]:
        r = requests.get(server.url + f["url"], timeout=10)
        assert r.status_code == 200 and sha256(r.content) == f["sha256"] and r.headers["ETag"] == f'"{f["sha256"]}"'
        assert r.headers["Accept-Ranges"] == "bytes" and int(r.headers["Content-Length"]) == f["bytes"]
    assert requests.get(server.url + "/backbone/ios/backbone.mlpackage.zip", timeout=10).status_code == 200


# --- bad parameters, odd names, traversal ----------------------------------------------------------------------

def _json_error(status, headers, body, codes):
    assert status in codes, (status, body[:200])
    assert headers["content-type"].startswith("application/json")
    err = json.loads(body)
    assert err["message"] and err["error"]
    assert b"SQLite format" not in body
    return err


@pytest.mark.parametrize("path", [
    "/memories/../x?target=android",
    "/memories/%2e%2e?target=android",
    "/memories/%2E%2E%2Fregistry.sqlite3?target=android",
    "/memories/..%2f..%2fetc%2fpasswd?target=android",
    "/memories/.?target=android",
    "/memories/" + "a" * 1000 + "?target=android",
    "/memories/%C3%A9t%C3%A9?target=android",
    "/memories/%E2%80%AEsst2?target=android",
    "/memories/sst2%00?target=android",
    "/memories/sst2?target=..%2f..%2fregistry.sqlite3",
    "/backbone/android/../../registry.sqlite3",
    "/backbone/android/..%2f..%2fregistry.sqlite3",
    "/backbone/android/%2e%2e/%2e%2e/registry.sqlite3",
    "/backbone/%2e%2e/backbone.pte",
    "/blobs/..%2fregistry.sqlite3",
])
def test_traversal_and_odd_names_get_json_errors(server, path):
    status, headers, body = raw_get(server.port, path)
    _json_error(status, headers, body, {400, 404, 405})


def test_very_long_url_is_refused(server):
    status, _, body = raw_get(server.port, "/memories/" + "a" * 10000 + "?target=android")
    assert 400 <= status < 500 and b"SQLite" not in body


@pytest.mark.parametrize("path,code,needle", [
    ("/memories/nosuchtask?target=android", 404, "unknown task"),
    ("/memories/sst2?target=android&version=99", 404, "no version 99"),
    ("/memories/sst2?target=windows", 404, "unknown target"),
    ("/memories/sst2", 400, "target"),
    ("/memories/sst2?target=android&version=abc", 400, "version"),
    ("/memories/sst2?target=android&version=0", 400, "version"),
    ("/memories/sst2?target=android&version=-1", 400, "version"),
    ("/memories/sst2?target=android&backbone=%3Cscript%3E", 400, "backbone"),
    ("/backbone/windows", 404, "unknown target"),
    ("/backbone/android/nosuchfile.bin", 404, "no file"),
    ("/backbone/android?fingerprint=" + "c" * 64, 404, "no backbone"),
    ("/nosuchroute", 404, ""),
])
def test_unknown_and_bad_parameters(server, path, code, needle):
    status, headers, body = raw_get(server.port, path)
    err = _json_error(status, headers, body, {code})
    assert needle in err["message"]


def test_backbone_mismatch_409_names_both(server):
    r = requests.get(server.url + "/memories/sst2", params={"target": "android", "backbone": OTHER_FP}, timeout=10)
    assert r.status_code == 409
    e = r.json()
    assert e["requested_backbone"] == OTHER_FP and e["memory_backbone"] == FP and OTHER_FP in json.dumps(e)
    ok = requests.get(server.url + "/memories/sst2", params={"target": "android", "backbone": FP}, timeout=10)
    assert ok.status_code == 200


# --- publishing: auth, validation, versions --------------------------------------------------------------------

def test_publish_without_or_with_wrong_token(server):
    data = memory_bytes("sst2", seed=5)
    assert upload(server, "sst2", data, token=None).status_code == 401
    r = upload(server, "sst2", data, token="wrong")
    assert r.status_code == 401 and "token" in r.json()["message"]
    assert publish(server.url, server.instance, token="wrong").returncode != 0
    assert manifest(server)["tasks"]["sst2"]["android"]["version"] == 1


def test_publishing_off_without_configured_token(tmp_path):
    srv = ServerProcess(tmp_path / "instance", token=None, workers=1)
    try:
        r = upload(srv, "sst2", memory_bytes("sst2"))
        assert r.status_code == 403 and "disabled" in r.json()["message"]
    finally:
        srv.stop()


def _truncated():
    return memory_bytes("sst2", seed=7)[:-100]


BAD_UPLOADS = {  # case -> (file, HTTP status, words in the message, error code of docs/formats.md)
    "corrupt": (lambda: os.urandom(5000), 400, "safetensors", "bad_header_length"),
    "header_only_garbage": (lambda: b"\xff" * 8 + b"{}" * 10, 400, "safetensors", "bad_header_length"),
    "truncated": (_truncated, 400, "truncated", "truncated"),
    "nan": (lambda: memory_bytes("sst2", nan=True), 400, "NaN", "not_finite"),
    "wrong_shape": (lambda: memory_bytes("sst2", tensor_shapes={"P": (2, 5, 8)}), 400, "shape", "tensor_shape"),
    "wrong_hidden": (lambda: memory_bytes("sst2", shape={"hidden_size": 16}), 400, "hidden_size",
                     "memory_shape_mismatch"),
    "wrong_backbone": (lambda: memory_bytes("sst2", fp=OTHER_FP), 409, "not published", "fingerprint_mismatch"),
    "other_task": (lambda: memory_bytes("rte"), 400, "task", "task_mismatch"),
    "too_many_labels": (lambda: memory_bytes("sst2", labels=list("abcdef"), pad_to=None), 400, "max_labels",
                        "too_many_outputs"),
    "int_dtype": (lambda: memory_bytes("sst2", meta_overrides={"dtype": "int8"}), 400, "dtype", "bad_dtype"),
    "dtype_lies": (lambda: memory_bytes("sst2", meta_overrides={"dtype": "fp16"}), 400, "fp16", "tensor_dtype"),
    "format_version": (lambda: memory_bytes("sst2", meta_overrides={"format_version": 3}), 400, "format_version",
                       "bad_format_version"),
    # issue 11, item 5: these gave 500s or were accepted
    "dtype_list": (lambda: memory_bytes("sst2", meta_overrides={"dtype": ["fp32"]}), 400, "dtype", "bad_dtype"),
    "dtype_dict": (lambda: memory_bytes("sst2", meta_overrides={"dtype": {"a": 1}}), 400, "dtype", "bad_dtype"),
    "metadata_not_object": (lambda: _with_metadata(["x"]), 400, "__metadata__", "metadata_not_object"),
    "no_memory_shape": (lambda: memory_bytes("sst2", meta_overrides={"memory_shape": None}), 400, "memory_shape",
                        "bad_field"),
    "no_top_k": (lambda: memory_bytes("sst2", shape={"top_k": None}), 400, "top_k", "bad_field"),
    "no_temperature": (lambda: _without_shape_key("temperature"), 400, "temperature", "missing_field"),
    "top_k_differs": (lambda: memory_bytes("sst2", shape={"top_k": 3}), 400, "top_k", "memory_shape_mismatch"),
    "task_newline": (lambda: memory_bytes("sst2", meta_overrides={"task": "sst2\n"}), 400, "task", "bad_name"),
    "fingerprint_not_hex": (lambda: memory_bytes("sst2", fp="../../" + "a" * 58), 400, "fingerprint",
                            "bad_fingerprint"),
}


def _with_metadata(value) -> bytes:
    data = memory_bytes("sst2")
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = value
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data[8 + n:]


def _without_shape_key(key: str) -> bytes:
    from edge_support import SHAPE

    return memory_bytes("sst2", meta_overrides={"memory_shape": {k: v for k, v in SHAPE.items() if k != key}})


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_uploads_rejected_nothing_replaced(server, dist, case):
    make, code, needle, error = BAD_UPLOADS[case]
    before = manifest(server)
    r = upload(server, "sst2", make())
    assert r.status_code == code, r.text
    assert needle.lower() in r.json()["message"].lower()
    assert r.json()["code"] == error
    assert manifest(server)["tasks"] == before["tasks"]
    served = requests.get(server.url + "/memories/sst2?target=android", timeout=10).content
    assert served == (dist / "android/memories/sst2.safetensors").read_bytes()
    assert tmp_leftovers(server) == []


def test_claimed_sha_mismatch_and_missing(server):
    data = memory_bytes("sst2", seed=11)
    r = upload(server, "sst2", data, claimed="0" * 64)
    assert r.status_code == 400 and "sha256 mismatch" in r.json()["message"]
    r = requests.post(server.url + "/memories/sst2?target=android", data=data, headers=AUTH, timeout=10)
    assert r.status_code == 400 and "X-Content-SHA256" in r.json()["message"]


def test_new_version_old_versions_stay(server):
    v2 = memory_bytes("rte", labels=["entailment", "not_entailment"], seed=21, dtype="fp16")
    r = upload(server, "rte", v2)
    assert r.status_code == 201 and r.json()["version"] == 2 and r.json()["created"]
    assert upload(server, "rte", v2).json() | {"created": None} == r.json() | {"created": None}
    assert upload(server, "rte", v2).status_code == 200  # same bytes as latest: no new version
    latest = requests.get(server.url + "/memories/rte?target=android", timeout=10)
    assert latest.content == v2 and latest.headers["X-Memory-Version"] == "2"
    assert latest.headers["Cache-Control"] == "no-cache"
    v1 = requests.get(server.url + "/memories/rte?target=android&version=1", timeout=10)
    assert v1.status_code == 200 and v1.content != v2 and "immutable" in v1.headers["Cache-Control"]
    vs = requests.get(server.url + "/memories/rte/versions?target=android", timeout=10).json()["versions"]
    assert [v["version"] for v in vs] == [1, 2]
    assert manifest(server)["tasks"]["rte"]["android"]["dtype"] == "fp16"
    assert manifest(server)["tasks"]["rte"]["ios"]["version"] == 1  # per target


def test_backbone_publish_validation(server):
    bad = {"fingerprint": FP, "program": "x.pte", "memory_shape": SHAPE, "max_labels": MAX_LABELS,
           "max_seq_length": 32, "files": [{"path": "x.pte", "sha256": "1" * 64, "bytes": 3}]}
    r = requests.post(server.url + "/backbone/android", json=bad, headers=AUTH, timeout=10)
    assert r.status_code == 409 and "not uploaded" in r.json()["message"]
    bad["files"][0]["path"] = "../x.pte"
    r = requests.post(server.url + "/backbone/android", json=bad, headers=AUTH, timeout=10)
    assert r.status_code == 400 and "path" in r.json()["message"]
    r = requests.put(server.url + "/blobs/" + "1" * 64, data=b"abc", headers=AUTH, timeout=10)
    assert r.status_code == 400 and "mismatch" in r.json()["message"]
    assert requests.post(server.url + "/backbone/android", json=bad, timeout=10).status_code == 401
    assert manifest(server)["backbones"]["android"]["version"] == 1


# --- concurrency and crashes -----------------------------------------------------------------------------------

def test_concurrent_publish_and_download_no_torn_reads(server):
    versions = [memory_bytes("conc", seed=s) for s in range(8)]
    assert upload(server, "conc", versions[0]).status_code == 201
    known = {sha256(v) for v in versions}
    errors, reads = [], [0]
    stop = threading.Event()

    def reader():
        s = requests.Session()
        while not stop.is_set():
            r = s.get(server.url + "/memories/conc?target=android", timeout=10)
            if r.status_code != 200 or sha256(r.content) != r.headers["X-Content-SHA256"] \
                    or sha256(r.content) not in known or r.headers["ETag"] != f'"{sha256(r.content)}"':
                errors.append((r.status_code, len(r.content)))
            st_load(r.content)  # parses: not a half-written file
            reads[0] += 1

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for v in versions[1:]:
            assert upload(server, "conc", v).status_code == 201
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == [] and reads[0] > 8
    assert manifest(server)["tasks"]["conc"]["android"]["version"] == len(versions)


KILLED_UPLOADER = r"""
import socket, sys
data = open(sys.argv[2], "rb").read()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall((f"POST /memories/sst2?target=android HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {sys.argv[3]}\r\n"
           f"X-Content-SHA256: {sys.argv[4]}\r\nContent-Length: {len(data)}\r\n\r\n").encode())
s.sendall(data[: len(data) // 2])
print("half sent", flush=True)
sys.stdin.read()
"""


def test_publisher_sigkilled_mid_upload(server, dist, tmp_path):
    data = memory_bytes("sst2", seed=99)
    f = tmp_path / "m.safetensors"
    f.write_bytes(data)
    before = manifest(server)["tasks"]["sst2"]["android"]
    p = subprocess.Popen([sys.executable, "-c", KILLED_UPLOADER, str(server.port), str(f), TOKEN, sha256(data)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "half sent"
        time.sleep(0.3)
        assert len(tmp_leftovers(server)) == 1  # the upload in progress is staged, not visible
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait()
    deadline = time.time() + 10
    while tmp_leftovers(server) and time.time() < deadline:
        time.sleep(0.1)
    assert tmp_leftovers(server) == []
    assert manifest(server)["tasks"]["sst2"]["android"] == before
    r = requests.get(server.url + "/memories/sst2?target=android", timeout=10)
    assert r.content == (dist / "android/memories/sst2.safetensors").read_bytes()
    blobs = {p.name for p in (server.instance / "blobs").glob("??/*")}
    assert sha256(data) not in blobs


# --- the development server, local CLI publish, config file ---------------------------------------------------

def test_flask_dev_server_local_publish_and_config_file(tmp_path, dist):
    instance = tmp_path / "inst"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"PUBLISH_TOKEN": "from-file"}))
    env = {**os.environ, "SPARTAN_EDGE_INSTANCE": str(instance), "SPARTAN_EDGE_CONFIG": str(cfg),
           "PYTHONPATH": str(REPO)}
    env.pop("SPARTAN_EDGE_PUBLISH_TOKEN", None)
    flask = [sys.executable, "-m", "flask", "--app", "demo_server"]
    r = subprocess.run(flask + ["publish", str(dist), "--target", "android"], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    port = free_port()
    p = subprocess.Popen(flask + ["run", "--port", str(port)], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                m = requests.get(url + "/manifest", timeout=1).json()
                break
            except requests.RequestException:
                time.sleep(0.1)
        assert set(m["backbones"]) == {"android"} and m["tasks"]["sst2"]["android"]["version"] == 1
        data = memory_bytes("sst2", seed=3)
        r = requests.post(url + "/memories/sst2?target=android", data=data, timeout=10,
                          headers={"Authorization": "Bearer from-file", "X-Content-SHA256": sha256(data)})
        assert r.status_code == 201 and r.json()["version"] == 2
        assert np.array_equal(st_load(requests.get(url + "/memories/sst2?target=android", timeout=10).content)["P"],
                              st_load(data)["P"])
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(10)


def test_server_imports_neither_torch_nor_pipeline():
    code = ("import sys, demo_server; demo_server.create_app({'INSTANCE_PATH': sys.argv[1]}); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'pipeline', 'mobile_export')]; "
            "assert not bad, bad")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-c", code, d], cwd=REPO, check=True, timeout=60)


def _open_registry(path: str, barrier, results) -> None:
    from demo_server import registry
    from demo_server.engines import connect

    barrier.wait()  # every process opens the new file at the same moment, as gunicorn's workers do
    try:
        registry.init(connect(path))
        results.put("ok")
    except Exception as e:  # noqa: BLE001  (the test reports whatever a start-up raised)
        results.put(repr(e))


def test_workers_starting_together_on_a_new_sqlite_registry(tmp_path):
    """8 processes opening one new SQLite registry at once: each must start (SQLite's switch to WAL answered
    "database is locked" without waiting, seen as a gunicorn worker failing to boot)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    failures = []
    for trial in range(30):
        barrier, results = ctx.Barrier(8), ctx.Queue()
        procs = [ctx.Process(target=_open_registry, args=(str(tmp_path / f"r{trial}.sqlite3"), barrier, results))
                 for _ in range(8)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        failures += [o for o in outcomes if o != "ok"]
    assert not failures, failures
