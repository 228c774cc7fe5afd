"""Training configs are data: one JSON file per step of a recipe (``configs/<recipe>/<step>.json``).

A config names the task (what is trained: the VAE, a stage of the video model, ...), the optimisation settings that
every task shares, and the task's own settings under ``task_args``. ``python -m starcaster train CONFIG`` runs one;
a recipe (``configs/<recipe>/recipe.json``) lists them in order.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class TrainConfig:
    task: str  # a key of `tasks.TASKS`
    name: str = ""  # the step's folder name inside a recipe's output (defaults to the task)
    steps: int = 1000  # optimizer steps
    batch_size: int = 8  # per device
    grad_accum: int = 1
    lr: float = 1e-4
    lr_schedule: str = "cosine"  # any diffusers.optimization scheduler name
    warmup_steps: int = 0
    weight_decay: float = 0.0
    adam_betas: tuple = (0.9, 0.999)
    max_grad_norm: float = 1.0
    seed: int = 0
    save_every: int = 500  # accelerator.save_state every K steps (and at the end)
    keep_states: int = 2  # retention: how many saved states stay on disk
    log_every: int = 10  # metrics.jsonl line every K steps
    validate_every: int = 0  # task.validate (held-out numbers, sample videos) every K steps; 0 = only at the end
    ema_decay: float = 0.0  # > 0 keeps an EMA of the trained weights and exports it
    mixed_precision: str = "no"  # "no" | "fp16" | "bf16" (GPUs)
    gradient_checkpointing: bool = False
    threads: int = 0  # torch CPU threads (0 = torch's default)
    trackers: list = field(default_factory=list)  # Accelerate trackers ("tensorboard", "wandb", ...), when installed
    task_args: dict = field(default_factory=dict)
    # task_args that replace those above in a smoke run (--max-steps): small data pools, so the whole recipe runs in
    # minutes.
    smoke_args: dict = field(default_factory=dict)

    def __post_init__(self):
        self.name = self.name or self.task
        self.adam_betas = tuple(self.adam_betas)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "TrainConfig":
        if not isinstance(data, dict):
            raise ValueError(f"{source} must hold a JSON object, not {type(data).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fields {unknown} in {source}; known: {sorted(known)}.")
        if "task" not in data:
            raise ValueError(f"{source} names no task.")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no training config at {path}.") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}).") from None
        return cls.from_dict(data, source=str(path))

    def capped(self, max_steps: int | None) -> "TrainConfig":
        """The same config with at most ``max_steps`` optimizer steps (a smoke run of a recipe)."""
        if max_steps is None or max_steps >= self.steps:
            return self
        return replace(self, steps=max_steps, warmup_steps=min(self.warmup_steps, max_steps // 2),
                       save_every=min(self.save_every, max_steps), validate_every=0,
                       task_args={**self.task_args, **self.smoke_args}, smoke_args={})

    def to_dict(self) -> dict:
        return asdict(self)


def recipe_configs(recipe: str) -> list[TrainConfig]:
    """The steps of a shipped recipe, in order."""
    folder = CONFIG_DIR / recipe
    index = folder / "recipe.json"
    if not index.is_file():
        known = sorted(p.parent.name for p in CONFIG_DIR.glob("*/recipe.json"))
        raise ValueError(f"no recipe named {recipe!r}; known recipes: {', '.join(known)}.")
    names = json.loads(index.read_text())["steps"]
    return [TrainConfig.from_file(folder / f"{name}.json") for name in names]
