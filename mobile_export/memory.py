"""Per-task memory files: the tensors a backbone program needs for one task, self-described in the header.

    P [L,E,H]  K [L,E*C,H]  Vt [L,H,E*C]  head_weight [max_labels,H]  head_bias [max_labels]       (every task)
    ln_weight [N_ln,H]  ln_bias [N_ln,H]                        (format_version 2: --train-layernorms tasks)
    head_dense_weight [H,H]  head_dense_bias [H]  head_skip [1]  (format_version 2: --head mlp tasks)

The head is zero-padded to the bundle's `max_labels` rows so one program (fixed input shapes) serves tasks with any
number of outputs up to that; the device reads the first `num_outputs` logits. A plain task (linear head, frozen
LayerNorms) writes exactly the five tensors of format_version 1, byte for byte as before; on the recipe program, an
input the file lacks comes from the bundle's defaults file (`defaults.safetensors`, once per target). A task with
extra tensors is format_version 2, so a reader that only knows version 1 refuses it instead of running it without its
LayerNorms or hidden layer. The header key "spartan_edge_memory" holds JSON (documented in docs/formats.md) that a
server can check with numpy alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from pipeline.errors import UserError

from .model import MEMORY_INPUTS, RECIPE_INPUTS, MemoryShape

MEMORY_FORMAT_VERSION = 1  # plain tasks
RECIPE_FORMAT_VERSION = 2  # tasks with their own LayerNorms and/or an MLP head
READS = (MEMORY_FORMAT_VERSION, RECIPE_FORMAT_VERSION)
MEMORY_METADATA_KEY = "spartan_edge_memory"
DEFAULTS_METADATA_KEY = "spartan_edge_defaults"
DEFAULTS_FILE = "defaults.safetensors"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def memory_shape(meta: dict) -> MemoryShape:
    """The memory shape of a SPARTAN task artifact, from its metadata (pipeline.read_metadata)."""
    return MemoryShape.from_options(meta["options"], meta["backbone"]["num_layers"], meta["backbone"]["hidden_size"])


def memory_tensors(artifact: dict[str, torch.Tensor], meta: dict, max_labels: int,
                   layernorms: list[str] | None = None) -> dict[str, torch.Tensor]:
    """A SPARTAN artifact's tensors (pipeline.artifact.read_tensors: `delta.<layer>.P|K|Vt`, `head.weight|bias`) as
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
        P, K, Vt = (torch.stack([artifact[f"delta.{i}.{name}"] for i in range(n)]) for name in ("P", "K", "Vt"))
    except KeyError as e:
        raise UserError(f"task {task}: the artifact lacks the memory tensor {e.args[0]}") from None
    pad = max_labels - w.shape[0]
    tensors = {
        "P": P.float().contiguous(), "K": K.float().contiguous(), "Vt": Vt.float().contiguous(),
        "head_weight": torch.cat([w.float(), w.new_zeros(pad, w.shape[1]).float()]).contiguous(),
        "head_bias": torch.cat([b.float(), b.new_zeros(pad).float()]).contiguous(),
    }
    if meta["options"].get("train_layernorms"):
        if not layernorms:
            raise UserError(f"task {task} has its own LayerNorms, but this bundle's program takes none as inputs")
        try:
            for part in ("weight", "bias"):
                tensors[f"ln_{part}"] = torch.stack([artifact[f"backbone.{ln}.{part}"] for ln in layernorms]) \
                    .float().contiguous()
        except KeyError as e:
            raise UserError(f"task {task}: the artifact lacks the LayerNorm tensor {e.args[0]}") from None
    if mlp:
        tensors["head_dense_weight"] = artifact["head.dense.weight"].float().contiguous()
        tensors["head_dense_bias"] = artifact["head.dense.bias"].float().contiguous()
        tensors["head_skip"] = torch.zeros(1)
    return tensors


def memory_header(meta: dict, shape: MemoryShape, max_labels: int, dtype: str,
                  tensors: dict[str, torch.Tensor] | None = None) -> dict:
    """The header JSON. Given the tensors, a task with recipe tensors gets format_version 2 and says which."""
    task = meta["task"]
    recipe = [n for n in RECIPE_INPUTS if n in (tensors or {})]
    header = {
        "format_version": RECIPE_FORMAT_VERSION if recipe else MEMORY_FORMAT_VERSION,
        "task": task["name"],
        "label_names": task["label_names"],
        "is_regression": task["is_regression"],
        "num_outputs": 1 if task["is_regression"] else len(task["label_names"]),
        "max_labels": max_labels,
        "metric": meta["metric"],
        "backbone_fingerprint": meta["backbone"]["fingerprint"],
        "memory_shape": shape.to_dict(),
        "dtype": dtype,
    }
    if recipe:
        header["head"] = meta.get("head", "linear")
        header["train_layernorms"] = "ln_weight" in recipe
        header["tensors"] = [*MEMORY_INPUTS, *recipe]
    return header


def write_memory(path: Path, tensors: dict[str, torch.Tensor], header: dict) -> Path:
    dtype = DTYPES[header["dtype"]]
    names = header.get("tensors", MEMORY_INPUTS)
    save_file({k: tensors[k].to(dtype).contiguous() for k in names}, str(path),
              metadata={MEMORY_METADATA_KEY: json.dumps(header, sort_keys=True)})
    return path


def read_memory(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(fp32 tensors, header). For tests and the parity check; devices read it natively."""
    with safe_open(str(path), framework="pt") as f:
        header = json.loads((f.metadata() or {})[MEMORY_METADATA_KEY])
        if header.get("format_version") not in READS:
            raise UserError(f"{path}: memory format_version {header.get('format_version')}; this code reads {READS}")
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    return tensors, header


def write_defaults(path: Path, defaults: dict[str, torch.Tensor], layernorms: list[str]) -> Path:
    """The recipe bundle's defaults file: what a program input gets when the task's memory file does not hold it."""
    header = {"format_version": 1, "layernorms": layernorms}
    save_file({k: v.float().contiguous() for k, v in defaults.items()}, str(path),
              metadata={DEFAULTS_METADATA_KEY: json.dumps(header, sort_keys=True)})
    return path


def read_defaults(path: str | Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k).float() for k in f.keys()}


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
