"""camera_alone continued past its 500 steps (a probe): does the camera-specific gap grow?

Usage: python docs/eval/dev/camera_alone_long.py [STEPS]   (default 3000; resumes from the newest state)
"""
import dataclasses
import sys
from pathlib import Path

from starcaster.training.ablation import make_branch, variant_configs
from starcaster.training.recipe import run_config

out = Path("/work/runs/camera_alone_long")
if not (out / "train").exists():
    make_branch("camera_alone", "/work/runs/F", out, branch_from="/work/runs/full_stage2_export/starcaster")
(config,) = variant_configs("camera_alone")
run_config(dataclasses.replace(config, steps=int(sys.argv[1]) if len(sys.argv) > 1 else 3000, validate_every=250), out, resume=True)
