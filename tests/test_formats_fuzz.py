"""Bounded fuzzing (hypothesis) of the format readers and of the server's upload validators: whatever the bytes or
the JSON, a reader either accepts or raises FormatError (never another exception), and the server answers 2xx/4xx
with a JSON message (never 5xx). Seeds are the conformance vectors; derandomized, so CI runs the same examples."""

from __future__ import annotations

import copy
import hashlib
import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spartan_formats import FormatError
from spartan_formats.backbone import read_backbone
from spartan_formats.catalog import read_catalog
from spartan_formats.dist_manifest import read_dist_manifest
from spartan_formats.memory import MEMORY_METADATA_KEY, read_memory

CONF = Path(__file__).resolve().parent / "conformance"
GOOD = (CONF / "memory/fp32.safetensors").read_bytes()
BACKBONE = json.loads((CONF / "backbone/tiny.json").read_text())
DOCS = {"backbone": (BACKBONE, read_backbone),
        "dist_manifest": (json.loads((CONF / "dist_manifest/tiny.json").read_text()), read_dist_manifest),
        "catalog": (json.loads((CONF / "catalog/tiny.json").read_text()), read_catalog)}
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | st.sampled_from(["fp32", "fp16", "sst2\n", "..", "/etc/passwd", "a" * 64, "8", ""]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=8)


def _accepts_or_format_error(fn, *args) -> None:
    try:
        fn(*args)
    except FormatError as e:
        assert e.code and e.message


def _header(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _file(header: dict, payload: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + payload


def _paths(doc, prefix=()):
    """Every path to a value in a JSON document."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _replace(doc, path, value, delete=False):
    doc = copy.deepcopy(doc)
    if not path:
        return value
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@FUZZ
@given(st.data())
def test_memory_reader_on_mutated_bytes(data):
    b = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "truncate", "insert", "set_u64"]))
        if op == "flip" and b:
            b[data.draw(st.integers(0, len(b) - 1))] ^= data.draw(st.integers(1, 255))
        elif op == "truncate":
            del b[data.draw(st.integers(0, len(b))):]
        elif op == "insert":
            i = data.draw(st.integers(0, len(b)))
            b[i:i] = data.draw(st.binary(max_size=16))
        elif op == "set_u64" and len(b) >= 8:
            b[:8] = struct.pack("<Q", data.draw(st.integers(0, 2**64 - 1)))
    _accepts_or_format_error(read_memory, bytes(b), read_backbone(BACKBONE), "sst2")


@FUZZ
@given(st.data())
def test_memory_reader_on_mutated_headers(data):
    header, payload = _header(GOOD)
    meta = json.loads(header["__metadata__"][MEMORY_METADATA_KEY])
    where = data.draw(st.sampled_from(["meta", "tensor_entry"]))
    if where == "meta":
        path = data.draw(st.sampled_from(list(_paths(meta))[1:]))
        meta = _replace(meta, path, data.draw(json_values), delete=data.draw(st.booleans()))
        header["__metadata__"][MEMORY_METADATA_KEY] = json.dumps(meta)
    else:
        name = data.draw(st.sampled_from(["P", "K", "Vt", "head_weight", "head_bias"]))
        path = data.draw(st.sampled_from(list(_paths(header[name]))))
        header[name] = _replace(header[name], path, data.draw(json_values), delete=data.draw(st.booleans()))
    _accepts_or_format_error(read_memory, _file(header, payload), read_backbone(BACKBONE), "sst2")


@pytest.mark.parametrize("kind", sorted(DOCS))
def test_document_readers_on_mutated_documents(kind):
    doc, reader = DOCS[kind]
    paths = list(_paths(doc))

    @FUZZ
    @given(st.sampled_from(paths), json_values, st.booleans())
    def run(path, value, delete):
        _accepts_or_format_error(reader, _replace(doc, path, value, delete))

    run()


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    """The server app in-process (the fuzz loop needs thousands of requests; HTTP behaviour is tested on
    gunicorn in test_server/test_delivery) with the conformance bundle registered."""
    from demo_server import create_app

    token = "fuzz-token"
    app = create_app({"INSTANCE_PATH": str(tmp_path_factory.mktemp("fuzz") / "instance"), "PUBLISH_TOKEN": token,
                      "AUTH_MAX_FAILURES": 10**9})
    c = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    files = {"backbone.pte": b"program " * 150, "tokenizer.json": b"{}" * 150}
    body = copy.deepcopy(BACKBONE)
    body["files"] = [{"path": p, "sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)} for p, d in files.items()]
    for d in files.values():
        assert c.put(f"/blobs/{hashlib.sha256(d).hexdigest()}", data=d, headers=auth).status_code == 201
    assert c.post("/backbone/android", json=body, headers=auth).status_code == 201
    return c, auth, body


def _answer_ok(r) -> None:
    assert r.status_code < 500, r.get_data()[:300]
    if r.status_code >= 400:
        assert r.is_json and r.get_json()["message"]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_server_memory_upload_never_500(app_client, data):
    c, auth, _ = app_client
    header, payload = _header(GOOD)
    meta = json.loads(header["__metadata__"][MEMORY_METADATA_KEY])
    path = data.draw(st.sampled_from(list(_paths(meta))[1:]))
    meta = _replace(meta, path, data.draw(json_values), delete=data.draw(st.booleans()))
    header["__metadata__"][MEMORY_METADATA_KEY] = json.dumps(meta)
    body = _file(header, payload)
    r = c.post("/memories/sst2?target=android", data=body,
               headers={**auth, "X-Content-SHA256": hashlib.sha256(body).hexdigest()})
    _answer_ok(r)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_server_bundle_registration_never_500(app_client, data):
    c, auth, body = app_client
    path = data.draw(st.sampled_from(list(_paths(body))))
    doc = _replace(body, path, data.draw(json_values), delete=data.draw(st.booleans()))
    _answer_ok(c.post("/backbone/android", data=json.dumps(doc), headers={**auth, "Content-Type": "application/json"}))
