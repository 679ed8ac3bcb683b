"""The export-friendly SPARTAN model: a frozen encoder whose task memory and head arrive as runtime inputs.

    EdgeModel(backbone, shape, ...)(input_ids, attention_mask, P, K, Vt, head_weight, head_bias) -> logits

One lowered program therefore serves every task with the same memory shape: a task is just five tensors. The memory
math is pipeline/spartan/layer.py's dense form with the same top-k rule (ties go to the lower index). Two spellings:
`spartan_dense` (pipeline's ops: comparisons, masked_fill; what Core ML gets) and `spartan_delegated` (the Android
program: every op one XNNPACK delegates, the top-k as exact arithmetic). Both equal the eager TaskModel up to fp32
rounding, except where a token's k-th and (k+1)-th parent logits are a near-tie (see mobile_export/parity.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.backbone import encoder_layers

from .encoder import FastLayerNorm, additive_mask, decompose_layernorms, encoder_layer, supports_fast_encoder


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
    """One memory read for hidden states h [..., H]; P [E,H], K [E*C,H], Vt [H,E*C] in linear layout.

    The reference form (pipeline's math, op for op); `spartan_delegated` is what the exported program runs.
    """
    parent_logits = F.linear(h, P)
    keep = top_k_mask(parent_logits, shape.top_k)
    parent_w = torch.softmax(parent_logits.masked_fill(torch.logical_not(keep), float("-inf")), dim=-1)
    child_logits = F.linear(h, K) / shape.temperature
    child_w = torch.softmax(child_logits.unflatten(-1, (shape.num_parents, shape.num_children)), dim=-1)
    weights = (parent_w.unsqueeze(-1) * child_w).flatten(-2)
    return F.linear(weights, Vt)


# The exported program's memory read (XNNPACK takes every op of it):
# - every product is an F.linear on the runtime memory tensors (delegated with force_non_static_weights_for_f32_linear;
#   one op each, where bmm needed a transpose and two reshapes per product);
# - the top-k mask is exact arithmetic on parent logits scaled by 2^64. Scaling by a power of two is exact, so for
#   t = (x_j - x_i) * 2^64, clamp(t + lower_ij, 0, 1) is 1 if x_j > x_i, 0 if x_j < x_i and lower_ij on a tie
#   (provided distinct logits differ by >= 2^-64 = 5e-20: fp32 logits of magnitude ~1 are >= 6e-8 apart);
# - ranks are sums of 0/1 and the drop term (k-1-rank) * 2^100 is an exact small multiple of a power of two: 0 for a
#   kept parent, <= -2^100 for a dropped one, whose softmax weight then underflows to exactly 0, as with -inf.
_STEP = 2.0 ** 64
_DROP = 2.0 ** 100


@dataclass
class MemoryOps:
    """Per-forward constants of the memory read, computed once for all layers (two ops, not two per layer)."""

    parent_scaled: torch.Tensor  # [L, E, H]  P * 2^64
    children: torch.Tensor  # [L, E*C, H]  K / temperature
    values: torch.Tensor  # [L, H, E*C]  Vt


def top_k_drop(scaled: torch.Tensor, lower: torch.Tensor, drop_w: torch.Tensor, drop_b: torch.Tensor) -> torch.Tensor:
    """pipeline's top_k_mask as an additive term: 0 for the k kept parents, <= -2^100 for the others.

    `scaled` [..., E] is parent logits * 2^64; rank_i = #{j: x_j > x_i} + #{j < i: x_j == x_i}, kept iff rank_i < k.
    `lower` [E, E] is [i, j] = (j < i); drop_w = -2^100 * ones(1, E) and drop_b = (k - 1) * 2^100 turn the row sum
    (a linear: XNNPACK has no sum.dim) directly into (k - 1 - rank) * 2^100.
    """
    e = scaled.shape[-1]
    d = scaled.view(-1, 1, e) - scaled.view(-1, e, 1)  # [N, i, j] = (x_j - x_i) * 2^64 (views: XNNPACK lacks unsqueeze)
    beats = torch.clamp(d + lower, 0.0, 1.0)  # j outranks i
    return torch.clamp(F.linear(beats, drop_w, drop_b), max=0.0).view(scaled.shape)


def spartan_delegated(h: torch.Tensor, parent_scaled: torch.Tensor, children: torch.Tensor, values: torch.Tensor,
                      shape: MemoryShape, lower: torch.Tensor, drop_w: torch.Tensor, drop_b: torch.Tensor):
    """spartan_dense for h [B, S, H] with one layer's MemoryOps tensors, in ops XNNPACK delegates (see above). Views
    name only the sequence dim as inferred (-1). Same values as spartan_dense up to fp32 rounding."""
    e, c = shape.num_parents, shape.num_children
    scaled = F.linear(h, parent_scaled)  # [B, S, E] = parent logits * 2^64, exactly
    parent_w = torch.softmax(scaled * (1.0 / _STEP) + top_k_drop(scaled, lower, drop_w, drop_b), dim=-1)
    child_w = torch.softmax(F.linear(h, children).view(-1, e, c), dim=-1)  # [N, E, C]
    weights = (parent_w.view(-1, e, 1) * child_w).view(h.shape[0], -1, e * c)
    return F.linear(weights, values)


def takes_token_types(backbone: nn.Module) -> bool:
    """Whether the encoder has token type embeddings. Asks the embeddings module: AdapterHub's `adapters.init`
    wraps the model's forward in (*args, **kwargs), which hides the parameter from the model's signature."""
    embeddings = getattr(backbone, "embeddings", None)
    if embeddings is not None and hasattr(embeddings, "token_type_embeddings"):
        return getattr(embeddings.token_type_embeddings, "num_embeddings", 0) > 1
    return "token_type_ids" in inspect.signature(backbone.forward).parameters


class EdgeModel(nn.Module):
    """Backbone + memories-as-inputs + mean pooling + head-as-input. Any length up to the max; the exported program
    fixes the batch size (1 for the phone).

    Two forwards, same function:
    - fast (default where the backbone has BERT's module layout, see mobile_export/encoder.py): the encoder layers
      re-written over the model's own modules, LayerNorm decomposed, the memory read after each layer as
      `spartan_delegated`, pooling as a bmm. XNNPACK takes nearly the whole program as one piece.
    - hf (other families such as DistilBERT, or `fast=False`): the Hugging Face forward, the memory added by a forward
      hook after each encoder layer exactly where pipeline's attach_spartan puts it.
    `memory=False` drops the memory (the bare backbone, for latency baselines); P, K and Vt are then ignored.
    Token type ids (sentence pairs) are derived inside the graph from the [SEP] positions, so the device feeds only
    input_ids and attention_mask.

    The fast path replaces the backbone's nn.LayerNorm modules in place by FastLayerNorm (same Parameters, same
    state-dict names, so its fingerprint is unchanged): EdgeModel owns the backbone it is given.
    """

    def __init__(self, backbone: nn.Module, shape: MemoryShape, sep_token_id: int | None = None, fast: bool = True,
                 memory: bool = True, decompose_layernorm: bool = True) -> None:
        super().__init__()
        self.backbone, self.shape, self.use_memory = backbone.eval(), shape, memory
        self.sep_token_id = sep_token_id  # None: this encoder/tokenizer uses no token type ids
        if sep_token_id is not None and not takes_token_types(backbone):
            self.sep_token_id = None
        self.fast = fast and supports_fast_encoder(backbone)
        if self.fast and decompose_layernorm:
            decompose_layernorms(backbone)
        e = shape.num_parents
        self.register_buffer("lower", torch.ones(e, e).tril(-1), persistent=False)
        self.register_buffer("drop_w", torch.full((1, e), -_DROP), persistent=False)
        self.register_buffer("drop_b", torch.tensor([(shape.top_k - 1) * _DROP]), persistent=False)
        self.xnnpack_ops = True  # see coreml_ops()
        self._memory: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        if not self.fast:
            for i, layer in enumerate(encoder_layers(backbone)):
                layer.register_forward_hook(self._hook(i))

    @contextmanager
    def coreml_ops(self) -> Iterator[EdgeModel]:
        """Within: the memory and LayerNorm as pipeline writes them (comparison top-k, native layer_norm).

        For Core ML: it has layer_norm and comparison ops, and computes in fp16, where top_k_keep's 2^64 scaling
        would overflow. Same function; only the op choice differs."""
        lns = [m for m in self.modules() if isinstance(m, FastLayerNorm)]
        self.xnnpack_ops = False
        for m in lns:
            m.decompose = False
        try:
            yield self
        finally:
            self.xnnpack_ops = True
            for m in lns:
                m.decompose = True

    def _hook(self, i: int):
        def hook(module: nn.Module, args: tuple, output):
            if self._memory is None:
                return output
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

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """RoBERTa-style positions (count real tokens from padding_idx + 1), in float ops: the model's own int version
        breaks int8 quantization (prepare_pt2e turns its int scalar into a float attribute). BERT: None (its
        embeddings slice their position buffer)."""
        pad = getattr(self.backbone.embeddings, "padding_idx", None)
        if pad is None:
            return None
        real = (input_ids != pad).to(torch.float32)
        return (torch.cumsum(real, dim=1) * real + pad).to(torch.int64)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, P: torch.Tensor, K: torch.Tensor,
               Vt: torch.Tensor) -> torch.Tensor:
        """Last hidden states [B, S, H], memories applied."""
        kwargs = {"token_type_ids": self.token_type_ids(input_ids)} if self.sep_token_id is not None else {}
        if not self.fast:
            self._memory = (P, K, Vt) if self.use_memory else None
            try:
                return self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[0]
            finally:
                self._memory = None
        layers = self.backbone.encoder.layer
        mask_bias = additive_mask(attention_mask, layers[0].attention.self.num_attention_heads)
        h = self.backbone.embeddings(input_ids=input_ids, position_ids=self.position_ids(input_ids), **kwargs)
        ops = MemoryOps(P * _STEP, K / self.shape.temperature, Vt) if self.use_memory and self.xnnpack_ops else None
        for i, layer in enumerate(layers):
            h = encoder_layer(layer, h, mask_bias)
            if ops is not None:
                h = h + spartan_delegated(h, ops.parent_scaled[i], ops.children[i], ops.values[i], self.shape,
                                          self.lower, self.drop_w, self.drop_b)
            elif self.use_memory:
                h = h + spartan_dense(h, P[i], K[i], Vt[i], self.shape)
        return h

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, P: torch.Tensor, K: torch.Tensor,
                Vt: torch.Tensor, head_weight: torch.Tensor, head_bias: torch.Tensor) -> torch.Tensor:
        input_ids, attention_mask = input_ids.to(torch.int64), attention_mask.to(torch.int64)  # Core ML feeds int32
        hidden = self.encode(input_ids, attention_mask, P, K, Vt)
        mask = attention_mask.to(hidden.dtype).view(hidden.shape[0], 1, -1)  # [B, 1, S]
        count = mask.sum(-1, keepdim=True).clamp(min=1.0)  # [B, 1, 1]
        pooled = (torch.bmm(mask, hidden) / count).view(hidden.shape[0], -1)  # mean over real tokens, as a bmm
        return F.linear(pooled, head_weight, head_bias)
