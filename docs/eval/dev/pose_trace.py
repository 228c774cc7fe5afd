"""Val split: where the shipped model's excess portrait head motion lives (per axis, jitter vs sway, segment seams).

    python docs/eval/dev/pose_trace.py CLIPS SEGMENTS OUT.json

Reads the apparent pose (yaw, pitch, roll; the pose evaluator) of generated and true frames, 25 steps, CFG 3, and
splits each clip's motion into frame-to-frame jitter (std of first differences / sqrt 2, what white noise on the
pose would give as its std), sway (std of the 5-frame moving average) and the jump across each segment seam (the
first new frame after the context against the frame before it) against jumps inside segments.
"""
import json
import sys

import numpy as np
import torch

from starcaster.eval.evaluators import load_evaluators
from starcaster.eval.metrics import apparent_poses
from starcaster.eval.run import eval_clips
from starcaster.loading import load_pipeline

clips, segments, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
pipe = load_pipeline("tiny")
pipe.set_progress_bar_config(disable=True)
pose_net = load_evaluators("checkpoints/tiny/evaluators")["pose"]
N = pipe.settings.segment_frames


def summary(poses: np.ndarray) -> dict:
    steps = np.abs(np.diff(poses, axis=0))  # (T-1, 3): step t is frame t+1 - frame t
    seam = np.zeros(len(steps), bool)
    seam[N - 1::N] = True  # frame k*N against frame k*N - 1
    kernel = np.ones(5) / 5
    sway = np.stack([np.convolve(poses[:, a], kernel, mode="valid") for a in range(3)], 1)
    return {"poses": poses.round(3).tolist(), "seam_jumps": steps[seam].round(3).tolist(), "std": poses.std(0).tolist(), "jitter": (np.diff(poses, axis=0).std(0) / np.sqrt(2)).tolist(),
            "sway": sway.std(0).tolist(), "seam_jump": steps[seam].mean(0).tolist(),
            "inner_jump": steps[~seam].mean(0).tolist()}


rows = {"generated": [], "ground truth": []}
with torch.no_grad():
    for i, clip in enumerate(eval_clips("portrait", clips, 0, segments * N, split="val")):
        frames = pipe.generate(task="portrait", image=clip.reference, already_aligned=True, seed=i,
                               num_frames=len(clip.frames), steps=25, guidance=3.0,
                               audio=(clip.audio, clip.sample_rate)).frames
        rows["generated"].append(summary(apparent_poses(pose_net, frames)))
        rows["ground truth"].append(summary(apparent_poses(pose_net, clip.frames)))
        print(i, {k: np.round(v[-1]["std"], 2).tolist() for k, v in rows.items()}, flush=True)

print("mean over clips; per axis (yaw, pitch, roll), degrees")
for key in ("std", "jitter", "sway", "seam_jump", "inner_jump"):
    for row, values in rows.items():
        print(f"{key:11s} {row:13s}", np.round(np.mean([v[key] for v in values], 0), 2).tolist())
for row, values in rows.items():  # each seam on its own: is the first (no context before it) the odd one?
    print(f"yaw jump at seams 1..{segments - 1}, {row}:", np.round(np.mean([v["seam_jumps"] for v in values], 0)[:, 0], 2).tolist())
json.dump({"meta": {"command": "python " + " ".join(sys.argv), "split": "val", "seed": 0}, "rows": rows},
          open(out, "w"), indent=1)
