"""The registry of what a training config can train: ``"task": NAME`` in a config file picks one."""

from __future__ import annotations

from pathlib import Path

from .config import TrainConfig


def build_task(config: TrainConfig, pipeline_folder: Path, cache_dir: Path):
    """The task object for ``config``; ``pipeline_folder`` is where earlier steps exported their components."""
    if config.task == "vae":
        from .vae import VAETask

        return VAETask(config, pipeline_folder, cache_dir, **config.task_args)
    raise ValueError(f"unknown training task {config.task!r}; known: {', '.join(TASKS)}.")


TASKS = ("vae",)
