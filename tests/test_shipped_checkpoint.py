"""The shipped default is a trained STARCaster (issue #11): ``checkpoints/tiny`` loads as a trained pipeline and, on
two held-out clips, still talks in sync and renders a head along an orbit. A missing, truncated or untrained
checkpoint fails here.

The guard samples as the evaluation does but with fewer steps (GUARD_STEPS) so that it stays under a minute on two
cores. Its floors come from this same set-up on 20 held-out clips (``docs/eval/guard_tiny.md``, command in the
README) and from these two clips in it: the first two held-out clips are among the model's worst for sync (lip r
0.37 against a 20-clip mean of 0.76), so each floor sits below what these clips measure and above what random
weights and the copy-reference baseline score, and a broken model trips it. (The orbit floor
is below copy-reference: the shipped model beats that baseline on orbits only narrowly, inside its interval; the README
says so.)
"""

import json

import pytest
import torch

from starcaster import load_pipeline
from starcaster.eval.evaluators import load_evaluators
from starcaster.eval.run import evaluate
from starcaster.presets import REPO_CHECKPOINTS
from starcaster.training.config import recipe_configs

pytestmark = pytest.mark.usefixtures("one_thread")

GUARD_CLIPS, GUARD_STEPS, GUARD_SEGMENTS = 2, 10, 2
# docs/eval/guard_tiny.md (this set-up, 20 held-out clips) against the README's random-weights rows (lip r about 0,
# orbit PSNR 11.6 dB): see the module docstring.
# (The model shipped until session 22 measured 0.334 and 18.17 dB on these 2 clips, 0.789 and 16.74 dB on 20; this
# one with 2 context frames, before session 25: 0.416 and 17.22 dB, 0.762 and 16.69 dB; with 6 and the full bank,
# sessions 25-26: 0.505 and 17.69 dB, 0.775 and 16.62 dB; the bank of 2 with the 5000-step camera, session 27:
# 0.367 and 18.23 dB, 0.759 and 16.92 dB.)
LIP_R_FLOOR = 0.25  # these 2 clips: 0.367 (20-clip mean 0.759 [0.672, 0.832]); copy-ref 0.088, random 0.016
ORBIT_PSNR_FLOOR = 13.5  # dB; these 2 clips: 17.92 (20-clip mean 17.30 [16.28, 18.30]); random 11.6


@pytest.fixture(scope="module")
def shipped():
    folder = REPO_CHECKPOINTS / "tiny"
    pipe = load_pipeline("tiny")
    assert pipe.trained, f"{folder} holds no trained model (no starcaster/ adapters): the default would show noise"
    assert pipe.has_fast_sampler, f"{folder} has no distilled fast_model/: the demo's Fast sampler would be missing"
    pipe.set_progress_bar_config(disable=True)
    return pipe, load_evaluators(folder / "evaluators")


def test_the_shipped_checkpoint_talks_in_sync_and_follows_an_orbit(shipped):
    pipe, evaluators = shipped
    with torch.no_grad():
        results = evaluate({"tiny": pipe}, evaluators, tasks=("portrait", "orbit"), clips=GUARD_CLIPS,
                           steps=GUARD_STEPS, segments=GUARD_SEGMENTS)
    lip_r = results["tiny"]["portrait"]["lip_r"]["mean"]
    psnr = results["tiny"]["orbit"]["psnr"]["mean"]
    print(f"guard: lip r {lip_r:.3f} (floor {LIP_R_FLOOR}), orbit PSNR {psnr:.2f} dB (floor {ORBIT_PSNR_FLOOR})")
    assert lip_r >= LIP_R_FLOOR
    assert psnr >= ORBIT_PSNR_FLOOR


def test_the_shipped_folder_was_trained_by_the_recipe_it_ships():
    """Every step of the tiny recipe finished in ``checkpoints/tiny`` with the config the recipe has now, so
    ``train --recipe tiny`` reproduces the shipped model and a recipe change that was never trained fails here.
    (smoke_args only shape capped test runs; the VAE's were added after it trained.)"""
    train = REPO_CHECKPOINTS / "tiny" / "train"
    for config in recipe_configs("tiny"):
        done = train / config.name / "done.json"
        assert done.is_file(), f"{config.name} has no finished record in {train}"
        record = json.loads(done.read_text())
        assert record["steps"] == config.steps, config.name
        want = json.loads(json.dumps(config.to_dict()))  # JSON makes tuples lists
        got = {key: value for key, value in record["config"].items() if key != "smoke_args"}
        assert got == {key: value for key, value in want.items() if key != "smoke_args"}, config.name
