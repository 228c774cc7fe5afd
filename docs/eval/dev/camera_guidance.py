"""Val split, orbits: two inference-only ways to make a trained camera steer harder (issue #11's orbit floor).

    python docs/eval/dev/camera_guidance.py FOLDER CLIPS OUT.json \
        '[{"camera_guidance": false}, {"camera_guidance": true}, {"camera_guidance": true, "camera": 1.5}]'

Each setting is a row of one `evaluate` run (same clips, seeds and baselines):
- ``{"camera": s}``: the camera stream's strength (`StreamScales.camera`), its attention output scaled by s.
- ``{"camera_guidance": b}``: the pipeline setting `PipelineConfig.camera_guidance`. CFG's unconditional row drops
  identity and audio but keeps the camera, so plain CFG never amplifies the view; with camera guidance that row sees
  the input portrait's own camera on every frame (the view the model keeps without a path), so
  ``uncond + g (cond - uncond)`` pushes the head along the path g times as hard. Not in the paper, which gives one
  scale for all conditions. A setting that leaves it out uses the folder's own.
What wins here on the validation identities goes into the shipped settings before any held-out number is taken
(`docs/eval/dev/camera_guidance.md`).
"""
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from starcaster.eval.evaluators import load_evaluators
from starcaster.eval.run import evaluate, format_markdown
from starcaster.loading import load_pipeline


class Setting:
    """The pipeline with one setting applied to every generate call."""

    def __init__(self, pipe, setting: dict):
        self.pipe, self.setting = pipe, dict(setting)

    def generate(self, **kwargs):
        settings = self.pipe.settings
        if "camera_guidance" in self.setting:
            self.pipe.settings = replace(settings, camera_guidance=bool(self.setting["camera_guidance"]))
        strengths = {k: v for k, v in self.setting.items() if k != "camera_guidance"}
        try:
            return self.pipe.generate(strengths=strengths, **kwargs)
        finally:
            self.pipe.settings = settings


if __name__ == "__main__":
    folder, clips, out, settings = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4])
    pipe = load_pipeline(folder)
    pipe.set_progress_bar_config(disable=True)
    evaluators = load_evaluators(Path(folder) / "evaluators")
    with torch.no_grad():
        results = evaluate({json.dumps(s): Setting(pipe, s) for s in settings}, evaluators, ("orbit",), clips, 0, 25,
                           3.0, 2, split="val")
    out.write_text(json.dumps({"meta": {"command": " ".join(sys.argv), "clips": clips, "seed": 0, "split": "val"},
                               "results": results}, indent=1))
    print(format_markdown(results))
