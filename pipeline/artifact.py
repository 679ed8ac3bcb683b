"""The task artifact: one safetensors file holding only what a task adds, with its metadata in the header.

    save_task(model, path, metrics=...)        -> path
    load_task(path, backbone=None) -> (TaskModel, tokenizer, metadata)

The metadata (JSON under the header key "spartan_edge") records the format version, method and its options, the
task (labels), metrics, the backbone's identity and fingerprint, and a digest of the stored tensors. A single file
makes the write atomic (temporary file, fsync, rename), and the header is readable without torch. The format is
documented in docs/formats.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError, safe_open

from spartan_formats.artifact import ARTIFACT_FORMAT_VERSION, ARTIFACT_METADATA_KEY, ARTIFACT_NAME
from spartan_formats.digest import arrays_digest

from .atomic import atomic_write
from .errors import UserError

if TYPE_CHECKING:
    from .model import TaskModel

# torch and transformers are imported by the functions that build or save models, so that reading an artifact's
# header and arrays (the export's `--into`) stays torch-free.

# The artifact header's constants live with the other formats (torch-free): spartan_formats.artifact
FORMAT_VERSION, ARTIFACT_NAME, METADATA_KEY = ARTIFACT_FORMAT_VERSION, ARTIFACT_NAME, ARTIFACT_METADATA_KEY
DEFAULT_BACKBONE_ID = "embedded:all-MiniLM-L6-v2"


def artifact_path(path: str | Path) -> Path:
    """Accept the artifact file itself or the run folder that holds it."""
    p = Path(path)
    return p / ARTIFACT_NAME if p.is_dir() else p


def save_task(
    model: TaskModel, path: str | Path, *, backbone_id: str, backbone_fingerprint: str, metric: str,
    metrics: dict | None = None, extra: dict | None = None,
) -> Path:
    """Write the artifact atomically: a crash leaves the old file (or none), never a half-written one."""
    from safetensors.torch import save_file

    from .backbone import encoder_layers, tensors_digest

    path = artifact_path(path)
    tensors = {k: v.contiguous().clone() for k, v in model.trainable_state_dict().items()}
    cfg = model.backbone.config
    meta = {
        "format_version": FORMAT_VERSION,
        "method": model.method,
        "options": model.options,
        "head": model.head_kind,
        "task": model.task.to_dict(),
        "metric": metric,
        "metrics": metrics or {},
        "backbone": {
            "id": backbone_id,
            "fingerprint": backbone_fingerprint,
            "model_type": cfg.model_type,
            "hidden_size": cfg.hidden_size,
            "num_layers": len(encoder_layers(model.backbone)),
        },
        "tensors_sha256": tensors_digest(tensors),
        **(extra or {}),
    }
    header = {METADATA_KEY: json.dumps(meta, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
    return path


def read_metadata(path: str | Path) -> dict:
    """The artifact's metadata, read from the safetensors header only (no tensors, no torch model)."""
    path = artifact_path(path)
    if not path.is_file():
        raise UserError(f"no task artifact at {path}")
    try:
        with safe_open(path, framework="numpy") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path} is not a readable task artifact (corrupt or truncated): {e}") from e
    if METADATA_KEY not in header:
        raise UserError(f"{path} is a safetensors file but not a SPARTAN Edge task artifact (no '{METADATA_KEY}')")
    meta = json.loads(header[METADATA_KEY])
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path} has format_version {meta.get('format_version')}; this code reads {FORMAT_VERSION}")
    return meta


def _read(path: str | Path, framework: str, digest) -> dict:
    path = artifact_path(path)
    meta = read_metadata(path)
    try:
        with safe_open(path, framework=framework) as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path} is corrupt or truncated: {e}") from e
    if digest(tensors) != meta["tensors_sha256"]:
        raise UserError(f"{path} is corrupt: its tensors do not match the digest recorded when it was saved")
    return tensors


def read_arrays(path: str | Path) -> dict:
    """The artifact's tensors as numpy arrays (no torch), checked against the digest recorded at save time. numpy has
    no bfloat16: an artifact holding such tensors is read through torch and its arrays given as float32 (exact)."""
    try:
        return _read(path, "numpy", arrays_digest)
    except TypeError:  # safetensors: "data type 'bfloat16' not understood"
        return {k: v.float().numpy() for k, v in read_tensors(path).items()}


def read_tensors(path: str | Path) -> dict:
    """The artifact's tensors (torch), checked against the digest recorded at save time."""
    from .backbone import tensors_digest

    return _read(path, "pt", tensors_digest)


def resolve_backbone_name(backbone_id: str) -> str:
    from .backbone import default_backbone

    return default_backbone() if backbone_id == DEFAULT_BACKBONE_ID else backbone_id


def load_task(path: str | Path, backbone=None, tokenizer=None, backbone_fingerprint: str | None = None):
    """Rebuild the task model on its backbone and load the artifact into it.

    `backbone` defaults to the one the artifact names. Its weights must be exactly those the task was trained on:
    otherwise a UserError names both fingerprints. Pass `backbone_fingerprint` to skip re-hashing a known backbone.
    Returns (model, tokenizer, metadata); tokenizer is None when a backbone was passed without one.
    """
    from .backbone import fingerprint, load_backbone
    from .model import HEADS, TaskModel, TaskSpec

    path = artifact_path(path)
    meta = read_metadata(path)
    tensors = read_tensors(path)
    if backbone is None:
        backbone, tokenizer = load_backbone(resolve_backbone_name(meta["backbone"]["id"]))
    have = backbone_fingerprint or fingerprint(backbone)
    want = meta["backbone"]["fingerprint"]
    if have != want:
        raise UserError(
            f"{path} was trained on backbone {want[:16]}… ({meta['backbone']['id']}) but the loaded backbone is "
            f"{have[:16]}…; load it with the backbone it was trained on"
        )
    head = meta.get("head", "linear")  # artifacts from before the head option have a linear head
    if head not in HEADS:
        raise UserError(f"{path} has head {head!r}; this code knows {', '.join(HEADS)}")
    model = TaskModel(backbone, meta["method"], meta["options"], TaskSpec(**meta["task"]), head=head)
    expected = model.trainable_state_dict()
    if set(expected) != set(tensors):
        missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise UserError(f"{path} does not fit its method: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for k, t in tensors.items():
        if t.shape != expected[k].shape:
            raise UserError(
                f"{path}: tensor {k} has shape {tuple(t.shape)}, the model needs {tuple(expected[k].shape)}"
            )
    model.load_state_dict(tensors, strict=False)
    model.eval()
    return model, tokenizer, meta
