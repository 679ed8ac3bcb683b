"""The memory shape a backbone program is lowered for (the same for every task of a bundle). Torch-free: adding a
task to an export (`--into`) checks it without importing torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MemoryShape:
    """What a backbone program needs to know about the memories it will be fed (the same for every task)."""

    num_layers: int
    num_parents: int  # E
    num_children: int  # C
    top_k: int
    temperature: float
    hidden_size: int

    @classmethod
    def from_options(cls, options: dict, num_layers: int, hidden_size: int) -> MemoryShape:
        """From SPARTAN options (SpartanConfig.to_dict(), an artifact's "options") and the backbone's size."""
        return cls(num_layers=num_layers, num_parents=options["num_parents"], num_children=options["num_children"],
                   top_k=options["top_k"], temperature=float(options["temperature"]), hidden_size=hidden_size)

    def to_dict(self) -> dict:
        return asdict(self)

    def tensor_shapes(self, max_labels: int) -> dict[str, tuple[int, ...]]:
        L, E, C, H = self.num_layers, self.num_parents, self.num_children, self.hidden_size
        return {"P": (L, E, H), "K": (L, E * C, H), "Vt": (L, H, E * C), "head_weight": (max_labels, H),
                "head_bias": (max_labels,)}
