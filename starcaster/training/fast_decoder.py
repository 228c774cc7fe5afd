"""The fast sampler's decoder (issue #12): a diffusers ``AutoencoderTiny`` distilled onto the tiny VAE's latents.

On two CPU cores the KL VAE's decoder costs more than a denoising step: decoding one 16-frame segment took ~1.3 s of
a 1.7 s one-step segment. A TAESD-shaped decoder (plain 3x3 convs, no attention, no norms, few channels) decodes
the same latents several times faster. It reads the latents the UNet produces (already multiplied by the VAE's
scaling factor), so its ``scaling_factor`` is 1.0 and ``STARCasterPipeline._decode`` treats both decoders alike.

Training, as the VAE's: convolutional, so on crops (an 8x8 latent crop and its 64 px image), half of them on the
mouth. Latents are the KL VAE's posterior mode of whole frames (cached once), so the decoder learns the latents the
sampler will hand it. Targets are the ground-truth frames (L1 + L2): the student may beat its teacher's decoder.
The encoder half learns to reproduce the KL VAE's latents (MSE), so the saved AutoencoderTiny is whole; the
pipeline still encodes portraits with the KL VAE (once per video, so its cost does not matter).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, AutoencoderTiny
from torch import nn

from ..image_io import from_model_range, to_model_range
from ..presets import TINY
from .arc2face import _load
from .frame_pool import cached_arrays, crop_boxes, frame_pool, mouth_box
from .trainer import step_rng
from .vae import psnr


class TinyAutoencoderLoss(nn.Module):
    """One forward call gives both halves' outputs (so DDP's hooks see every trained parameter used)."""

    def __init__(self, autoencoder: AutoencoderTiny):
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, latents: torch.Tensor, images: torch.Tensor):
        return self.autoencoder.decoder(latents), self.autoencoder.encoder(images)


@torch.no_grad()
def vae_latents(vae: AutoencoderKL, frames: np.ndarray, chunk: int = 32) -> np.ndarray:
    """uint8 (P, H, W, 3) -> float16 scaled latents (P, C, h, w): what the UNet sees (``encode_image``'s values)."""
    out = []
    for i in range(0, len(frames), chunk):
        x = to_model_range(torch.from_numpy(frames[i:i + chunk]).permute(0, 3, 1, 2)).to(vae.device, vae.dtype)
        out.append((vae.encode(x).latent_dist.mode() * vae.config.scaling_factor).half().cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def decode_frames(decoder, latents: torch.Tensor, scaling: float, chunk: int = 32) -> np.ndarray:
    """Scaled latents (P, C, h, w) -> uint8 frames through a diffusers decoder (KL or tiny)."""
    out = []
    for i in range(0, len(latents), chunk):
        images = decoder.decode(latents[i:i + chunk].float() / scaling).sample
        out.append(from_model_range(images).permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


class FastDecoderTask:
    """See the module docstring. ``task_args``: pool sizes, crop, mouth_fraction, the AutoencoderTiny config."""

    def __init__(self, config, pipeline_folder: Path, cache_dir: Path, decoder_config: dict | None = None,
                 train_clips: int = 2000, eval_clips: int = 64, frames_per_clip: int = 4, crop: int = 64,
                 mouth_fraction: float = 0.5, jitter: float = 8.0, l2_weight: float = 1.0,
                 encoder_weight: float = 1.0):
        self.config = config
        self.decoder_config = dict(decoder_config or TINY.fast_decoder)
        self.vae = _load(AutoencoderKL, Path(pipeline_folder) / "vae", "the vae step").eval().requires_grad_(False)
        self.factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.size = int(self.vae.config.sample_size)
        self.crop, self.mouth_fraction, self.jitter = crop, mouth_fraction, jitter
        self.l2_weight, self.encoder_weight = l2_weight, encoder_weight
        self.train_pool = frame_pool("train", train_clips, frames_per_clip, self.size, config.seed, cache_dir)
        self.eval_pool = frame_pool("eval", eval_clips, frames_per_clip, self.size, 0, cache_dir)
        self.train_latents = self._latents(self.train_pool, cache_dir, f"train-c{train_clips}x{frames_per_clip}"
                                                                        f"-s{config.seed}")
        self.eval_latents = self._latents(self.eval_pool, cache_dir, f"eval-c{eval_clips}x{frames_per_clip}-s0")

    def _latents(self, pool, cache_dir, name) -> torch.Tensor:
        path = None if cache_dir is None else Path(cache_dir) / f"latents-{name}-p{self.size}.npz"
        arrays = cached_arrays(path, lambda: {"latents": vae_latents(self.vae, pool.frames)})
        return torch.from_numpy(arrays["latents"])

    def trainable(self) -> nn.Module:
        return TinyAutoencoderLoss(AutoencoderTiny(**self.decoder_config))

    def parameter_groups(self, module):
        return [{"name": "fast_decoder", "params": [p for p in module.parameters() if p.requires_grad]}]

    def batch(self, step: int, micro: int, device) -> dict:
        rng = step_rng(self.config.seed, step, micro)
        index = rng.integers(len(self.train_pool), size=self.config.batch_size)
        corners = crop_boxes(rng, self.train_pool.mouth_xy[index], self.size, self.crop, self.mouth_fraction,
                             self.jitter)
        corners = corners // self.factor  # whole latent cells, so the image crop is exactly the latent crop's
        c, f = self.crop // self.factor, self.factor
        latents = torch.stack([self.train_latents[i, :, y:y + c, x:x + c] for i, (x, y) in zip(index, corners)])
        crops = np.stack([self.train_pool.frames[i, y * f:(y + c) * f, x * f:(x + c) * f]
                          for i, (x, y) in zip(index, corners)])
        images = to_model_range(torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2))
        return {"latents": latents.float().to(device), "images": images.to(device)}

    def loss(self, module, batch, generator):
        images, latents = batch["images"], batch["latents"]
        decoded, encoded = module(latents, images)
        l1 = (decoded - images).abs().mean()
        l2 = (decoded - images).square().mean()
        latent_mse = (encoded - latents).square().mean()
        loss = l1 + self.l2_weight * l2 + self.encoder_weight * latent_mse
        return loss, {"l1": l1.detach(), "latent_mse": latent_mse.detach(),
                      "psnr_crop": 10 * torch.log10(4.0 / l2.detach().clamp_min(1e-10))}

    # -- held-out numbers and export --------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, module, step: int, folder: Path) -> dict:
        """Held-out whole-frame and mouth PSNR against the truth, for the tiny decoder and the KL VAE's decoder
        (the quality the fast path gives up), and the tiny decoder's PSNR against the VAE's decode."""
        truth = self.eval_pool.frames
        tiny = decode_frames(module.autoencoder, self.eval_latents, 1.0)
        full = decode_frames(self.vae, self.eval_latents, self.vae.config.scaling_factor)
        mouth = [mouth_box(xy, self.size, 16) for xy in self.eval_pool.mouth_xy]

        def mean_psnr(a, b, boxes=None):
            if boxes is None:
                return float(np.mean([psnr(x, y) for x, y in zip(a, b)]))
            return float(np.mean([psnr(x[r, c], y[r, c]) for x, y, (r, c) in zip(a, b, boxes)]))

        report = {"psnr": mean_psnr(truth, tiny), "psnr_mouth": mean_psnr(truth, tiny, mouth),
                  "vae_psnr": mean_psnr(truth, full), "vae_psnr_mouth": mean_psnr(truth, full, mouth),
                  "psnr_vs_vae": mean_psnr(full, tiny)}
        folder.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        rows = [np.concatenate(list(x[:8]), 1) for x in (truth, full, tiny)]
        Image.fromarray(np.concatenate(rows, 0)).save(folder / f"fast_decoder-{step:08d}.png")
        return report

    def export(self, module, folder: Path) -> dict:
        module.autoencoder.eval().save_pretrained(Path(folder) / "fast_decoder")
        return {"parameters": sum(p.numel() for p in module.autoencoder.decoder.parameters())}
