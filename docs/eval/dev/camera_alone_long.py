"""camera_alone continued to 3000 steps (a probe; the variant itself is 500): does the camera-specific gap grow?"""
import dataclasses
from pathlib import Path

from starcaster.training.ablation import make_branch, variant_configs
from starcaster.training.recipe import run_config

out = Path("/work/runs/camera_alone_long")
if not (out / "train").exists():
    make_branch("camera_alone", "/work/runs/F", out, branch_from="/work/runs/full_stage2_export/starcaster")
(config,) = variant_configs("camera_alone")
run_config(dataclasses.replace(config, steps=3000, validate_every=250), out, resume=True)
