"""Per-task memory files: the tensors a backbone program needs for one task, self-described in the header.

    P [L,E,H]  K [L,E*C,H]  Vt [L,H,E*C]  head_weight [max_labels,H]  head_bias [max_labels]       (every task)
    ln_weight [N_ln,H]  ln_bias [N_ln,H]                        (format_version 2: --train-layernorms tasks)
    head_dense_weight [H,H]  head_dense_bias [H]  head_skip [1]  (format_version 2: --head mlp tasks)

The head is zero-padded to the bundle's `max_labels` rows so one program (fixed input shapes) serves tasks with any
number of outputs up to that; the device reads the first `num_outputs` logits. A plain task (linear head, frozen
LayerNorms) writes exactly the five tensors of format_version 1; on the recipe program, an input the file lacks comes
from the bundle's defaults file (`defaults.safetensors`, once per target). A task with extra tensors is
format_version 2, so a reader that only knows version 1 refuses it instead of running it without its LayerNorms or
hidden layer. The file format itself (header key, metadata, checks) is defined once in spartan_formats.memory
(docs/formats.md); this module only turns a task artifact's arrays into it (numpy: adding a task to an export
imports no torch) and reads it back as torch tensors for the parity checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import UserError
from spartan_formats import FormatError
from spartan_formats import memory as memory_format
from spartan_formats.memory import MEMORY_DTYPES as DTYPES  # noqa: F401  (the CLI's --memory-dtype choices)
from spartan_formats.memory import MEMORY_TENSORS, RECIPE_TENSORS

from .shape import MemoryShape

if TYPE_CHECKING:
    import torch

DEFAULTS_METADATA_KEY = "spartan_edge_defaults"
DEFAULTS_FILE = "defaults.safetensors"


def memory_shape(meta: dict) -> MemoryShape:
    """The memory shape of a SPARTAN task artifact, from its metadata (pipeline.read_metadata)."""
    return MemoryShape.from_options(meta["options"], meta["backbone"]["num_layers"], meta["backbone"]["hidden_size"])


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def memory_tensors(artifact: dict[str, np.ndarray], meta: dict, max_labels: int,
                   layernorms: list[str] | None = None) -> dict[str, np.ndarray]:
    """A SPARTAN artifact's arrays (pipeline.artifact.read_arrays: `delta.<layer>.P|K|Vt`, `head.weight|bias`) as
    the memory file's tensors: the layers stacked, the head zero-padded to `max_labels` rows, fp32. A task with its
    own LayerNorms (`backbone.<name>.weight|bias`) adds ln_weight/ln_bias, rows in `layernorms` order (the bundle's
    backbone.layernorms); one with an MLP head (`head.dense.*`, `head.out_proj.*`) adds head_dense_* and head_skip 0.

    The values are the artifact's, unchanged: no model is built."""
    task = meta["task"]["name"]
    n = meta["backbone"]["num_layers"]
    mlp = meta.get("head", "linear") == "mlp"
    out = "head.out_proj" if mlp else "head"
    w, b = artifact[f"{out}.weight"], artifact[f"{out}.bias"]
    if w.shape[0] > max_labels:
        raise UserError(f"task {task} has {w.shape[0]} outputs; this export allows at most {max_labels} "
                        "(raise --max-labels)")
    try:
        P, K, Vt = (np.stack([artifact[f"delta.{i}.{name}"] for i in range(n)]) for name in ("P", "K", "Vt"))
    except KeyError as e:
        raise UserError(f"task {task}: the artifact lacks the memory tensor {e.args[0]}") from None
    pad = max_labels - w.shape[0]
    tensors = {
        "P": _f32(P), "K": _f32(K), "Vt": _f32(Vt),
        "head_weight": np.concatenate([_f32(w), np.zeros((pad, w.shape[1]), np.float32)]),
        "head_bias": np.concatenate([_f32(b), np.zeros(pad, np.float32)]),
    }
    if meta["options"].get("train_layernorms"):
        if not layernorms:
            raise UserError(f"task {task} has its own LayerNorms, but this bundle's program takes none as inputs")
        try:
            for part in ("weight", "bias"):
                tensors[f"ln_{part}"] = _f32(np.stack([artifact[f"backbone.{ln}.{part}"] for ln in layernorms]))
        except KeyError as e:
            raise UserError(f"task {task}: the artifact lacks the LayerNorm tensor {e.args[0]}") from None
    if mlp:
        tensors["head_dense_weight"] = _f32(artifact["head.dense.weight"])
        tensors["head_dense_bias"] = _f32(artifact["head.dense.bias"])
        tensors["head_skip"] = np.zeros(1, np.float32)
    return tensors


def memory_header(meta: dict, shape: MemoryShape, max_labels: int, dtype: str,
                  tensors: dict[str, np.ndarray] | None = None) -> dict:
    """The memory file's metadata for a task artifact's metadata (pipeline.read_metadata). Given the tensors, a task
    with recipe tensors gets format_version 2 and lists them."""
    task = meta["task"]
    recipe = [n for n in RECIPE_TENSORS if n in (tensors or {})]
    extra = {"format_version": memory_format.RECIPE_FORMAT_VERSION, "head": meta.get("head", "linear"),
             "train_layernorms": "ln_weight" in recipe, "tensors": [*MEMORY_TENSORS, *recipe]} if recipe else {}
    return memory_format.memory_metadata(
        task=task["name"], label_names=task["label_names"], is_regression=task["is_regression"],
        max_labels=max_labels, metric=meta["metric"], backbone_fingerprint=meta["backbone"]["fingerprint"],
        memory_shape=shape.to_dict(), dtype=dtype, **extra)


def _names(header: dict) -> list[str]:
    return header["tensors"] if header.get("format_version") == memory_format.RECIPE_FORMAT_VERSION \
        else list(MEMORY_TENSORS)


def write_memory(path: Path, tensors: dict[str, np.ndarray], header: dict) -> Path:
    """Write through spartan_formats (which checks the file it writes: e.g. fp16 overflow to inf is refused)."""
    try:
        return memory_format.write_memory(path, {k: _f32(tensors[k]) for k in _names(header)}, header)
    except FormatError as e:
        raise UserError(f"cannot write the memory file {path}: {e}") from None


def read_memory(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(fp32 tensors in program input order, header), fully validated. For tests and the parity check."""
    import torch

    try:
        mem = memory_format.read_memory_file(path)
    except FormatError as e:
        raise UserError(f"{path} is not a valid memory file: {e}") from None
    names = _names(mem.meta)
    return {k: torch.from_numpy(a) for k, a in zip(names, mem.inputs_fp32(names), strict=True)}, mem.meta


def write_defaults(path: Path, defaults: dict[str, torch.Tensor], layernorms: list[str]) -> Path:
    """The recipe bundle's defaults file: what a program input gets when the task's memory file does not hold it."""
    from safetensors.torch import save_file

    header = {"format_version": 1, "layernorms": layernorms}
    save_file({k: v.float().contiguous() for k, v in defaults.items()}, str(path),
              metadata={DEFAULTS_METADATA_KEY: json.dumps(header, sort_keys=True)})
    return path


def read_defaults(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(str(path)).items()}


def program_inputs(memory: dict[str, torch.Tensor], defaults: dict[str, torch.Tensor], names) -> list[torch.Tensor]:
    """The task inputs in program order (`names`: the manifest's input names after input_ids and attention_mask):
    the memory file's tensor, else the defaults file's."""
    out = []
    for n in names:
        t = memory.get(n, defaults.get(n))
        if t is None:
            raise UserError(f"program input {n} is in neither the memory file nor the bundle's defaults")
        out.append(t)
    return out
