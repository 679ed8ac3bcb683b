"""The programs the latency benchmark compares: one encoder, five methods, built the way users build them.

Eager references are pipeline's TaskModel (what `pipeline.train` trains: same adapters/peft constructions as
pipeline/methods.py). Exported programs wrap the same modules in mobile_export's EdgeModel and go through
mobile_export's export and lowering (the functions `python -m pipeline.export` uses). Every program has the same
inputs (input_ids, attention_mask, P, K, Vt, head_weight, head_bias); programs without a memory ignore P, K and Vt.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from mobile_export.model import MemoryShape
from pipeline.methods import default_options
from pipeline.model import TaskModel, TaskSpec
from pipeline.spartan import SpartanConfig
from spartan_formats.memory import MEMORY_TENSORS

METHODS = ("bare", "spartan", "houlsby", "pfeiffer", "lora")
PRECISIONS = ("fp32", "int8")
MAX_LABELS = 8
# Extra programs for --ablation: the forward before this change (Hugging Face modules, memory in forward hooks) and
# the fast encoder with one of its changes left out, to record what each change bought.
ABLATIONS = {
    "bare/hf-forward": dict(method="bare", fast=False),
    "spartan/hf-forward": dict(method="spartan", fast=False),
    "bare/native-layernorm": dict(method="bare", decompose_layernorm=False),
    "bare/symbolic-views": dict(method="bare", infer_views=False),
    # the int8 question (issue 15): what the bundle ships (LayerNorms + MLP head as inputs, fed the defaults) and
    # the parent/child scores in one product; timed in fp32 and int8
    "spartan/recipe-inputs": dict(method="spartan", recipe=True, precisions=("fp32", "int8")),
    "spartan/fused-scores": dict(method="spartan", fused_scores=True, precisions=("fp32", "int8")),
    "spartan/recipe-fused": dict(method="spartan", recipe=True, fused_scores=True, precisions=("fp32", "int8")),
}


def ablation_precisions(name: str) -> tuple[str, ...]:
    return ABLATIONS[name].get("precisions", ("fp32",))


def load_encoder(model: str) -> tuple[nn.Module, int | None, str]:
    """(backbone, sep token id for token types or None, description). `model`: minilm, roberta-base-random or a
    local Hugging Face folder."""
    if model == "roberta-base-random":
        from transformers import RobertaConfig, RobertaModel

        torch.manual_seed(0)  # latency does not depend on the values; no pre-trained roberta is available offline
        cfg = RobertaConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                            vocab_size=50265, max_position_embeddings=514, type_vocab_size=1)
        return RobertaModel(cfg, add_pooling_layer=False).eval(), None, "RoBERTa-base-sized, random weights"
    from pipeline.backbone import load_backbone

    backbone, tokenizer = load_backbone(None if model == "minilm" else model)
    sep = tokenizer.sep_token_id if "token_type_ids" in tokenizer.model_input_names else None
    name = "all-MiniLM-L6-v2" if model == "minilm" else model
    return backbone, sep, name


@dataclass
class Variant:
    name: str  # e.g. "spartan" or "bare/hf-forward"
    method: str
    eager: TaskModel  # the eager reference (threads as configured)
    edge: nn.Module  # mobile_export EdgeModel, ready for android.export_program
    inputs: list[torch.Tensor]  # P, K, Vt, head_weight, head_bias
    task_bytes: int  # what one more task costs to download (see task_download_bytes)
    infer_views: bool = True


def memory_shape(backbone: nn.Module) -> MemoryShape:
    return MemoryShape.from_options(SpartanConfig().to_dict(), backbone.config.num_hidden_layers,
                                    backbone.config.hidden_size)


def randomise_trainable(model: TaskModel, seed: int) -> None:
    """Nonzero values in every trainable tensor: adapters' up-projections and LoRA's B start at zero, which would let
    a compiler fold them away (none does today, but the benchmark should not depend on it)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)


def task_download_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """Bytes of a safetensors file holding these fp32 tensors (what one more task downloads if the program takes
    them as inputs)."""
    from safetensors.torch import save

    return len(save({k: v.detach().float().contiguous() for k, v in tensors.items()}))


def _memory_inputs(model: TaskModel, shape: MemoryShape) -> list[torch.Tensor]:
    L, E, C, H = shape.num_layers, shape.num_parents, shape.num_children, shape.hidden_size
    w, b = model.head.weight.detach(), model.head.bias.detach()
    head_w = torch.cat([w, w.new_zeros(MAX_LABELS - w.shape[0], H)])
    head_b = torch.cat([b, b.new_zeros(MAX_LABELS - b.shape[0])])
    if model.method == "spartan":
        mems = list(model.delta)
        p, k, vt = (torch.stack([getattr(m, n).detach() for m in mems]) for n in ("P", "K", "Vt"))
    else:
        p, k, vt = torch.zeros(L, E, H), torch.zeros(L, E * C, H), torch.zeros(L, H, E * C)
    return [t.float().contiguous() for t in (p, k, vt, head_w, head_b)]


def build_variant(name: str, backbone: nn.Module, sep: int | None, seed: int = 0, fast: bool = True,
                  decompose_layernorm: bool = True, infer_views: bool = True, method: str | None = None,
                  recipe: bool = False, fused_scores: bool = False, precisions: tuple[str, ...] = ()) -> Variant:
    from mobile_export.model import EdgeModel

    method = method or name
    shape = memory_shape(backbone)
    torch.manual_seed(seed)
    options = default_options("probe" if method == "bare" else method)
    eager = TaskModel(copy.deepcopy(backbone), "probe" if method == "bare" else method, options,
                      TaskSpec("bench", ["a", "b"])).eval()
    randomise_trainable(eager, seed)
    if method == "spartan":
        with torch.no_grad():  # stronger values than 0.02 so the memory visibly changes the outputs
            for m in eager.delta:
                m.Vt.normal_(std=0.5, generator=torch.Generator().manual_seed(seed + 1))
    # SPARTAN runs the clean backbone (the memory arrives as inputs); the others carry their modules inside it
    edge_backbone = copy.deepcopy(backbone if method in ("bare", "spartan") else eager.backbone)
    edge = EdgeModel(edge_backbone, shape, sep, fast=fast, memory=method == "spartan",
                     decompose_layernorm=decompose_layernorm, recipe=recipe, fused_scores=fused_scores)
    inputs = _memory_inputs(eager, shape) + list(edge.input_defaults().values())  # a plain task on that program
    if method == "spartan":
        task = dict(zip(MEMORY_TENSORS, inputs[:len(MEMORY_TENSORS)], strict=True))
    else:
        task = {n: p for n, p in eager.named_parameters() if p.requires_grad}
    return Variant(name, method, eager, edge, inputs, task_download_bytes(task), infer_views)

