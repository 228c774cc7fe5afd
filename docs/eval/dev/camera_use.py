"""Does a model's orbit follow its camera? python docs/eval/dev/camera_use.py CLIPS MODEL_FOLDER [MODEL_FOLDER ...]

On the first CLIPS validation orbits (25 steps, CFG 3, the eval's seeds), for each model:
* yaw r: Pearson r between the yaw the pose evaluator reads from the generated frames and from the true ones;
* yaw std ratio: the generated yaw's spread over the truth's (1: the head turns as far as the camera goes);
* reversed: mean absolute pixel difference (of 255) between the orbit sampled along its path and along the same
  path reversed; a camera-blind model gives about 0 (the same seed, the same portrait, only the camera differs).
"""
import sys
from pathlib import Path

import numpy as np
import torch

from starcaster.conditioning.camera_path import CameraPath
from starcaster.eval import metrics
from starcaster.eval.evaluators import load_evaluators
from starcaster.eval.run import eval_clips
from starcaster.loading import load_pipeline

clips_n, folders = int(sys.argv[1]), sys.argv[2:]
evaluators = load_evaluators(Path("checkpoints/tiny/evaluators"))
clips = eval_clips("orbit", clips_n, 0, 32, split="val")


def orbit(pipe, clip, extrinsics, seed):
    return pipe.generate(task="orbit", image=clip.reference, already_aligned=True, seed=seed,
                         num_frames=len(clip.frames), steps=25, guidance=3.0,
                         camera=CameraPath(extrinsics, clip.intrinsics, fps=clip.fps)).frames


print("| model | clip | yaw r | yaw std ratio | reversed path: mean abs diff |")
print("|---|---|---|---|---|")
for folder in folders:
    pipe = load_pipeline(folder)
    pipe.set_progress_bar_config(disable=True)
    rows = []
    for i, clip in enumerate(clips):
        forward = orbit(pipe, clip, clip.extrinsics, i)
        backward = orbit(pipe, clip, clip.extrinsics[::-1].copy(), i)
        with torch.no_grad():
            yaw = metrics.apparent_poses(evaluators["pose"], forward)[:, 0]
            true_yaw = metrics.apparent_poses(evaluators["pose"], clip.frames)[:, 0]
        rows.append((np.corrcoef(yaw, true_yaw)[0, 1], yaw.std() / true_yaw.std(),
                     np.abs(forward.astype(float) - backward.astype(float)).mean()))
        print(f"| {folder} | {i} | {rows[-1][0]:.2f} | {rows[-1][1]:.2f} | {rows[-1][2]:.2f} |", flush=True)
    mean = np.mean(rows, 0)
    print(f"| {folder} | mean | {mean[0]:.2f} | {mean[1]:.2f} | {mean[2]:.2f} |", flush=True)
