"""One SPARTAN memory: a two-level (parent -> children) sparse key-value memory for one encoder layer.

For a hidden state h (one token):
  parent logits  a = P h                      (E values; P has no bias)
  keep the top-k parents (ties go to the lower index), softmax over those k -> p
  child logits   b_e = K_e h / temperature    (C values per kept parent), softmax within the parent -> q_e
  output         sum_e p_e * sum_c q_ec * V_ec
The caller adds the output to h (residual).

Parameters use linear layout ([out, in]) so every product is an `F.linear` on a static weight, which is what
ExecuTorch's XNNPACK partitioner delegates.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import SpartanConfig


def top_k_mask(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k largest entries along the last dim; ties go to the lower index.

    The one top-k rule of the project (training, the exported reference path, mobile_export's `top_k_drop` is tested
    against it). Two spellings of the same rule: eagerly a stable sort and a scatter (in training it beat the n^2
    rank comparisons: 0.7 vs 1.3 ms for 32x64 tokens, E=16, 1 thread); under torch.export the rank comparisons,
    because Core ML's converter takes comparisons but not a stable sort with a scatter.
    """
    n = logits.shape[-1]
    if k >= n:
        return torch.ones_like(logits, dtype=torch.bool)
    if torch.compiler.is_exporting():
        other, this = logits.unsqueeze(-2), logits.unsqueeze(-1)
        lower = torch.ones(n, n, dtype=torch.bool, device=logits.device).tril(-1)  # [i, j] = j < i
        # logical_* rather than | and &: Core ML's converter has no bitwise ops on bools
        beats = torch.logical_or(other > this, torch.logical_and(other == this, lower))
        return beats.sum(-1) < k
    return torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, top_k_indices(logits, k), True)


def top_k_indices(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest entries, with the same tie rule as `top_k_mask`."""
    return torch.sort(logits, dim=-1, descending=True, stable=True).indices[..., :k]


def dense_read(parent_logits: torch.Tensor, child_logits: torch.Tensor, Vt: torch.Tensor, top_k: int,
               temperature: float) -> torch.Tensor:
    """The memory read (dense form) from its logits: parent_logits [..., E], child_logits [..., E*C] (parent-major,
    before the temperature), Vt [H, E*C]. Returns the memory output [..., H] (the caller adds it to h).

    Shared by SpartanMemory (training) and mobile_export's reference path (its memory arrives as program inputs);
    mobile_export's `spartan_delegated` is the same function in ops XNNPACK delegates, tied to this by its tests.
    """
    e = parent_logits.shape[-1]
    keep = top_k_mask(parent_logits, top_k)
    parent_w = torch.softmax(parent_logits.masked_fill(torch.logical_not(keep), float("-inf")), dim=-1)  # [..., E]
    child_w = torch.softmax((child_logits / temperature).unflatten(-1, (e, child_logits.shape[-1] // e)), dim=-1)
    weights = (parent_w.unsqueeze(-1) * child_w).flatten(-2)  # [..., E*C]
    return F.linear(weights, Vt)


class SpartanMemory(nn.Module):
    def __init__(self, hidden_size: int, config: SpartanConfig) -> None:
        super().__init__()
        self.config = config
        e, c = config.num_parents, config.num_children
        self.P = nn.Parameter(torch.empty(e, hidden_size))  # parent keys
        self.K = nn.Parameter(torch.empty(e * c, hidden_size))  # child keys, parent-major
        self.Vt = nn.Parameter(torch.empty(hidden_size, e * c))  # child values, transposed for F.linear
        self.aux_loss: torch.Tensor | None = None  # set by forward when load balancing is on and training
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = 1.0 / math.sqrt(self.P.shape[1])
        nn.init.normal_(self.P, std=std)
        nn.init.normal_(self.K, std=std)
        nn.init.normal_(self.Vt, std=0.02)  # small values: the memory starts close to the identity residual

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        self.aux_loss = None
        if cfg.form == "sparse":
            parent_logits = F.linear(h, self.P)  # [..., E]
            out = self._sparse(h, parent_logits)
        else:
            # Parent and child scores in one GEMM (N = E + E*C instead of two thin ones): fewer, better-shaped
            # matrix products forward and backward.
            scores = F.linear(h, torch.cat([self.P, self.K]))
            parent_logits, child_logits = scores.split([cfg.num_parents, scores.shape[-1] - cfg.num_parents], -1)
            out = dense_read(parent_logits, child_logits, self.Vt, cfg.top_k, cfg.temperature)
        if self.training and cfg.load_balance_coef > 0:
            self.aux_loss = load_balance_loss(parent_logits, cfg.top_k)
        return out

    def _sparse(self, h: torch.Tensor, parent_logits: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        e, c, hid = cfg.num_parents, cfg.num_children, h.shape[-1]
        idx = top_k_indices(parent_logits, cfg.top_k)  # [..., k]
        parent_w = torch.softmax(parent_logits.gather(-1, idx), dim=-1)  # [..., k]
        keys = self.K.view(e, c, hid)[idx]  # [..., k, C, H]
        values = self.Vt.t().reshape(e, c, hid)[idx]  # [..., k, C, H]
        child_logits = torch.einsum("...h,...kch->...kc", h, keys) / cfg.temperature
        child_w = torch.softmax(child_logits, dim=-1)
        weights = parent_w.unsqueeze(-1) * child_w  # [..., k, C]
        return torch.einsum("...kc,...kch->...h", weights, values)


def load_balance_loss(parent_logits: torch.Tensor, k: int) -> torch.Tensor:
    """Switch-style balance loss: E * sum_e (share of top-k slots taken by e) * (mean router prob of e).

    Equals 1 when parents are used uniformly and grows as a few parents take over.
    """
    e = parent_logits.shape[-1]
    flat = parent_logits.reshape(-1, e)
    usage = top_k_mask(flat, k).float().mean(0) / k  # sums to 1
    importance = torch.softmax(flat, dim=-1).mean(0)  # sums to 1
    return e * (usage * importance).sum()
