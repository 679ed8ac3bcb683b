"""Android: lower the EdgeModel to one ExecuTorch program (XNNPACK), optionally with dynamic int8 linears.

The sequence length is a dynamic dimension (1..max_seq_length), so one program serves every input length. The memory
and head are program inputs; `force_non_static_weights_for_f32_linear` lets XNNPACK take the memory's F.linear calls
even though their weights are inputs rather than constants (see docs/export.md for what that buys).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.export import Dim, ExportedProgram, export

from .model import EdgeModel


def example_inputs(model: EdgeModel, max_labels: int, seq_len: int = 8, batch_size: int = 1
                   ) -> tuple[torch.Tensor, ...]:
    shapes = model.input_shapes(max_labels)
    ids = torch.full((batch_size, seq_len), 1000, dtype=torch.int64)
    return (ids, torch.ones_like(ids), *(torch.zeros(s) for s in shapes.values()))


def export_program(model: EdgeModel, max_labels: int, max_seq_length: int,
                   quantize: str | None = None, batch_size: int = 1) -> ExportedProgram:
    """torch.export with a dynamic sequence length and a fixed batch size (1: the phone; >1: a throughput variant)."""
    inputs = example_inputs(model, max_labels, batch_size=batch_size)
    seq = Dim("seq", min=2, max=max_seq_length)  # min 2: a tokenizer always adds [CLS] and [SEP]
    dynamic = ({1: seq}, {1: seq}, *([None] * (len(model.input_names) - 2)))
    if quantize == "int8":
        model = quantize_int8(model, inputs, dynamic)
    elif quantize is not None:
        raise ValueError(f"unknown quantize mode {quantize!r}")
    with torch.no_grad():
        return export(model, inputs, dynamic_shapes=dynamic, strict=False)


class Int8Embedding(torch.nn.Module):
    """An embedding table stored as int8 with one fp32 scale per row (symmetric, -127..127), read by ExecuTorch's
    `quantized_decomposed::embedding_byte` kernel (a portable kernel: gathers are not XNNPACK's). For the word
    embeddings, the largest tensor of a small encoder (MiniLM: 47 MB of its 90 MB)."""

    def __init__(self, table: torch.nn.Embedding) -> None:
        super().__init__()
        import executorch.exir.passes._quant_patterns_and_replacements  # noqa: F401  (defines the op for export)

        w = table.weight.detach().float()
        scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.register_buffer("weight_int8", torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scales)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized_decomposed.embedding_byte.default(self.weight_int8, self.scales, None, -127, 127,
                                                                     ids)


@contextmanager
def int8_word_embeddings(model: EdgeModel) -> Iterator[None]:
    """Within: the backbone's word embedding table is an Int8Embedding (the model is restored on exit)."""
    embeddings = getattr(model.backbone, "embeddings", None)
    table = getattr(embeddings, "word_embeddings", None)
    if not isinstance(table, torch.nn.Embedding):
        yield
        return
    embeddings.word_embeddings = Int8Embedding(table)
    try:
        yield
    finally:
        embeddings.word_embeddings = table


def quantize_int8(model: EdgeModel, inputs: tuple, dynamic: tuple) -> torch.nn.Module:
    """Dynamic int8 (per-channel weights, per-token activations) on the backbone's nn.Linear modules, and the word
    embedding table as int8 rows (Int8Embedding).

    The memory products use runtime-input weights, so they stay fp32: their weights are not known at export time.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
    quantizer = XNNPACKQuantizer()
    # set_module_type matches the exact class: AdapterHub's adapters.init swaps the backbone's linears for its own
    # nn.Linear subclasses, which would otherwise stay fp32
    for linear_type in sorted({type(m) for m in model.modules() if isinstance(m, torch.nn.Linear)}, key=str):
        quantizer.set_module_type(linear_type, config)
    with torch.no_grad(), int8_word_embeddings(model):
        gm = export(model, inputs, dynamic_shapes=dynamic, strict=False).module()
        prepared = prepare_pt2e(gm, quantizer)
        prepared(*inputs)  # dynamic quantization needs no calibration data; one call initialises the observers
        return convert_pt2e(prepared)


def load_forward(path: str | Path):
    """Load a program's forward method in the ExecuTorch Python runtime, with the quantized kernels registered (int8
    programs read their word embeddings with quantized_decomposed::embedding_byte)."""
    import executorch.kernels.quantized  # noqa: F401
    from executorch.runtime import Runtime

    return Runtime.get().load_program(str(path)).load_method("forward")


def inferred_view_dims(gm: torch.fx.GraphModule):
    """Rewrite `view_copy(x, [12, s0, 32])` as `view_copy(x, [12, -1, 32])` where exactly one dim is symbolic.

    torch.export records a view's -1 as the symbolic sequence length, and XNNPACK's partitioner refuses any symbolic
    reshape, so every head split/merge would otherwise leave the delegate and cut the program into pieces. XNNPACK's
    reshape infers one dim at run time, and -1 is the same shape by construction (the element count is fixed).
    """
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import PassResult

    changed = False
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target == exir_ops.edge.aten.view_copy.default:
            shape = list(node.args[1])
            symbolic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
            if len(symbolic) == 1 and -1 not in shape:
                shape[symbolic[0]] = -1
                node.args = (node.args[0], shape, *node.args[2:])
                changed = True
    if changed:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return PassResult(gm, changed)


def lower_edge(ep: ExportedProgram, delegate_memory: bool = True, infer_views: bool = True):
    """ExportedProgram -> lowered EdgeProgramManager (XNNPACK delegation)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    partitioner = XnnpackPartitioner(force_non_static_weights_for_f32_linear=delegate_memory)
    passes = [inferred_view_dims] if infer_views else []
    return to_edge_transform_and_lower(ep, transform_passes=passes, partitioner=[partitioner])


def lower(ep: ExportedProgram, delegate_memory: bool = True) -> bytes:
    """ExportedProgram -> .pte bytes."""
    return lower_edge(ep, delegate_memory).to_executorch().buffer


def delegation_summary(edge) -> dict:
    """How much of a lowered program XNNPACK took, and which ops it left to the portable kernels."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge.exported_program().graph_module)
    left = {k.op_type: k.non_delegated for k in info.delegation_by_operator.values() if k.non_delegated}
    return {"delegated_subgraphs": info.num_delegated_subgraphs, "delegated_nodes": info.num_delegated_nodes,
            "non_delegated_nodes": info.num_non_delegated_nodes, "non_delegated_ops": left}


def build_pte(model: EdgeModel, max_labels: int, max_seq_length: int, quantize: str | None = None,
              delegate_memory: bool = True) -> bytes:
    return lower(export_program(model, max_labels, max_seq_length, quantize), delegate_memory)


def input_spec(model: EdgeModel, max_labels: int, max_seq_length: int, int_dtype: str = "int64") -> list[dict]:
    """The program's inputs as the manifest lists them: name, shape ("seq" = 2..max_seq_length), dtype."""
    spec = [{"name": n, "shape": [1, "seq"], "seq_range": [2, max_seq_length], "dtype": int_dtype}
            for n in model.input_names[:2]]
    defaults = model.input_defaults()
    spec += [{"name": n, "shape": list(s), "dtype": "float32", **({"default": True} if n in defaults else {})}
             for n, s in model.input_shapes(max_labels).items()]
    return spec
