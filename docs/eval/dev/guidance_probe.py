"""Val split: what classifier-free guidance does to the shipped model's talking rows (25 steps).

Each setting is a JSON object with optional keys ``guidance`` (default 3.0), ``strengths`` (per-stream scales),
``keep_audio`` (the unconditional row keeps the audio, so CFG amplifies the identity stream only) and
``mixed_noise`` (a in [0, 1): each segment's starting noise shares a fraction a of its variance across frames, the
"mixed" noise prior of PYoCo, Ge et al. 2023; every frame's noise stays N(0, 1)), ``context_frames`` (the quality
sampler's n, ``sampling_context_frames``; default: the folder's) and ``bank_context_frames`` (how many of them the
reference bank holds, ``sampling_bank_context_frames``; default: the folder's) and ``scheduler`` (overrides of the
quality sampler's scheduler config, e.g. ``{"use_karras_sigmas": true}``; the same class, rebuilt with
``from_config``):

    python docs/eval/dev/guidance_probe.py '[{}, {"guidance": 2.0}, {"keep_audio": true}]' portrait 10 OUT.json

An optional fifth argument sets the segments of 16 frames per clip (default 2; 20 is the long test).
"""
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from starcaster import autoregression, pipeline
from starcaster.eval.evaluators import load_evaluators
from starcaster.eval.run import evaluate, format_markdown
from starcaster.loading import load_pipeline

paper_cfg_conditions = autoregression.cfg_conditions
paper_denoise_segment = pipeline.denoise_segment


def mixed_noise_denoise_segment(share: float, generator: torch.Generator):
    def denoise(model, scheduler, noise, *args, **kwargs):
        shared = torch.randn(*noise.shape[:2], 1, *noise.shape[3:], generator=generator).to(noise)
        return paper_denoise_segment(model, scheduler, share ** 0.5 * shared + (1 - share) ** 0.5 * noise,
                                     *args, **kwargs)
    return denoise


def audio_kept_cfg_conditions(conditions, unconditional_id, still_camera=None):
    """The paper's rows, then the conditional audio put back into the unconditional half."""
    rows = paper_cfg_conditions(conditions, unconditional_id, still_camera)
    if conditions.audio_tokens is None:
        return rows
    return replace(rows, audio_tokens=torch.cat([conditions.audio_tokens, conditions.audio_tokens]))


class Setting:
    """The pipeline under one setting (evaluate's rows are named by it)."""

    def __init__(self, pipe, setting):
        self.pipe, self.setting = pipe, setting

    def generate(self, **kwargs):
        kwargs["guidance"] = self.setting.get("guidance", kwargs["guidance"])
        autoregression.cfg_conditions = (audio_kept_cfg_conditions if self.setting.get("keep_audio")
                                         else paper_cfg_conditions)
        if "mixed_noise" in self.setting:  # its own stream of shared noise, seeded by the clip's seed
            shared = torch.Generator().manual_seed(10_000 + kwargs["seed"])
            pipeline.denoise_segment = mixed_noise_denoise_segment(self.setting["mixed_noise"], shared)
        shipped_scheduler = self.pipe.scheduler
        if "scheduler" in self.setting:
            self.pipe.scheduler = type(shipped_scheduler).from_config(shipped_scheduler.config,
                                                                      **self.setting["scheduler"])
        folder = self.pipe.settings
        saved = folder.sampling_context_frames, folder.sampling_bank_context_frames
        folder.sampling_context_frames = self.setting.get("context_frames", saved[0])
        folder.sampling_bank_context_frames = self.setting.get("bank_context_frames", saved[1])
        try:
            return self.pipe.generate(strengths=self.setting.get("strengths"), **kwargs)
        finally:
            autoregression.cfg_conditions, pipeline.denoise_segment = paper_cfg_conditions, paper_denoise_segment
            folder.sampling_context_frames, folder.sampling_bank_context_frames = saved
            self.pipe.scheduler = shipped_scheduler


pipe = load_pipeline("tiny")
pipe.set_progress_bar_config(disable=True)
evaluators = load_evaluators(Path("checkpoints/tiny/evaluators"))
settings, tasks, clips = json.loads(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3])
segments = int(sys.argv[5]) if len(sys.argv) > 5 else 2
with torch.no_grad():
    results = evaluate({json.dumps(s): Setting(pipe, s) for s in settings}, evaluators, tasks, clips, 0, 25, 3.0,
                       segments, split="val")
print(format_markdown(results))
meta = {"command": "python " + " ".join(repr(a) if " " in a else a for a in sys.argv), "clips": clips, "seed": 0,
        "split": "val", "segments": segments}
json.dump({"meta": meta, "results": results}, open(sys.argv[4], "w"), indent=1)
