"""Configuration of a SPARTAN memory (defaults follow the official code)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SpartanConfig:
    num_parents: int = 16  # E: parent keys per layer
    num_children: int = 3  # C: children under each parent
    top_k: int = 8  # parents kept per token
    temperature: float = 1.6  # divides the child logits
    load_balance_coef: float = 0.0  # weight of the auxiliary parent-usage loss; 0 = off
    train_layernorms: bool = False  # also train the backbone's LayerNorms (they then belong to the task)
    form: str = "dense"  # "dense" (masked, export-friendly) or "sparse" (gathers the kept parents)

    def __post_init__(self) -> None:
        if self.num_parents < 1 or self.num_children < 1:
            raise ValueError("num_parents and num_children must be >= 1")
        if not 1 <= self.top_k <= self.num_parents:
            raise ValueError(f"top_k must be in 1..num_parents ({self.num_parents}), got {self.top_k}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.form not in ("dense", "sparse"):
            raise ValueError(f"form must be 'dense' or 'sparse', got {self.form!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SpartanConfig:
        return cls(**d)
