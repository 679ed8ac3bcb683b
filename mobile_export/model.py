"""The export-friendly SPARTAN model: a frozen encoder whose task memory and head arrive as runtime inputs.

    EdgeModel(backbone, shape, ...)(input_ids, attention_mask, P, K, Vt, head_weight, head_bias) -> logits
    EdgeModel(backbone, shape, ..., recipe=True)(..., head_bias, ln_weight, ln_bias, head_dense_weight,
                                                 head_dense_bias, head_skip) -> logits

One lowered program therefore serves every task with the same memory shape: a task is just five tensors. The recipe
program (exported when a bundle holds a task trained with `--train-layernorms` and/or `--head mlp`) also takes the
backbone's LayerNorms and an MLP head as inputs, so such tasks share one program; a task that does not have them is
fed the bundle's defaults (`input_defaults`: the backbone's own LayerNorms, a zero hidden layer and head_skip 1),
which give exactly the plain program's function. The memory
math is pipeline/spartan/layer.py's `dense_read` with its top-k rule (ties go to the lower index). Two spellings:
`spartan_dense` (pipeline's dense_read itself; what Core ML gets) and `spartan_delegated` (the Android program:
every op one XNNPACK delegates, the top-k as exact arithmetic). Both equal the eager TaskModel up to fp32
rounding, except where a token's k-th and (k+1)-th parent logits are a near-tie (see mobile_export/parity.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.backbone import encoder_layers, mean_pool, takes_token_types
from pipeline.spartan.layer import dense_read
from pipeline.spartan.model import residual_hook
from spartan_formats.memory import MEMORY_TENSORS, RECIPE_TENSORS

from .encoder import FastLayerNorm, additive_mask, decompose_layernorms, encoder_layer, supports_fast_encoder
from .shape import MemoryShape  # noqa: F401  (re-exported: the export's one description of a memory shape)

MEMORY_INPUTS = MEMORY_TENSORS  # the memory file's tensors are the program's memory inputs, in this order
INPUT_NAMES = ("input_ids", "attention_mask", *MEMORY_INPUTS)
# The recipe program's further inputs (a task file may leave them out; the device then feeds the bundle's defaults):
# ln_weight/ln_bias [N_ln, H], the backbone's LayerNorms in `layernorm_names` order; head_dense_weight [H, H] and
# head_dense_bias [H], the MLP head's hidden layer; head_skip [1]. The head computes
#   logits = head_weight @ (pooled * head_skip + tanh(head_dense_weight @ pooled + head_dense_bias)) + head_bias
# which is the linear head exactly for (head_skip 1, zero hidden layer: tanh(0) = 0) and the MLP head exactly for
# head_skip 0 (0 * pooled = 0), so one program is exact for both kinds.
RECIPE_INPUTS = RECIPE_TENSORS
RECIPE_INPUT_NAMES = (*INPUT_NAMES, *RECIPE_INPUTS)


def layernorm_names(backbone: nn.Module) -> list[str]:
    """The backbone's LayerNorm modules in module order: the rows of ln_weight / ln_bias."""
    return [n for n, m in backbone.named_modules() if isinstance(m, (nn.LayerNorm, FastLayerNorm))]


def spartan_dense(h: torch.Tensor, P: torch.Tensor, K: torch.Tensor, Vt: torch.Tensor, shape: MemoryShape):
    """One memory read for hidden states h [..., H]; P [E,H], K [E*C,H], Vt [H,E*C] in linear layout.

    The reference form: pipeline's dense_read on the runtime memory tensors. `spartan_delegated` is what the
    Android program runs."""
    return dense_read(F.linear(h, P), F.linear(h, K), Vt, shape.top_k, shape.temperature)


# The exported program's memory read: only ops XNNPACK delegates, and no reshapes (each op in the delegate costs a few
# microseconds however small its tensor, so the read is written as few, flat ops; docs/export.md has the timings):
# - every product is an F.linear on the runtime memory tensors (delegated with force_non_static_weights_for_f32_linear);
# - the top-k mask is exact arithmetic. A constant linear with entries +-2^64 gives every pair difference
#   t_ij = (x_j - x_i) * 2^64 (two nonzero terms: one rounding, then an exact power-of-two scaling), so
#   clamp(t_ij + lower_ij, 0, 1) is 1 if x_j > x_i, 0 if x_j < x_i and lower_ij = (j < i) on a tie (provided distinct
#   logits differ by >= 2^-64 = 5e-20: fp32 logits of magnitude ~1 are >= 6e-8 apart). A second constant linear sums
#   each parent's row into (k-1-rank) * 2^100 (exact small multiples of a power of two): clamped at 0 it is 0 for a
#   kept parent and <= -2^100 for a dropped one, whose softmax weight then underflows to exactly 0, as with -inf;
# - the child softmax over each parent's C children is 1 / sum_c' exp(q_c' - q_c) (pair differences by a constant
#   linear again; exponents clamped at 80, where a weight is < 2e-35 either way), instead of a softmax over rows of
#   length C: XNNPACK pays per row, and there are S * E rows of 3.
_STEP = 2.0 ** 64
_DROP = 2.0 ** 100
_EXP_MAX = 80.0


def memory_constants(shape: MemoryShape) -> dict[str, torch.Tensor]:
    """The constant matrices of `spartan_delegated` for one memory shape (E parents, C children, top-k)."""
    e, c, n = shape.num_parents, shape.num_children, shape.num_parents * shape.num_children
    parent_diff = torch.zeros(e, e, e)  # [i, j, m]: row (i, j) of the linear picks (x_j - x_i) * 2^64
    child_diff = torch.zeros(n, c, n)  # [(g, c0), c1, m]: q[g, c1] - q[g, c0]
    for i in range(e):
        parent_diff[i, torch.arange(e), torch.arange(e)] += _STEP
        parent_diff[i, :, i] -= _STEP
    for row in range(n):
        first = row - row % c  # the group's first child
        child_diff[row, torch.arange(c), first + torch.arange(c)] += 1.0
        child_diff[row, :, row] -= 1.0
    return {
        "parent_diff": parent_diff.view(e * e, e),
        "lower": torch.ones(e, e).tril(-1).reshape(e * e),  # [i, j] = j < i: the tie rule
        "drop_w": torch.kron(torch.eye(e), torch.full((1, e), -_DROP)),  # [E, E*E]: -2^100 * row sums
        "drop_b": torch.full((e,), (shape.top_k - 1) * _DROP),
        "child_diff": child_diff.view(n * c, n),
        "child_sum": torch.kron(torch.eye(n), torch.ones(1, c)),  # [E*C, E*C*C]
        "expand": torch.kron(torch.eye(e), torch.ones(c, 1)),  # [E*C, E]: parent weight onto its children
        # child_diff reading the fused [parent | child] scores (zero columns for the parents): spartan_fused
        "child_diff_scores": torch.cat([torch.zeros(n * c, e), child_diff.view(n * c, n)], dim=1),
    }


def top_k_drop(logits: torch.Tensor, k: dict[str, torch.Tensor]) -> torch.Tensor:
    """pipeline's top_k_mask as an additive term: 0 for the k kept parents, <= -2^100 for the others.

    rank_i = #{j: x_j > x_i} + #{j < i: x_j == x_i}; kept iff rank_i < top_k (see the comment above)."""
    beats = torch.clamp(F.linear(logits, k["parent_diff"]) + k["lower"], 0.0, 1.0)  # [..., E*E]: j outranks i
    return torch.clamp(F.linear(beats, k["drop_w"], k["drop_b"]), max=0.0)


def spartan_delegated(h: torch.Tensor, P: torch.Tensor, children: torch.Tensor, Vt: torch.Tensor,
                      k: dict[str, torch.Tensor]) -> torch.Tensor:
    """spartan_dense in ops XNNPACK delegates, for one layer: P [E,H], children = K / temperature [E*C,H], Vt
    [H,E*C], `k` = memory_constants(shape). Same values as spartan_dense up to fp32 rounding."""
    logits = F.linear(h, P)  # [..., E]
    parent_w = torch.softmax(logits + top_k_drop(logits, k), dim=-1)
    q = F.linear(h, children)  # [..., E*C]
    inv_child_w = F.linear(torch.exp(torch.clamp(F.linear(q, k["child_diff"]), max=_EXP_MAX)), k["child_sum"])
    return F.linear(F.linear(parent_w, k["expand"]) / inv_child_w, Vt)


def spartan_fused(h: torch.Tensor, scores_w: torch.Tensor, Vt: torch.Tensor, k: dict[str, torch.Tensor],
                  num_parents: int) -> torch.Tensor:
    """spartan_delegated with the parent and child scores in one product, as in training: scores_w = [P; K / T]
    [E + E*C, H]. One runtime-weight GEMM fewer per layer (XNNPACK packs a non-static weight on every call)."""
    scores = F.linear(h, scores_w)  # [..., E + E*C]
    logits = scores[..., :num_parents]
    parent_w = torch.softmax(logits + top_k_drop(logits, k), dim=-1)
    inv_child_w = F.linear(torch.exp(torch.clamp(F.linear(scores, k["child_diff_scores"]), max=_EXP_MAX)),
                           k["child_sum"])
    return F.linear(F.linear(parent_w, k["expand"]) / inv_child_w, Vt)


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
                 memory: bool = True, decompose_layernorm: bool = True, recipe: bool = False,
                 fused_scores: bool = False) -> None:
        super().__init__()
        self.fused_scores = fused_scores
        self.backbone, self.shape, self.use_memory, self.recipe = backbone.eval(), shape, memory, recipe
        self.input_names = RECIPE_INPUT_NAMES if recipe else INPUT_NAMES
        self.sep_token_id = sep_token_id  # None: this encoder/tokenizer uses no token type ids
        if sep_token_id is not None and not takes_token_types(backbone):
            self.sep_token_id = None
        self.fast = fast and supports_fast_encoder(backbone)
        if (self.fast and decompose_layernorm) or recipe:
            decompose_layernorms(backbone)
            if not (self.fast and decompose_layernorm):  # only to take runtime weights: keep the native op
                for m in backbone.modules():
                    if isinstance(m, FastLayerNorm):
                        m.decompose = False
        self.layernorms = [m for m in backbone.modules() if isinstance(m, FastLayerNorm)] if recipe else []
        # spartan_delegated's matrices as buffers (torch.export keeps them as program constants); none in a bare
        # program, where unused buffers would still travel
        self.read_constants = nn.Module()
        for name, t in (memory_constants(shape) if memory else {}).items():
            self.read_constants.register_buffer(name, t, persistent=False)
        self.xnnpack_ops = True  # see coreml_ops()
        self._memory: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        if not self.fast:
            for i, layer in enumerate(encoder_layers(backbone)):
                layer.register_forward_hook(self._hook(i))

    def input_shapes(self, max_labels: int) -> dict[str, tuple[int, ...]]:
        """Shapes of the task inputs (everything after input_ids and attention_mask), in program order."""
        shapes = self.shape.tensor_shapes(max_labels)
        if self.recipe:
            n, h = len(self.layernorms), self.shape.hidden_size
            shapes.update(ln_weight=(n, h), ln_bias=(n, h), head_dense_weight=(h, h), head_dense_bias=(h,),
                          head_skip=(1,))
        return shapes

    def input_defaults(self) -> dict[str, torch.Tensor]:
        """What a task without its own LayerNorms / MLP head is fed (the bundle's defaults file): the plain program's
        function exactly."""
        if not self.recipe:
            return {}
        h = self.shape.hidden_size
        return {"ln_weight": torch.stack([m.weight.detach() for m in self.layernorms]).float().contiguous(),
                "ln_bias": torch.stack([m.bias.detach() for m in self.layernorms]).float().contiguous(),
                "head_dense_weight": torch.zeros(h, h), "head_dense_bias": torch.zeros(h), "head_skip": torch.ones(1)}

    @contextmanager
    def task_layernorms(self, ln_weight: torch.Tensor | None, ln_bias: torch.Tensor | None) -> Iterator[None]:
        """Within: the backbone's LayerNorms read row i of the given inputs (None: their own weights)."""
        if ln_weight is None or ln_bias is None:
            yield
            return
        for i, m in enumerate(self.layernorms):
            m.runtime = (ln_weight[i], ln_bias[i])
        try:
            yield
        finally:
            for m in self.layernorms:
                m.runtime = None

    @contextmanager
    def coreml_ops(self) -> Iterator[EdgeModel]:
        """Within: the memory and LayerNorm as pipeline writes them (comparison top-k, native layer_norm).

        For Core ML: it has layer_norm and comparison ops, and computes in fp16, where top_k_drop's 2^64 scaling
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
        def delta(hidden: torch.Tensor) -> torch.Tensor | None:
            if self._memory is None:
                return None
            P, K, Vt = self._memory
            return spartan_dense(hidden, P[i], K[i], Vt[i], self.shape)

        return residual_hook(delta)

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
        memory = self.use_memory and self.xnnpack_ops
        if memory:  # constants of the read, and K / temperature once for all layers
            k = dict(self.read_constants.named_buffers())
            children = K / self.shape.temperature
            if self.fused_scores:
                scores_w = torch.cat([P, children], dim=1)  # [L, E + E*C, H]
        for i, layer in enumerate(layers):
            h = encoder_layer(layer, h, mask_bias)
            if memory and self.fused_scores:
                h = h + spartan_fused(h, scores_w[i], Vt[i], k, self.shape.num_parents)
            elif memory:
                h = h + spartan_delegated(h, P[i], children[i], Vt[i], k)
            elif self.use_memory:
                h = h + spartan_dense(h, P[i], K[i], Vt[i], self.shape)
        return h

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, P: torch.Tensor, K: torch.Tensor,
                Vt: torch.Tensor, head_weight: torch.Tensor, head_bias: torch.Tensor,
                ln_weight: torch.Tensor | None = None, ln_bias: torch.Tensor | None = None,
                head_dense_weight: torch.Tensor | None = None, head_dense_bias: torch.Tensor | None = None,
                head_skip: torch.Tensor | None = None) -> torch.Tensor:
        input_ids, attention_mask = input_ids.to(torch.int64), attention_mask.to(torch.int64)  # Core ML feeds int32
        with self.task_layernorms(ln_weight, ln_bias):
            pooled = mean_pool(self.encode(input_ids, attention_mask, P, K, Vt), attention_mask)
        if head_dense_weight is not None and head_dense_bias is not None and head_skip is not None:
            pooled = pooled * head_skip + torch.tanh(F.linear(pooled, head_dense_weight, head_dense_bias))
        return F.linear(pooled, head_weight, head_bias)
