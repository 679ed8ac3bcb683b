"""An encoder forward that XNNPACK can take whole: BERT/RoBERTa layer math over the Hugging Face modules' weights.

Why not call the Hugging Face model: its forward leaves several ops outside XNNPACK (executorch 1.5.1), and every
op left out splits the program into another delegate piece (the bare MiniLM lowered into 32; docs/export.md):
- `native_layer_norm` has no XNNPACK config -> `FastLayerNorm` writes it as mean/var/rsqrt/mul/add, the two means as
  `F.linear` with a constant 1/H row (XNNPACK's `mean.dim` only takes 4-D inputs);
- the attention-mask helpers (`where/any/logical_not/eq/full_like`) -> one additive float mask, built once;
- reshapes with a symbolic sequence length (`view(1, s0, 12, 32)`) are not delegated -> every view here names the
  sequence dim as -1 (XNNPACK allows one inferred dim), which needs a fixed batch size.

The layer still calls the model's own submodules (query/key/value, attention.output, intermediate, output), so what
other libraries put inside them keeps working: peft's LoRA linears and AdapterHub's bottleneck adapters (they live in
the output modules) run unchanged. Only the self-attention core and LayerNorm are re-written. Dropout is absent (eval).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class FastLayerNorm(nn.Module):
    """nn.LayerNorm over the last dim as ops XNNPACK delegates; shares the original's weight and bias Parameters.

    `decompose=False` runs F.layer_norm instead (Core ML has a layer_norm op, and its converter cannot fuse a bias
    into the N=1 linear of the decomposed mean)."""

    def __init__(self, ln: nn.LayerNorm) -> None:
        super().__init__()
        (hidden,) = ln.normalized_shape
        self.weight, self.bias, self.eps, self.decompose = ln.weight, ln.bias, ln.eps, True
        # (weight, bias) fed to the program for this forward (a task's own LayerNorms); None: the backbone's
        self.runtime: tuple[torch.Tensor, torch.Tensor] | None = None
        self.register_buffer("avg", torch.full((1, hidden), 1.0 / hidden), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.runtime if self.runtime is not None else (self.weight, self.bias)
        if not self.decompose:
            if self.runtime is not None:  # Core ML's layer_norm takes only constant gamma/beta: scale outside it
                return F.layer_norm(x, self.avg.shape[1:], None, None, self.eps) * weight + bias
            return F.layer_norm(x, self.avg.shape[1:], weight, bias, self.eps)
        centred = x - F.linear(x, self.avg)
        var = F.linear(centred * centred, self.avg)
        return centred * torch.rsqrt(var + self.eps) * weight + bias


def decompose_layernorms(module: nn.Module) -> int:
    """Replace every nn.LayerNorm inside `module` by a FastLayerNorm (same Parameters, same state-dict names)."""
    n = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.LayerNorm) and len(child.normalized_shape) == 1:
                setattr(parent, name, FastLayerNorm(child))
                n += 1
    return n


def supports_fast_encoder(backbone: nn.Module) -> bool:
    """BERT-style module layout (BERT, RoBERTa and relatives): embeddings + encoder.layer[i].attention.self.query."""
    layers = getattr(getattr(backbone, "encoder", None), "layer", None)
    if getattr(backbone, "embeddings", None) is None or not layers:
        return False
    sa = getattr(getattr(layers[0], "attention", None), "self", None)
    return all(hasattr(sa, a) for a in ("query", "key", "value", "num_attention_heads", "attention_head_size")) \
        and hasattr(layers[0], "intermediate") and hasattr(layers[0], "output")


def additive_mask(attention_mask: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, S] 0/1 -> [B*heads, 1, S] float: 0 on real tokens, the float minimum on padding (added to the scores)."""
    bias = (1.0 - attention_mask.to(torch.float32)) * torch.finfo(torch.float32).min
    b = attention_mask.shape[0]
    if b == 1:  # broadcasts over the heads: no copy (and no expand, which XNNPACK lacks)
        return bias.view(1, 1, -1)
    return bias.view(b, 1, -1).repeat_interleave(num_heads, dim=0)


def self_attention(layer: nn.Module, h: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
    """Multi-head attention of one BERT layer, heads folded into the batch so every product is a 3-D bmm."""
    sa = layer.attention.self
    b, heads, d = h.shape[0], sa.num_attention_heads, sa.attention_head_size

    def split(x: torch.Tensor) -> torch.Tensor:  # [B, S, H] -> [B*heads, S, d]
        return x.view(b, -1, heads, d).permute(0, 2, 1, 3).reshape(b * heads, -1, d)

    q, k, v = split(sa.query(h)), split(sa.key(h)), split(sa.value(h))
    scores = torch.bmm(q, k.transpose(1, 2)) * (1.0 / math.sqrt(d)) + mask_bias
    ctx = torch.bmm(torch.softmax(scores, dim=-1), v)
    ctx = ctx.view(b, heads, -1, d).permute(0, 2, 1, 3).reshape(b, -1, heads * d)
    return layer.attention.output(ctx, h)


def encoder_layer(layer: nn.Module, h: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
    attended = self_attention(layer, h, mask_bias)
    return layer.output(layer.intermediate(attended), attended)
