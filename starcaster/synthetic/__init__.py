"""The synthetic talking-head world: procedural 3D heads, an exact ray-cast renderer, formant speech with known
phonemes, natural head motion and blinks, camera trajectories, and a seeded PyTorch dataset (issue #3).

Everything is rendered, so every frame has ground truth (identity, mouth state, pose, camera): the tiny model trains
on it and the benchmark measures against it. `python -m starcaster.synthetic preview --out preview.mp4` shows it.
"""

from .dataset import (
    EVAL_IDS,
    TRAIN_IDS,
    SyntheticClip,
    SyntheticTalkingHeads,
    load_clip,
    make_clip,
    render_reference,
    save_clip,
)
from .expression import MOUTH_KEYS, POSE_KEYS, FaceState
from .head import IDENTITY_DIM, HeadIdentity, build_scene, identity_vector
from .phonemes import PHONEMES, VISEMES, Utterance, random_utterance
from .renderer import render
from .speech import SAMPLE_RATE, Voice, synthesize

__all__ = [
    "EVAL_IDS",
    "TRAIN_IDS",
    "SyntheticClip",
    "SyntheticTalkingHeads",
    "load_clip",
    "make_clip",
    "render_reference",
    "save_clip",
    "MOUTH_KEYS",
    "POSE_KEYS",
    "FaceState",
    "IDENTITY_DIM",
    "HeadIdentity",
    "build_scene",
    "identity_vector",
    "PHONEMES",
    "VISEMES",
    "Utterance",
    "random_utterance",
    "render",
    "SAMPLE_RATE",
    "Voice",
    "synthesize",
]
