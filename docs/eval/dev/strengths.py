"""Val split: the sampler's per-stream strengths (reference-attention bias, camera scale), 25 steps, CFG 3.

    python docs/eval/dev/strengths.py '[{}, {"reference": 2.0}, {"reference": 3.0}, {"camera": 2.0}]' \
        orbit,portrait 3 docs/eval/dev/strengths_val_3clips.json > docs/eval/dev/strengths_val_3clips.md
"""
import json
import sys
from pathlib import Path

import torch

from starcaster.eval.evaluators import load_evaluators
from starcaster.eval.run import evaluate, format_markdown
from starcaster.loading import load_pipeline


class Scaled:
    """The pipeline with fixed ``strengths`` added to every generate call (evaluate's rows are named by them)."""

    def __init__(self, pipe, strengths):
        self.pipe, self.strengths = pipe, strengths

    def generate(self, **kwargs):
        return self.pipe.generate(strengths=self.strengths, **kwargs)


pipe = load_pipeline("tiny")
pipe.set_progress_bar_config(disable=True)
evaluators = load_evaluators(Path("checkpoints/tiny/evaluators"))
settings, tasks, clips = json.loads(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3])
with torch.no_grad():
    results = evaluate({json.dumps(s): Scaled(pipe, s) for s in settings}, evaluators, tasks, clips, 0, 25, 3.0, 2,
                       split="val")
print(format_markdown(results))
json.dump(results, open(sys.argv[4], "w"), indent=1)
