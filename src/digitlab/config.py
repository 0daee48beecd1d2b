"""The one configuration of a training run, typed and defaulted, saved with every run so a model can be rebuilt
(and the run repeated) from its folder alone.

Both ways of executing it read the same fields: the Learner engine (callbacks, checkpoints, exact resume,
distributed) and the fast engine (train/fast.py: the data set on the device, a CUDA graph and torch.compile on a
GPU). A field that only one engine reads says so.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import tomli_w

from .data.catalogue import default_recipe
from .recipe_table import fields_of
from .data.tasks import TASKS, parse_classes
from .errors import ConfigError
from .hardware import PRECISIONS, resolve_device, resolve_precision
from .models.registry import MODELS

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

ENGINES = ("learner", "fast")


@dataclass
class TrainConfig:
    task: str = "digits"          # "digits" (every class of the data set: MNIST's ten) or "3v7" (the book's 3s and 7s)
    classes: str | None = None    # a subset of the data set's classes, comma-separated names or digits ("Bag,Sneaker")
    model: str = "fastcnn"        # a name in digitlab.models.MODELS
    epochs: int = 10              # passes over the training set
    lr: float = 0.2               # peak learning rate (one-cycle) or the constant rate
    bs: int = 256                 # training batch size (the global batch across processes)
    opt: str = "sgd"              # sgd, adam or adamw (the fast engine: sgd)
    mom: float = 0.9              # SGD momentum or Adam's beta1 (one-cycle cycles it between 0.95 and 0.85)
    wd: float = 5e-4              # weight decay (L2 for SGD, decoupled for adamw)
    schedule: str = "one_cycle"   # one_cycle or constant (the fast engine: one_cycle)
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    augment: bool = True          # random shifts, rotations and scaling of each training image
    aug_shift: float = 2.0        # augmentation strength: up to this many pixels of shift,
    aug_degrees: float = 10.0     # this many degrees of rotation,
    aug_scale: float = 0.1        # and this much zoom either way (data/augment.py random_affine)
    aug_flip: bool = False        # and mirror half the images left to right (clothes, not digits)
    tta: bool = False             # score the final model with test-time augmentation (inference.TTA_SHIFTS; mirrored
                                  # too with aug_flip)
    seed: int = 42                # seeds the weights, the data order and augmentation
    device: str = "auto"          # auto (cuda if present), cpu, cuda, cuda:1, ...
    data: str | None = None       # folder with the IDX files or image folders (default: the shipped MNIST)
    valid_pct: float | None = None  # a single image folder: the share held out for validation (None: 0.2)
    valid_size: int = 5000        # ten digits: training images held out for validation (stratified, fixed); 0: none
    engine: str = "learner"       # learner (callbacks, checkpoints, resume) or fast (train/fast.py)
    precision: str = "auto"       # auto (what the device does natively: digitlab.hardware), bf16, fp16 or fp32
    graphs: bool | None = None    # the fast engine captures its step as a CUDA graph; None: on CUDA only
    compile: bool = False         # the fast engine's torch.compile, on CUDA only (10-25 s of warm-up)
    fused_loss: bool = True       # the fast engine's loss: PyTorch's fused cross-entropy (equal to ours, tested)
    init_from: str | None = None  # start from this model file's weights (fine-tuning) instead of random ones
    lowres: float = 0.0           # digits: this share of the training digits added again as 8x8 scans (data/lowres.py)
    outlier_exposure: float = 0.0  # digits, fast engine: weight of the loss that pushes non-digits (data/outliers.py)
                                   # to equal probabilities (outlier exposure); each batch adds half as many; 0: off

    def __post_init__(self):
        fast_only = self.engine != "fast" or (self.opt == "sgd" and self.schedule == "one_cycle")
        checks = [
            (self.task in TASKS, f"task must be one of {', '.join(TASKS)}, got {self.task!r}"),
            (self.classes is None or len(parse_classes(self.classes) or ()) >= 2,
             f"classes must name at least two classes, comma-separated (e.g. \"Bag,Sneaker\"), got {self.classes!r}"),
            (self.valid_pct is None or 0 < self.valid_pct < 1, f"valid_pct must be between 0 and 1, got {self.valid_pct}"),
            (self.model in MODELS, f"model must be one of {', '.join(sorted(MODELS))}, got {self.model!r}"),
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.bs >= 1, f"bs must be at least 1, got {self.bs}"),
            (self.valid_size >= 0, f"valid_size must be 0 or more, got {self.valid_size}"),
            (self.opt in ("sgd", "adam", "adamw"), f"opt must be sgd, adam or adamw, got {self.opt!r}"),
            (0 <= self.mom < 1, f"mom must be in [0, 1), got {self.mom}"),
            (self.wd >= 0, f"wd must be >= 0, got {self.wd}"),
            (self.schedule in ("one_cycle", "constant"), f"schedule must be one_cycle or constant, got {self.schedule!r}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (min(self.aug_shift, self.aug_degrees, self.aug_scale) >= 0,
             "aug_shift, aug_degrees and aug_scale are strengths: each must be 0 or more"),
            (self.engine in ENGINES, f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
            (fast_only, f"the fast engine trains with one-cycle SGD; got opt {self.opt!r} and schedule "
                        f"{self.schedule!r} (use engine learner for those)"),
            (0 <= self.lowres <= 1, f"lowres is a share of the training digits, in [0, 1]; got {self.lowres}"),
            (self.outlier_exposure >= 0, f"outlier_exposure is a loss weight, 0 or more; got {self.outlier_exposure}"),
            (not self.outlier_exposure or self.engine == "fast",
             "outlier_exposure trains on the fast engine (engine fast)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message + ".")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Rebuild a saved config, ignoring keys this version does not know; a record older than a field reads as
        it ran (the fast engine's `path: fast` marker, no validation split)."""
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in d.items() if k in names}
        if d.get("path") == "fast":
            known.setdefault("engine", "fast")
        known.setdefault("valid_size", 0)  # saved before the validation split: it trained on every training image
        return cls(**known)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (None leaves a field as it is), validated again."""
        return TrainConfig(**{**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}})

    @classmethod
    def resolve(cls, config_file: str | Path | None = None, needs_learner: bool = False, **flags) -> "TrainConfig":
        """The config a command line asks for: TrainConfig's defaults, then the default recipe of the data set it
        names (data.catalogue.default_recipe, from recipe_table: MNIST's and Fashion-MNIST's run on the fast engine),
        then the fields
        a TOML file sets, then every flag that was given (None: not given).

        The recipe's engine yields to the Learner when the rest asks for what only the Learner does: another
        optimiser or schedule, or `needs_learner` (several processes). `engine_reason` says which rule applied."""
        from_file = cls.read_toml(config_file) if config_file is not None else {}
        try:
            cls(**from_file)  # the file's own values first, so an error can name the file
        except ConfigError as e:
            raise ConfigError(f"{config_file}: {e}") from None
        chosen = {**from_file, **{k: v for k, v in flags.items() if v is not None}}
        recipe = default_recipe(chosen.get("data"), chosen.get("task", "digits"), trains_fp32_on_cpu(chosen))
        merged = {**(fields_of(recipe) if recipe else {}), **chosen}
        learner_only = needs_learner or merged.get("opt", "sgd") != "sgd" or merged.get("schedule", "one_cycle") != "one_cycle"
        if "engine" not in chosen and learner_only:
            merged["engine"] = "learner"
        return cls(**merged)

    def to_toml(self) -> str:
        """The config as a TOML file a user can commit and re-run (`digitlab train --config FILE`); fields that
        are None (their default) are left out, as TOML has no null."""
        header = "# digitlab TrainConfig: `digitlab train --config THIS_FILE` runs it; any flag overrides a field.\n"
        return header + tomli_w.dumps({k: v for k, v in self.to_dict().items() if v is not None})

    @classmethod
    def read_toml(cls, path: str | Path) -> dict:
        """The fields a TOML config file sets (checked against TrainConfig's), to be overridden by flags and then
        validated as a whole. A missing file, bad TOML or an unknown field is a ConfigError naming it."""
        path = Path(path)
        try:
            fields_set = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file. `digitlab train --print-config` prints one to start "
                              f"from.") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path}: not a readable TOML file ({e}). Fix the line it names.") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(fields_set) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown field(s) {', '.join(unknown)}; a config file sets TrainConfig's "
                              f"fields: {', '.join(sorted(known))}.")
        types = {f.name: f.type for f in fields(cls)}  # strings such as "int" or "str | None" (postponed annotations)
        for name, value in fields_set.items():
            if not fits(value, types[name]):
                raise ConfigError(f"{path}: {name} = {value!r} should be of type {types[name]}.")
        return fields_set


def engine_reason(cfg: "TrainConfig", world_size: int = 1) -> str:
    """Why a run trains on its engine, for summary.json: the rules `resolve` and `fit` apply, in words."""
    if cfg.engine == "fast":
        return ("fast: one-cycle SGD in one process, the data set on the device (the data set's default recipe, "
                "a recipe or --engine fast)")
    needs = [why for why, yes in ((f"optimiser {cfg.opt}", cfg.opt != "sgd"),
                                  (f"schedule {cfg.schedule}", cfg.schedule != "one_cycle"),
                                  (f"{world_size} processes", world_size > 1)) if yes]
    if needs:
        return f"learner: {', '.join(needs)}, which only the Learner engine runs"
    return "learner: asked for (--engine learner or a config file), or a task without a fast default recipe"


def trains_fp32_on_cpu(fields: dict) -> bool:
    """Whether a config with these fields (unset ones at their defaults) trains in fp32 on a CPU: there a data
    set's default is its `fp32_cpu` recipe (data.catalogue), since each step costs more than in bf16."""
    device = resolve_device(fields.get("device") or "auto")
    return device.type == "cpu" and resolve_precision(fields.get("precision") or "auto", device).name == "fp32"


def fits(value, annotation: str) -> bool:
    """Whether a value read from TOML fits a field annotated `annotation` (an int is a float too, a bool is not
    a number)."""
    allowed = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}
    kinds = [allowed[t.strip()] for t in annotation.split("|") if t.strip() in allowed]
    return any(isinstance(value, k) and not (isinstance(value, bool) and bool not in k) for k in kinds)
