"""What one training run needs, as a dataclass built by keyword: the API of `pipeline.trainer.train`.

    from pipeline.config import TrainConfig
    from pipeline.spartan.config import SpartanConfig
    cfg = TrainConfig(output_dir="runs/sst2", task="sst2", max_train_samples=2000, spartan=SpartanConfig(top_k=4))

`python -m pipeline.train` fills it from its flags; `pipeline.compare` builds one per cell. Torch-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .errors import UserError
from .spartan.config import SpartanConfig

# The keys of pipeline.methods.METHODS (a test keeps them equal), here so that the CLI can check a name without torch.
METHOD_NAMES = ("spartan", "houlsby", "pfeiffer", "lora", "bitfit", "probe", "full")
HEAD_NAMES = ("linear", "mlp")  # pipeline.model.HEADS (a test keeps them equal)
LAYERNORM_METHODS = ("spartan", "houlsby", "pfeiffer")  # whose papers train the LayerNorms with the method


@dataclass(frozen=True)
class TrainConfig:
    output_dir: str
    task: str | None = None  # GLUE name (default sst2); with train_file, a name for the user's task
    method: str = "spartan"
    model: str | None = None  # backbone folder or hub id; None = the embedded MiniLM
    # data
    data_dir: str | None = None
    hub: bool = False
    train_file: str | None = None
    validation_file: str | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    task_type: str = "auto"
    max_train_samples: int | None = None
    few_shot: int | None = None
    max_seq_length: int = 128
    holdout: int | None = None
    # training
    epochs: float = 1.0
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    # 8 is Hugging Face run_glue's default; with lr 1e-3 it gives the memory 250 updates per 2,000 examples (see
    # docs/results/core.md: at batch 32 one epoch is too few updates for SPARTAN to move off the probe's accuracy).
    batch_size: int = 8
    eval_batch_size: int = 64
    seed: int = 42
    save_steps: int = 100
    resume: bool = False
    threads: int | None = None
    device: str = "auto"
    bf16: bool = False
    # the authors' recipes: "mlp" = dense + tanh + projection on the mean-pooled vector; trainable LayerNorms
    head: str = "linear"
    train_layernorms: bool = False  # for spartan the same as spartan.train_layernorms (either sets it)
    spartan: SpartanConfig = field(default_factory=SpartanConfig)  # used when method == "spartan"

    def __post_init__(self) -> None:
        if self.method not in METHOD_NAMES:
            raise UserError(f"unknown method {self.method!r}; choose one of: {', '.join(METHOD_NAMES)}")
        if not self.epochs > 0:
            raise UserError(f"--epochs must be > 0, got {self.epochs:g}")
        for name in ("batch_size", "eval_batch_size", "save_steps", "max_seq_length"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise UserError(f"--learning-rate must be > 0, got {self.learning_rate:g}")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio:g}")
        if self.head not in HEAD_NAMES:
            raise UserError(f"--head must be one of {', '.join(HEAD_NAMES)}, got {self.head!r}")
        if self.train_layernorms and self.method not in LAYERNORM_METHODS:
            raise UserError(f"--train-layernorms applies to {', '.join(LAYERNORM_METHODS)}, not {self.method}")
        if self.task_type not in ("auto", "classification", "regression"):
            raise UserError(f"--task-type must be auto, classification or regression, got {self.task_type!r}")

    def to_dict(self) -> dict:
        return asdict(self)
