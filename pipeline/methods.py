"""Parameter-efficient methods: how each one changes a frozen backbone and what it trains.

Every method is a function `apply(backbone, options) -> extra` that freezes what it does not train and adds its
modules: SPARTAN returns its memories (they live beside the backbone, which runs them in forward hooks); the library
methods (adapters, LoRA) add theirs inside the backbone and return None, as do bitfit/probe/full, which only choose
what to unfreeze. It is deterministic given the torch seed. The task artifact stores exactly the tensors that
end up trainable, so sizes compare honestly.
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
    _freeze(backbone)  # the head alone trains
    return None


def apply_bitfit(backbone: nn.Module, options: dict) -> None:
    _freeze(backbone)
    for name, p in backbone.named_parameters():
        if name.endswith(".bias"):
            p.requires_grad_(True)
    return None


def apply_full(backbone: nn.Module, options: dict) -> None:
    backbone.requires_grad_(True)
    return None


# Bottleneck adapters from AdapterHub `adapters`: Houlsby (after attention and FFN) and Pfeiffer (after FFN only).
ADAPTER_CONFIGS = {"houlsby": "double_seq_bn", "pfeiffer": "seq_bn"}


def apply_adapter(backbone: nn.Module, options: dict) -> None:
    import adapters

    try:
        adapters.init(backbone)
        backbone.add_adapter("task", config=options["config"])
        backbone.train_adapter("task")  # freezes the backbone, activates and unfreezes the adapter
    except (ValueError, KeyError, AttributeError) as e:
        raise UserError(f"AdapterHub cannot add a {options['config']} adapter to {type(backbone).__name__}: {e}") from e
    if options.get("train_layernorms"):  # Houlsby et al. train the layer norms with the adapters
        for ln in _layernorms(backbone):
            ln.requires_grad_(True)
    return None


# LoRA from `peft`, injected in place so parameter names stay those of the backbone (no PeftModel wrapper).
LORA_TARGETS = {"bert": ["query", "value"], "roberta": ["query", "value"], "distilbert": ["q_lin", "v_lin"]}


def apply_lora(backbone: nn.Module, options: dict) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    model_type = backbone.config.model_type
    targets = options.get("target_modules") or LORA_TARGETS.get(model_type)
    if targets is None:
        raise UserError(f"lora: no known query/value projections for model type {model_type!r}")
    _freeze(backbone)
    config = LoraConfig(r=options["r"], lora_alpha=options["alpha"], lora_dropout=options["dropout"],
                        target_modules=targets)
    inject_adapter_in_model(config, backbone)
    for name, p in backbone.named_parameters():
        p.requires_grad_("lora_" in name)
    return None


METHODS: dict[str, Callable[[nn.Module, dict], nn.Module | None]] = {
    "spartan": apply_spartan,
    "houlsby": apply_adapter,
    "pfeiffer": apply_adapter,
    "lora": apply_lora,
    "bitfit": apply_bitfit,
    "probe": apply_probe,
    "full": apply_full,
}


def default_options(method: str) -> dict:
    """The method's settings, stored in the artifact so `load_task` can rebuild exactly the same modules."""
    if method == "spartan":
        return SpartanConfig().to_dict()
    if method in ADAPTER_CONFIGS:
        return {"config": ADAPTER_CONFIGS[method]}
    if method == "lora":
        return {"r": 8, "alpha": 8, "dropout": 0.0}
    return {}


def get_method(method: str) -> Callable[[nn.Module, dict], nn.Module | None]:
    try:
        return METHODS[method]
    except KeyError:
        raise UserError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}") from None
