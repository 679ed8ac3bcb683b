"""Helpers for the native runtime tests: build it once, drive the CLI, load the C ABI with ctypes."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NATIVE = REPO / "apps" / "native"
BIN = NATIVE / "build" / "spartan-edge"
LIB = NATIVE / "build" / "libspartan_edge.so"
HARD_STRINGS = Path(__file__).parent / "data" / "native_hard_strings.jsonl"


def missing_tools() -> list[str]:
    return [t for t in ("cmake", "g++", "pkg-config") if shutil.which(t) is None]


def build() -> None:
    r = subprocess.run(["bash", str(NATIVE / "build.sh")], cwd=REPO, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"apps/native/build.sh failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")


def cli(*args: str, timeout: float = 300, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=timeout, input=input)


def tokenize(tokenizer_json: Path, items: list, max_length: int = 128) -> list:
    """Native ids for each item (a string or an [a, b] pair), through `spartan-edge tokenize`."""
    r = cli("tokenize", "--tokenizer", str(tokenizer_json), "--max-length", str(max_length),
            input="".join(json.dumps(x) + "\n" for x in items), timeout=600)
    assert r.returncode == 0, r.stderr
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(out) == len(items)
    return out


def classify_json(*args: str) -> list[dict]:
    r = cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


class Abi:
    """libspartan_edge.so through ctypes: the C ABI exactly as a platform binding sees it."""

    def __init__(self) -> None:
        lib = self.lib = ctypes.CDLL(str(LIB))
        p, c, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
        lib.se_last_error.restype = c
        lib.se_last_error_code.restype = c
        lib.se_engine_open_bundle.argtypes = [c, c, ctypes.POINTER(p)]
        lib.se_engine_free.argtypes = [p]
        lib.se_engine_load_memory.argtypes = [p, c]
        lib.se_engine_load_bundle_task.argtypes = [p, c]
        lib.se_engine_task.argtypes = [p, ctypes.POINTER(c), ctypes.POINTER(sz), ctypes.POINTER(ctypes.c_int)]
        lib.se_engine_classify.argtypes = [p, c, c, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float),
                                           sz, ctypes.POINTER(sz), ctypes.POINTER(ctypes.c_int64), sz,
                                           ctypes.POINTER(sz)]
        lib.se_validate_memory.argtypes = [c, c]
        lib.se_abi_version.restype = ctypes.c_int

    def error(self) -> tuple[str, str]:
        return self.lib.se_last_error_code().decode(), self.lib.se_last_error().decode()

    def open_bundle(self, dist: Path, target: str = "android") -> ctypes.c_void_p:
        e = ctypes.c_void_p()
        rc = self.lib.se_engine_open_bundle(str(dist).encode(), target.encode(), ctypes.byref(e))
        assert rc == 0, self.error()
        return e

    def load(self, engine, path: Path) -> int:
        return self.lib.se_engine_load_memory(engine, str(path).encode())

    def task(self, engine) -> tuple[str, int, bool]:
        name, n, reg = ctypes.c_char_p(), ctypes.c_size_t(), ctypes.c_int()
        assert self.lib.se_engine_task(engine, ctypes.byref(name), ctypes.byref(n), ctypes.byref(reg)) == 0
        return name.value.decode(), n.value, bool(reg.value)

    def classify(self, engine, text: str, pair: str | None = None) -> tuple[list[float], list[int]]:
        logits = (ctypes.c_float * 8)()
        ids = (ctypes.c_int64 * 512)()
        n, n_ids = ctypes.c_size_t(), ctypes.c_size_t()
        rc = self.lib.se_engine_classify(engine, text.encode(), pair.encode() if pair is not None else None, logits,
                                         None, 8, ctypes.byref(n), ids, 512, ctypes.byref(n_ids))
        assert rc == 0, self.error()
        return list(logits[: n.value]), list(ids[: n_ids.value])
