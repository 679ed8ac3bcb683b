"""The export-friendly SPARTAN model: a frozen encoder whose task memory and head arrive as runtime inputs.

    EdgeModel(backbone, shape, ...)(input_ids, attention_mask, P, K, Vt, head_weight, head_bias) -> logits

One lowered program therefore serves every task with the same memory shape: a task is just five tensors. The memory
math is pipeline/spartan/layer.py's dense form, re-written so every product is an `F.linear` (what XNNPACK
delegates) and the top-k mask is the same comparison-rank rule (ties go to the lower index), so outputs match the
eager TaskModel exactly, not approximately.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.backbone import encoder_layers


@dataclass(frozen=True)
class MemoryShape:
    """What a backbone program needs to know about the memories it will be fed (the same for every task)."""

    num_layers: int
    num_parents: int  # E
    num_children: int  # C
    top_k: int
    temperature: float
    hidden_size: int

    def to_dict(self) -> dict:
        return asdict(self)

    def tensor_shapes(self, max_labels: int) -> dict[str, tuple[int, ...]]:
        L, E, C, H = self.num_layers, self.num_parents, self.num_children, self.hidden_size
        return {"P": (L, E, H), "K": (L, E * C, H), "Vt": (L, H, E * C), "head_weight": (max_labels, H),
                "head_bias": (max_labels,)}


MEMORY_INPUTS = ("P", "K", "Vt", "head_weight", "head_bias")
INPUT_NAMES = ("input_ids", "attention_mask", *MEMORY_INPUTS)


def top_k_mask(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest entries along the last dim, ties to the lower index (same rule as pipeline's top_k_mask)."""
    n = logits.shape[-1]
    if k >= n:
        return torch.ones_like(logits, dtype=torch.bool)
    other, this = logits.unsqueeze(-2), logits.unsqueeze(-1)
    lower = torch.ones(n, n, dtype=torch.bool).tril(-1)  # [i, j] = j < i
    # logical_* rather than | and &: Core ML's converter has no bitwise ops on bools
    beats = torch.logical_or(other > this, torch.logical_and(other == this, lower))
    return beats.sum(-1) < k


def spartan_dense(h: torch.Tensor, P: torch.Tensor, K: torch.Tensor, Vt: torch.Tensor, shape: MemoryShape):
    """One memory read for hidden states h [..., H]; P [E,H], K [E*C,H], Vt [H,E*C] in linear layout."""
    parent_logits = F.linear(h, P)
    keep = top_k_mask(parent_logits, shape.top_k)
    parent_w = torch.softmax(parent_logits.masked_fill(torch.logical_not(keep), float("-inf")), dim=-1)
    child_logits = F.linear(h, K) / shape.temperature
    child_w = torch.softmax(child_logits.unflatten(-1, (shape.num_parents, shape.num_children)), dim=-1)
    weights = (parent_w.unsqueeze(-1) * child_w).flatten(-2)
    return F.linear(weights, Vt)


class EdgeModel(nn.Module):
    """Backbone + memories-as-inputs + mean pooling + head-as-input. Batch 1 or more, any length up to the max.

    The memory is added after each encoder layer by a forward hook, exactly where pipeline's attach_spartan puts it,
    so this works for every encoder family pipeline supports. Token type ids (sentence pairs) are derived inside the
    graph from the [SEP] positions, so the device feeds only input_ids and attention_mask.
    """

    def __init__(self, backbone: nn.Module, shape: MemoryShape, sep_token_id: int | None = None) -> None:
        super().__init__()
        self.backbone, self.shape = backbone.eval(), shape
        self.sep_token_id = sep_token_id  # None: this encoder/tokenizer uses no token type ids
        if sep_token_id is not None and "token_type_ids" not in inspect.signature(backbone.forward).parameters:
            self.sep_token_id = None
        self._memory: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        for i, layer in enumerate(encoder_layers(backbone)):
            layer.register_forward_hook(self._hook(i))

    def _hook(self, i: int):
        def hook(module: nn.Module, args: tuple, output):
            P, K, Vt = self._memory
            hidden = output if isinstance(output, torch.Tensor) else output[0]
            hidden = hidden + spartan_dense(hidden, P[i], K[i], Vt[i], self.shape)
            return hidden if isinstance(output, torch.Tensor) else (hidden,) + tuple(output[1:])

        return hook

    def token_type_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        # BERT pairs are "[CLS] a [SEP] b [SEP]": type 1 starts after the first [SEP]. Padding gets 1 here and 0 from
        # the tokenizer, which cannot matter: padded positions are masked out of attention and of the pooling.
        is_sep = (input_ids == self.sep_token_id).to(torch.int64)
        return (torch.cumsum(is_sep, dim=-1) - is_sep).clamp(max=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, P: torch.Tensor, K: torch.Tensor,
                Vt: torch.Tensor, head_weight: torch.Tensor, head_bias: torch.Tensor) -> torch.Tensor:
        input_ids, attention_mask = input_ids.to(torch.int64), attention_mask.to(torch.int64)  # Core ML feeds int32
        kwargs = {"token_type_ids": self.token_type_ids(input_ids)} if self.sep_token_id is not None else {}
        self._memory = (P, K, Vt)
        try:
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[0]
        finally:
            self._memory = None
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return F.linear(pooled, head_weight, head_bias)
