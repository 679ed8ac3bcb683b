"""EdgeClient: what the phone does. Fetch the manifest, keep one backbone, fetch task memories, run them.

The backbone (program + tokenizer, ~90 MB) is downloaded once; switching tasks downloads only that task's memory
(~1 MB). The catalog (GET /manifest) is validated by spartan_formats before any of it is used; every file is checked
against its sha256 before it enters the cache and re-hashed once per run before use, and a corrupt cached file is
re-fetched alone. A refused download never replaces the last good copy, which stays in use (with a warning) until a
good one arrives; when the server is down or answers garbage, the client runs from its verified cache, with a
warning.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

from spartan_formats import FormatError
from spartan_formats.catalog import read_catalog
from spartan_formats.names import is_name

from .cache import Cache
from .errors import ClientError, IntegrityError, NotCached
from .memory import DEFAULTS_FILE, MEMORY_TENSORS, load_defaults, load_memory, task_input_names, task_inputs
from .runtime import BackboneRuntime
from .transfer import fetch


@dataclass
class Prediction:
    task: str
    label: str | None
    probabilities: dict[str, float]
    logits: list[float]
    latency_ms: float
    memory_version: int
    bytes_fetched: int
    warnings: list[str] = field(default_factory=list)


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def _check_task(task: str) -> None:
    if not is_name(task):
        raise ClientError(f"bad task name {task[:80]!r}: use 1-64 characters from A-Z a-z 0-9 _ . - (no '..')")


class EdgeClient:
    def __init__(self, server: str | None, cache_dir: str | Path, target: str = "android", offline: bool = False,
                 timeout: float = 30.0, attempts: int = 4) -> None:
        if not offline and not server:
            raise ClientError("--server is required unless --offline")
        self.server = (server or "").rstrip("/")
        self.cache, self.target, self.offline = Cache(cache_dir), target, offline
        self.timeout, self.attempts = timeout, attempts
        self.session = requests.Session()
        self.warnings: list[str] = []
        self.state, warning = self.cache.load_state()
        if warning:
            self._note(warning)
        self.runtime: BackboneRuntime | None = None
        self._runtime_fp: str | None = None
        self._catalog: dict | None = None
        self._catalog_problem: str | None = None  # why the server's catalog is not usable this run
        self._verified: set[str] = set()  # sha256s re-hashed during this run

    # --- catalog (GET /manifest) ---------------------------------------------------------------------------------
    def catalog(self) -> dict | None:
        """The server's catalog, or None when it cannot be had (offline, unreachable, garbage): the client then runs
        from its verified cache with a warning (_catalog_problem says why)."""
        if self._catalog is not None or self._catalog_problem is not None:
            return self._catalog
        if self.offline:
            self._catalog_problem = "offline"
            return None
        headers = {"If-None-Match": self.state["catalog_etag"]} if self.state.get("catalog_etag") else {}
        try:
            r = self.session.get(self.server + "/manifest", headers=headers, timeout=self.timeout)
        except requests.RequestException as e:
            return self._no_catalog(f"cannot reach {self.server}: {type(e).__name__}")
        if r.status_code == 304 and self.state.get("catalog"):
            self._catalog = self.state["catalog"]
        elif r.status_code == 200:
            try:
                self._catalog = read_catalog(r.content)
            except FormatError as e:
                return self._no_catalog(f"{self.server}/manifest is not a valid catalog ({e})")
            self.state["catalog"], self.state["catalog_etag"] = self._catalog, r.headers.get("ETag")
            self.cache.save_state(self.state)
        else:
            return self._no_catalog(f"GET {self.server}/manifest: HTTP {r.status_code}")
        return self._catalog

    def _no_catalog(self, problem: str) -> None:
        self._catalog_problem = problem
        return None

    # --- files -------------------------------------------------------------------------------------------------
    def _ensure_file(self, sha256: str, size: int, url: str | None, params: dict | None = None) -> int:
        """A verified copy of one file in the cache: re-hash the cached one; fetch only if it is missing or corrupt
        (and only that file). Returns bytes fetched."""
        if sha256 in self._verified or self.cache.verified(sha256):
            self._verified.add(sha256)
            return 0
        if url is None:
            raise IntegrityError(f"cached file {sha256[:16]}… is missing or corrupt and there is no server to "
                                 f"re-fetch it from ({self._catalog_problem})")
        _, n = fetch(self.session, self.cache, self.server + url, sha256, size, params=params,
                     attempts=self.attempts, timeout=self.timeout)
        self._verified.add(sha256)
        return n

    # --- backbone ----------------------------------------------------------------------------------------------
    def ensure_backbone(self) -> int:
        """Make sure a verified backbone bundle is cached; return bytes fetched (0 when cached)."""
        cur = self.state.get("backbone")
        cat = self.catalog()
        if cat is None:
            if not cur or cur["target"] != self.target:
                if self.offline:
                    raise NotCached(f"no backbone for {self.target} in the cache; run once online first")
                raise ClientError(f"{self._catalog_problem}, and no backbone for {self.target} is cached")
            if not self.offline:
                self._note(f"{self._catalog_problem}; using the cached backbone {cur['fingerprint'][:16]}… "
                           f"(version {cur['version']}) and cached memories")
            for f in cur["files"]:  # a corrupt file cannot be re-fetched now: say so rather than run it
                self._ensure_file(f["sha256"], f["bytes"], None)
            return 0
        bb = cat["backbones"].get(self.target)
        if bb is None:
            raise ClientError(f"the server has no backbone for target {self.target}")
        fetched = 0
        try:
            for f in bb["files"]:
                fetched += self._ensure_file(f["sha256"], f["bytes"], f["url"])
        except ClientError as e:
            if not cur or cur["target"] != self.target:
                raise
            self._note(f"{e}; keeping the cached backbone {cur['fingerprint'][:16]}… (version {cur['version']})")
            return fetched
        if cur != bb:
            self.state["backbone"] = bb
            self.cache.save_state(self.state)
        return fetched

    def backbone(self) -> dict:
        return self.state["backbone"]

    def load_runtime(self) -> BackboneRuntime:
        """Load the cached program once; later tasks reuse it (the phone keeps the backbone in memory)."""
        bb = self.backbone()
        if self.runtime is not None and self._runtime_fp == bb["fingerprint"]:
            return self.runtime
        files = {f["path"]: f for f in bb["files"]}
        tok = next((p for p in files if p.rsplit("/", 1)[-1] == "tokenizer.json"), None)
        if tok is None:
            raise ClientError("the backbone bundle has no tokenizer.json")
        for path in (bb["program"], tok):
            self._ensure_file(files[path]["sha256"], files[path]["bytes"], files[path].get("url")
                              if self._catalog is not None else None)
        self.runtime = BackboneRuntime(self.cache.blob(files[bb["program"]]["sha256"]),
                                       self.cache.blob(files[tok]["sha256"]), bb["max_seq_length"], bb.get("inputs"))
        self._runtime_fp = bb["fingerprint"]
        return self.runtime

    def defaults(self) -> dict[str, np.ndarray] | None:
        """The recipe program's defaults file (verified like every bundle file), or None for a plain program."""
        bb = self.backbone()
        if all(n in MEMORY_TENSORS for n in task_input_names(bb)):
            return None
        files = {f["path"]: f for f in bb["files"]}
        path = next((p for p in files if p.rsplit("/", 1)[-1] == DEFAULTS_FILE), None)
        if path is None:
            raise IntegrityError(f"the backbone program takes inputs beyond the memory but its bundle has no "
                                 f"{DEFAULTS_FILE}; refused")
        self._ensure_file(files[path]["sha256"], files[path]["bytes"], files[path].get("url")
                          if self._catalog is not None else None)
        return load_defaults(self.cache.blob(files[path]["sha256"]))

    # --- memories ----------------------------------------------------------------------------------------------
    def ensure_memory(self, task: str) -> tuple[dict, int]:
        """A verified memory for `task` on the cached backbone: (state entry, bytes fetched)."""
        _check_task(task)
        last = self.state["memories"].get(task)
        fp = self.backbone()["fingerprint"]
        if last and last["backbone_fingerprint"] != fp:
            last = None  # made for a backbone we no longer run
        cat = self.catalog()
        if cat is None:
            if not last:
                cached = ", ".join(sorted(self.state["memories"])) or "none"
                if self.offline:
                    raise NotCached(f"no memory for task {task!r} in the cache (cached: {cached}); "
                                    "run once online first")
                raise ClientError(f"{self._catalog_problem}, and no memory for task {task!r} is cached")
            self._ensure_file(last["sha256"], 0, None)
            return last, 0
        tasks = cat["tasks"]
        entry = tasks.get(task, {}).get(self.target)
        try:
            if entry is None:
                have = sorted(t for t, files in tasks.items() if self.target in files)
                raise ClientError(f"the server has no task {task!r} for {self.target}; it has: "
                                  f"{', '.join(have) or 'no tasks yet (publish an export first)'}")
            if entry["backbone_fingerprint"] != fp:
                raise IntegrityError(f"the server's memory for {task!r} (version {entry['version']}) is for backbone "
                                     f"{entry['backbone_fingerprint'][:16]}…, the cached backbone is {fp[:16]}…; "
                                     "refused")
            n = self._ensure_file(entry["sha256"], entry["bytes"], entry["url"], params={"backbone": fp})
            try:
                meta = load_memory(self.cache.blob(entry["sha256"]), task, self.backbone()).meta
            except IntegrityError:
                self.cache.blob(entry["sha256"]).unlink(missing_ok=True)
                self._verified.discard(entry["sha256"])
                raise
        except ClientError as e:
            if not last:
                raise
            self._note(f"{e}; using the last good memory for {task!r} (version {last['version']})")
            self._ensure_file(last["sha256"], 0, None)
            return last, 0
        new = {"version": entry["version"], "sha256": entry["sha256"], "backbone_fingerprint": fp,
               "label_names": meta["label_names"], "is_regression": meta["is_regression"],
               "num_outputs": meta["num_outputs"]}
        if last != new:
            self.state["memories"][task] = new
            self.cache.save_state(self.state)
        return new, n

    def _note(self, msg: str) -> None:
        self.warnings.append(msg)
        _warn(msg)

    # --- inference ---------------------------------------------------------------------------------------------
    def predict(self, task: str, text: str, pair: str | None = None) -> Prediction:
        fetched = self.ensure_backbone()
        mem, n = self.ensure_memory(task)
        fetched += n
        memory = load_memory(self.cache.blob(mem["sha256"]), task, self.backbone())
        inputs = task_inputs(memory, self.backbone(), self.defaults())
        logits, ms = self.load_runtime().run(text, inputs, pair)
        logits = logits[: mem["num_outputs"]]  # the head is padded to max_labels; the rest is zero padding
        if mem["is_regression"]:
            label, probs = None, {}
        else:
            z = np.exp(logits - logits.max())
            p = z / z.sum()
            probs = {name: float(v) for name, v in zip(mem["label_names"], p, strict=True)}
            label = mem["label_names"][int(np.argmax(p))]
        warnings, self.warnings = list(self.warnings), []
        return Prediction(task, label, probs, [float(x) for x in logits], ms, mem["version"], fetched, warnings)


def format_prediction(p: Prediction) -> str:
    if p.label is None:
        head = f"{p.task} v{p.memory_version}: value {p.logits[0]:.4f}"
    else:
        probs = ", ".join(f"{k} {v:.3f}" for k, v in p.probabilities.items())
        head = f"{p.task} v{p.memory_version}: {p.label}  ({probs})"
    fetched = f"{p.bytes_fetched:,} bytes fetched" if p.bytes_fetched else "0 bytes fetched (cached)"
    lat = f"{p.latency_ms:.2f} ms" if math.isfinite(p.latency_ms) else "n/a"
    return f"{head}\n  latency {lat}; {fetched}"
