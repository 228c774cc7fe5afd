"""Stage 3's camera-use numbers for finished folders: python docs/eval/dev/camera_gap.py FOLDER [FOLDER ...]

For each pipeline folder (its own starcaster/ additions, the recipe's stage-3 config and held-out orbits): the first
segment's held-out diffusion loss with each clip's own cameras and with the next clip's, as stage 3's validation logs
them since session 16 (`StageTask.validate`), at each clip's own fixed timestep and (since session 17) all at
t = 800, where the head's layout is still open. Equal numbers mean the camera stream does not steer.
"""
import dataclasses
import sys
from pathlib import Path

import torch

from starcaster.training.config import recipe_configs
from starcaster.training.stages import HIGH_NOISE_T
from starcaster.training.tasks import build_task

config = {c.name: c for c in recipe_configs("tiny")}["stage3"]
# Only the held-out pools are read: a 2-clip training pool instead of 600 skips loading and lip-reading 2 GB of them.
config = dataclasses.replace(config, task_args={**config.task_args, "clips": 2})
print("| folder | first segment, own cameras | another clip's cameras | gap | at t = 800: own | another's | gap |",
      flush=True)
print("|---|---|---|---|---|---|---|")
for folder in map(Path, sys.argv[1:]):
    task = build_task(config, folder, folder / "cache")
    module = task.trainable().eval()
    with torch.no_grad():
        own = task._heldout(module, task.eval_pool, talk=False, first=True)
        other = task._heldout(module, task.eval_pool, talk=False, first=True, camera_shift=1)
        own_t, other_t = (task._heldout(module, task.eval_pool, talk=False, first=True, camera_shift=shift,
                                        timestep=HIGH_NOISE_T) for shift in (0, 1))
    print(f"| {folder} | {own:.5f} | {other:.5f} | {other - own:+.5f} | {own_t:.5f} | {other_t:.5f} | "
          f"{other_t - own_t:+.5f} |", flush=True)
