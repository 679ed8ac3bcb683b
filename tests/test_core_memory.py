"""The SPARTAN memory against a naive per-token loop written from the definition."""

from __future__ import annotations

import pytest
import torch

from pipeline.spartan import SpartanConfig, SpartanMemory
from pipeline.spartan.layer import load_balance_loss, top_k_mask


def naive_memory(mem: SpartanMemory, h: torch.Tensor) -> torch.Tensor:
    """Token by token: score E parents, keep the top k (ties to the lower index), softmax over those k; for each
    kept parent score its C children / temperature, softmax, mix their values; sum weighted by the parent weights."""
    cfg = mem.config
    e, c = cfg.num_parents, cfg.num_children
    values = mem.Vt.t()  # [E*C, H]
    out = torch.zeros_like(h)
    flat_h, flat_out = h.reshape(-1, h.shape[-1]), out.view(-1, h.shape[-1])
    for t in range(flat_h.shape[0]):
        x = flat_h[t]
        scores = [float(mem.P[j] @ x) for j in range(e)]
        kept = sorted(range(e), key=lambda j: (-scores[j], j))[: cfg.top_k]
        pw = torch.softmax(torch.tensor([scores[j] for j in kept], dtype=torch.float64), 0)
        acc = torch.zeros(h.shape[-1], dtype=torch.float64)
        for w, j in zip(pw, kept, strict=True):
            rows = range(j * c, (j + 1) * c)
            cl = torch.tensor([float(mem.K[r] @ x) / cfg.temperature for r in rows], dtype=torch.float64)
            cw = torch.softmax(cl, 0)
            for q, r in zip(cw, rows, strict=True):
                acc += w * q * values[r].double()
        flat_out[t] = acc.float()
    return out


def make(form: str, top_k: int, seed: int = 0, hidden: int = 24, e: int = 16, c: int = 3) -> SpartanMemory:
    torch.manual_seed(seed)
    mem = SpartanMemory(hidden, SpartanConfig(num_parents=e, num_children=c, top_k=top_k, form=form))
    torch.nn.init.normal_(mem.Vt, std=1.0)  # large values so any mixing error shows
    return mem


@pytest.mark.parametrize("top_k", [1, 3, 8, 16])
def test_dense_and_sparse_match_naive_loop(top_k):
    dense = make("dense", top_k)
    sparse = make("sparse", top_k)
    sparse.load_state_dict(dense.state_dict())
    h = torch.randn(2, 5, 24)
    with torch.no_grad():
        ref = naive_memory(dense, h)
        torch.testing.assert_close(dense(h), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sparse(h), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("top_k", [1, 2, 5])
def test_ties_keep_the_lower_index_in_both_forms(top_k):
    # Integer keys and inputs make every parent score an exact small integer, whatever order a GEMM sums in,
    # so many scores tie exactly; parents 1-2 copy parent 0 so some tie on every token.
    dense = make("dense", top_k, e=6, c=2)
    with torch.no_grad():
        dense.P.copy_(torch.randint(-1, 2, dense.P.shape).float())
        dense.P[1:3] = dense.P[0]
    sparse = make("sparse", top_k, e=6, c=2)
    sparse.load_state_dict(dense.state_dict())
    h = torch.randint(-2, 3, (3, 4, 24)).float()
    scores = h @ dense.P.t()
    assert (scores.unsqueeze(-1) == scores.unsqueeze(-2)).sum() > scores.numel()  # ties exist beyond the diagonal
    with torch.no_grad():
        ref = naive_memory(dense, h)
        torch.testing.assert_close(dense(h), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sparse(h), ref, atol=1e-5, rtol=1e-5)


def test_top_k_mask_rule():
    logits = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]])
    assert top_k_mask(logits, 2).tolist() == [[False, True, True, False, False]]
    assert top_k_mask(logits, 4).tolist() == [[False, True, True, True, True]]
    assert top_k_mask(logits, 5).all()


def test_gradients_match_between_forms():
    dense, sparse = make("dense", 4), make("sparse", 4)
    sparse.load_state_dict(dense.state_dict())
    h = torch.randn(2, 3, 24)
    for m in (dense, sparse):
        m(h).square().sum().backward()
    for (name, a), (_, b) in zip(dense.named_parameters(), sparse.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_load_balance_loss_is_one_when_uniform_and_larger_when_skewed():
    uniform = torch.zeros(64, 8)  # every parent scores the same: ties spread by index, softmax uniform
    assert load_balance_loss(uniform, 8).item() == pytest.approx(1.0)
    skewed = torch.zeros(64, 8)
    skewed[:, 0] = 10.0
    assert load_balance_loss(skewed, 2).item() > 1.5


def test_load_balance_loss_only_when_enabled_and_training():
    torch.manual_seed(0)
    on = SpartanMemory(24, SpartanConfig(load_balance_coef=0.1))
    off = SpartanMemory(24, SpartanConfig())
    h = torch.randn(2, 3, 24)
    on.train()(h)
    off.train()(h)
    assert on.aux_loss is not None and off.aux_loss is None
    on.eval()(h)
    assert on.aux_loss is None


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="top_k"):
        SpartanConfig(num_parents=4, top_k=5)
    with pytest.raises(ValueError, match="temperature"):
        SpartanConfig(temperature=0)


def test_top_k_mask_under_export_is_the_same_rule():
    """top_k_mask spells the rule as sort + scatter eagerly and as rank comparisons under torch.export (what Core ML
    converts); both keep the same entries, ties included."""
    class Mask(torch.nn.Module):
        def forward(self, x):
            return top_k_mask(x, 3)

    x = torch.randint(0, 4, (64, 8)).float()  # many ties
    exported = torch.export.export(Mask(), (x,), strict=False).module()
    assert torch.equal(exported(x), top_k_mask(x, 3))
    assert top_k_mask(x, 3).sum(-1).eq(3).all()
    ops = {str(n.target) for n in torch.export.export(Mask(), (x,), strict=False).graph.nodes}
    assert not any("sort" in op or "scatter" in op for op in ops)  # the comparison form is what gets exported
