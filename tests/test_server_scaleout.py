"""The scaled-out server for real: two gunicorn instances on one PostgreSQL and one blob folder behind nginx
(demo_server/localstack.py), file bodies sent by nginx or redirected to a mirror. The whole HTTP suite also runs
against this stack (tests/test_server.py); these are the checks that only make sense with several parts."""

from __future__ import annotations

import functools
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from conftest import new_postgres_database, nginx_available
from edge_support import TOKEN, ServerProcess, make_dist, memory_bytes, publish, sha256
from safetensors.numpy import load as st_load

from demo_server.localstack import Stack

pytestmark = pytest.mark.skipif(not nginx_available(), reason="nginx not installed: apt-get install nginx")


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    return make_dist(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory, postgres_cluster, dist):
    s = Stack(tmp_path_factory.mktemp("stack"), instances=2, token=TOKEN, workers=1,
              database=new_postgres_database(postgres_cluster))
    try:
        assert publish(s.url, dist).returncode == 0
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def plain(stack):
    """The reference: one more instance on the same registry and blob folder, without offload (Flask sends every
    byte, as the embedded default does). Same rows, same publish times: its answers must be the stack's, exactly."""
    srv = ServerProcess(stack.instance, env={"SPARTAN_EDGE_DATABASE": stack.database})
    try:
        yield srv
    finally:
        srv.stop()


def upload(url: str, task: str, data: bytes) -> requests.Response:
    return requests.post(f"{url}/memories/{task}", params={"target": "android"}, data=data, timeout=30,
                         headers={"Authorization": f"Bearer {TOKEN}", "X-Content-SHA256": sha256(data)})


# Every header must be the same whether Flask or nginx sends the body, except these hop-by-hop/per-server ones: a
# header the app adds later that nginx drops on X-Accel-Redirect (offload.PASS_HEADERS) fails here.
NOT_COMPARED = {"date", "server", "connection", "keep-alive", "transfer-encoding"}


def test_nginx_sends_the_body_and_flask_keeps_every_validator(stack, plain):
    path = "/memories/sst2?target=android"
    direct = requests.get(stack.apps[0].url + path, timeout=10)  # what the app instance itself answers
    assert direct.status_code == 200 and direct.content == b""
    assert direct.headers["X-Accel-Redirect"] == "/_blobs/" + direct.headers["X-Content-SHA256"][:2] + "/" + \
        direct.headers["X-Content-SHA256"]
    catalog = requests.get(stack.url + "/manifest", timeout=10).json()
    pinned = [catalog["tasks"]["sst2"]["android"]["url"], catalog["backbones"]["android"]["files"][0]["url"]]
    stale = '"' + "0" * 64 + '"'
    for url in [path, *pinned]:
        first = requests.get(plain.url + url, timeout=10)
        etag, date = first.headers["ETag"], first.headers.get("Last-Modified")
        cases = [{}, {"If-None-Match": etag}, {"If-None-Match": stale}, {"Range": "bytes=100-"},
                 {"Range": "bytes=0-9"}, {"Range": "bytes=100-", "If-Range": etag},
                 {"Range": "bytes=100-", "If-Range": stale}, {"Range": "bytes=999999-"}, {"If-Match": stale},
                 {"If-Match": etag}, {"If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"}]
        if date:  # pinned URLs carry the version's publish time
            cases += [{"If-Modified-Since": date}, {"Range": "bytes=100-", "If-Range": date},
                      {"If-Unmodified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"}]
        for extra in cases:
            want = requests.get(plain.url + url, headers=extra, timeout=10)
            got = requests.get(stack.url + url, headers=extra, timeout=10)
            assert (got.status_code, got.content) == (want.status_code, want.content), (url, extra)
            assert {h.lower() for h in got.headers} - NOT_COMPARED == \
                {h.lower() for h in want.headers} - NOT_COMPARED, (url, extra)
            for h in {h.lower() for h in want.headers} - NOT_COMPARED:
                assert got.headers.get(h) == want.headers.get(h), (url, extra, h)
    sha = direct.headers["X-Content-SHA256"]
    blocked = requests.get(f"{stack.url}/_blobs/{sha[:2]}/{sha}", timeout=10)  # internal: only via the app
    assert blocked.status_code == 404 and blocked.json()["error"] == "not_found" and blocked.content != b""
    head = requests.head(stack.url + "/backbone/android/backbone.pte", timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) > 0 and head.content == b""


def test_cdn_base_url_redirects_bodies_to_a_mirror(tmp_path, dist):
    """BLOB_BASE_URL: the app answers with a redirect to <base>/<sha[:2]>/<sha>; a plain static server over the
    blob folder stands in for the CDN/bucket. 304s are still the app's own, with no redirect."""
    instance = tmp_path / "instance"
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(instance / "blobs"))
    handler.log_message = lambda *a: None
    (instance / "blobs").mkdir(parents=True)
    cdn = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=cdn.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{cdn.server_address[1]}"
    srv = ServerProcess(instance, env={"SPARTAN_EDGE_BLOB_BASE_URL": base + "/"})
    try:
        assert publish(srv.url, dist).returncode == 0
        want = (dist / "android/memories/sst2.safetensors").read_bytes()
        r = requests.get(srv.url + "/memories/sst2?target=android", allow_redirects=False, timeout=10)
        assert r.status_code == 302 and r.headers["Location"] == f"{base}/{sha256(want)[:2]}/{sha256(want)}"
        assert r.headers["ETag"] == f'"{sha256(want)}"' and r.headers["X-Memory-Version"] == "1"
        assert r.headers["Cache-Control"] == "no-cache"
        followed = requests.get(srv.url + "/memories/sst2?target=android", timeout=10)
        assert followed.status_code == 200 and followed.content == want
        r304 = requests.get(srv.url + "/memories/sst2?target=android", allow_redirects=False, timeout=10,
                            headers={"If-None-Match": r.headers["ETag"]})
        assert r304.status_code == 304 and "Location" not in r304.headers
        # A resume is redirected too; this mirror ignores Range and sends the whole file, which HTTP allows.
        program = (dist / "android/backbone.pte").read_bytes()
        r = requests.get(srv.url + "/backbone/android/backbone.pte", headers={"Range": "bytes=5-"},
                         allow_redirects=False, timeout=10)
        assert r.status_code == 302 and "Content-Range" not in r.headers
        resumed = requests.get(srv.url + "/backbone/android/backbone.pte", headers={"Range": "bytes=5-"}, timeout=10)
        assert (resumed.status_code, resumed.content) in ((206, program[5:]), (200, program))
    finally:
        srv.stop()
        cdn.shutdown()


def test_offload_settings_are_checked(tmp_path):
    import demo_server

    with pytest.raises(ValueError, match="BLOB_OFFLOAD"):
        demo_server.create_app({"INSTANCE_PATH": str(tmp_path), "BLOB_OFFLOAD": "apache"})
    with pytest.raises(ValueError, match="not both"):
        demo_server.create_app({"INSTANCE_PATH": str(tmp_path), "BLOB_OFFLOAD": "nginx",
                                "BLOB_BASE_URL": "https://cdn.example/blobs"})


def test_concurrent_publishers_on_two_instances_get_consecutive_versions(stack):
    """Two publishers, each talking to a different instance, race on one task: versions 1..2N with no gap or
    duplicate, and every registry row names a blob that is on disk with its sha256."""
    per = 6
    payloads = [[memory_bytes("race", seed=1000 * w + i) for i in range(per)] for w in range(2)]
    results: list[list[dict]] = [[], []]
    barrier = threading.Barrier(2)

    def publisher(w: int) -> None:
        barrier.wait()
        for data in payloads[w]:
            r = upload(stack.apps[w].url, "race", data)
            assert r.status_code == 201, r.text
            results[w].append(r.json())

    threads = [threading.Thread(target=publisher, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results[0]) == len(results[1]) == per
    versions = requests.get(stack.url + "/memories/race/versions?target=android", timeout=10).json()["versions"]
    assert [v["version"] for v in versions] == list(range(1, 2 * per + 1))
    assert sorted(r["version"] for rs in results for r in rs) == list(range(1, 2 * per + 1))
    shas = {sha256(d) for ds in payloads for d in ds}
    assert {v["sha256"] for v in versions} == shas
    for v in versions:
        blob = stack.instance / "blobs" / v["sha256"][:2] / v["sha256"]
        assert blob.is_file() and sha256(blob.read_bytes()) == v["sha256"]
    for mine in results:  # each publisher saw its own versions increase
        assert [r["version"] for r in mine] == sorted(r["version"] for r in mine)


@pytest.mark.slow  # its own stack and ~10 s of load (about 20 s on 2 shared cores)
def test_downloads_during_publishes_and_the_kill_of_one_instance(tmp_path_factory, postgres_cluster, dist):
    """Readers through nginx while a publisher adds versions and one of the two instances is SIGKILLed:
    0 errors, 0 torn reads (every body hashes to the sha256 its headers name, and is a version that exists)."""
    s = Stack(tmp_path_factory.mktemp("killstack"), instances=2, token=TOKEN, workers=1,
              database=new_postgres_database(postgres_cluster))
    try:
        assert publish(s.url, dist).returncode == 0
        versions = [memory_bytes("live", seed=s_) for s_ in range(10)]
        known = {sha256(v) for v in versions}
        assert upload(s.url, "live", versions[0]).status_code == 201
        backbone = (dist / "android/backbone.pte").read_bytes()
        errors: list = []
        reads, retried = [0], [0]
        stop = threading.Event()

        def reader(i: int) -> None:
            sess = requests.Session()
            while not stop.is_set():
                try:
                    if i % 3 == 2:
                        r = sess.get(s.url + "/backbone/android/backbone.pte", timeout=10)
                        ok = r.status_code == 200 and r.content == backbone
                    else:
                        r = sess.get(s.url + "/memories/live?target=android", timeout=10)
                        body_sha = sha256(r.content)
                        ok = (r.status_code == 200 and body_sha == r.headers.get("X-Content-SHA256")
                              and body_sha in known and r.headers.get("ETag") == f'"{body_sha}"')
                        if ok:
                            st_load(r.content)
                except (requests.RequestException, ValueError) as e:
                    ok, r = False, e
                if not ok:
                    errors.append(repr(r)[:200])
                reads[0] += 1

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        try:
            for n, v in enumerate(versions[1:], start=1):
                if n == 4:
                    s.apps[0].kill()  # master and workers, SIGKILL: requests in flight there are cut
                    reads_at_kill = reads[0]
                r = upload(s.url, "live", v)
                if r.status_code == 502:  # the upload was on the instance just killed: retrying is safe
                    assert r.json()["error"] == "bad_gateway"
                    retried[0] += 1
                    r = upload(s.url, "live", v)
                assert r.status_code in (200, 201) and r.json()["version"] == n + 1, r.text
                time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert errors == [] and reads[0] > 50
        assert s.apps[0].proc.poll() is not None and reads[0] > reads_at_kill + 20  # kept reading after the kill
        assert requests.get(s.url + "/manifest", timeout=10).json()["tasks"]["live"]["android"]["version"] == 10
        assert retried[0] <= 1  # only an upload in flight at the kill can fail
        versions_seen = requests.get(s.url + "/memories/live/versions?target=android", timeout=10).json()
        assert [v["version"] for v in versions_seen["versions"]] == list(range(1, 11))
    finally:
        s.stop()


def test_instances_reconnect_after_postgres_drops_their_connections(stack, postgres_cluster):
    """Every registry connection is cut on the server side (as a PostgreSQL restart or failover would): at most
    one JSON 500 per worker thread, then every request is answered again."""
    import psycopg

    dbname = stack.database.rsplit("/", 1)[-1]
    with psycopg.connect(postgres_cluster.url(), autocommit=True) as c:
        n = c.execute("SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE datname = %s"
                      " AND pid <> pg_backend_pid()", (dbname,)).fetchone()[0]
    assert n >= 1
    statuses = []
    for _ in range(40):
        r = requests.get(stack.url + "/memories/sst2?target=android", timeout=10)
        assert r.headers["Content-Type"].startswith("application/json") or r.status_code == 200
        statuses.append(r.status_code)
    assert set(statuses) <= {200, 500} and statuses[-10:] == [200] * 10
    assert statuses.count(500) <= n
