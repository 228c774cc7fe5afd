"""Prerequisite: the tiny world's ArcFace analogue (`TinyFaceEncoder`), photo -> unit identity embedding.

ArcFace (Deng et al.) trains a face embedder as a classifier over identities with an additive angular margin: the
logit of the true class is s * cos(theta + m), so embeddings of one person cluster on the sphere tighter than the
classes are apart. Here the classes are synthetic identities, each seen under several clips (pose, expression,
blinks, light, camera), so the embedding learns to ignore exactly what the video model varies. It sees what it will
see at inference: a whole aligned portrait frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning.identity import TinyFaceEncoder
from ..image_io import to_model_range
from ..presets import TINY
from ..synthetic.dataset import EVAL_IDS, TRAIN_IDS, make_clip
from .frame_pool import cached_arrays
from .trainer import step_rng


@dataclass
class IdentityPool:
    frames: np.ndarray  # uint8 (P, H, W, 3)
    labels: np.ndarray  # int64 (P,) class index 0..K-1
    references: np.ndarray  # uint8 (K, H, W, 3) each identity's frontal neutral portrait


def identity_pool(split: str, identities: int, clips_per_identity: int, frames_per_clip: int = 2, size: int = 128,
                  seed: int = 0, cache_dir: str | Path | None = None) -> IdentityPool:
    """``identities`` identities of ``split``, each in ``clips_per_identity`` clips of mixed talk/orbit."""
    def build():
        ids = TRAIN_IDS if split == "train" else EVAL_IDS
        rng = np.random.default_rng([seed, 0x1D])
        chosen = rng.choice(len(ids), size=identities, replace=False) if split == "train" else np.arange(identities)
        frames, labels, references = [], [], []
        for label, index in enumerate(chosen):
            for c in range(clips_per_identity):
                clip = make_clip(ids[int(index)], seed=1000 * seed + c, num_frames=frames_per_clip, size=size,
                                 mode="mixed")
                frames.append(clip.frames)
                labels.append(np.full(len(clip.frames), label))
            references.append(clip.reference)
        return dict(frames=np.concatenate(frames), labels=np.concatenate(labels), references=np.stack(references))

    name = f"ids-{split}-k{identities}x{clips_per_identity}x{frames_per_clip}-p{size}-s{seed}.npz"
    return IdentityPool(**cached_arrays(Path(cache_dir) / name if cache_dir is not None else None, build))


class AngularMarginHead(nn.Module):
    """ArcFace's classifier: class centres on the unit sphere, logits s * cos(theta + m) for the true class."""

    def __init__(self, embedding_dim: int, classes: int, scale: float = 30.0, margin: float = 0.3):
        super().__init__()
        self.centres = nn.Parameter(torch.randn(classes, embedding_dim) * 0.01)
        self.scale, self.margin = scale, margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = F.linear(embeddings, F.normalize(self.centres, dim=-1)).clamp(-1 + 1e-6, 1 - 1e-6)
        target = torch.cos(torch.acos(cosine.gather(1, labels[:, None])) + self.margin)
        logits = cosine.scatter(1, labels[:, None], target)
        return F.cross_entropy(self.scale * logits, labels)


class FaceEncoderLoss(nn.Module):
    def __init__(self, encoder: TinyFaceEncoder, head: AngularMarginHead):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, images, labels):
        return self.head(self.encoder(images), labels)


def verification_accuracy(embeddings: np.ndarray, labels: np.ndarray, threshold: float | None = None,
                          pairs: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Same/different-identity verification on random balanced pairs: (accuracy, threshold used). Without a
    ``threshold`` the best one on these pairs is chosen (do that on training identities only)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(len(labels), size=pairs)
    same = np.array([rng.choice(np.flatnonzero(labels == labels[i])) for i in a[: pairs // 2]])
    other = rng.integers(len(labels), size=pairs - pairs // 2)
    b = np.concatenate([same, other])
    truth = labels[a] == labels[b]
    similarity = np.sum(embeddings[a] * embeddings[b], axis=1)
    keep = a != b
    similarity, truth = similarity[keep], truth[keep]
    if threshold is None:
        candidates = np.quantile(similarity, np.linspace(0.01, 0.99, 99))
        threshold = float(max(candidates, key=lambda t: np.mean((similarity > t) == truth)))
    return float(np.mean((similarity > threshold) == truth)), threshold


class FaceEncoderTask:
    def __init__(self, config, pipeline_folder: Path, cache_dir: Path, encoder_config: dict | None = None,
                 identities: int = 400, clips_per_identity: int = 8, frames_per_clip: int = 2,
                 eval_identities: int = 60, scale: float = 30.0, margin: float = 0.3, size: int = 128,
                 export_name: str = "face_encoder"):
        self.config, self.export_name = config, export_name
        self.encoder_config = dict(encoder_config or TINY.face_encoder)
        self.scale, self.margin = scale, margin
        self.train_pool = identity_pool("train", identities, clips_per_identity, frames_per_clip, size,
                                        config.seed, cache_dir)
        self.eval_pool = identity_pool("eval", eval_identities, 4, frames_per_clip, size, 0, cache_dir)
        self.classes = identities

    def trainable(self) -> nn.Module:
        encoder = TinyFaceEncoder(**self.encoder_config)
        return FaceEncoderLoss(encoder, AngularMarginHead(encoder.config.embedding_dim, self.classes, self.scale,
                                                          self.margin))

    def parameter_groups(self, module):
        return [{"name": "face_encoder", "params": list(module.encoder.parameters())},
                {"name": "margin_head", "params": list(module.head.parameters())}]

    def batch(self, step, micro, device):
        rng = step_rng(self.config.seed, step, micro)
        index = rng.integers(len(self.train_pool.labels), size=self.config.batch_size)
        images = self.train_pool.frames[index]
        flip = rng.random(len(images)) < 0.5
        images = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
        x = to_model_range(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2))
        return {"images": x.to(device), "labels": torch.from_numpy(self.train_pool.labels[index]).to(device)}

    def loss(self, module, batch, generator):
        loss = module(batch["images"], batch["labels"])
        return loss, {}

    @torch.no_grad()
    def embed(self, encoder: TinyFaceEncoder, frames: np.ndarray, chunk: int = 64) -> np.ndarray:
        out = []
        for i in range(0, len(frames), chunk):
            x = to_model_range(torch.from_numpy(frames[i:i + chunk]).permute(0, 3, 1, 2)).to(encoder.device)
            out.append(encoder(x).float().cpu().numpy())
        return np.concatenate(out)

    def validate(self, module, step, folder) -> dict:
        encoder = module.encoder
        sub = slice(0, 2000)  # training identities pick the threshold; held-out identities are only scored
        _, threshold = verification_accuracy(self.embed(encoder, self.train_pool.frames[sub]),
                                             self.train_pool.labels[sub])
        eval_embeddings = self.embed(encoder, self.eval_pool.frames)
        accuracy, _ = verification_accuracy(eval_embeddings, self.eval_pool.labels, threshold)
        references = self.embed(encoder, self.eval_pool.references)
        # How close a frame's embedding is to its identity's reference portrait (what the video model is told).
        to_reference = np.sum(eval_embeddings * references[self.eval_pool.labels], axis=1).mean()
        to_others = (eval_embeddings @ references.T).mean()
        return {"verification_accuracy": accuracy, "threshold": threshold,
                "cos_to_own_reference": float(to_reference), "cos_to_any_reference": float(to_others)}

    def export(self, module, folder: Path) -> dict:
        module.encoder.save_pretrained(Path(folder) / self.export_name)
        return {}
