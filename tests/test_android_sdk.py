"""The Kotlin Android SDK (apps/android), on the JVM, against a real gunicorn serving a real export.

A tiny random BERT with the real WordPiece vocabulary is exported for Android (a real ExecuTorch program, lowered in a
few seconds), published to demo_server under gunicorn, and the Python reference client (apps.client) predicts a few
texts. `apps/android/build.sh test` then compiles the SDK and its JUnit 5 tests with kotlinc and runs them with the
server URL and those expected predictions (tests/.../AndroidFixtures.kt reads them); this test asserts the JUnit
report. The engine tests need the native runtime (apps/native, built here through tests/native_support.py when
cmake/g++ are installed) and its JNI glue (built by build.sh); with the native runtime built, none may be skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from edge_support import REPO, TOKEN, ServerProcess, publish
from native_support import build as build_native
from native_support import missing_tools as native_tools_missing

pytestmark = pytest.mark.slow  # two kotlinc compiles (~30-70 s on two busy cores) + an export

KOTLINC = REPO / "tools" / "node_modules" / "kotlin-compiler" / "bin" / "kotlinc"
JARS = [Path("/usr/share/java/junit-platform-console-standalone.jar"), Path("/usr/share/java/com.android.json.jar")]
NATIVE_LIB = REPO / "apps" / "native" / "build" / "libspartan_edge.so"
TASKS = {"sst2": ["negative", "positive"], "rte": ["entailment", "not_entailment"], "spare": ["no", "yes"]}
TEXTS = [("sst2", "a gripping, beautifully acted film", None), ("sst2", "Café déjà vu — naïve, dull", None),
         ("rte", "A man is sleeping in a chair.", "Someone is awake."),
         ("rte", "The cat sat on the mat.", "A cat is sitting.")]


def _missing_tools() -> list[str]:
    missing = [str(p) for p in [KOTLINC, *JARS] if not p.exists()]
    return missing + ([] if shutil.which("java") else ["java"])


@pytest.fixture(scope="module")
def android_fixtures(tiny_bert, tmp_path_factory):
    """Export + server + the reference client's predictions, written where the JUnit tests read them."""
    if _missing_tools():
        pytest.skip(f"Kotlin/JUnit toolchain missing ({', '.join(_missing_tools())}); run scripts/system_deps.sh")
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file
    from test_export import make_artifact
    from test_recipe import make_task

    from apps.client import EdgeClient
    from mobile_export import export_bundle

    if not native_tools_missing():
        build_native()  # incremental; the JNI library and the engine tests need it
    root = tmp_path_factory.mktemp("android")
    arts = [make_artifact(tiny_bert, root / name, name, seed=i + 1) for i, name in enumerate(TASKS)]
    dist = root / "dist"
    export_bundle(arts, dist, "android", max_seq_length=64, quiet=True)

    # A second, valid version of `spare` (other head bias) that the tamper test publishes while the client has v1.
    v1 = dist / "android" / "memories" / "spare.safetensors"
    with safe_open(str(v1), framework="numpy") as f:
        meta = f.metadata()
    tensors = load_file(str(v1))
    tensors["head_bias"][:2] += np.float32(0.5)
    v2 = root / "spare_v2.safetensors"
    save_file(tensors, str(v2), metadata=meta)

    # A recipe bundle (manifest v2) on a second server: a plain task, fed from defaults.safetensors, and a task
    # with the MLP head and trained LayerNorms share the one recipe program.
    recipe_dist = root / "recipe_dist"
    export_bundle([make_task(tiny_bert, root / "r_plain", "plain", 5),
                   make_task(tiny_bert, root / "r_full", "full", 6, head="mlp", train_layernorms=True)],
                  recipe_dist, "android", max_seq_length=64, quiet=True)

    srv, recipe_srv = ServerProcess(root / "instance"), ServerProcess(root / "recipe_instance")
    try:
        for server, d in ((srv, dist), (recipe_srv, recipe_dist)):
            r = publish(server.url, d)
            assert r.returncode == 0, r.stderr
        client = EdgeClient(srv.url, root / "py-cache")
        expected = []
        for task, text, pair in TEXTS:
            p = client.predict(task, text, pair)
            ids = client.runtime.tokenizer.encode(text, pair).ids if pair else client.runtime.tokenizer.encode(text).ids
            expected.append({"task": task, "text": text, "pair": pair, "label": p.label, "logits": p.logits,
                             "probabilities": p.probabilities, "input_ids": ids})
        recipe_client = EdgeClient(recipe_srv.url, root / "py-recipe-cache")
        recipe_expected = [{"task": task, "text": text, "label": p.label, "logits": p.logits}
                           for task in ("plain", "full") for text in ("a gentle and moving film", "thin and dull")
                           for p in [recipe_client.predict(task, text)]]
        manifest = json.loads((dist / "manifest.json").read_text())
        fixtures = {
            "server": srv.url, "port": srv.port, "token": TOKEN, "dist": str(dist), "spare_v2": str(v2),
            "backbone_bytes": sum(f["bytes"] for f in manifest["targets"]["android"]["files"]),
            "memory_bytes": {t: e["files"]["android"]["bytes"] for t, e in manifest["tasks"].items()},
            "labels": TASKS, "expected": expected,
            "conformance": str(REPO / "tests" / "conformance"),
            "recipe": {"server": recipe_srv.url, "dist": str(recipe_dist), "expected": recipe_expected},
        }
        path = root / "fixtures.json"
        path.write_text(json.dumps(fixtures, indent=1))
        yield path
    finally:
        srv.stop()
        recipe_srv.stop()


def junit_report(folder: Path) -> dict:
    """Counts and per-test outcomes from the JUnit console launcher's XML report."""
    cases = {}
    for xml in folder.glob("*.xml"):
        for case in ET.parse(xml).getroot().iter("testcase"):
            name = f"{case.get('classname')}.{case.get('name')}"
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = child.tag
            cases[name] = outcome
    return cases


def test_kotlin_sdk_junit(android_fixtures):
    env = {**os.environ, "SPARTAN_EDGE_TEST_FIXTURES": str(android_fixtures)}
    reports = REPO / "apps" / "android" / "build" / "test-results"
    shutil.rmtree(reports, ignore_errors=True)  # a failed build must not leave an old report to be read
    r = subprocess.run(["bash", "apps/android/build.sh", "test"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=900)
    out = r.stdout[-6000:] + r.stderr[-6000:]
    cases = junit_report(reports)
    assert cases, "no JUnit report\n" + out
    bad = {k: v for k, v in cases.items() if v in ("failure", "error")}
    assert not bad and r.returncode == 0, f"{bad}\n{out}"
    passed = [k for k, v in cases.items() if v == "passed"]
    # The server-side cases must have run, not been skipped for a missing fixture.
    for must in ("DownloadTest", "SpartanEdgeTest", "CatalogTest", "ConformanceTest"):
        assert any(must in k for k in passed), (must, cases)
    if NATIVE_LIB.exists():  # with the native runtime built, the engine cases run too (predictions vs apps.client)
        skipped = [k for k, v in cases.items() if v == "skipped"]
        assert not skipped, skipped
        assert any("RecipeBundleTest" in k for k in passed), cases
