"""Typed configuration, one dataclass per concern; saved with every run so a model can be rebuilt from its file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .errors import ConfigError


@dataclass
class TrainConfig:
    task: str = "digits"          # "3v7" (the book's 3s and 7s) or "digits" (all ten)
    model: str = "fastcnn"        # a name in digitlab.models.MODELS
    epochs: int = 10              # passes over the training set
    lr: float = 0.2               # peak learning rate (one-cycle) or the constant rate
    bs: int = 256                 # training batch size
    opt: str = "sgd"              # sgd, adam or adamw
    mom: float = 0.9              # SGD momentum or Adam's beta1 (one-cycle cycles it between 0.95 and 0.85)
    wd: float = 5e-4              # weight decay (L2 for SGD, decoupled for adamw)
    schedule: str = "one_cycle"   # one_cycle or constant
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    augment: bool = True          # random shifts, rotations and scaling of each training batch
    seed: int = 42                # seeds the weights, the data order and augmentation
    device: str = "auto"          # auto (cuda if present), cpu, cuda, cuda:1, ...
    data: str | None = None       # folder with the MNIST IDX files (default: the repo's data/mnist)

    def __post_init__(self):
        from .data.tasks import TASKS
        from .models.registry import MODELS

        checks = [
            (self.task in TASKS, f"task must be one of {', '.join(TASKS)}, got {self.task!r}"),
            (self.model in MODELS, f"model must be one of {', '.join(sorted(MODELS))}, got {self.model!r}"),
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.bs >= 1, f"bs must be at least 1, got {self.bs}"),
            (self.opt in ("sgd", "adam", "adamw"), f"opt must be sgd, adam or adamw, got {self.opt!r}"),
            (0 <= self.mom < 1, f"mom must be in [0, 1), got {self.mom}"),
            (self.wd >= 0, f"wd must be >= 0, got {self.wd}"),
            (self.schedule in ("one_cycle", "constant"), f"schedule must be one_cycle or constant, got {self.schedule!r}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message + ".")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Rebuild from a saved dict, ignoring keys this version does not know."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
