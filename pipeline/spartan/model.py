"""Attach one SPARTAN memory after each encoder layer of a Hugging Face encoder."""

from __future__ import annotations

import torch
from torch import nn

from ..backbone import encoder_layers
from .config import SpartanConfig
from .layer import SpartanMemory


def attach_spartan(backbone: nn.Module, config: SpartanConfig) -> nn.ModuleList:
    """Add a memory after every encoder layer (residually, on the layer's hidden-state output).

    The backbone's own modules and parameter names are left untouched (the memory runs in a forward hook), so its
    state dict, and therefore its fingerprint, stays that of the pre-trained encoder. Returns the memories; the
    caller owns them (they are the trainable part).
    """
    layers = encoder_layers(backbone)
    memories = nn.ModuleList(SpartanMemory(backbone.config.hidden_size, config) for _ in layers)
    for layer, memory in zip(layers, memories, strict=True):
        layer.register_forward_hook(_residual_hook(memory))
    return memories


def _residual_hook(memory: SpartanMemory):
    def hook(module: nn.Module, args: tuple, output):
        if isinstance(output, torch.Tensor):
            return output + memory(output)
        hidden = output[0]
        return (hidden + memory(hidden),) + tuple(output[1:])

    return hook
