"""The lip-reading loss (paper §3.3) and the tiny world's lip reader it is computed with.

The paper uses a frozen lip reader [49] (a 3D-conv front-end + ResNet + sequence model, as in SPECTRE): mouth crops of
the predicted clean frames and of the ground truth go through its visual front-end, and the loss is the MSE between
the two feature sequences. No lip reader can be downloaded, so `LipReader` is the same shape at tiny size, trained on
the synthetic world's viseme labels (`LipReaderTask`), and then frozen.

Crops follow SPECTRE: centred on the mouth (here the true mouth position projected through the camera; on real data
the landmark detector's), cut by indexing so the gradient flows to the pixels and not to the positions, grayscale,
resized to 88 x 88 and normalised with mean 0.421, std 0.165. At 128 px the mouth is ~16 px wide, so the crop is 48 px
(SPECTRE's 96 px crop of a ~224 px face), resized to 88.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..image_io import to_model_range
from ..synthetic.phonemes import VISEMES
from .clip_pool import clip_pool, sample_index
from .trainer import step_rng

CROP_MEAN, CROP_STD = 0.421, 0.165
CROP_INPUT = 88


def mouth_crops(frames: torch.Tensor, mouth_xy: torch.Tensor, crop: int = 48, out: int = CROP_INPUT) -> torch.Tensor:
    """Frames (B, F, 3, H, W) in [-1, 1] + mouth positions (B, F, 2) (column, row) -> normalised grayscale mouth
    crops (B, 1, F, out, out). Differentiable in the pixels."""
    batch, count, _, height, width = frames.shape
    half = crop // 2
    centre = mouth_xy.detach().round().long()
    x0 = (centre[..., 0] - half).clamp(0, width - crop)
    y0 = (centre[..., 1] - half).clamp(0, height - crop)
    offsets = torch.arange(crop, device=frames.device)
    rows = (y0[..., None] + offsets).to(frames.device)  # (B, F, crop)
    cols = (x0[..., None] + offsets).to(frames.device)
    gray = (frames[:, :, 0] * 0.299 + frames[:, :, 1] * 0.587 + frames[:, :, 2] * 0.114 + 1) / 2  # [0, 1]
    b = torch.arange(batch, device=frames.device)[:, None, None, None]
    f = torch.arange(count, device=frames.device)[None, :, None, None]
    patches = gray[b, f, rows[..., :, None], cols[..., None, :]]  # (B, F, crop, crop)
    patches = F.interpolate(patches.reshape(batch * count, 1, crop, crop), size=(out, out), mode="bilinear",
                            align_corners=False)
    return ((patches - CROP_MEAN) / CROP_STD).reshape(batch, count, out, out).unsqueeze(1)


def mouth_window(latents: torch.Tensor, mouth_xy: torch.Tensor, size: int, factor: int):
    """The ``size`` x ``size`` latents around each mouth, to decode instead of whole frames for the lip loss.

    (P, C, h, w) latents + (P, 2) mouth positions in pixels -> (P, C, size, size) windows (indexed, so gradients
    reach the latents) and the mouths' positions in the decoded windows' pixels. Decoding a window is not exactly
    decoding the frame (the decoder's mid-block attends over what it is given), but a 64 px patch of the tiny VAE
    reads as the lip reader reads the full decode: lip loss 0.08-0.21 against 0.05-0.13 on ground-truth latents of
    development clips, where a 3-frame shift scores up to 1.3.
    """
    count, _, height, width = latents.shape
    if size > min(height, width):
        raise ValueError(f"lip_window {size} is larger than the {height}x{width} latents.")
    corner = ((mouth_xy.detach() / factor).round().long() - size // 2)
    corner = torch.stack([corner[:, 0].clamp(0, width - size), corner[:, 1].clamp(0, height - size)], dim=1)
    offsets = torch.arange(size, device=latents.device)
    rows = (corner[:, 1, None] + offsets).to(latents.device)  # (P, size)
    cols = (corner[:, 0, None] + offsets).to(latents.device)
    p = torch.arange(count, device=latents.device)[:, None, None]
    windows = latents.permute(0, 2, 3, 1)[p, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return windows, mouth_xy - factor * corner.to(mouth_xy)


class _Block(nn.Module):
    def __init__(self, channels_in: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(8, channels)
        self.skip = nn.Conv2d(channels_in, channels, 1, stride, bias=False) if stride != 1 or channels_in != channels \
            else nn.Identity()

    def forward(self, x):
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.skip(x))


class LipReader(ModelMixin, ConfigMixin):
    """3D-conv front-end + small ResNet (the "visual front-end") + a temporal conv head over visemes.

    ``frontend(crops)`` gives the per-frame features the lip loss compares; ``forward`` adds the sequence model and
    returns per-frame viseme logits (its training objective).
    """

    @register_to_config
    def __init__(self, channels: tuple = (16, 32, 64), feature_dim: int = 128, num_classes: int = len(VISEMES)):
        super().__init__()
        c0 = channels[0]
        self.stem = nn.Sequential(  # time kernel 5 as in the lip-reading front-ends: motion, not just shape
            nn.Conv3d(1, c0, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False), nn.GroupNorm(8, c0), nn.ReLU(),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        blocks, cin = [], c0
        for i, c in enumerate(channels):
            blocks.append(_Block(cin, c, 1 if i == 0 else 2))
            cin = c
        self.resnet = nn.Sequential(*blocks)
        self.proj = nn.Linear(cin, feature_dim)
        self.sequence = nn.Sequential(nn.Conv1d(feature_dim, feature_dim, 5, padding=2), nn.ReLU(),
                                      nn.Conv1d(feature_dim, num_classes, 1))

    def frontend(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, 88, 88) -> (B, F, feature_dim)."""
        x = self.stem(crops.to(self.dtype))
        batch, channels, frames, h, w = x.shape
        x = self.resnet(x.transpose(1, 2).reshape(batch * frames, channels, h, w))
        return self.proj(x.mean((2, 3))).reshape(batch, frames, -1)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, 88, 88) -> viseme logits (B, F, classes)."""
        return self.sequence(self.frontend(crops).transpose(1, 2)).transpose(1, 2)


def lip_loss(lip_reader: LipReader, generated: torch.Tensor, truth_features: torch.Tensor,
             mouth_xy: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """MSE between the frozen lip reader's front-end features of generated frames (B, F, 3, H, W) in [-1, 1] and of
    the ground truth (``truth_features`` = `lip_features` of the real frames); ``reduction="none"``: one per clip."""
    error = F.mse_loss(lip_reader.frontend(mouth_crops(generated, mouth_xy)).float(), truth_features.float(),
                       reduction="none")
    return error.mean() if reduction == "mean" else error.mean(dim=(1, 2))


@torch.no_grad()
def lip_features(lip_reader: LipReader, frames_uint8: torch.Tensor, mouth_xy: torch.Tensor) -> torch.Tensor:
    """Front-end features (B, F, D) of real frames uint8 (B, F, H, W, 3)."""
    frames = to_model_range(frames_uint8.permute(0, 1, 4, 2, 3)).to(lip_reader.device)
    return lip_reader.frontend(mouth_crops(frames, mouth_xy.to(frames.device))).float()


class LipReaderLoss(nn.Module):
    def __init__(self, reader: LipReader):
        super().__init__()
        self.reader = reader

    def forward(self, crops, visemes):
        logits = self.reader(crops)
        return F.cross_entropy(logits.flatten(0, 1).float(), visemes.flatten()), logits


class LipReaderTask:
    """Trains `LipReader` on viseme labels of talking clips (cross-entropy per frame)."""

    def __init__(self, config, pipeline_folder: Path, cache_dir: Path, clips: int = 600, eval_clips: int = 40,
                 num_frames: int = 16, channels: tuple = (16, 32, 64), feature_dim: int = 128, size: int = 128):
        self.config = config
        self.channels, self.feature_dim = tuple(channels), feature_dim
        self.train_pool = clip_pool("train", clips, num_frames, "talk", size, config.seed + 7, cache_dir, name="lips")
        self.eval_pool = clip_pool("eval", eval_clips, num_frames, "talk", size, 7, cache_dir, name="lips")

    def trainable(self):
        return LipReaderLoss(LipReader(self.channels, self.feature_dim))

    def parameter_groups(self, module):
        return [{"name": "lip_reader", "params": list(module.parameters())}]

    def _crops(self, pool, index, rng=None):
        frames = to_model_range(pool.frames[index].permute(0, 1, 4, 2, 3))
        mouth = pool.mouth_xy[index]
        if rng is not None:  # a few pixels of jitter: the loss will crop generated frames at the true position
            mouth = mouth + torch.from_numpy(rng.normal(0, 1.5, size=(len(index), 1, 2))).float()
        return mouth_crops(frames, mouth)

    def batch(self, step, micro, device):
        rng = step_rng(self.config.seed, step, micro)
        index = sample_index(rng, self.train_pool, self.config.batch_size)
        return {"crops": self._crops(self.train_pool, index, rng).to(device),
                "visemes": self.train_pool.visemes[index].to(device)}

    def loss(self, module, batch, generator):
        loss, logits = module(batch["crops"], batch["visemes"])
        accuracy = (logits.argmax(-1) == batch["visemes"]).float().mean()
        return loss, {"accuracy": accuracy.detach()}

    def validate(self, module, step, folder) -> dict:
        index = torch.arange(len(self.eval_pool))
        logits = torch.cat([module.reader(self._crops(self.eval_pool, index[i:i + 8])) for i in range(0, len(index), 8)])
        truth = self.eval_pool.visemes
        speaking = truth != VISEMES.index("sil")
        return {"viseme_accuracy": float((logits.argmax(-1) == truth).float().mean()),
                "viseme_accuracy_speaking": float((logits.argmax(-1) == truth)[speaking].float().mean()),
                "chance": float(np.max(np.bincount(truth.flatten().numpy())) / truth.numel())}

    def export(self, module, folder: Path) -> dict:
        module.reader.save_pretrained(Path(folder) / "lip_reader")
        return {}
