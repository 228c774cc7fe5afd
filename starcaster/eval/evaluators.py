"""The benchmark's own evaluator networks, trained on the synthetic world's rendered ground truth (issue #10).

The paper's metrics use networks whose weights cannot be had here (SyncNet, ArcFace, a pose estimator), so each gets
a small analogue, trained on the world with its own architecture, data seed and training run, separate from the
training-time networks (lip reader, face encoder), so that a model is never graded by the network it trained against:

* `SyncNetwork`: a contrastive audio-visual sync network, SyncNet's recipe at tiny size: 5 frames of mouth crops vs
  the 5 matching frames of log-mel features; LSE-C / LSE-D are computed with it over offsets of +-15 frames.
* `MouthRegressor`: one mouth crop -> the jaw opening the audio drives (lip r and the best audio-video offset).
* `PoseRegressor`: a whole frame -> the head's yaw, pitch, roll as the camera sees it (Pose Std).
* identity: a `TinyFaceEncoder` of another width, trained by `FaceEncoderTask` with another seed (the eval's ArcFace).

`train_evaluators` recipes live in ``configs/evaluators/``; the weights ship next to the tiny checkpoint in
``checkpoints/tiny/evaluators/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from scipy.spatial.transform import Rotation
from torch import nn

from ..conditioning.camera import look_at, orbit_eye
from ..image_io import to_model_range
from ..synthetic.expression import head_rotation
from ..training.lip_reading import mouth_crops

SYNC_WINDOW = 5  # frames per SyncNet window (0.2 s at 25 fps), as SyncNet's
CROP = 48  # the mouth crop, in 128 px frames, kept at 48 px (no upsampling: these nets are small)


def apparent_pose(pose: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """(F, 6) head pose + (F, 4, 4) cameras -> (F, 3) yaw, pitch, roll (degrees) of the head as the camera sees it:
    the head rotation that, seen by the frontal camera, would give the same view."""
    frontal = look_at(orbit_eye(0.0, 0.0))[:3, :3]
    relative = frontal.T[None] @ np.asarray(extrinsics)[:, :3, :3] @ head_rotation(pose)
    yaw, minus_pitch, roll = Rotation.from_matrix(relative).as_euler("YXZ", degrees=True).T
    return np.stack([yaw, -minus_pitch, roll], axis=1).astype(np.float32)


def _conv_stack(cin: int, channels) -> nn.Sequential:
    """Stride-2 conv + GroupNorm + SiLU per entry of ``channels``: each halves the resolution."""
    layers = []
    for c in channels:
        layers += [nn.Conv2d(cin, c, 3, 2, 1), nn.GroupNorm(8, c), nn.SiLU()]
        cin = c
    return nn.Sequential(*layers)


class MouthRegressor(ModelMixin, ConfigMixin):
    """Mouth crop (B, 1, 48, 48) normalised grayscale -> jaw opening (B,) in [0, 1]-ish."""

    @register_to_config
    def __init__(self, channels: tuple = (16, 32, 64)):
        super().__init__()
        self.features = _conv_stack(1, channels)
        self.head = nn.Linear(channels[-1] * 16, 1)

    def forward(self, crops):
        x = F.adaptive_avg_pool2d(self.features(crops.to(self.dtype)), 4)
        return self.head(x.flatten(1))[:, 0]


class PoseRegressor(ModelMixin, ConfigMixin):
    """Frame (B, 3, H, W) in [-1, 1] -> apparent yaw, pitch, roll in degrees (B, 3); reads a 64 px copy."""

    @register_to_config
    def __init__(self, channels: tuple = (16, 32, 64, 128), input_size: int = 64):
        super().__init__()
        self.features = _conv_stack(3, channels)
        self.head = nn.Linear(channels[-1] * 4, 3)

    def forward(self, frames):
        size = self.config.input_size
        x = F.interpolate(frames.to(self.dtype), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return 30.0 * self.head(F.adaptive_avg_pool2d(self.features(x), 2).flatten(1))  # degrees, ~unit scale inside


class SyncNetwork(ModelMixin, ConfigMixin):
    """Two towers into one embedding space: 5 mouth crops (B, 1, 5, 48, 48) and 5 frames of audio features (B, 5, D)."""

    @register_to_config
    def __init__(self, audio_dim: int = 128, embedding_dim: int = 64, channels: tuple = (16, 32, 64)):
        super().__init__()
        c0, c1, c2 = channels
        self.video = nn.Sequential(
            nn.Conv3d(1, c0, (3, 5, 5), (1, 2, 2), (1, 2, 2)), nn.GroupNorm(8, c0), nn.SiLU(),
            nn.Conv3d(c0, c1, (3, 3, 3), (1, 2, 2), (1, 1, 1)), nn.GroupNorm(8, c1), nn.SiLU(),
            nn.Conv3d(c1, c2, (SYNC_WINDOW, 3, 3), (1, 2, 2), (0, 1, 1)), nn.GroupNorm(8, c2), nn.SiLU(),
        )
        self.video_head = nn.Linear(c2 * 9, embedding_dim)
        self.audio = nn.Sequential(nn.Linear(SYNC_WINDOW * audio_dim, 256), nn.SiLU(), nn.Linear(256, embedding_dim))

    def embed_video(self, crops):
        x = F.adaptive_avg_pool3d(self.video(crops.to(self.dtype)), (1, 3, 3))
        return F.normalize(self.video_head(x.flatten(1)), dim=-1)

    def embed_audio(self, features):
        return F.normalize(self.audio(features.to(self.dtype).flatten(1)), dim=-1)


def crops_of(frames_uint8: torch.Tensor, mouth_xy: torch.Tensor) -> torch.Tensor:
    """uint8 (B, F, H, W, 3) + (B, F, 2) -> (B, 1, F, 48, 48) normalised grayscale mouth crops."""
    frames = to_model_range(frames_uint8.permute(0, 1, 4, 2, 3))
    return mouth_crops(frames, mouth_xy, crop=CROP, out=CROP)


def load_evaluators(folder: str | Path) -> dict:
    """The four evaluators from ``folder`` (``checkpoints/tiny/evaluators``); a clear error names what is missing."""
    from ..conditioning.identity import TinyFaceEncoder

    folder = Path(folder)
    classes = {"sync": SyncNetwork, "mouth": MouthRegressor, "pose": PoseRegressor, "identity": TinyFaceEncoder}
    missing = [name for name in classes if not (folder / name / "config.json").is_file()]
    if missing:
        raise FileNotFoundError(
            f"the evaluators {missing} are missing in {folder}: train them with "
            f"python -m starcaster train --recipe evaluators --out {folder.parent}")
    return {name: cls.from_pretrained(folder / name, use_safetensors=True).eval().requires_grad_(False)
            for name, cls in classes.items()}
