"""Clips rendered once and cached for the video stages and the lip reader.

A stage step on two cores costs about a second; rendering a clip and encoding it with the VAE would cost nearly as
much again, every step. So a pool of clips is rendered once, with everything a stage needs precomputed by the very
functions inference uses: VAE latents (`encode_frames`), whole-clip audio features (`clip_audio_features`), the face
encoder's embedding of the reference portrait, and the reference latent. Frames themselves are kept (uint8) for the
lip loss's ground truth and for the lip reader.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..conditioning.audio import clip_audio_features
from ..image_io import to_model_range
from ..synthetic.dataset import SyntheticTalkingHeads


@dataclass
class ClipPool:
    frames: torch.Tensor  # uint8 (K, F, H, W, 3)
    mouth_xy: torch.Tensor  # float32 (K, F, 2)
    visemes: torch.Tensor  # int64 (K, F)
    cameras: torch.Tensor  # float32 (K, F, 25)
    mouth_state: torch.Tensor | None = None  # float32 (K, F, 4) jaw_open, rounding, spreading, closure
    pose: torch.Tensor | None = None  # float32 (K, F, 6) head yaw, pitch, roll (deg), translation
    latents: torch.Tensor | None = None  # float32 (K, C, F, h, w), scaled
    audio_features: torch.Tensor | None = None  # (K, F, D)
    identity: torch.Tensor | None = None  # float32 (K, E) face-encoder embedding of the reference portrait
    reference_latent: torch.Tensor | None = None  # float32 (K, C, 1, h, w)

    def __len__(self) -> int:
        return len(self.frames)

    def slice(self, clips: slice, frames: int) -> "ClipPool":
        """Clips ``clips``, each cut to its first ``frames`` frames."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                out[f.name] = None
            elif f.name == "latents":
                out[f.name] = value[clips, :, :frames]
            elif f.name in ("identity", "reference_latent"):  # per clip, not per frame
                out[f.name] = value[clips]
            else:
                out[f.name] = value[clips, :frames]
        return ClipPool(**out)

    def take(self, index: torch.Tensor) -> dict:
        return {f.name: getattr(self, f.name)[index] for f in fields(self) if getattr(self, f.name) is not None}


@torch.no_grad()
def encode_frames(vae, frames: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> scaled latents (C, F, h, w), the posterior mode (as `STARCasterPipeline.encode_image`)."""
    out = []
    for i in range(0, len(frames), chunk):
        x = to_model_range(frames[i:i + chunk].permute(0, 3, 1, 2)).to(vae.device, vae.dtype)
        out.append(vae.encode(x).latent_dist.mode().float() * vae.config.scaling_factor)
    return torch.cat(out).permute(1, 0, 2, 3)


@torch.no_grad()
def clip_pool(split: str, clips: int, num_frames: int, mode: str, size: int = 128, seed: int = 0,
              cache_dir: str | Path | None = None, vae=None, face_encoder=None, audio_encoder=None,
              name: str = "", workers: int | None = None) -> ClipPool:
    """``clips`` clips of ``num_frames`` frames; with the components given, their latents/features too.
    ``workers`` processes render the clips (default: one per CPU core, at most 4); the pool is the same for any."""
    path = None
    if cache_dir is not None:
        parts = [split, mode, f"c{clips}x{num_frames}", f"p{size}", f"s{seed}", name]
        path = Path(cache_dir) / ("clips-" + "-".join(p for p in parts if p) + ".pt")
        if path.is_file():
            return ClipPool(**torch.load(path, weights_only=True))  # our own cache: tensors only
    data = SyntheticTalkingHeads(split, num_frames=num_frames, size=size, mode=mode, seed=seed, length=clips)
    rows = {f.name: [] for f in fields(ClipPool)}
    for clip in rendered_clips(data, clips, workers):
        frames = torch.from_numpy(clip.frames)
        rows["frames"].append(frames)
        rows["mouth_xy"].append(torch.from_numpy(clip.mouth_xy))
        rows["visemes"].append(torch.from_numpy(clip.visemes))
        rows["cameras"].append(torch.from_numpy(clip.cameras))
        rows["mouth_state"].append(torch.from_numpy(clip.mouth))
        rows["pose"].append(torch.from_numpy(clip.pose))
        if vae is not None:
            rows["latents"].append(encode_frames(vae, frames))
            rows["reference_latent"].append(encode_frames(vae, torch.from_numpy(clip.reference)[None]))
        if audio_encoder is not None:
            rows["audio_features"].append(clip_audio_features(audio_encoder, clip.audio, num_frames, clip.fps))
        if face_encoder is not None:
            ref = to_model_range(torch.from_numpy(clip.reference).permute(2, 0, 1)[None]).to(face_encoder.device)
            rows["identity"].append(face_encoder(ref)[0].float().cpu())
    pool = ClipPool(**{k: torch.stack(v) for k, v in rows.items() if v})
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")  # a run stopped mid-write leaves no truncated cache
        torch.save({f.name: getattr(pool, f.name) for f in fields(pool)}, partial)
        os.replace(partial, path)
    return pool


def rendered_clips(data: SyntheticTalkingHeads, clips: int, workers: int | None = None):
    """``data.clip(0) ... data.clip(clips - 1)`` in order. The renderer is single-threaded numpy and a clip is a
    function of its index alone, so on a fresh machine the pools (minutes per thousand clips on one core) render
    in ``workers`` forked processes; the VAE and encoders then run in this one, on torch's own threads."""
    workers = default_render_workers() if workers is None else workers
    if workers <= 1 or clips < 2 * workers:
        yield from (data.clip(i) for i in range(clips))
        return
    context = multiprocessing.get_context("fork")  # the dataset object travels by fork, not by pickling
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init, initargs=(data,)) as pool:
        yield from pool.map(_render_clip, range(clips), chunksize=8)


def default_render_workers() -> int:
    """One per core, at most 4 (each holds a renderer's buffers), unless ``STARCASTER_RENDER_WORKERS`` says how many,
    for a machine with many cores (a lent GPU machine has 16; docs/gpu/README.md has what its pools took)."""
    value = os.environ.get("STARCASTER_RENDER_WORKERS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"STARCASTER_RENDER_WORKERS must be a whole number >= 1, got {value!r}.")
        return int(value)
    return min(4, os.cpu_count() or 1)


_WORKER_DATA = None


def _worker_init(data) -> None:
    global _WORKER_DATA
    _WORKER_DATA = data
    torch.set_num_threads(1)


def _render_clip(index: int):
    return _WORKER_DATA.clip(index)


def sample_index(rng: np.random.Generator, pool: ClipPool, batch_size: int) -> torch.Tensor:
    return torch.from_numpy(rng.integers(len(pool), size=batch_size))
