"""apps.client against a real server (gunicorn on loopback) and against fault-injecting servers: first run, task
switch fetching only the memory, cache hits, --offline, resume after a cut, and every refusal keeping the last good
copy. Runs a toy ExecuTorch program with the backbone's input contract (the real export is in test_client_e2e)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import requests
from edge_support import (
    OTHER_FP,
    REPO,
    CuttingProxy,
    FakeServer,
    free_port,
    make_dist,
    memory_bytes,
    sha256,
    toy_pte,
)

from apps.client import EdgeClient, IntegrityError, NotCached, Truncated

RTE = ["entailment", "not_entailment"]


def same(logits: list[float]):
    """Equal up to float rounding: the same program and memory in another process (thread split) may differ by 1 ulp."""
    return pytest.approx(logits, rel=1e-5, abs=1e-6)


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    pte = toy_pte(tmp_path_factory.mktemp("toy"))
    return make_dist(tmp_path_factory.mktemp("dist"), {"sst2": {}, "rte": {"labels": RTE, "seed": 1}}, pte=pte)


def run_cli(*args) -> tuple[int, list[dict], str]:
    r = subprocess.run([sys.executable, "-m", "apps.client", "--json", *map(str, args)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    return r.returncode, [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")], r.stderr


def sizes(dist, *rels) -> int:
    return sum((dist / r).stat().st_size for r in rels)


@pytest.fixture(scope="module")
def good_cache(tmp_path_factory, server, dist):
    """A cache after one online run of both tasks (the CLI, in a subprocess, like a fresh app start)."""
    cache = tmp_path_factory.mktemp("cache") / "c"
    rc, out, err = run_cli("good movie", "--server", server.url, "--cache", cache, "--task", "sst2", "--task", "rte")
    assert rc == 0, err
    return cache, out


def test_first_run_fetches_backbone_once_then_only_memories(good_cache, dist):
    _, (a, b) = good_cache
    assert a["bytes_fetched"] == sizes(dist, "android/backbone.pte", "android/tokenizer.json",
                                       "android/memories/sst2.safetensors")
    assert b["bytes_fetched"] == sizes(dist, "android/memories/rte.safetensors")  # task switch: the memory only
    assert a["label"] in ("negative", "positive") and set(b["probabilities"]) == set(RTE)
    assert abs(sum(a["probabilities"].values()) - 1) < 1e-5 and len(a["logits"]) == 2  # padding dropped
    assert a["latency_ms"] > 0 and a["memory_version"] == 1


def test_cached_run_and_offline(good_cache, server, tmp_path):
    cache, (a, b) = good_cache
    c2 = shutil.copytree(cache, tmp_path / "c2")
    rc, out, err = run_cli("good movie", "--server", server.url, "--cache", c2, "--task", "rte", "--task", "sst2")
    assert rc == 0, err
    assert [p["bytes_fetched"] for p in out] == [0, 0]
    assert out[1]["logits"] == same(a["logits"]) and out[0]["logits"] == same(b["logits"])
    rc, out, err = run_cli("good movie", "--offline", "--cache", c2, "--task", "sst2")
    assert rc == 0 and out[0]["logits"] == same(a["logits"]) and out[0]["bytes_fetched"] == 0
    rc, out, err = run_cli("good movie", "--offline", "--cache", c2, "--task", "mnli")
    assert rc == 1 and "no memory for task 'mnli' in the cache (cached: rte, sst2)" in err
    # plain output says what it classified; an unknown task names those the server has
    r = subprocess.run([sys.executable, "-m", "apps.client", "a good movie", "--server", server.url, "--cache",
                        str(c2), "--task", "sst2", "--task", "mnli"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and r.stdout.splitlines()[0] == "text: 'a good movie'"
    assert r.stderr.strip().splitlines()[-1] == "error: the server has no task 'mnli' for android; it has: rte, sst2"
    rc, out, err = run_cli("good movie", "--offline", "--cache", tmp_path / "empty", "--task", "sst2")
    assert rc == 1 and "no backbone" in err


def test_new_version_fetches_only_that_memory(good_cache, server, tmp_path):
    cache, (a, _) = good_cache
    c = shutil.copytree(cache, tmp_path / "c")
    v2 = memory_bytes("sst2", seed=42)
    r = requests.post(server.url + "/memories/sst2?target=android", data=v2, timeout=10,
                      headers={"Authorization": "Bearer test-token-0123456789", "X-Content-SHA256": sha256(v2)})
    assert r.status_code == 201
    client = EdgeClient(server.url, c)
    p = client.predict("sst2", "good movie")
    assert p.memory_version == 2 and p.bytes_fetched == len(v2) and p.logits != same(a["logits"])
    p = client.predict("rte", "good movie")
    assert p.bytes_fetched == 0


def test_resume_after_cut_connection(server, dist, tmp_path):
    proxy = CuttingProxy(server.port, after=5000, cuts=1)  # the first file download drops after 5000 bytes
    try:
        client = EdgeClient(proxy.url, tmp_path / "c")
        client.catalog()  # goes through the proxy too: let its one cut hit the program download instead
        proxy.cuts = 1
        p = client.predict("sst2", "bad movie")
    finally:
        proxy.close()
    total = sizes(dist, "android/backbone.pte", "android/tokenizer.json", "android/memories/sst2.safetensors")
    assert p.bytes_fetched == total  # resumed, not restarted: every byte crossed the network once
    assert any(b"Range: bytes=5000-" in r for r in proxy.requests)


# --- fault injection: a server that lies or breaks ---------------------------------------------------------------

@pytest.fixture()
def fake(server):
    """A FakeServer mirroring the real server's manifest and files; tests then break one thing."""
    f = FakeServer()
    m = requests.get(server.url + "/manifest", timeout=10).json()
    for b in m["backbones"].values():
        for file in b["files"]:
            f.routes[file["url"].split("?")[0]] = requests.get(server.url + file["url"], timeout=10).content
    for task, per in m["tasks"].items():
        f.routes[f"/memories/{task}"] = requests.get(server.url + per["android"]["url"], timeout=10).content
    f.manifest = m
    f.set_manifest = lambda: f.routes.__setitem__("/manifest", json.dumps(f.manifest).encode())
    f.set_manifest()
    yield f
    f.close()


def publish_fake(fake, task, data, **entry):
    e = fake.manifest["tasks"][task]["android"]
    e.update({"version": e["version"] + 1, "sha256": sha256(data), "bytes": len(data), **entry})
    fake.routes[f"/memories/{task}"] = data
    fake.set_manifest()


def test_refuses_sha_mismatch_keeps_last_good(fake, good_cache, tmp_path):
    cache, (a, _) = good_cache
    c = shutil.copytree(cache, tmp_path / "c")
    publish_fake(fake, "sst2", memory_bytes("sst2", seed=5))
    fake.routes["/memories/sst2"] = memory_bytes("sst2", seed=6)  # served bytes differ from the manifest's sha256
    p = EdgeClient(fake.url, c).predict("sst2", "good movie")
    assert p.memory_version == 1 and p.logits == same(a["logits"])
    assert "does not match the manifest's sha256" in p.warnings[0] and "last good" in p.warnings[0]
    assert not any((c / "partial").iterdir())  # the refused file is gone, not cached
    with pytest.raises(IntegrityError, match="does not match the manifest's sha256"):
        _fresh_memory_refused(fake, cache, tmp_path, "sst2")


def _fresh_memory_refused(fake, cache, tmp_path, task):
    c = shutil.copytree(cache, tmp_path / "fresh")
    state = json.loads((c / "state.json").read_text())
    state["memories"].pop(task)  # no last good copy of this task
    (c / "state.json").write_text(json.dumps(state))
    EdgeClient(fake.url, c).predict(task, "good movie")


def test_refuses_memory_for_another_backbone(fake, good_cache, tmp_path):
    cache, (a, _) = good_cache
    data = memory_bytes("sst2", seed=8, fp=OTHER_FP)  # the manifest claims our backbone; the file says otherwise
    publish_fake(fake, "sst2", data)
    p = EdgeClient(fake.url, shutil.copytree(cache, tmp_path / "c")).predict("sst2", "good movie")
    assert p.memory_version == 1 and "made for backbone" in p.warnings[0] and p.logits == same(a["logits"])
    with pytest.raises(IntegrityError, match="made for backbone"):
        _fresh_memory_refused(fake, cache, tmp_path, "sst2")
    publish_fake(fake, "rte", memory_bytes("rte", labels=RTE, seed=9), backbone_fingerprint=OTHER_FP)
    with pytest.raises(IntegrityError, match="cached backbone"):  # refused from the manifest, before downloading
        _fresh_memory_refused(fake, cache, tmp_path / "x", "rte")
    assert not any(h[0].startswith("/memories/rte") for h in fake.hits)


def test_refuses_truncated_download_keeps_last_good(fake, good_cache, tmp_path):
    cache, (a, _) = good_cache
    data = memory_bytes("sst2", seed=10)
    publish_fake(fake, "sst2", data)
    fake.truncate["/memories/sst2"] = 100  # every attempt (4, each resuming) dies after 100 more bytes
    c = shutil.copytree(cache, tmp_path / "c")
    p = EdgeClient(fake.url, c).predict("sst2", "good movie")
    assert p.memory_version == 1 and "stopped at" in p.warnings[0] and p.logits == same(a["logits"])
    have = (c / "partial" / f"{sha256(data)}.part").stat().st_size  # kept for a later resume, not used
    assert 100 <= have <= 400 and have % 100 == 0  # each of the 4 attempts resumed and added its 100 bytes
    with pytest.raises(Truncated, match=f"stopped at [1-4]00 of {len(data)} bytes"):
        _fresh_memory_refused(fake, cache, tmp_path, "sst2")
    fake.truncate.clear()
    p = EdgeClient(fake.url, c).predict("sst2", "good movie")
    published = fake.manifest["tasks"]["sst2"]["android"]["version"]  # depends on what earlier tests published
    assert p.memory_version == published > 1 and p.bytes_fetched == len(data) - have  # resumed from the partial


def test_refuses_tampered_cache(good_cache, tmp_path):
    cache, _ = good_cache
    c = shutil.copytree(cache, tmp_path / "c")
    state = json.loads((c / "state.json").read_text())
    blob = c / "blobs" / state["memories"]["sst2"]["sha256"]
    data = bytearray(blob.read_bytes())
    data[-40] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="missing or corrupt"):
        EdgeClient(None, c, offline=True).predict("sst2", "good movie")
    with pytest.raises(NotCached):
        EdgeClient(None, tmp_path / "none", offline=True).predict("sst2", "good movie")


def test_client_never_imports_pipeline_nor_the_executorch_compiler(good_cache):
    """A device runs programs, it never lowers them: neither pipeline nor executorch.exir (~7 s of a cold start) is
    imported; afterwards the real compiler still imports in the same process (spartan_toolchain.executorch_runtime)."""
    cache, _ = good_cache
    code = ("import sys; from apps.client.__main__ import main; "
            f"assert main(['good movie', '--offline', '--cache', {str(cache)!r}, '--task', 'sst2']) == 0; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('pipeline', 'mobile_export') "
            "or m.startswith('executorch.exir')]; assert not bad, bad; "
            "from executorch.exir import to_edge_transform_and_lower; import executorch.exir as e; "
            "assert e.__file__.endswith('__init__.py') and hasattr(e, 'EdgeCompileConfig')")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120, capture_output=True)


# --- issue 11: nothing a network peer says names a file; garbage or silence falls back to the verified cache ------

@pytest.mark.parametrize("evil", ["ABS", "../../victim.txt", "../state.json", "../blobs"])
def test_catalog_digest_naming_a_path_touches_no_file(fake, good_cache, tmp_path, evil):
    """Item 1: a catalog whose task sha256 is a path made the old client unlink that path (exit 0)."""
    cache, (a, _) = good_cache
    c = shutil.copytree(cache, tmp_path / "c")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    evil = str(victim) if evil == "ABS" else evil
    publish_fake(fake, "sst2", memory_bytes("sst2", seed=30))
    fake.manifest["tasks"]["sst2"]["android"]["sha256"] = evil
    fake.set_manifest()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    p = EdgeClient(fake.url, c).predict("sst2", "good movie")
    assert p.memory_version == 1 and p.logits == same(a["logits"])  # the verified cache, with a warning
    assert "not a valid catalog" in p.warnings[0] and "bad_sha256" in p.warnings[0]
    assert victim.read_text() == "keep me"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not any(h[0].startswith("/memories/") for h in fake.hits)


def pin_fake_to_cache(fake, cache) -> None:
    """Make the fake serve exactly the memories the cache holds (other tests publish newer versions meanwhile)."""
    state = json.loads((cache / "state.json").read_text())
    for task, mem in state["memories"].items():
        data = (cache / "blobs" / mem["sha256"]).read_bytes()
        fake.manifest["tasks"][task]["android"].update(
            version=mem["version"], sha256=mem["sha256"], bytes=len(data),
            url=f"/memories/{task}?target=android&version={mem['version']}")
        fake.routes[f"/memories/{task}"] = data
    fake.set_manifest()


def test_tampered_state_file_names_no_file(good_cache, fake, tmp_path):
    cache, (a, _) = good_cache
    pin_fake_to_cache(fake, cache)
    c = shutil.copytree(cache, tmp_path / "c")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    state = json.loads((c / "state.json").read_text())
    state["memories"]["sst2"]["sha256"] = str(victim)
    (c / "state.json").write_text(json.dumps(state))
    p = EdgeClient(fake.url, c).predict("sst2", "good movie")
    assert "ignoring the cache state" in p.warnings[0] and p.logits == same(a["logits"])
    assert victim.read_text() == "keep me"
    assert p.bytes_fetched == 0  # the verified blobs are found again by their sha256


@pytest.mark.parametrize("body", [b"<!doctype html><html><body>Sign in to the Wi-Fi</body></html>", b"",
                                  b'{"format_version": 1, "backbones": {"android": 3}, "tasks": {}}'])
def test_garbage_catalog_falls_back_to_verified_cache(fake, good_cache, tmp_path, body):
    cache, (a, _) = good_cache
    fake.routes["/manifest"] = body
    rc, out, err = run_cli("good movie", "--server", fake.url, "--cache", shutil.copytree(cache, tmp_path / "c"),
                           "--task", "sst2")
    assert rc == 0 and out[0]["logits"] == same(a["logits"]) and "Traceback" not in err
    assert "not a valid catalog" in err and "using the cached backbone" in err
    rc, out, err = run_cli("good movie", "--server", fake.url, "--cache", tmp_path / "empty", "--task", "sst2")
    assert rc == 1 and "Traceback" not in err and "not a valid catalog" in err and "no backbone" in err


def test_server_down_falls_back_to_verified_cache(good_cache, tmp_path):
    cache, (a, _) = good_cache
    down = f"http://127.0.0.1:{free_port()}"
    rc, out, err = run_cli("good movie", "--server", down, "--cache", shutil.copytree(cache, tmp_path / "c"),
                           "--task", "sst2")
    assert rc == 0 and out[0]["logits"] == same(a["logits"]) and "cannot reach" in err and "warning:" in err
    rc, out, err = run_cli("good movie", "--server", down, "--cache", tmp_path / "empty", "--task", "sst2")
    assert rc == 1 and "cannot reach" in err and "Traceback" not in err


@pytest.mark.parametrize("which", ["tokenizer", "memory"])
def test_corrupt_cached_file_is_refetched_alone_in_one_run(good_cache, fake, dist, tmp_path, which):
    cache, (a, _) = good_cache
    pin_fake_to_cache(fake, cache)
    c = shutil.copytree(cache, tmp_path / "c")
    state = json.loads((c / "state.json").read_text())
    sha = state["memories"]["sst2"]["sha256"] if which == "memory" else sha256((dist / "android/tokenizer.json")
                                                                               .read_bytes())
    blob = c / "blobs" / sha
    size = blob.stat().st_size
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    p = EdgeClient(fake.url, c).predict("sst2", "good movie")
    assert p.logits == same(a["logits"]) and p.bytes_fetched == size  # that file alone, not the program again
    assert not [h for h in fake.hits if "backbone.pte" in h[0]]
