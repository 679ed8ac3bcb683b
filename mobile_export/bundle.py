"""Build a dist/ bundle: one backbone program per target, one memory file per task, and manifest.json.

    export_bundle(memories=[run dirs], out=DIST, target="all", quantize=None, ...)   # programs + memories
    add_memories(DIST, memories=[run dirs])                                          # more tasks, same programs

The programs depend only on the backbone and the memory shape; a memory file is a pure function of its artifact's
tensors and metadata (memory.memory_tensors), so adding a task writes its memory files and the manifest and never
touches a program. A new export is written into a temporary folder beside DIST and renamed into place at the end, so
a failed export leaves no partial DIST. The manifest format is documented in docs/formats.md ("Export bundle").
`add_memories` imports no torch (numpy and safetensors only), so adding a task costs about a second; torch, the
backbone and the lowering code are imported by `export_bundle` alone.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.artifact import artifact_path, read_arrays, read_metadata, resolve_backbone_name
from pipeline.errors import UserError
from spartan_formats import FormatError
from spartan_formats.digest import sha256_file
from spartan_formats.dist_manifest import (
    DIST_MANIFEST_FORMAT_VERSION,
    DIST_MANIFEST_NAME,
    RECIPE_DIST_MANIFEST_FORMAT_VERSION,
    load_dist_manifest,
    write_dist_manifest,
)

from .memory import DEFAULTS_FILE, DTYPES, memory_header, memory_shape, memory_tensors, write_defaults, write_memory
from .shape import MemoryShape

if TYPE_CHECKING:
    from .model import EdgeModel

MANIFEST_VERSION = DIST_MANIFEST_FORMAT_VERSION  # a plain program: the memory and a linear head are its inputs
# 2: the recipe program, exported when a task trained its LayerNorms or has an MLP head: those are inputs too, and
# inputs marked "default" come from the target's defaults.safetensors when a memory file lacks them
RECIPE_MANIFEST_VERSION = RECIPE_DIST_MANIFEST_FORMAT_VERSION


def is_recipe(meta: dict) -> bool:
    """Whether a task needs the recipe program (its own LayerNorms or an MLP head)."""
    return bool(meta["options"].get("train_layernorms")) or meta.get("head", "linear") != "linear"
TARGETS = ("android", "ios")
PROGRAM_FILES = {"android": "backbone.pte", "ios": "backbone.mlpackage.zip"}
DEFAULT_MAX_LABELS = 8
SHAPE_KEYS = ("num_parents", "num_children", "top_k", "temperature")


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
        a, b = ({k: m["options"][k] for k in SHAPE_KEYS} for m in (first, meta))
        if a != b:
            raise UserError(f"mixed memory shapes: {path} has {b} but {first_path} has {a}; one backbone program "
                            "serves one memory shape, so export them as separate bundles")
    return found


def file_entry(root: Path, path: Path) -> dict:
    return {"path": path.relative_to(root).as_posix(), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def load_checked_backbone(meta: dict):
    """The backbone a task artifact names, refusing one whose weights differ from those it was trained on."""
    from pipeline.backbone import fingerprint, load_backbone

    backbone, tokenizer = load_backbone(resolve_backbone_name(meta["backbone"]["id"]))
    fp = fingerprint(backbone)
    if fp != meta["backbone"]["fingerprint"]:
        raise UserError(f"the backbone {meta['backbone']['id']} on this machine ({fp[:12]}…) is not the one the "
                        f"tasks were trained on ({meta['backbone']['fingerprint'][:12]}…)")
    return backbone, tokenizer


def check_fits(found: list[tuple[Path, dict]], manifest: dict) -> None:
    """Refuse artifacts that the bundle's programs cannot serve (another backbone, memory shape, too many outputs)
    and task names the bundle already has."""
    bb = manifest["backbone"]
    for path, meta in found:
        name = meta["task"]["name"]
        if meta["backbone"]["fingerprint"] != bb["fingerprint"]:
            raise UserError(f"{path} was trained on another backbone ({meta['backbone']['id']}, "
                            f"{meta['backbone']['fingerprint'][:12]}…) than this bundle's ({bb['id']}, "
                            f"{bb['fingerprint'][:12]}…)")
        have, want = memory_shape(meta).to_dict(), bb["memory_shape"]
        if have != want:
            raise UserError(f"{path}: memory shape {have} differs from the bundle program's {want}; one backbone "
                            "program serves one memory shape, so export it as a separate bundle")
        if name in manifest["tasks"]:
            raise UserError(f"task {name!r} is already in this bundle; give the new task another name (or make a "
                            "new export)")
        if is_recipe(meta) and manifest["format_version"] != RECIPE_MANIFEST_VERSION:
            raise UserError(f"{path}: task {name} has its own LayerNorms or an MLP head, which this bundle's plain "
                            "program cannot take; make a new export with it (that exports the recipe program, which "
                            "serves plain tasks too)")


def write_task(root: Path, path: Path, meta: dict, manifest: dict, memory_dtype: str) -> dict:
    """Write one task's memory file for every target of the bundle at `root`; return its manifest entry."""
    bb = manifest["backbone"]
    tensors = memory_tensors(read_arrays(path), meta, bb["max_labels"], bb.get("layernorms"))
    header = memory_header(meta, MemoryShape(**bb["memory_shape"]), bb["max_labels"], memory_dtype, tensors)
    files = {}
    for name in manifest["targets"]:
        mem = write_memory(root / name / "memories" / f"{header['task']}.safetensors", tensors, header)
        mem.chmod(0o644)  # safetensors makes private files; a server reads these
        files[name] = {**file_entry(root, mem), "dtype": memory_dtype}
    task = meta["task"]
    return {"label_names": task["label_names"], "is_regression": task["is_regression"],
            "num_outputs": header["num_outputs"], "metric": meta["metric"], "metrics": meta["metrics"],
            "backbone_fingerprint": meta["backbone"]["fingerprint"], "files": files,
            "head": meta.get("head", "linear"), "train_layernorms": bool(meta["options"].get("train_layernorms"))}


def write_manifest(root: Path, manifest: dict) -> None:
    """dist/manifest.json through spartan_formats.dist_manifest (validated before it is written, atomically)."""
    try:
        path = write_dist_manifest(root, manifest)
    except FormatError as e:
        raise UserError(f"refusing to write an invalid dist manifest: {e}") from None
    path.chmod(0o644)


def read_manifest(dist: Path) -> dict:
    if not (dist / DIST_MANIFEST_NAME).is_file():
        raise UserError(f"{dist} is not an export folder (no manifest.json); make one with --out first")
    try:
        return load_dist_manifest(dist)
    except FormatError as e:
        raise UserError(f"{dist / DIST_MANIFEST_NAME}: {e}") from None


def add_memories(dist: str | Path, memories: list[str | Path], memory_dtype: str = "fp32",
                 quiet: bool = False) -> dict:
    """Add task memories to an existing export: their memory files and manifest entries; the programs, tokenizer
    files and existing tasks stay byte for byte. No backbone is loaded. Returns the updated manifest."""
    dist = Path(dist)
    if memory_dtype not in DTYPES:
        raise UserError(f"unknown --memory-dtype {memory_dtype!r}; choose fp32 or fp16")
    manifest = read_manifest(dist)
    found = check_artifacts(memories)
    check_fits(found, manifest)
    progress = Progress(len(found) + 1, quiet)
    written: list[Path] = []
    try:
        for path, meta in found:
            entry = write_task(dist, path, meta, manifest, memory_dtype)
            written += [dist / f["path"] for f in entry["files"].values()]
            manifest["tasks"][meta["task"]["name"]] = entry
            progress(f"wrote the memory of {meta['task']['name']} for {', '.join(manifest['targets'])}")
        write_manifest(dist, manifest)
    except BaseException:
        for f in written:  # nothing half-added: the manifest never names them, so remove them too
            f.unlink(missing_ok=True)
        raise
    progress(f"done: {dist} now serves {', '.join(sorted(manifest['tasks']))}")
    return manifest


def export_programs(tmp: Path, backbone, tokenizer, shape: MemoryShape, targets: list[str], quantize: str | None,
                    max_seq_length: int, max_labels: int, progress: Progress, recipe: bool = False
                    ) -> tuple[dict, EdgeModel]:
    """Lower the backbone program for each target into `tmp` with its tokenizer files (and, for the recipe
    program, its defaults file); the manifest's targets."""
    from . import android, ios
    from .model import EdgeModel, layernorm_names

    model = EdgeModel(backbone, shape, tokenizer.sep_token_id if "token_type_ids" in tokenizer.model_input_names
                      else None, recipe=recipe)
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
        tok_files = sorted(f for f in (Path(f) for f in tokenizer.save_pretrained(str(tdir))) if f.is_file())
        extra = [write_defaults(tdir / DEFAULTS_FILE, model.input_defaults(), layernorm_names(backbone))] \
            if recipe else []
        manifest_targets[name] = {
            "program": program.relative_to(tmp).as_posix(),
            "files": [file_entry(tmp, f) for f in (program, *extra, *tok_files)],
            **({"defaults": extra[0].relative_to(tmp).as_posix()} if extra else {}),
            "tokenizer": [f.relative_to(tmp).as_posix() for f in tok_files],
            "inputs": inputs,
            "outputs": ["logits"],
            "quantize": quantize if name == "android" else None,
            "compute_precision": "fp16" if name == "ios" else ("int8-dynamic" if quantize else "fp32"),
        }
    return manifest_targets, model


def export_bundle(memories: list[str | Path], out: str | Path, target: str | list[str] = "all",
                  quantize: str | None = None, max_seq_length: int = 128, max_labels: int = DEFAULT_MAX_LABELS,
                  memory_dtype: str = "fp32", quiet: bool = False) -> dict:
    """Write DIST (the backbone programs, then the tasks' memory files) and return its manifest."""
    from .model import layernorm_names

    targets = parse_targets(target)
    out = Path(out)
    if out.exists():
        raise UserError(f"{out} already exists; choose a new --out folder, or add tasks to it with --into")
    if quantize not in (None, "int8"):
        raise UserError(f"unknown --quantize {quantize!r}; the only mode is int8")
    if memory_dtype not in DTYPES:
        raise UserError(f"unknown --memory-dtype {memory_dtype!r}; choose fp32 or fp16")
    if not 2 <= max_seq_length <= 512:
        raise UserError(f"--max-seq-length must be in 2..512, got {max_seq_length}")
    found = check_artifacts(memories)
    progress = Progress(3 + len(targets) + len(found), quiet)
    meta0 = found[0][1]
    backbone, tokenizer = load_checked_backbone(meta0)
    shape = memory_shape(meta0)
    limit = getattr(backbone.config, "max_position_embeddings", max_seq_length)
    if max_seq_length > limit:
        raise UserError(f"--max-seq-length {max_seq_length} exceeds the backbone's {limit} positions")
    progress(f"loaded backbone for {len(found)} task(s): {', '.join(m['task']['name'] for _, m in found)}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        recipe = any(is_recipe(meta) for _, meta in found)
        manifest_targets, model = export_programs(tmp, backbone, tokenizer, shape, targets, quantize, max_seq_length,
                                                  max_labels, progress, recipe)
        manifest = {
            "format_version": RECIPE_MANIFEST_VERSION if recipe else MANIFEST_VERSION,
            "backbone": {
                "id": meta0["backbone"]["id"], "fingerprint": meta0["backbone"]["fingerprint"],
                "model_type": meta0["backbone"].get("model_type"), "hidden_size": shape.hidden_size,
                "num_layers": shape.num_layers, "memory_shape": shape.to_dict(), "max_seq_length": max_seq_length,
                "max_labels": max_labels, "pooling": "mean",
                **({"layernorms": layernorm_names(backbone)} if recipe else {}),
                "token_type_ids": "derived in the program from [SEP]" if model.sep_token_id is not None else None,
            },
            "targets": manifest_targets,
            "tasks": {},
        }
        for path, meta in found:
            manifest["tasks"][meta["task"]["name"]] = write_task(tmp, path, meta, manifest, memory_dtype)
            progress(f"wrote the memory of {meta['task']['name']}")
        write_manifest(tmp, manifest)
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
