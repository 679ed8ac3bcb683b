"""The task model: a frozen encoder + a method's trainable part + mean pooling + a linear head."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .backbone import mean_pool, takes_token_types
from .methods import get_method


@dataclass
class TaskSpec:
    """What the head predicts. `label_names` is empty for regression."""

    name: str
    label_names: list[str] = field(default_factory=list)
    is_regression: bool = False

    @property
    def num_outputs(self) -> int:
        return 1 if self.is_regression else len(self.label_names)

    def to_dict(self) -> dict:
        return asdict(self)


class TaskModel(nn.Module):
    def __init__(self, backbone: nn.Module, method: str, options: dict, task: TaskSpec) -> None:
        super().__init__()
        self.method, self.options, self.task = method, dict(options), task
        self.backbone = backbone
        self.uses_token_type_ids = takes_token_types(backbone)  # before the method wraps the backbone's forward
        self.delta = get_method(method)(backbone, self.options)  # may be None (probe, bitfit, ...)
        self.head = nn.Linear(backbone.config.hidden_size, task.num_outputs)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if self.uses_token_type_ids and token_type_ids is not None else {}
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[0]
        logits = self.head(mean_pool(hidden, attention_mask))
        return logits.squeeze(-1) if self.task.is_regression else logits

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Exactly the tensors this task adds or changes: what the task artifact stores."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    def auxiliary_loss(self) -> torch.Tensor | None:
        """Sum of the auxiliary losses the method's modules left from the last forward (e.g. SPARTAN load balance)."""
        losses = [m.aux_loss for m in self.modules() if isinstance(getattr(m, "aux_loss", None), torch.Tensor)]
        if not losses:
            return None
        coef = self.options.get("load_balance_coef", 0.0)
        return coef * torch.stack(losses).mean()
