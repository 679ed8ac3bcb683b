"""Parameter-efficient methods: how each one changes a frozen backbone and what it trains.

Every method is a function `apply(backbone, options) -> extra` that freezes what it does not train, adds its own
modules (returned as `extra`, or None when it only unfreezes backbone tensors), and is deterministic given the
torch seed. The task artifact stores exactly the tensors that end up trainable, so sizes compare honestly.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .errors import UserError
from .spartan import SpartanConfig, attach_spartan


def _freeze(backbone: nn.Module) -> None:
    backbone.requires_grad_(False)


def _layernorms(backbone: nn.Module) -> list[nn.Module]:
    return [m for m in backbone.modules() if isinstance(m, nn.LayerNorm)]


def apply_spartan(backbone: nn.Module, options: dict) -> nn.Module:
    config = SpartanConfig.from_dict(options)
    _freeze(backbone)
    if config.train_layernorms:
        for ln in _layernorms(backbone):
            ln.requires_grad_(True)
    return attach_spartan(backbone, config)


def apply_probe(backbone: nn.Module, options: dict) -> None:
    _freeze(backbone)
    return None


METHODS: dict[str, Callable[[nn.Module, dict], nn.Module | None]] = {
    "spartan": apply_spartan,
    "probe": apply_probe,
}


def default_options(method: str) -> dict:
    if method == "spartan":
        return SpartanConfig().to_dict()
    return {}


def get_method(method: str) -> Callable[[nn.Module, dict], nn.Module | None]:
    try:
        return METHODS[method]
    except KeyError:
        raise UserError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}") from None
