"""The native C++ runtime (apps/native): tokenizer id-for-id with Hugging Face, the memory-file reader, the C ABI
and the spartan-edge CLI on a real MiniLM export (logits vs eager TaskModel and vs apps.client's runtime)."""

from __future__ import annotations

import copy
import csv
import json
import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from edge_support import FP, MAX_LABELS, SHAPE, memory_bytes, tokenizer_json
from native_support import HARD_STRINGS, Abi, build, classify_json, cli, missing_tools, tokenize

REPO = Path(__file__).resolve().parents[1]
GLUE = REPO.parent / "shared" / "data" / "glue"
MAX_LEN = 128


@pytest.fixture(scope="session")
def native() -> None:
    if missing_tools():
        pytest.skip(f"cannot build apps/native: {', '.join(missing_tools())} not installed "
                    "(bash scripts/system_deps.sh installs them)")
    build()


@pytest.fixture(scope="session")
def bert_tokenizer_json() -> Path:
    from pipeline.backbone import default_backbone

    return Path(default_backbone()) / "tokenizer.json"


def hf(path: Path, max_length: int = MAX_LEN):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def hf_ids(tok, items: list) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch([tuple(x) if isinstance(x, list) else x for x in items])]


def hard_strings() -> list[str]:
    return [json.loads(line) for line in HARD_STRINGS.read_text().splitlines()]


def assert_same_ids(tok_path: Path, items: list, max_length: int = MAX_LEN) -> None:
    want, got = hf_ids(hf(tok_path, max_length), items), tokenize(tok_path, items, max_length)
    bad = [(x, w, g) for x, w, g in zip(items, want, got, strict=True) if w != g]
    assert not bad, f"{len(bad)} of {len(items)} differ; first: {bad[:3]}"


# --------------------------------------------------------------------------------------------------- tokenizer

def test_tokenizer_hard_strings_singles_and_pairs(native, bert_tokenizer_json):
    s = hard_strings()
    pairs = [[a, b] for a in s[::3] for b in s[1::4]]
    assert_same_ids(bert_tokenizer_json, s + pairs)
    assert_same_ids(bert_tokenizer_json, s + pairs, max_length=12)  # longest_first truncation of pairs
    toks = hf(bert_tokenizer_json).encode("Café déjà vu — naïve").tokens  # the toolchain note's example
    assert toks == ["[CLS]", "cafe", "de", "##ja", "vu", "—", "naive", "[SEP]"]


def test_tokenizer_normalizer_options(native, bert_tokenizer_json, tmp_path):
    doc = json.loads(bert_tokenizer_json.read_text())
    s = hard_strings()
    for opts in ({"lowercase": False}, {"lowercase": False, "strip_accents": True}, {"strip_accents": False},
                 {"handle_chinese_chars": False}, {"clean_text": False}):
        d = copy.deepcopy(doc)
        d["normalizer"].update(opts)
        p = tmp_path / f"tok-{len(list(tmp_path.iterdir()))}.json"
        p.write_text(json.dumps(d))
        assert_same_ids(p, s, 64)


@pytest.mark.skipif(not GLUE.is_dir(), reason="needs ../shared/data/glue")
def test_tokenizer_every_glue_dev_sentence(native, bert_tokenizer_json):
    def rows(name: str, cols: tuple[int, ...], header: bool = True) -> list:
        with open(GLUE / name / "dev.tsv", encoding="utf-8-sig", newline="") as f:
            r = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        r = r[1:] if header else r
        return [row[cols[0]] if len(cols) == 1 else [row[cols[0]], row[cols[1]]] for row in r if row]

    items = (rows("SST-2", (0,)) + rows("CoLA", (3,), header=False) + rows("MRPC", (3, 4)) + rows("RTE", (1, 2))
             + rows("STS-B", (7, 8)) + rows("QNLI", (1, 2)))
    singles = [x for it in items for x in (it if isinstance(it, list) else [it])]
    assert len(items) > 9000
    assert_same_ids(bert_tokenizer_json, items + singles)


@pytest.mark.slow
def test_tokenizer_every_code_point(native, bert_tokenizer_json):
    """Each code point of planes 0-3 and 14 (others are unassigned or private use) alone, inside and next to a word.
    NUL is left out: the C ABI takes NUL-terminated strings, so a text is cut at its first NUL."""
    cps = [c for c in [*range(1, 0x40000), *range(0xE0000, 0xE1000)] if not 0xD800 <= c <= 0xDFFF]
    items = [f"a{chr(c)}b x{chr(c)}{chr(c)}" for c in cps]
    want, got = hf_ids(hf(bert_tokenizer_json), items), tokenize(bert_tokenizer_json, items)
    bad = [f"U+{c:04X} {unicodedata.category(chr(c))}" for c, w, g in zip(cps, want, got, strict=True) if w != g]
    assert not bad, f"{len(bad)} code points differ: {bad[:20]}"


def test_tokenizer_of_another_kind_is_refused(native, tmp_path):
    p = tmp_path / "tokenizer.json"
    p.write_text(tokenizer_json())  # WordLevel + Whitespace: not a BERT WordPiece tokenizer
    r = cli("tokenize", "--tokenizer", str(p))
    assert r.returncode == 1 and "unsupported_tokenizer" in r.stderr and "BertNormalizer" in r.stderr
    abi = Abi()
    import ctypes
    t = ctypes.c_void_p()
    abi.lib.se_tokenizer_open.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
    assert abi.lib.se_tokenizer_open(str(p).encode(), 128, ctypes.byref(t)) == 6  # SE_ERR_UNSUPPORTED
    assert abi.error()[0] == "unsupported_tokenizer" and not t.value


# ------------------------------------------------------------------------------------ memory files (validator)

def backbone_doc(**over) -> dict:
    names = ["input_ids", "attention_mask", "P", "K", "Vt", "head_weight", "head_bias"]
    return {"fingerprint": FP, "memory_shape": SHAPE, "max_seq_length": 32, "max_labels": MAX_LABELS,
            "inputs": [{"name": n} for n in names], **over}


def mem(**kw) -> bytes:
    meta = {"num_outputs": 1 if kw.get("is_regression") else len(kw.get("labels") or ["n", "p"]),
            "max_labels": MAX_LABELS, **kw.pop("meta_overrides", {})}
    return memory_bytes("sst2", meta_overrides=meta, **kw)


def validate(tmp_path: Path, data: bytes, backbone: dict | None = None) -> dict:
    f = tmp_path / "m.safetensors"
    f.write_bytes(data)
    args = ["validate-memory", str(f)]
    if backbone is not None:
        (tmp_path / "bb.json").write_text(json.dumps(backbone))
        args += ["--backbone", str(tmp_path / "bb.json")]
    r = cli(*args)
    out = json.loads(r.stdout)
    assert r.returncode == (0 if out["ok"] else 1)
    return out


def test_memory_validator_accepts_good_files(native, tmp_path):
    assert validate(tmp_path, mem(), backbone_doc())["ok"]
    assert validate(tmp_path, mem(dtype="fp16"), backbone_doc())["ok"]
    assert validate(tmp_path, mem(is_regression=True), None)["ok"]


@pytest.mark.parametrize("case,code", [
    ("truncated", "truncated"), ("header_cut", "bad_header_length"), ("flipped_header", "header_not_json"),
    ("empty", "truncated"), ("foreign", "fingerprint_mismatch"), ("nan", "not_finite"),
    ("not_memory", "metadata_missing"), ("fp16_says_fp32", "tensor_dtype"), ("wrong_shape", "tensor_shape"),
    ("top_k", "memory_shape_mismatch"), ("padding", "bad_padding"), ("version", "bad_format_version"),
    ("extra_tensor", "tensor_set"), ("trailing", "trailing_bytes"), ("bad_task", "bad_name"),
])
def test_memory_validator_refuses(native, tmp_path, case, code):
    good = mem()
    data = {
        "truncated": good[:-100], "header_cut": good[:200], "empty": b"",
        "flipped_header": good[:20] + b"\x00" + good[21:],
        "foreign": mem(fp="c" * 64), "nan": mem(nan=True),
        "not_memory": memory_bytes("sst2").replace(b"spartan_edge_memory", b"something_else_xyz1"),
        "fp16_says_fp32": mem(dtype="fp16", meta_overrides={"dtype": "fp32"}),
        "wrong_shape": mem(tensor_shapes={"K": (2, 11, 8)}),
        "top_k": mem(shape={"top_k": 3}), "version": mem(meta_overrides={"format_version": 2}),
        "extra_tensor": None, "trailing": good + b"\x00\x00", "bad_task": mem(meta_overrides={"task": "../x"}),
        "padding": None,
    }[case]
    if case in ("extra_tensor", "padding"):
        from safetensors.numpy import load, save
        t = load(good)
        from safetensors import safe_open  # noqa: F401  (metadata is copied below)
        meta = json.loads(good[8:8 + int.from_bytes(good[:8], "little")])["__metadata__"]
        if case == "extra_tensor":
            t["LayerNorm_weight"] = np.ones(8, np.float32)
        else:
            t["head_bias"][3] = 1.0
        data = save(t, metadata=meta)
    out = validate(tmp_path, data, backbone_doc())
    assert not out["ok"] and out["code"] == code, out


def test_memory_extra_tensor_allowed_when_the_program_takes_it(native, tmp_path):
    from safetensors.numpy import load, save

    good = mem()
    t = load(good)
    t["ln_weight"] = np.ones(8, np.float32)
    meta = json.loads(good[8:8 + int.from_bytes(good[:8], "little")])["__metadata__"]
    bb = backbone_doc()
    bb["inputs"].append({"name": "ln_weight", "shape": [8], "dtype": "float32"})
    assert validate(tmp_path, save(t, metadata=meta), bb)["ok"]
    bb["inputs"][-1]["shape"] = [9]
    assert validate(tmp_path, save(t, metadata=meta), bb)["code"] == "tensor_shape"
