"""Training (paper §3.4, Supp. B): the tiny world's prerequisites and the three stages, on 🤗 Accelerate."""

from .config import TrainConfig, recipe_configs
from .recipe import run_config, run_recipe
from .trainer import step_generator, step_rng, train

__all__ = ["TrainConfig", "recipe_configs", "run_config", "run_recipe", "step_generator", "step_rng", "train"]
