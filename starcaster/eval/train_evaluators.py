"""Training tasks for the evaluators (`evaluators.py`), on data of their own seed (``configs/evaluators/``).

Each is an ordinary task of the shared training loop, so it resumes and logs like every other step. Held-out
numbers validate each evaluator on EVAL identities: mouth r, pose error against the pose spread, and the sync
network's accuracy at picking the true offset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning.audio import MelAudioEncoder
from ..image_io import to_model_range
from ..training.clip_pool import clip_pool, sample_index
from ..training.trainer import step_rng
from .evaluators import SYNC_WINDOW, MouthRegressor, PoseRegressor, SyncNetwork, apparent_pose, crops_of

MAX_OFFSET = 15  # SyncNet's +-15 frames


class _Wrap(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, fn, *args):
        return fn(self.net, *args)


class _EvaluatorTask:
    """Shared plumbing: pools of clips with an evaluator seed, one network, export to FOLDER/evaluators/NAME."""

    name, mode, frames = "", "talk", 16

    def __init__(self, config, pipeline_folder: Path, cache_dir: Path, clips: int = 400, eval_clips: int = 40,
                 size: int = 128, **net_args):
        self.config, self.net_args = config, net_args
        audio = MelAudioEncoder() if self.name == "sync" else None
        pools = dict(num_frames=self.frames, mode=self.mode, size=size, cache_dir=cache_dir, audio_encoder=audio,
                     name=f"eval-{self.name}")
        self.pool = clip_pool("train", clips, seed=1000 + config.seed, **pools)  # not the training steps' data
        self.eval_pool = clip_pool("eval", eval_clips, seed=1000, **pools)

    def parameter_groups(self, module):
        return [{"name": self.name, "params": list(module.parameters())}]

    def export(self, module, folder: Path) -> dict:
        module.net.save_pretrained(Path(folder) / "evaluators" / self.name)
        return {}


class MouthTask(_EvaluatorTask):
    name = "mouth"

    def trainable(self):
        return _Wrap(MouthRegressor(**self.net_args))

    def _sample(self, pool, rng, count):
        clip, frame = rng.integers(len(pool), size=count), rng.integers(self.frames, size=count)
        frames = pool.frames[clip, frame][:, None]
        mouth = pool.mouth_xy[clip, frame][:, None] + torch.from_numpy(rng.normal(0, 1.0, (count, 1, 2))).float()
        return crops_of(frames, mouth)[:, :, 0], pool.mouth_state[clip, frame, 0]

    def batch(self, step, micro, device):
        crops, jaw = self._sample(self.pool, step_rng(self.config.seed, step, micro), self.config.batch_size)
        return {"crops": crops.to(device), "jaw": jaw.to(device)}

    def loss(self, module, batch, generator):
        return F.mse_loss(module(lambda net, x: net(x), batch["crops"]).float(), batch["jaw"]), {}

    def validate(self, module, step, folder) -> dict:
        pool = self.eval_pool
        crops = crops_of(pool.frames.flatten(0, 1)[:, None], pool.mouth_xy.flatten(0, 1)[:, None])[:, :, 0]
        pred = torch.cat([module.net(crops[i:i + 256]) for i in range(0, len(crops), 256)]).numpy()
        truth = pool.mouth_state[..., 0].flatten().numpy()
        return {"mouth_r": float(np.corrcoef(pred, truth)[0, 1])}


class PoseTask(_EvaluatorTask):
    name, mode = "pose", "mixed"

    def trainable(self):
        return _Wrap(PoseRegressor(**self.net_args))

    def _labels(self, pool, clip, frame):
        extrinsics = pool.cameras[clip, frame, :16].reshape(-1, 4, 4).numpy()
        return torch.from_numpy(apparent_pose(pool.pose[clip, frame].numpy(), extrinsics))

    def batch(self, step, micro, device):
        rng = step_rng(self.config.seed, step, micro)
        count = self.config.batch_size
        clip, frame = rng.integers(len(self.pool), size=count), rng.integers(self.frames, size=count)
        images = to_model_range(self.pool.frames[clip, frame].permute(0, 3, 1, 2))
        return {"images": images.to(device), "pose": self._labels(self.pool, clip, frame).to(device)}

    def loss(self, module, batch, generator):
        return F.smooth_l1_loss(module(lambda net, x: net(x), batch["images"]).float(), batch["pose"]), {}

    def validate(self, module, step, folder) -> dict:
        pool = self.eval_pool
        clip, frame = np.repeat(np.arange(len(pool)), self.frames), np.tile(np.arange(self.frames), len(pool))
        images = to_model_range(pool.frames[clip, frame].permute(0, 3, 1, 2))
        pred = torch.cat([module.net(images[i:i + 128]) for i in range(0, len(images), 128)])
        truth = self._labels(pool, clip, frame)
        return {"pose_mae_deg": float((pred - truth).abs().mean()), "pose_spread_deg": float(truth.std(0).mean())}


class SyncTask(_EvaluatorTask):
    """InfoNCE over offsets: a video window's positive is the aligned audio window of the same clip, its negatives
    the same clip's audio at the other offsets in +-15 frames (exactly what LSE-C/D then measure)."""

    name, frames = "sync", 48

    def trainable(self):
        audio_dim = self.pool.audio_features.shape[-1]
        return _Wrap(SyncNetwork(audio_dim=audio_dim, **self.net_args))

    def batch(self, step, micro, device):
        rng = step_rng(self.config.seed, step, micro)
        index = sample_index(rng, self.pool, self.config.batch_size)
        start = int(rng.integers(0, self.frames - SYNC_WINDOW + 1))
        frames = self.pool.frames[index, start:start + SYNC_WINDOW]
        crops = crops_of(frames, self.pool.mouth_xy[index, start:start + SYNC_WINDOW])
        return {"crops": crops.to(device), "features": self.pool.audio_features[index].to(device), "start": start}

    def loss(self, module, batch, generator):
        logits, target = module(_offset_logits, batch["crops"], batch["features"], batch["start"])
        loss = F.cross_entropy(logits, target)
        return loss, {"offset_accuracy": (logits.argmax(-1) == target).float().mean().detach()}

    def validate(self, module, step, folder) -> dict:
        correct = []
        for i in range(len(self.eval_pool)):
            for start in range(0, self.frames - SYNC_WINDOW + 1, 8):
                crops = crops_of(self.eval_pool.frames[i:i + 1, start:start + SYNC_WINDOW],
                                 self.eval_pool.mouth_xy[i:i + 1, start:start + SYNC_WINDOW])
                logits, target = _offset_logits(module.net, crops, self.eval_pool.audio_features[i:i + 1], start)
                correct.append(float(logits.argmax(-1) == target))
        return {"offset_accuracy": float(np.mean(correct))}


def _offset_logits(net: SyncNetwork, crops, features, start: int, temperature: float = 0.07):
    """Cosine logits of each video window against audio windows at every offset in range; target = offset 0."""
    video = net.embed_video(crops)  # (B, E)
    offsets = [o for o in range(-MAX_OFFSET, MAX_OFFSET + 1) if 0 <= start + o <= features.shape[1] - SYNC_WINDOW]
    windows = torch.stack([features[:, start + o:start + o + SYNC_WINDOW] for o in offsets], 1)  # (B, O, W, D)
    audio = net.embed_audio(windows.flatten(0, 1)).reshape(len(video), len(offsets), -1)
    logits = (audio @ video[:, :, None])[..., 0] / temperature
    return logits, torch.full((len(video),), offsets.index(0), device=logits.device)
