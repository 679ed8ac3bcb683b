"""Regenerate the conformance vectors: python tests/conformance/make_vectors.py (from the repo root).

Writes small files under tests/conformance/{memory,backbone,dist_manifest,catalog,cache_state}/ and cases.json,
the list every reader (spartan_formats in Python, apps/native in C++, the Kotlin SDK) must agree with: for each
file, "valid" or "invalid" with the error code (docs/formats.md, "Error codes"). The files are committed; this
script documents how each was made and rewrites them identically.
"""

from __future__ import annotations

import copy
import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save as st_save

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from spartan_formats.memory import MEMORY_METADATA_KEY, memory_bytes, memory_metadata  # noqa: E402

FP = "0123456789abcdef" * 4
OTHER_FP = "fedcba9876543210" * 4
SHAPE = {"num_layers": 2, "num_parents": 4, "num_children": 2, "top_k": 2, "temperature": 1.6, "hidden_size": 8}
MAX_LABELS = 4
SHA_A, SHA_B = "1" * 64, "2" * 64

cases: list[dict] = []


def case(name: str, kind: str, rel: str, data: bytes, error: str | None = None, context: dict | None = None) -> None:
    p = HERE / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    if not name.startswith(kind):
        name = f"{kind}_{name}"
    c = {"name": name, "kind": kind, "file": rel, "verdict": "invalid" if error else "valid"}
    if context:
        c["context"] = context
    if error:
        c["error"] = error
    cases.append(c)


def js(doc) -> bytes:
    return (json.dumps(doc, indent=1) + "\n").encode()


# --- memory files ------------------------------------------------------------------------------------------------

def arrays(seed: int = 0, n_out: int = 2, max_labels: int = MAX_LABELS, shape: dict | None = None,
           dtype=np.float32) -> dict:
    s = {**SHAPE, **(shape or {})}
    L, E, C, H = s["num_layers"], s["num_parents"], s["num_children"], s["hidden_size"]
    rng = np.random.default_rng(seed)
    a = {"P": rng.standard_normal((L, E, H)), "K": rng.standard_normal((L, E * C, H)),
         "Vt": rng.standard_normal((L, H, E * C)), "head_weight": rng.standard_normal((max_labels, H)),
         "head_bias": rng.standard_normal(max_labels)}
    a = {k: (v * 0.5).astype(dtype) for k, v in a.items()}
    a["head_weight"][n_out:] = 0
    a["head_bias"][n_out:] = 0
    return a


def meta(**over) -> dict:
    m = memory_metadata(task="sst2", label_names=["negative", "positive"], is_regression=False,
                        max_labels=MAX_LABELS, metric="accuracy", backbone_fingerprint=FP, memory_shape=SHAPE,
                        dtype="fp32")
    m.update(over)
    return m


def raw_memory(tensors: dict, m: object, key: str = MEMORY_METADATA_KEY) -> bytes:
    """A memory file without the writer's checks (for invalid vectors)."""
    md = {key: m if isinstance(m, str) else json.dumps(m)} if m is not None else None
    return st_save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=md)


def with_header(data: bytes, edit) -> bytes:
    """Re-serialise a file's header after `edit(header_dict)` (payload unchanged)."""
    (n,) = struct.unpack("<Q", data[:8])
    h = json.loads(data[8:8 + n])
    edit(h)
    raw = json.dumps(h).encode()
    return struct.pack("<Q", len(raw)) + raw + data[8 + n:]


def raw_header(data: bytes, raw: bytes) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    return struct.pack("<Q", len(raw)) + raw + data[8 + n:]


CTX = {"backbone": "backbone/tiny.json"}


def memories() -> None:
    good = memory_bytes(arrays(), meta())
    case("memory_fp32", "memory", "memory/fp32.safetensors", good, context=CTX)
    case("memory_fp32_no_context", "memory", "memory/fp32.safetensors", good)
    case("memory_fp16", "memory", "memory/fp16.safetensors",
         memory_bytes(arrays(1, dtype=np.float16), meta(dtype="fp16")), context=CTX)
    case("memory_regression", "memory", "memory/regression.safetensors",
         memory_bytes(arrays(2, n_out=1), meta(task="stsb", label_names=[], is_regression=True, num_outputs=1,
                                                metric="pearson_spearman")), context=CTX)
    case("memory_extra_metadata_field", "memory", "memory/extra_field.safetensors",
         memory_bytes(arrays(), meta(trained_on="2026-11-30", metrics={"eval_accuracy": 0.8})), context=CTX)
    case("memory_task_matches", "memory", "memory/fp32.safetensors", good, context={**CTX, "task": "sst2"})

    inv = "memory/invalid/"

    def bad(name: str, data: bytes, error: str, context: dict | None = CTX) -> None:
        case(name, "memory", f"{inv}{name}.safetensors", data, error, context)

    bad("truncated", good[:-10], "truncated")
    bad("shorter_than_length_prefix", good[:5], "truncated")
    bad("header_length_past_end", struct.pack("<Q", len(good)) + good[8:], "bad_header_length")
    bad("header_length_zero", struct.pack("<Q", 0) + good[8:], "bad_header_length")
    bad("header_length_huge", struct.pack("<Q", 1 << 62) + good[8:], "bad_header_length")
    bad("header_not_json", raw_header(good, b"{not json" + b" " * 200), "header_not_json")
    bad("header_not_utf8", raw_header(good, b"\xff\xfe{}"), "header_not_json")
    bad("header_is_array", raw_header(good, b"[]"), "header_not_object")
    n = struct.unpack("<Q", good[:8])[0]
    hdr = good[8:8 + n].decode()
    assert '"K":' in hdr
    dup = hdr.replace('"K":', '"K":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"K":', 1)
    bad("header_duplicate_key", raw_header(good, dup.encode()), "header_not_json")
    a = arrays()
    bad("missing_tensor", raw_memory({k: v for k, v in a.items() if k != "head_bias"}, meta()), "tensor_set")
    bad("extra_tensor", raw_memory({**a, "extra": np.zeros(2, np.float32)}, meta()), "tensor_set")
    bad("wrong_shape", raw_memory({**a, "P": np.zeros((2, 5, 8), np.float32)}, meta()), "tensor_shape")
    bad("wrong_head_rows", raw_memory({**a, "head_weight": np.zeros((8, 8), np.float32),
                                       "head_bias": np.zeros(8, np.float32)}, meta()), "tensor_shape")
    bad("wrong_dtype", raw_memory({k: v.astype(np.float64) for k, v in a.items()}, meta()), "tensor_dtype")
    bad("dtype_claims_fp16", raw_memory(a, meta(dtype="fp16")), "tensor_dtype")
    bad("mixed_dtypes", raw_memory({**a, "K": a["K"].astype(np.float16)}, meta()), "tensor_dtype")
    nan = copy.deepcopy(a)
    nan["K"].flat[3] = np.nan
    bad("nan", raw_memory(nan, meta()), "not_finite")
    inf = copy.deepcopy(a)
    inf["Vt"].flat[0] = np.inf
    bad("inf", raw_memory(inf, meta()), "not_finite")
    pad = copy.deepcopy(a)
    pad["head_bias"][3] = 1.0
    bad("nonzero_padding", raw_memory(pad, meta()), "bad_padding")
    bad("metadata_key_missing", raw_memory(a, None), "metadata_missing")
    bad("metadata_other_key", raw_memory(a, meta(), key="spartan_edge"), "metadata_missing")
    bad("metadata_not_object", with_header(good, lambda h: h.__setitem__("__metadata__", ["x"])),
        "metadata_not_object")
    bad("metadata_value_not_string", with_header(good, lambda h: h["__metadata__"].__setitem__(
        MEMORY_METADATA_KEY, meta())), "metadata_not_object")
    bad("memory_metadata_not_json", raw_memory(a, "{format_version: 1"), "metadata_not_json")
    bad("memory_metadata_nan_literal", raw_memory(a, json.dumps(meta()).replace('"temperature": 1.6',
                                                                               '"temperature": NaN')),
        "metadata_not_json")
    bad("memory_metadata_is_list", raw_memory(a, "[1, 2]"), "memory_metadata_not_object")
    bad("dtype_is_list", raw_memory(a, meta(dtype=["fp32"])), "bad_dtype")
    bad("dtype_is_object", raw_memory(a, meta(dtype={"fp32": True})), "bad_dtype")
    bad("dtype_int8", raw_memory(a, meta(dtype="int8")), "bad_dtype")
    bad("dtype_long_name", raw_memory(a, meta(dtype="float32")), "bad_dtype")
    bad("format_version_3", raw_memory(a, meta(format_version=3)), "bad_format_version")
    bad("format_version_string", raw_memory(a, meta(format_version="1")), "bad_format_version")
    bad("format_version_true", raw_memory(a, meta(format_version=True)), "bad_format_version")
    m = meta()
    del m["format_version"]
    bad("format_version_missing", raw_memory(a, m), "missing_field")
    bad("fingerprint_mismatch", raw_memory(a, meta(backbone_fingerprint=OTHER_FP)), "fingerprint_mismatch")
    bad("fingerprint_not_hex", raw_memory(a, meta(backbone_fingerprint="../../" + "a" * 58)), "bad_fingerprint")
    bad("fingerprint_uppercase", raw_memory(a, meta(backbone_fingerprint=FP.upper())), "bad_fingerprint")
    bad("fingerprint_trailing_newline", raw_memory(a, meta(backbone_fingerprint=FP + "\n")), "bad_fingerprint")
    bad("top_k_mismatch", memory_bytes(a, meta(memory_shape={**SHAPE, "top_k": 3})), "memory_shape_mismatch")
    bad("temperature_mismatch", memory_bytes(a, meta(memory_shape={**SHAPE, "temperature": 1.0})),
        "memory_shape_mismatch")
    a8 = arrays(max_labels=8)
    bad("max_labels_mismatch", memory_bytes(a8, meta(max_labels=8)), "max_labels_mismatch")
    m = meta()
    del m["memory_shape"]
    bad("memory_shape_missing", raw_memory(a, m), "missing_field")
    bad("memory_shape_without_top_k", raw_memory(a, meta(memory_shape={k: v for k, v in SHAPE.items()
                                                                       if k != "top_k"})), "missing_field")
    bad("memory_shape_without_temperature", raw_memory(a, meta(memory_shape={k: v for k, v in SHAPE.items()
                                                                             if k != "temperature"})),
        "missing_field")
    bad("memory_shape_top_k_string", raw_memory(a, meta(memory_shape={**SHAPE, "top_k": "2"})), "bad_field")
    bad("memory_shape_not_object", raw_memory(a, meta(memory_shape=[2, 4, 2])), "bad_field")
    bad("top_k_over_parents", raw_memory(a, meta(memory_shape={**SHAPE, "top_k": 5})), "bad_field")
    bad("task_trailing_newline", raw_memory(a, meta(task="sst2\n")), "bad_name")
    bad("task_dotdot", raw_memory(a, meta(task="..")), "bad_name")
    bad("task_traversal", raw_memory(a, meta(task="../../etc/x")), "bad_name")
    bad("task_slash", raw_memory(a, meta(task="a/b")), "bad_name")
    bad("task_empty", raw_memory(a, meta(task="")), "bad_name")
    bad("task_mismatch", good, "task_mismatch", {**CTX, "task": "rte"})
    bad("num_outputs_over_max_labels", raw_memory(a, meta(label_names=list("abcde"), num_outputs=5)),
        "too_many_outputs")
    bad("num_outputs_not_label_count", raw_memory(a, meta(num_outputs=3)), "bad_field")
    bad("num_outputs_missing", raw_memory(a, {k: v for k, v in meta().items() if k != "num_outputs"}),
        "missing_field")
    bad("is_regression_string", raw_memory(a, meta(is_regression="false")), "bad_field")
    bad("label_names_not_strings", raw_memory(a, meta(label_names=[0, 1])), "bad_field")
    bad("max_labels_string", raw_memory(a, meta(max_labels="4")), "bad_field")

    # payload layout defects
    def gap(h):
        for k in h:
            if k != "__metadata__":
                h[k]["data_offsets"] = [h[k]["data_offsets"][0] + 4, h[k]["data_offsets"][1] + 4]

    bad("offsets_gap", with_header(good, gap), "bad_tensor_entry")
    bad("offsets_size_mismatch", with_header(good, lambda h: h["head_bias"].__setitem__("shape", [5])),
        "bad_tensor_entry")
    bad("tensor_entry_extra_key", with_header(good, lambda h: h["P"].__setitem__("extra", 1)), "bad_tensor_entry")
    bad("tensor_unknown_dtype", with_header(good, lambda h: h["P"].__setitem__("dtype", "Q7")), "bad_tensor_entry")
    bad("trailing_bytes", good + b"\0" * 8, "trailing_bytes")


# --- bundle descriptions (backbone), dist manifests, catalogs ------------------------------------------------------

def backbone_doc() -> dict:
    return {"id": "tiny", "fingerprint": FP, "hidden_size": 8, "num_layers": 2, "memory_shape": SHAPE,
            "max_seq_length": 32, "max_labels": MAX_LABELS, "program": "backbone.pte", "quantize": None,
            "inputs": [{"name": "input_ids", "shape": [1, "seq"], "seq_range": [2, 32], "dtype": "int64"},
                       {"name": "head_bias", "shape": [MAX_LABELS], "dtype": "float32"}],
            "outputs": ["logits"], "tokenizer": ["tokenizer.json"],
            "files": [{"path": "backbone.pte", "sha256": SHA_A, "bytes": 1200},
                      {"path": "tokenizer.json", "sha256": SHA_B, "bytes": 300}]}


def backbones() -> None:
    case("backbone_tiny", "backbone", "backbone/tiny.json", js(backbone_doc()))

    def bad(name: str, edit, error: str, raw: bytes | None = None) -> None:
        d = backbone_doc()
        if edit:
            edit(d)
        case(name, "backbone", f"backbone/invalid/{name}.json", raw if raw is not None else js(d), error)

    bad("max_labels_string", lambda d: d.update(max_labels="8"), "bad_field")
    bad("max_labels_zero", lambda d: d.update(max_labels=0), "bad_field")
    bad("max_labels_list", lambda d: d.update(max_labels=[8]), "bad_field")
    bad("memory_shape_missing", lambda d: d.pop("memory_shape"), "missing_field")
    bad("memory_shape_temperature_string", lambda d: d.update(memory_shape={**SHAPE, "temperature": "1.6"}),
        "bad_field")
    bad("memory_shape_hidden_mismatch", lambda d: d.update(hidden_size=16), "bad_field")
    bad("fingerprint_not_hex", lambda d: d.update(fingerprint="not-a-digest-0123"), "bad_fingerprint")
    bad("fingerprint_trailing_newline", lambda d: d.update(fingerprint=FP + "\n"), "bad_fingerprint")
    bad("program_trailing_newline", lambda d: (d.update(program="backbone.pte\n"),
                                               d["files"][0].update(path="backbone.pte\n")), "bad_path")
    bad("program_not_in_files", lambda d: d.update(program="other.pte"), "bad_field")
    bad("path_parent", lambda d: d["files"][1].update(path="../tokenizer.json"), "bad_path")
    bad("path_absolute", lambda d: d["files"][1].update(path="/etc/passwd"), "bad_path")
    bad("path_backslash", lambda d: d["files"][1].update(path="..\\tokenizer.json"), "bad_path")
    bad("path_dot_segment", lambda d: d["files"][1].update(path="./tokenizer.json"), "bad_path")
    bad("path_empty_segment", lambda d: d["files"][1].update(path="a//tokenizer.json"), "bad_path")
    bad("sha256_not_hex", lambda d: d["files"][1].update(sha256="../../" + "a" * 58), "bad_sha256")
    bad("sha256_uppercase", lambda d: d["files"][1].update(sha256="A" * 64), "bad_sha256")
    bad("sha256_short", lambda d: d["files"][1].update(sha256="a" * 63), "bad_sha256")
    bad("sha256_trailing_newline", lambda d: d["files"][1].update(sha256="a" * 64 + "\n"), "bad_sha256")
    bad("bytes_negative", lambda d: d["files"][1].update(bytes=-1), "bad_field")
    bad("bytes_float", lambda d: d["files"][1].update(bytes=3.5), "bad_field")
    bad("duplicate_path", lambda d: d["files"].append(dict(d["files"][0])), "duplicate_path")
    bad("files_empty", lambda d: d.update(files=[]), "bad_field")
    bad("quantize_unknown", lambda d: d.update(quantize="int4"), "bad_field")
    bad("tokenizer_not_in_files", lambda d: d.update(tokenizer=["vocab.txt"]), "bad_field")
    bad("not_json", None, "not_json", raw=b"<html><body>502 Bad Gateway</body></html>\n")
    bad("not_object", None, "not_object", raw=b"[1, 2, 3]\n")
    bad("nan_literal", None, "not_json", raw=js(backbone_doc()).replace(b'"temperature": 1.6',
                                                                         b'"temperature": NaN'))


def dist_doc() -> dict:
    bb = {k: v for k, v in backbone_doc().items() if k in ("id", "fingerprint", "hidden_size", "num_layers",
                                                            "memory_shape", "max_seq_length", "max_labels")}
    bb |= {"model_type": "bert", "pooling": "mean", "token_type_ids": None}
    files = [{"path": "android/backbone.pte", "sha256": SHA_A, "bytes": 1200},
             {"path": "android/tokenizer.json", "sha256": SHA_B, "bytes": 300}]
    return {"format_version": 1, "backbone": bb,
            "targets": {"android": {"program": "android/backbone.pte", "files": files,
                                    "tokenizer": ["android/tokenizer.json"], "inputs": backbone_doc()["inputs"],
                                    "outputs": ["logits"], "quantize": None, "compute_precision": "fp32"}},
            "tasks": {"sst2": {"label_names": ["negative", "positive"], "is_regression": False, "num_outputs": 2,
                               "metric": "accuracy", "metrics": {"eval_accuracy": 0.8}, "backbone_fingerprint": FP,
                               "files": {"android": {"path": "android/memories/sst2.safetensors",
                                                     "sha256": "3" * 64, "bytes": 1500, "dtype": "fp32"}}}}}


def dist_manifests() -> None:
    case("dist_manifest_tiny", "dist_manifest", "dist_manifest/tiny.json", js(dist_doc()))

    def bad(name: str, edit, error: str, raw: bytes | None = None) -> None:
        d = dist_doc()
        if edit:
            edit(d)
        case(name, "dist_manifest", f"dist_manifest/invalid/{name}.json", raw if raw is not None else js(d), error)

    mem = lambda d: d["tasks"]["sst2"]["files"]["android"]  # noqa: E731
    bad("task_sha256_traversal", lambda d: mem(d).update(sha256="../../x"), "bad_sha256")
    bad("task_sha256_absolute", lambda d: mem(d).update(sha256="/home/user/.bashrc"), "bad_sha256")
    bad("task_path_absolute", lambda d: mem(d).update(path="/etc/passwd"), "bad_path")
    bad("task_path_parent", lambda d: mem(d).update(path="android/../../x.safetensors"), "bad_path")
    bad("task_name_trailing_newline", lambda d: d["tasks"].update({"sst2\n": d["tasks"].pop("sst2")}), "bad_name")
    bad("task_name_dotdot", lambda d: d["tasks"].update({"..": d["tasks"].pop("sst2")}), "bad_name")
    bad("task_dtype_unknown", lambda d: mem(d).update(dtype="bf16"), "bad_dtype")
    bad("task_unknown_target", lambda d: d["tasks"]["sst2"]["files"].update(windows=mem(d)), "bad_field")
    bad("target_file_sha256_not_hex", lambda d: d["targets"]["android"]["files"][0].update(sha256="zz" * 32),
        "bad_sha256")
    bad("target_file_path_parent", lambda d: d["targets"]["android"]["files"][1].update(path="../x"), "bad_path")
    bad("target_name_bad", lambda d: d["targets"].update({"../ios": d["targets"].pop("android")}), "bad_name")
    bad("format_version_3", lambda d: d.update(format_version=3), "bad_format_version")
    bad("backbone_max_labels_string", lambda d: d["backbone"].update(max_labels="8"), "bad_field")
    bad("backbone_memory_shape_missing", lambda d: d["backbone"].pop("memory_shape"), "missing_field")
    bad("tasks_missing", lambda d: d.pop("tasks"), "missing_field")
    bad("not_json", None, "not_json", raw=b"{\"format_version\": 1,")


def catalog_doc() -> dict:
    bb = backbone_doc()
    bb |= {"target": "android", "version": 1, "published_at": 1795000000.0,
           "url": f"/backbone/android?fingerprint={FP}&version=1"}
    for f in bb["files"]:
        f["url"] = f"/backbone/android/{f['path']}?fingerprint={FP}&version=1"
    return {"format_version": 1, "targets": ["android", "ios"], "backbones": {"android": bb},
            "tasks": {"sst2": {"android": {"version": 2, "bytes": 1500, "sha256": "3" * 64, "dtype": "fp32",
                                           "backbone_fingerprint": FP, "label_names": ["negative", "positive"],
                                           "is_regression": False, "metric": "accuracy", "metrics": {},
                                           "published_at": 1795000000.0,
                                           "url": "/memories/sst2?target=android&version=2"}}}}


def catalogs() -> None:
    case("catalog_tiny", "catalog", "catalog/tiny.json", js(catalog_doc()))

    def bad(name: str, edit, error: str, raw: bytes | None = None) -> None:
        d = catalog_doc()
        if edit:
            edit(d)
        case(name, "catalog", f"catalog/invalid/{name}.json", raw if raw is not None else js(d), error)

    mem = lambda d: d["tasks"]["sst2"]["android"]  # noqa: E731
    bb = lambda d: d["backbones"]["android"]  # noqa: E731
    bad("memory_sha256_absolute", lambda d: mem(d).update(sha256="/home/user/.ssh/id_ed25519"), "bad_sha256")
    bad("memory_sha256_traversal", lambda d: mem(d).update(sha256="../../state.json"), "bad_sha256")
    bad("backbone_file_sha256_traversal", lambda d: bb(d)["files"][0].update(sha256="../" * 5 + "x"), "bad_sha256")
    bad("memory_url_other_host", lambda d: mem(d).update(url="//evil.example/x"), "bad_url")
    bad("memory_url_userinfo", lambda d: mem(d).update(url="@evil.example/x"), "bad_url")
    bad("memory_url_absolute", lambda d: mem(d).update(url="http://evil.example/x"), "bad_url")
    bad("file_url_parent", lambda d: bb(d)["files"][0].update(url="/backbone/../../x"), "bad_url")
    bad("task_name_trailing_newline", lambda d: d["tasks"].update({"sst2\n": d["tasks"].pop("sst2")}), "bad_name")
    bad("memory_version_string", lambda d: mem(d).update(version="2"), "bad_field")
    bad("backbone_fingerprint_not_hex", lambda d: bb(d).update(fingerprint="x" * 64), "bad_fingerprint")
    bad("backbone_program_newline", lambda d: bb(d).update(program="backbone.pte\n"), "bad_path")
    bad("html", None, "not_json", raw=b"<!doctype html><html><body>Sign in to the Wi-Fi</body></html>\n")
    bad("empty", None, "not_json", raw=b"")
    bad("format_version_2", lambda d: d.update(format_version=2), "bad_format_version")


def cache_states() -> None:
    cat = catalog_doc()
    good = {"format_version": 1, "catalog": cat, "catalog_etag": '"abc"', "backbone": cat["backbones"]["android"],
            "memories": {"sst2": {"version": 2, "sha256": "3" * 64, "backbone_fingerprint": FP,
                                  "label_names": ["negative", "positive"], "is_regression": False,
                                  "num_outputs": 2}}}
    case("cache_state_tiny", "cache_state", "cache_state/tiny.json", js(good))
    d = copy.deepcopy(good)
    d["memories"]["sst2"]["sha256"] = "/etc/passwd"
    case("cache_state_memory_sha256_absolute", "cache_state", "cache_state/invalid/memory_sha256_absolute.json",
         js(d), "bad_sha256")
    d = copy.deepcopy(good)
    d["backbone"]["files"][0]["sha256"] = "../../x"
    case("cache_state_backbone_sha256_traversal", "cache_state",
         "cache_state/invalid/backbone_sha256_traversal.json", js(d), "bad_sha256")
    case("cache_state_truncated", "cache_state", "cache_state/invalid/truncated.json", js(good)[:100], "not_json")


def main() -> None:
    for sub in ("memory", "backbone", "dist_manifest", "catalog", "cache_state"):
        shutil.rmtree(HERE / sub, ignore_errors=True)
    memories()
    backbones()
    dist_manifests()
    catalogs()
    cache_states()
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    (HERE / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"{len(cases)} cases, {sum(c['verdict'] == 'invalid' for c in cases)} invalid")


if __name__ == "__main__":
    main()
