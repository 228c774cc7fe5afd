"""Audio and camera projections: per-frame conditions -> cross-attention tokens (paper §3.1, Supp. B).

Both are "lightweight two-layer MLPs" mapping a per-frame vector into the UNet's cross-attention space, where the
decoupled multi-source cross-attention (`attention.py`) reads them with its own K/V projections.
"""

from __future__ import annotations

import torch
from torch import nn


class AudioProjection(nn.Module):
    """(B, F, window, feature_dim) audio features -> (B, F, num_tokens, out_dim) audio tokens.

    Each video frame sees a small window of neighbouring frames' features (Hallo's practice), flattened and sent through
    Linear-SiLU-Linear; the LayerNorm keeps the tokens at the scale of the LayerNorm-ed CLIP/ID tokens that the
    copied K projections were trained on.
    """

    def __init__(self, feature_dim: int, window: int, num_tokens: int, out_dim: int, hidden_dim: int = 1024):
        super().__init__()
        self.feature_dim, self.window, self.num_tokens, self.out_dim = feature_dim, window, num_tokens, out_dim
        self.mlp = nn.Sequential(
            nn.Linear(window * feature_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, num_tokens * out_dim),
        )
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.ndim != 4 or tuple(feats.shape[2:]) != (self.window, self.feature_dim):
            raise ValueError(
                f"audio features must be (batch, frames, {self.window}, {self.feature_dim}) "
                f"(a window of {self.window} frames of {self.feature_dim} features per video frame), "
                f"got {tuple(feats.shape)}"
            )
        batch, frames = feats.shape[:2]
        tokens = self.mlp(feats.reshape(batch, frames, self.window * self.feature_dim))
        return self.norm(tokens.reshape(batch, frames, self.num_tokens, self.out_dim))


class CameraProjection(nn.Module):
    """(B, F, 25) camera vectors (flattened 4x4 extrinsics + 3x3 intrinsics) -> (B, F, num_tokens, out_dim)."""

    def __init__(self, num_tokens: int, out_dim: int, camera_dim: int = 25, hidden_dim: int = 256):
        super().__init__()
        self.camera_dim, self.num_tokens, self.out_dim = camera_dim, num_tokens, out_dim
        self.mlp = nn.Sequential(
            nn.Linear(camera_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, num_tokens * out_dim),
        )

    def forward(self, cams: torch.Tensor) -> torch.Tensor:
        if cams.ndim != 3 or cams.shape[-1] != self.camera_dim:
            raise ValueError(
                f"camera vectors must be (batch, frames, {self.camera_dim}) (4x4 extrinsics and 3x3 intrinsics, "
                f"flattened), got {tuple(cams.shape)}"
            )
        batch, frames = cams.shape[:2]
        return self.mlp(cams).reshape(batch, frames, self.num_tokens, self.out_dim)
