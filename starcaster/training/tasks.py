"""The registry of what a training config can train: ``"task": NAME`` in a config file picks one."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from .config import TrainConfig

# task name -> (module, class); imported lazily, so a config only pays for what it trains.
TASKS = {
    "vae": ("vae", "VAETask"),
    "fast_decoder": ("fast_decoder", "FastDecoderTask"),
    "face_encoder": ("face_encoder", "FaceEncoderTask"),
    "arc2face": ("arc2face", "Arc2FaceTask"),
    "lip_reader": ("lip_reading", "LipReaderTask"),
    "stage": ("stages", "StageTask"),
    "distill": ("distill", "DistillTask"),
    # the benchmark's own evaluators (starcaster/eval), trained by the same loop on data of their own seeds
    "eval_mouth": ("..eval.train_evaluators", "MouthTask"),
    "eval_pose": ("..eval.train_evaluators", "PoseTask"),
    "eval_sync": ("..eval.train_evaluators", "SyncTask"),
    "eval_identity": ("face_encoder", "FaceEncoderTask"),
}


def build_task(config: TrainConfig, pipeline_folder: Path, cache_dir: Path):
    """The task object for ``config``; ``pipeline_folder`` is where earlier steps exported their components."""
    if config.task not in TASKS:
        raise ValueError(f"unknown training task {config.task!r}; known: {', '.join(TASKS)}.")
    module, name = TASKS[config.task]
    path = f"starcaster.{module[2:]}" if module.startswith("..") else f"{__package__}.{module}"
    cls = getattr(import_module(path), name)
    return cls(config, Path(pipeline_folder), Path(cache_dir), **config.task_args)
