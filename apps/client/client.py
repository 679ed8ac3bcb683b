"""EdgeClient: what the phone does. Fetch the manifest, keep one backbone, fetch task memories, run them.

The backbone (program + tokenizer, ~90 MB) is downloaded once; switching tasks downloads only that task's memory
(~1 MB). Every file is checked against the manifest's sha256 before it enters the cache and again before use. A
refused download never replaces the last good copy, which stays in use (with a warning) until a good one arrives.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

from .cache import Cache
from .errors import ClientError, IntegrityError, NotCached
from .memory import DEFAULTS_FILE, check_memory, load_defaults, memory_inputs
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


class EdgeClient:
    def __init__(self, server: str | None, cache_dir: str | Path, target: str = "android", offline: bool = False,
                 timeout: float = 30.0, attempts: int = 4) -> None:
        if not offline and not server:
            raise ClientError("--server is required unless --offline")
        self.server = (server or "").rstrip("/")
        self.cache, self.target, self.offline = Cache(cache_dir), target, offline
        self.timeout, self.attempts = timeout, attempts
        self.session = requests.Session()
        self.state = self.cache.load_state()
        self.runtime: BackboneRuntime | None = None
        self._runtime_fp: str | None = None
        self._manifest: dict | None = None
        self.warnings: list[str] = []

    # --- manifest -----------------------------------------------------------------------------------------------
    def manifest(self) -> dict:
        if self._manifest is not None:
            return self._manifest
        if self.offline:
            raise NotCached("offline")
        headers = {"If-None-Match": self.state["manifest_etag"]} if self.state.get("manifest_etag") else {}
        try:
            r = self.session.get(self.server + "/manifest", headers=headers, timeout=self.timeout)
        except requests.RequestException as e:
            raise ClientError(f"cannot reach {self.server}: {e}") from None
        if r.status_code == 304 and "manifest" in self.state:
            self._manifest = self.state["manifest"]
        elif r.status_code == 200:
            self._manifest = r.json()
            self.state["manifest"], self.state["manifest_etag"] = self._manifest, r.headers.get("ETag")
            self.cache.save_state(self.state)
        else:
            raise ClientError(f"GET /manifest: HTTP {r.status_code}")
        return self._manifest

    # --- backbone ----------------------------------------------------------------------------------------------
    def ensure_backbone(self) -> int:
        """Make sure a verified backbone bundle is cached; return bytes fetched (0 when cached)."""
        if self.offline:
            if "backbone" not in self.state:
                raise NotCached(f"no backbone for {self.target} in the cache; run once online first")
            return 0
        bb = self.manifest().get("backbones", {}).get(self.target)
        if bb is None:
            raise ClientError(f"the server has no backbone for target {self.target}")
        cur = self.state.get("backbone")
        if cur and cur["fingerprint"] == bb["fingerprint"] and cur["version"] == bb["version"] \
                and all(self.cache.has(f["sha256"]) for f in cur["files"]):
            return 0
        fetched = 0
        try:
            for f in bb["files"]:
                _, n = fetch(self.session, self.cache, self.server + f["url"], f["sha256"], f["bytes"],
                             attempts=self.attempts, timeout=self.timeout)
                fetched += n
        except ClientError as e:
            if not cur:
                raise
            self._note(f"{e}; keeping the cached backbone {cur['fingerprint'][:16]}… (version {cur['version']})")
            return fetched
        self.state["backbone"] = {k: bb.get(k) for k in ("fingerprint", "version", "id", "program", "inputs",
                                                         "outputs", "max_seq_length", "max_labels", "memory_shape")}
        self.state["backbone"]["files"] = [{"path": f["path"], "sha256": f["sha256"]} for f in bb["files"]]
        self.cache.save_state(self.state)
        return fetched

    def backbone(self) -> dict:
        return self.state["backbone"]

    def load_runtime(self) -> BackboneRuntime:
        """Load the cached program once; later tasks reuse it (the phone keeps the backbone in memory)."""
        bb = self.backbone()
        if self.runtime is not None and self._runtime_fp == bb["fingerprint"]:
            return self.runtime
        files = {f["path"]: f["sha256"] for f in bb["files"]}
        tok = next((p for p in files if p.rsplit("/", 1)[-1] == "tokenizer.json"), None)
        if tok is None:
            raise ClientError("the backbone bundle has no tokenizer.json")
        for path in (bb["program"], tok):
            if not self.cache.verified(files[path]):
                raise IntegrityError(f"cached backbone file {path} is missing or corrupt; run online to re-fetch")
        self.runtime = BackboneRuntime(self.cache.blob(files[bb["program"]]), self.cache.blob(files[tok]),
                                       bb.get("max_seq_length") or 128, bb.get("inputs"))
        self._runtime_fp = bb["fingerprint"]
        return self.runtime

    def defaults(self) -> dict[str, np.ndarray] | None:
        """The bundle's defaults file (manifest v2: inputs a plain task's memory file leaves out), verified."""
        files = {f["path"]: f["sha256"] for f in self.backbone()["files"]}
        path = next((p for p in files if p.rsplit("/", 1)[-1] == DEFAULTS_FILE), None)
        if path is None:
            return None
        if not self.cache.verified(files[path]):
            raise IntegrityError(f"cached backbone file {path} is missing or corrupt; run online to re-fetch")
        return load_defaults(self.cache.blob(files[path]))

    # --- memories ----------------------------------------------------------------------------------------------
    def ensure_memory(self, task: str) -> tuple[dict, int]:
        """A verified memory for `task` on the cached backbone: (state entry, bytes fetched)."""
        last = self.state.get("memories", {}).get(task)
        if last and last["backbone_fingerprint"] != self.backbone()["fingerprint"]:
            last = None  # made for a backbone we no longer run
        if self.offline:
            if not last:
                cached = sorted(self.state.get("memories", {}))
                raise NotCached(f"no memory for task {task!r} in the cache (cached: {', '.join(cached) or 'none'}); "
                                "run once online first")
            return last, 0
        tasks = self.manifest().get("tasks", {})
        entry = tasks.get(task, {}).get(self.target)
        try:
            if entry is None:
                have = sorted(t for t, files in tasks.items() if self.target in files)
                raise ClientError(f"the server has no task {task!r} for {self.target}; it has: "
                                  f"{', '.join(have) or 'no tasks yet (publish an export first)'}")
            if last and last["sha256"] == entry["sha256"] and self.cache.has(entry["sha256"]):
                return last, 0
            fp = self.backbone()["fingerprint"]
            if entry["backbone_fingerprint"] != fp:
                raise IntegrityError(f"the server's memory for {task!r} (version {entry['version']}) is for backbone "
                                     f"{entry['backbone_fingerprint'][:16]}…, the cached backbone is {fp[:16]}…; "
                                     "refused")
            path, n = fetch(self.session, self.cache, self.server + entry["url"], entry["sha256"], entry["bytes"],
                            params={"backbone": fp}, attempts=self.attempts, timeout=self.timeout)
            try:
                meta = check_memory(path, task, self.backbone())
                memory_inputs(path, self.backbone(), self.defaults())
            except IntegrityError:
                path.unlink(missing_ok=True)
                raise
        except ClientError as e:
            if not last:
                raise
            self._note(f"{e}; using the last good memory for {task!r} (version {last['version']})")
            return last, 0
        new = {"version": entry["version"], "sha256": entry["sha256"], "backbone_fingerprint": fp,
               "label_names": meta.get("label_names", []), "is_regression": bool(meta.get("is_regression")),
               "num_outputs": 1 if meta.get("is_regression") else len(meta.get("label_names", []))}
        self.state.setdefault("memories", {})[task] = new
        self.cache.save_state(self.state)
        return new, n

    def _note(self, msg: str) -> None:
        self.warnings.append(msg)
        _warn(msg)

    # --- inference ---------------------------------------------------------------------------------------------
    def predict(self, task: str, text: str, pair: str | None = None) -> Prediction:
        self.warnings = []
        fetched = self.ensure_backbone()
        mem, n = self.ensure_memory(task)
        fetched += n
        if not self.cache.verified(mem["sha256"]):
            raise IntegrityError(f"cached memory for {task!r} is missing or corrupt; run online to re-fetch")
        path = self.cache.blob(mem["sha256"])
        check_memory(path, task, self.backbone())
        inputs = memory_inputs(path, self.backbone(), self.defaults())
        logits, ms = self.load_runtime().run(text, inputs, pair)
        logits = logits[: mem["num_outputs"]]  # the head is padded to max_labels; the rest is zero padding
        if mem["is_regression"]:
            label, probs = None, {}
        else:
            z = np.exp(logits - logits.max())
            p = z / z.sum()
            probs = {name: float(v) for name, v in zip(mem["label_names"], p, strict=True)}
            label = mem["label_names"][int(np.argmax(p))]
        return Prediction(task, label, probs, [float(x) for x in logits], ms, mem["version"], fetched,
                          list(self.warnings))


def format_prediction(p: Prediction) -> str:
    if p.label is None:
        head = f"{p.task} v{p.memory_version}: value {p.logits[0]:.4f}"
    else:
        probs = ", ".join(f"{k} {v:.3f}" for k, v in p.probabilities.items())
        head = f"{p.task} v{p.memory_version}: {p.label}  ({probs})"
    fetched = f"{p.bytes_fetched:,} bytes fetched" if p.bytes_fetched else "0 bytes fetched (cached)"
    lat = f"{p.latency_ms:.2f} ms" if math.isfinite(p.latency_ms) else "n/a"
    return f"{head}\n  latency {lat}; {fetched}"
