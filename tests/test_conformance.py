"""Every conformance vector (tests/conformance/cases.json) through the Python readers of spartan_formats: the
verdict and error code must be exactly the expected ones. The C++ and Kotlin readers run the same cases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spartan_formats import FormatError
from spartan_formats.backbone import read_backbone
from spartan_formats.cache_state import read_cache_state
from spartan_formats.catalog import read_catalog
from spartan_formats.dist_manifest import read_dist_manifest
from spartan_formats.fields import parse_json
from spartan_formats.memory import read_memory

ROOT = Path(__file__).resolve().parent / "conformance"
CASES = json.loads((ROOT / "cases.json").read_text())
DOCS = {"backbone": lambda raw: read_backbone(parse_json(raw, "backbone")), "dist_manifest": read_dist_manifest,
        "catalog": read_catalog, "cache_state": read_cache_state}


def check(case: dict) -> None:
    data = (ROOT / case["file"]).read_bytes()
    ctx = case.get("context", {})
    if case["kind"] == "memory":
        backbone = read_backbone(parse_json((ROOT / ctx["backbone"]).read_bytes(), "backbone")) \
            if "backbone" in ctx else None
        read_memory(data, backbone=backbone, task=ctx.get("task"))
    else:
        DOCS[case["kind"]](data)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_conformance_case(case):
    if case["verdict"] == "valid":
        check(case)
    else:
        with pytest.raises(FormatError) as e:
            check(case)
        assert e.value.code == case["error"], str(e.value)


def test_every_error_code_is_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "formats.md").read_text()
    for code in {c["error"] for c in CASES if c["verdict"] == "invalid"}:
        assert f"`{code}`" in doc, code


def test_vectors_are_reproducible(tmp_path):
    """make_vectors.py rewrites exactly the committed files (so the folder and its generator cannot drift)."""
    import shutil

    copy = tmp_path / "conformance"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    repo = str(Path(__file__).resolve().parents[1])
    subprocess.run([sys.executable, str(copy / "make_vectors.py")], check=True, capture_output=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": repo})
    for case in CASES:
        assert (copy / case["file"]).read_bytes() == (ROOT / case["file"]).read_bytes(), case["name"]
    assert json.loads((copy / "cases.json").read_text()) == CASES


def test_formats_imports_neither_torch_nor_flask():
    code = ("import sys, spartan_formats.memory, spartan_formats.catalog, spartan_formats.cache_state, "
            "spartan_formats.dist_manifest, spartan_formats.artifact; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'flask', 'pipeline', 'requests')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], check=True, timeout=60)
