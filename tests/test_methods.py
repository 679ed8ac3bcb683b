"""Baseline methods from the field's libraries: what each trains, and that each artifact round-trips."""

from __future__ import annotations

import pytest
import torch

from pipeline.artifact import load_task, read_tensors, save_task
from pipeline.backbone import fingerprint, load_backbone
from pipeline.errors import UserError
from pipeline.methods import METHODS, default_options
from pipeline.model import TaskModel, TaskSpec

SPEC = TaskSpec("t", ["neg", "pos"])


@pytest.mark.parametrize("method,expected", [
    ("spartan", 258_818), ("houlsby", 226_850), ("pfeiffer", 113_810), ("lora", 74_498), ("probe", 770),
])
def test_trainable_parameters_on_minilm(method, expected):
    backbone, _ = load_backbone()
    torch.manual_seed(0)
    model = TaskModel(backbone, method, default_options(method), SPEC)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_every_method_roundtrips_on_every_family(tmp_path, tiny_backbones, method, kind):
    backbone, tok = load_backbone(tiny_backbones[kind])
    fp = fingerprint(backbone)
    torch.manual_seed(0)
    model = TaskModel(backbone, method, default_options(method), SPEC)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))  # as if trained: nothing left at its initial value
    model.eval()
    inputs = dict(tok(["good film", "a long and dull plot"], padding=True, return_tensors="pt"))
    with torch.no_grad():
        want = model(**inputs)
    path = save_task(model, tmp_path, backbone_id=tiny_backbones[kind], backbone_fingerprint=fp, metric="accuracy")
    stored = read_tensors(path)
    assert set(stored) == {n for n, p in model.named_parameters() if p.requires_grad}
    loaded, _, meta = load_task(path)
    assert meta["method"] == method
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs), want, atol=1e-6, rtol=1e-6)


def test_artifacts_hold_only_what_the_method_adds(tmp_path, tiny_bert):
    sizes = {}
    for method in ("probe", "bitfit", "lora", "full"):
        backbone, _ = load_backbone(tiny_bert)
        model = TaskModel(backbone, method, default_options(method), SPEC)
        sizes[method] = sum(t.numel() for t in model.trainable_state_dict().values())
    total = sum(p.numel() for p in load_backbone(tiny_bert)[0].parameters())
    assert sizes["probe"] < sizes["bitfit"] < sizes["lora"] < sizes["full"] == total + sizes["probe"]


def test_unsupported_combination_is_a_clear_error(tiny_bert):
    backbone, _ = load_backbone(tiny_bert)
    backbone.config.model_type = "mystery"
    with pytest.raises(UserError, match="lora: no known query/value projections for model type 'mystery'"):
        TaskModel(backbone, "lora", default_options("lora"), SPEC)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_sentence_pairs_keep_their_token_types(tiny_bert, method):
    # adapters.init hides the backbone's forward signature; token types must still reach BERT for every method.
    backbone, tokenizer = load_backbone(tiny_bert)
    torch.manual_seed(0)
    model = TaskModel(backbone, method, default_options(method), TaskSpec("pairs", ["no", "yes"])).eval()
    enc = tokenizer(["it rains ."], ["it is wet ."], return_tensors="pt")
    assert enc["token_type_ids"].any()
    with torch.no_grad():
        with_types = model(**enc)
        without = model(enc["input_ids"], enc["attention_mask"])
    assert not torch.allclose(with_types, without)


def test_method_names_without_torch_match_the_registry():
    from pipeline.config import METHOD_NAMES

    assert tuple(METHODS) == METHOD_NAMES
