"""Attach one SPARTAN memory after each encoder layer of a Hugging Face encoder."""

from __future__ import annotations

from collections.abc import Callable

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
        layer.register_forward_hook(residual_hook(memory))
    return memories


def residual_hook(delta: Callable[[torch.Tensor], torch.Tensor | None]):
    """A forward hook that adds `delta(hidden)` to an encoder layer's hidden-state output (a tensor, or the first
    element of a tuple as Hugging Face layers return). `delta` may return None to leave the output as it is.

    Used by attach_spartan and by mobile_export's Hugging Face forward (memory as program inputs).
    """

    def hook(module: nn.Module, args: tuple, output):
        hidden = output if isinstance(output, torch.Tensor) else output[0]
        d = delta(hidden)
        if d is None:
            return output
        return hidden + d if isinstance(output, torch.Tensor) else (hidden + d,) + tuple(output[1:])

    return hook
