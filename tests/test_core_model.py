"""Attaching SPARTAN to each encoder family, what trains, and the backbone staying untouched."""

from __future__ import annotations

import pytest
import torch

from pipeline.backbone import encoder_layers, fingerprint, load_backbone
from pipeline.errors import UserError
from pipeline.model import TaskModel, TaskSpec
from pipeline.spartan import SpartanConfig

SPEC = TaskSpec("t", ["neg", "pos"])


def batch(tokenizer, texts=("a fine film", "an awful, overlong plot")):
    return dict(tokenizer(list(texts), padding=True, return_tensors="pt"))


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_attach_to_each_family(tiny_backbones, kind):
    backbone, tok = load_backbone(tiny_backbones[kind])
    inputs = batch(tok)
    with torch.no_grad():
        bare = backbone(**{k: v for k, v in inputs.items() if k != "token_type_ids" or kind != "distilbert"})[0]
    torch.manual_seed(0)
    model = TaskModel(backbone, "spartan", SpartanConfig().to_dict(), SPEC)
    assert len(model.delta) == len(encoder_layers(backbone)) == 2
    with torch.no_grad():
        for mem in model.delta:
            mem.Vt.normal_()  # make the memories' contribution visible
        hidden = backbone(**{k: v for k, v in inputs.items() if k != "token_type_ids" or kind != "distilbert"})[0]
        logits = model(**inputs)
    assert logits.shape == (2, 2)
    assert not torch.allclose(hidden, bare), "the memories must change the encoder output"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"delta.{i}.{p}" for i in range(2) for p in ("P", "K", "Vt")} | {"head.weight", "head.bias"}


def test_memory_output_is_added_residually(tiny_bert):
    backbone, tok = load_backbone(tiny_bert)
    inputs = batch(tok)
    torch.manual_seed(0)
    model = TaskModel(backbone, "spartan", SpartanConfig().to_dict(), SPEC)
    with torch.no_grad():
        for mem in model.delta:
            mem.Vt.zero_()  # zero values: the memory adds nothing
        with_zero = backbone(**inputs)[0]
    for layer in encoder_layers(backbone):
        layer._forward_hooks.clear()  # detach the memories: the bare encoder
    with torch.no_grad():
        bare = backbone(**inputs)[0]
    torch.testing.assert_close(with_zero, bare, atol=0, rtol=0)


def test_minilm_parameter_count_and_layernorm_option():
    backbone, _ = load_backbone()
    model = TaskModel(backbone, "spartan", SpartanConfig().to_dict(), SPEC)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n == 6 * (16 * 384 + 2 * 48 * 384) + 384 * 2 + 2 == 258_818
    backbone2, _ = load_backbone()
    model2 = TaskModel(backbone2, "spartan", SpartanConfig(train_layernorms=True).to_dict(), SPEC)
    n_ln = sum(p.numel() for p in model2.parameters() if p.requires_grad) - n
    assert n_ln == (1 + 2 * 6) * 2 * 384  # embedding LN + two per layer, weight and bias


def test_fingerprint_tracks_exact_weights(tiny_bert):
    a, _ = load_backbone(tiny_bert)
    b, _ = load_backbone(tiny_bert)
    assert fingerprint(a) == fingerprint(b)
    with torch.no_grad():
        b.embeddings.word_embeddings.weight[0, 0] += 1e-6
    assert fingerprint(a) != fingerprint(b)


def test_unknown_method_and_backbone(tiny_bert):
    backbone, _ = load_backbone(tiny_bert)
    with pytest.raises(UserError, match="unknown method 'magic'"):
        TaskModel(backbone, "magic", {}, SPEC)
    with pytest.raises(UserError, match="cannot load backbone"):
        load_backbone("/nonexistent/model-folder")
