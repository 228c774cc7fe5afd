"""The tiny VAE's ceiling: ground-truth clips encoded and decoded (no diffusion), scored like a generated row.

    python docs/eval/dev/vae_ceiling.py SPLIT CLIPS [TASKS]      # e.g. eval 20 portrait,orbit

Everything the model makes passes through this decoder, so a floor the round trip itself misses is out of reach of
any denoiser on top of it. Same clips, seeds and metrics as `python -m starcaster eval` (evaluate's rows).
"""
import json
import sys

import numpy as np
import torch

from starcaster.conditioning.audio import MelAudioEncoder, clip_audio_features
from starcaster.eval import metrics
from starcaster.eval.evaluators import load_evaluators
from starcaster.eval.run import clip_metrics, eval_clips
from starcaster.loading import load_pipeline

split, count = sys.argv[1], int(sys.argv[2])
tasks = sys.argv[3].split(",") if len(sys.argv) > 3 else ["portrait", "orbit"]
pipe = load_pipeline("tiny")
evaluators = load_evaluators("checkpoints/tiny/evaluators")
encoder = MelAudioEncoder()
out = {}
torch.set_num_threads(1)  # beside a training run
with torch.inference_mode():
    for task in tasks:
        rows = {"ground truth": [], "VAE round trip": []}
        for clip in eval_clips(task, count, 0, 32, split=split):
            latents = torch.cat([pipe.encode_image(frame) for frame in clip.frames], dim=2)
            decoded = pipe._decode(latents)
            features = None if task == "orbit" else clip_audio_features(encoder, clip.audio, len(clip.frames), clip.fps)
            rows["ground truth"].append(clip_metrics(task, clip.frames, clip, evaluators, features))
            rows["VAE round trip"].append(clip_metrics(task, decoded, clip, evaluators, features))
        for name, values in rows.items():
            out.setdefault(name, {})[task] = {
                k: metrics.bootstrap([v[k] for v in values if v[k] is not None], seed=0) for k in values[0]}
            print(task, name, {k: round(v["mean"], 3) for k, v in out[name][task].items() if v.get("mean") is not None})
print(json.dumps({"split": split, "clips": count, "results": out}, default=float))
