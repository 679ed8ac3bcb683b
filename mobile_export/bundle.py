"""Build a dist/ bundle: one backbone program per target, one memory file per task, and manifest.json.

    export_bundle(memories=[run dirs], out=DIST, targets=["android", "ios"], quantize=None, ...)

Everything is written into a temporary folder beside DIST and renamed into place at the end, so a failed export
leaves no partial DIST. The manifest format is documented in docs/formats.md ("Export bundle").
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline import load_task, read_metadata
from pipeline.artifact import artifact_path, resolve_backbone_name
from pipeline.backbone import fingerprint, load_backbone
from pipeline.errors import UserError

from . import android, ios
from .memory import DEFAULTS_FILE, DTYPES, memory_header, memory_shape, task_tensors, write_defaults, write_memory
from .model import EdgeModel, MemoryShape, layernorm_names

# 2: the program also takes the backbone's LayerNorms and an MLP head as inputs (inputs marked "default" come from
# the target's defaults.safetensors when a memory file lacks them)
MANIFEST_VERSION = 2
TARGETS = ("android", "ios")
PROGRAM_FILES = {"android": "backbone.pte", "ios": "backbone.mlpackage.zip"}
DEFAULT_MAX_LABELS = 8


@dataclass
class Task:
    path: Path
    meta: dict
    model: object  # pipeline TaskModel
    shape: MemoryShape


class Progress:
    """Step lines on stderr with elapsed time: lowering takes tens of seconds and should not look hung."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total, self.done, self.quiet, self.t0 = total, 0, quiet, time.perf_counter()

    def __call__(self, msg: str) -> None:
        self.done += 1
        if not self.quiet:
            print(f"[{self.done}/{self.total} {time.perf_counter() - self.t0:6.1f}s] {msg}", file=sys.stderr,
                  flush=True)


def parse_targets(target: str | list[str]) -> list[str]:
    names = [target] if isinstance(target, str) else list(target)
    if "all" in names:
        return list(TARGETS)
    for n in names:
        if n not in TARGETS:
            raise UserError(f"unknown target {n!r}; choose android, ios or all")
    return sorted(set(names), key=TARGETS.index)


def check_artifacts(paths: list[str | Path]) -> list[tuple[Path, dict]]:
    """Read every artifact's metadata and refuse what one shared backbone program cannot serve."""
    if not paths:
        raise UserError("give at least one task artifact with --memories")
    found = []
    for p in paths:
        path = artifact_path(p)
        meta = read_metadata(path)  # UserError for a missing or foreign file
        if meta["method"] != "spartan":
            raise UserError(f"{path}: method {meta['method']!r} cannot be exported; only spartan memories plug into "
                            "the shared backbone program")
        found.append((path, meta))
    first_path, first = found[0]
    names = [m["task"]["name"] for _, m in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"task name {dupes[0]!r} appears more than once in --memories; each task needs its own name")
    for path, meta in found[1:]:
        if meta["backbone"]["fingerprint"] != first["backbone"]["fingerprint"]:
            raise UserError(f"{path} was trained on another backbone ({meta['backbone']['id']}, "
                            f"{meta['backbone']['fingerprint'][:12]}…) than {first_path} ({first['backbone']['id']}, "
                            f"{first['backbone']['fingerprint'][:12]}…); one bundle serves one backbone")
        keys = ("num_parents", "num_children", "top_k", "temperature")
        a, b = ({k: m["options"][k] for k in keys} for m in (first, meta))
        if a != b:
            raise UserError(f"mixed memory shapes: {path} has {b} but {first_path} has {a}; one backbone program "
                            "serves one memory shape, so export them as separate bundles")
    return found


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(root: Path, path: Path) -> dict:
    return {"path": path.relative_to(root).as_posix(), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def load_tasks(found: list[tuple[Path, dict]]):
    """Load the backbone once (checking its fingerprint) and every task on a copy of it."""
    meta0 = found[0][1]
    backbone, tokenizer = load_backbone(resolve_backbone_name(meta0["backbone"]["id"]))
    fp = fingerprint(backbone)
    if fp != meta0["backbone"]["fingerprint"]:
        raise UserError(f"the backbone {meta0['backbone']['id']} on this machine ({fp[:12]}…) is not the one the "
                        f"tasks were trained on ({meta0['backbone']['fingerprint'][:12]}…)")
    tasks = []
    for path, meta in found:
        # load_task attaches the memory hooks to the backbone it gets: give each task its own copy
        model, _, meta = load_task(path, backbone=copy.deepcopy(backbone), backbone_fingerprint=fp)
        tasks.append(Task(path, meta, model, memory_shape(model, meta)))
    return backbone, tokenizer, tasks


def export_bundle(memories: list[str | Path], out: str | Path, target: str | list[str] = "all",
                  quantize: str | None = None, max_seq_length: int = 128, max_labels: int = DEFAULT_MAX_LABELS,
                  memory_dtype: str = "fp32", quiet: bool = False) -> dict:
    """Write DIST and return its manifest."""
    targets = parse_targets(target)
    out = Path(out)
    if out.exists():
        raise UserError(f"{out} already exists; choose a new --out folder (an export never overwrites one)")
    if quantize not in (None, "int8"):
        raise UserError(f"unknown --quantize {quantize!r}; the only mode is int8")
    if memory_dtype not in DTYPES:
        raise UserError(f"unknown --memory-dtype {memory_dtype!r}; choose fp32 or fp16")
    if not 2 <= max_seq_length <= 512:
        raise UserError(f"--max-seq-length must be in 2..512, got {max_seq_length}")
    found = check_artifacts(memories)
    progress = Progress(3 + 2 * len(targets), quiet)
    backbone, tokenizer, tasks = load_tasks(found)
    shape = tasks[0].shape
    limit = getattr(backbone.config, "max_position_embeddings", max_seq_length)
    if max_seq_length > limit:
        raise UserError(f"--max-seq-length {max_seq_length} exceeds the backbone's {limit} positions")
    progress(f"loaded backbone and {len(tasks)} task(s): {', '.join(t.meta['task']['name'] for t in tasks)}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        model = EdgeModel(backbone, shape, tokenizer.sep_token_id
                          if "token_type_ids" in tokenizer.model_input_names else None, recipe=True)
        ep = android.export_program(model, max_labels, max_seq_length, quantize) if "android" in targets else None
        progress("exported the graph (torch.export, dynamic sequence length)")
        manifest_targets = {}
        for name in targets:
            tdir = tmp / name
            (tdir / "memories").mkdir(parents=True)
            program = tdir / PROGRAM_FILES[name]
            if name == "android":
                program.write_bytes(android.lower(ep))
                inputs = android.input_spec(model, max_labels, max_seq_length)
            else:
                # Core ML gets its own export of the same model: fp32 ops (int8 linears are an XNNPACK graph) in
                # the form Core ML converts and computes in fp16 (EdgeModel.coreml_ops)
                with model.coreml_ops():
                    ep_ios = android.export_program(model, max_labels, max_seq_length, None)
                with tempfile.TemporaryDirectory() as d:
                    ios.zip_package(ios.convert(ep_ios, Path(d) / "backbone.mlpackage", model.input_names), program)
                inputs = ios.input_spec(android.input_spec(model, max_labels, max_seq_length))
            progress(f"{name}: wrote {program.name} ({program.stat().st_size / 1e6:.1f} MB)")
            tok_files = [Path(f) for f in tokenizer.save_pretrained(str(tdir))]
            tok_files = sorted(f for f in tok_files if f.is_file())
            defaults = write_defaults(tdir / DEFAULTS_FILE, model.input_defaults(), layernorm_names(backbone))
            manifest_targets[name] = {
                "program": program.relative_to(tmp).as_posix(),
                "files": [file_entry(tmp, program), file_entry(tmp, defaults),
                          *(file_entry(tmp, f) for f in tok_files)],
                "defaults": defaults.relative_to(tmp).as_posix(),
                "tokenizer": [f.relative_to(tmp).as_posix() for f in tok_files],
                "inputs": inputs,
                "outputs": ["logits"],
                "quantize": quantize if name == "android" else None,
                "compute_precision": "fp16" if name == "ios" else ("int8-dynamic" if quantize else "fp32"),
            }
            progress(f"{name}: wrote tokenizer and {len(tasks)} memory file(s)")
        manifest_tasks = {}
        for t in tasks:
            tensors = task_tensors(t.model, max_labels)
            header = memory_header(t.meta, shape, max_labels, memory_dtype, tensors)
            files = {}
            for name in targets:
                path = write_memory(tmp / name / "memories" / f"{header['task']}.safetensors", tensors, header)
                files[name] = {**file_entry(tmp, path), "dtype": memory_dtype}
            task = t.meta["task"]
            manifest_tasks[task["name"]] = {
                "label_names": task["label_names"], "is_regression": task["is_regression"],
                "num_outputs": header["num_outputs"], "metric": t.meta["metric"], "metrics": t.meta["metrics"],
                "head": t.meta.get("head", "linear"),
                "train_layernorms": bool(t.meta["options"].get("train_layernorms")),
                "backbone_fingerprint": t.meta["backbone"]["fingerprint"], "files": files,
            }
        meta0 = tasks[0].meta
        manifest = {
            "format_version": MANIFEST_VERSION,
            "backbone": {
                "id": meta0["backbone"]["id"], "fingerprint": meta0["backbone"]["fingerprint"],
                "model_type": meta0["backbone"].get("model_type"), "hidden_size": shape.hidden_size,
                "num_layers": shape.num_layers, "memory_shape": shape.to_dict(), "max_seq_length": max_seq_length,
                "max_labels": max_labels, "pooling": "mean", "layernorms": layernorm_names(backbone),
                "token_type_ids": "derived in the program from [SEP]" if model.sep_token_id is not None else None,
            },
            "targets": manifest_targets,
            "tasks": manifest_tasks,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out.exists():  # someone made it while we worked: still never overwrite
            raise UserError(f"{out} appeared during the export; nothing was written there")
        for f in tmp.rglob("*"):  # mkdtemp and safetensors make private files; a server reads these
            f.chmod(0o755 if f.is_dir() else 0o644)
        tmp.chmod(0o755)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress(f"done: {out}")
    return manifest
