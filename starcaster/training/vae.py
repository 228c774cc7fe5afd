"""Prerequisite: the tiny preset's VAE (diffusers ``AutoencoderKL``), trained on the synthetic world.

sd15 uses Stable Diffusion's VAE; the tiny world has none, so this trains one of the preset's config. What makes it
affordable on two CPU cores (``../shared/DESIGN.md``, "Budget"): the VAE is convolutional, so it trains on 64 px
crops instead of whole frames; half of the crops sit on the mouth, the region lip sync is judged on; the loss is
L1 + L2 with a small KL term (the latent must stay smooth enough to diffuse in); the learning rate is high and
decays (cosine) so late steps stop jittering. The exported config carries the latent scaling factor measured on
training frames (1 / std of the latents), as Stable Diffusion's does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from torch import nn

from ..image_io import from_model_range, to_model_range
from ..presets import TINY
from .frame_pool import crop_boxes, frame_pool, mouth_box
from .trainer import step_rng


class VAELoss(nn.Module):
    """Wraps the VAE so that one forward call gives the reconstruction and the KL term (DDP hooks see the call)."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None):
        posterior = self.vae.encode(images).latent_dist
        latents = posterior.sample(generator=generator)
        return self.vae.decode(latents).sample, posterior.kl()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of uint8-range images."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


class VAETask:
    """See the module docstring. ``task_args``: pool sizes, crop, mouth_fraction, kl_weight."""

    def __init__(self, config, pipeline_folder: Path, cache_dir: Path, vae_config: dict | None = None,
                 train_clips: int = 2000, eval_clips: int = 64, frames_per_clip: int = 4, crop: int = 64,
                 mouth_fraction: float = 0.5, jitter: float = 8.0, kl_weight: float = 1e-6, l2_weight: float = 1.0):
        self.config = config
        self.vae_config = dict(vae_config or TINY.vae)
        self.size = int(self.vae_config.get("sample_size", 128))
        self.crop, self.mouth_fraction, self.jitter = crop, mouth_fraction, jitter
        self.kl_weight, self.l2_weight = kl_weight, l2_weight
        self.train_pool = frame_pool("train", train_clips, frames_per_clip, self.size, config.seed, cache_dir)
        self.eval_pool = frame_pool("eval", eval_clips, frames_per_clip, self.size, 0, cache_dir)

    def trainable(self) -> nn.Module:
        return VAELoss(AutoencoderKL(**self.vae_config))

    def parameter_groups(self, module):
        return [{"name": "vae", "params": [p for p in module.parameters() if p.requires_grad]}]

    def batch(self, step: int, micro: int, device) -> dict:
        rng = step_rng(self.config.seed, step, micro)
        index = rng.integers(len(self.train_pool), size=self.config.batch_size)
        corners = crop_boxes(rng, self.train_pool.mouth_xy[index], self.size, self.crop, self.mouth_fraction,
                             self.jitter)
        crops = np.stack([self.train_pool.frames[i, y:y + self.crop, x:x + self.crop]
                          for i, (x, y) in zip(index, corners)])
        flip = rng.random(len(crops)) < 0.5  # faces are near-symmetric: mirrored crops are free extra data
        crops[flip] = crops[flip, :, ::-1]
        return {"images": to_model_range(torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2)).to(device)}

    def loss(self, module, batch, generator):
        images = batch["images"]
        recon, kl = module(images, generator)
        l1 = (recon - images).abs().mean()
        l2 = (recon - images).square().mean()
        kl = kl.mean()
        loss = l1 + self.l2_weight * l2 + self.kl_weight * kl
        crop_psnr = 10 * torch.log10(4.0 / l2.detach().clamp_min(1e-10))  # images span [-1, 1]: peak-to-peak 2
        return loss, {"l1": l1.detach(), "kl": kl.detach(), "psnr_crop": crop_psnr}

    # -- held-out numbers and export --------------------------------------------------------------------------------
    def reconstruct(self, vae: AutoencoderKL, frames: np.ndarray, chunk: int = 32) -> np.ndarray:
        out = []
        for i in range(0, len(frames), chunk):
            x = to_model_range(torch.from_numpy(frames[i:i + chunk]).permute(0, 3, 1, 2)).to(vae.device)
            y = vae.decode(vae.encode(x).latent_dist.mode()).sample
            out.append(from_model_range(y).permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out)

    def validate(self, module, step: int, folder: Path) -> dict:
        """Held-out PSNR on whole frames and on the mouth region (a 32 px square around the true mouth)."""
        vae = module.vae
        truth = self.eval_pool.frames
        recon = self.reconstruct(vae, truth)
        mouth = [mouth_box(xy, self.size, 16) for xy in self.eval_pool.mouth_xy]
        report = {
            "psnr": float(np.mean([psnr(a, b) for a, b in zip(truth, recon)])),
            "psnr_mouth": float(np.mean([psnr(a[r, c], b[r, c]) for a, b, (r, c) in zip(truth, recon, mouth)])),
        }
        folder.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        strip = np.concatenate([np.concatenate(list(truth[:8]), 1), np.concatenate(list(recon[:8]), 1)], 0)
        Image.fromarray(strip).save(folder / f"vae-{step:08d}.png")
        return report

    @torch.no_grad()
    def latent_std(self, vae: AutoencoderKL, frames: np.ndarray, chunk: int = 32) -> float:
        stds = []
        for i in range(0, len(frames), chunk):
            x = to_model_range(torch.from_numpy(frames[i:i + chunk]).permute(0, 3, 1, 2)).to(vae.device)
            stds.append(vae.encode(x).latent_dist.mode().float().flatten())
        return float(torch.cat(stds).std())

    def export(self, module, folder: Path) -> dict:
        vae = module.vae.eval()
        with torch.no_grad():
            std = self.latent_std(vae, self.train_pool.frames[:512])  # training frames: never tune on held-out
        vae.register_to_config(scaling_factor=round(1.0 / std, 5))
        vae.save_pretrained(Path(folder) / "vae")
        report = {"scaling_factor": vae.config.scaling_factor}
        (Path(folder) / "vae" / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
        return report
