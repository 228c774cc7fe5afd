"""Prerequisite: the tiny world's Arc2Face, the 2D backbone that STARCaster inflates (paper §3.1 "Preliminary").

Arc2Face (Papantoniou et al.) fine-tunes SD-1.5's UNet and CLIP text encoder together so that a face embedding,
written over the token "id" of "photo of a id person", generates a portrait of that person. Here both start from
the tiny preset's random configs and train on the synthetic world's frames (VAE latents, cached once) conditioned on
the tiny face encoder's embedding of the identity's reference portrait, which is exactly what the video model is
given at inference. The unconditional (empty-prompt) tokens that CFG needs are learnt through the shared condition
dropout (`autoregression.drop_streams`), the very function the video stages use. Loss: epsilon MSE with min-SNR
weighting (gamma 5), reduced per sample before weighting (not after, the mistake DESIGN.md notes in Hallo).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from diffusers.training_utils import compute_snr
from torch import nn

from ..autoregression import SegmentConditions, drop_streams, random_drop
from ..conditioning.identity import Arc2FaceEncoder, TinyFaceEncoder, build_tiny_tokenizer
from ..image_io import from_model_range, to_model_range
from ..presets import TINY
from ..synthetic.dataset import SyntheticTalkingHeads
from .trainer import step_rng


def build_id_encoder(text_config: dict) -> Arc2FaceEncoder:
    """A random-initialised tiny CLIP text encoder + the tiny tokenizer, wrapped as Arc2Face's ID encoder."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_tokenizer(tmp)
        tokenizer = CLIPTokenizer.from_pretrained(tmp)
    config = CLIPTextConfig(**(dict(vocab_size=len(tokenizer)) | text_config), bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return Arc2FaceEncoder(CLIPTextModel(config), tokenizer)


def scheduler_config() -> dict:
    from ..loading import SCHEDULER_CONFIG

    return {k: v for k, v in SCHEDULER_CONFIG.items() if k not in ("algorithm_type", "solver_order")}


class Arc2FaceLoss(nn.Module):
    """UNet + ID encoder in one module (one forward per step, as DDP needs): noise prediction for a batch."""

    def __init__(self, unet: UNet2DConditionModel, id_encoder: Arc2FaceEncoder):
        super().__init__()
        self.unet, self.id_encoder = unet, id_encoder

    def forward(self, noisy, timesteps, embeddings, drop_identity):
        tokens = self.id_encoder(embeddings)
        null = self.id_encoder.unconditional(1)
        tokens = drop_streams(SegmentConditions(tokens), null, {"identity": drop_identity}).id_tokens
        return self.unet(noisy, timesteps, tokens).sample


class Arc2FaceTask:
    def __init__(self, config, pipeline_folder: Path, cache_dir: Path, clips: int = 4000, frames_per_clip: int = 2,
                 eval_identities: int = 8, identity_dropout: float = 0.1, snr_gamma: float = 5.0,
                 noise_offset: float = 0.0):
        self.config, self.folder = config, Path(pipeline_folder)
        self.identity_dropout, self.snr_gamma, self.noise_offset = identity_dropout, snr_gamma, noise_offset
        self.noise = DDPMScheduler(**scheduler_config())
        self.vae = _load(AutoencoderKL, self.folder / "vae", "the VAE step")
        self.face_encoder = _load(TinyFaceEncoder, self.folder / "face_encoder", "the face_encoder step")
        self.latents, self.embeddings = self._pool("train", clips, frames_per_clip, config.seed, cache_dir)
        self.eval = SyntheticTalkingHeads("eval", num_frames=1, size=TINY.resolution, mode="talk",
                                          length=eval_identities)
        self.eval_identities = eval_identities

    @torch.no_grad()
    def _pool(self, split, clips, frames_per_clip, seed, cache_dir):
        path = Path(cache_dir) / f"arc2face-{split}-c{clips}x{frames_per_clip}-s{seed}.pt"
        if path.is_file():
            cached = torch.load(path, weights_only=True)  # our own cache file, tensors only
            return cached["latents"], cached["embeddings"]
        data = SyntheticTalkingHeads(split, num_frames=frames_per_clip, size=TINY.resolution, mode="mixed",
                                     seed=seed, length=clips)
        latents, embeddings = [], []
        for start in range(0, clips, 32):
            batch = [data.clip(i) for i in range(start, min(start + 32, clips))]
            frames = np.concatenate([c.frames for c in batch])
            refs = np.stack([c.reference for c in batch])
            latents.append(self.encode(frames))
            emb = self.face_encoder(to_model_range(torch.from_numpy(refs).permute(0, 3, 1, 2)))
            embeddings.append(emb.repeat_interleave(frames_per_clip, dim=0))
        latents, embeddings = torch.cat(latents), torch.cat(embeddings)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"latents": latents, "embeddings": embeddings}, path)
        return latents, embeddings

    def encode(self, frames: np.ndarray) -> torch.Tensor:
        x = to_model_range(torch.from_numpy(frames).permute(0, 3, 1, 2))
        return self.vae.encode(x).latent_dist.mode() * self.vae.config.scaling_factor

    def trainable(self) -> nn.Module:
        return Arc2FaceLoss(UNet2DConditionModel(**TINY.unet), build_id_encoder(TINY.text_encoder))

    def parameter_groups(self, module):
        return [{"name": "unet", "params": list(module.unet.parameters())},
                {"name": "id_encoder", "params": list(module.id_encoder.text_encoder.parameters())}]

    def batch(self, step, micro, device):
        rng = step_rng(self.config.seed, step, micro)
        index = torch.from_numpy(rng.integers(len(self.latents), size=self.config.batch_size))
        latents = self.latents[index]
        if rng.random() < 0.5:  # a mirrored face is the same person
            latents = latents.flip(-1)
        return {"latents": latents.to(device), "embeddings": self.embeddings[index].to(device)}

    def loss(self, module, batch, generator):
        latents = batch["latents"]
        batch_size = len(latents)
        noise = torch.randn(latents.shape, generator=generator, device=generator.device).to(latents)
        if self.noise_offset:
            offset = torch.randn(batch_size, latents.shape[1], 1, 1, generator=generator, device=generator.device)
            noise = noise + self.noise_offset * offset.to(latents)
        timesteps = torch.randint(0, self.noise.config.num_train_timesteps, (batch_size,), generator=generator,
                                  device=generator.device).to(latents.device)
        noisy = self.noise.add_noise(latents, noise, timesteps)
        drop = random_drop(batch_size, {"identity": self.identity_dropout}, generator)["identity"]
        pred = module(noisy, timesteps, batch["embeddings"], drop.to(latents.device))
        per_sample = F.mse_loss(pred.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))
        snr = compute_snr(self.noise, timesteps)
        weight = torch.clamp(snr, max=self.snr_gamma) / snr  # min-SNR-gamma for epsilon prediction
        return (per_sample * weight).mean(), {"mse": per_sample.mean().detach()}

    @torch.no_grad()
    def sample(self, module, embeddings: torch.Tensor, steps: int = 25, guidance: float = 3.0, seed: int = 0):
        """Portraits (B, H, W, 3) uint8 generated from face embeddings, DPM-Solver++ with CFG as at inference."""
        from ..loading import SCHEDULER_CONFIG

        scheduler = DPMSolverMultistepScheduler(**SCHEDULER_CONFIG)
        scheduler.set_timesteps(steps)
        tokens = module.id_encoder(embeddings)
        rows = torch.cat([module.id_encoder.unconditional(len(tokens)), tokens])
        shape = (len(tokens), module.unet.config.in_channels, *(module.unet.config.sample_size,) * 2)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        for t in scheduler.timesteps:
            uncond, cond = module.unet(torch.cat([x, x]), t, rows).sample.chunk(2)
            x = scheduler.step(uncond + guidance * (cond - uncond), t, x).prev_sample
        images = self.vae.decode(x / self.vae.config.scaling_factor).sample
        return from_model_range(images).permute(0, 2, 3, 1).numpy()

    def validate(self, module, step, folder) -> dict:
        """Held-out identities: cosine between the face encoder's embedding of the generated portrait and of the
        identity's reference (the face encoder is the ArcFace analogue: the score Arc2Face reports)."""
        refs = np.stack([self.eval.clip(i).reference for i in range(self.eval_identities)])
        wanted = self.face_encoder(to_model_range(torch.from_numpy(refs).permute(0, 3, 1, 2)))
        images = self.sample(module, wanted)
        got = self.face_encoder(to_model_range(torch.from_numpy(images).permute(0, 3, 1, 2)))
        shuffled = got.roll(1, dims=0)
        folder.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.fromarray(np.concatenate([np.concatenate(list(refs), 1), np.concatenate(list(images), 1)], 0)).save(
            folder / f"arc2face-{step:08d}.png")
        return {"id_similarity": float((got * wanted).sum(-1).mean()),
                "id_similarity_other_identity": float((shuffled * wanted).sum(-1).mean())}

    def export(self, module, folder: Path) -> dict:
        folder = Path(folder)
        module.unet.save_pretrained(folder / "unet")
        module.id_encoder.text_encoder.save_pretrained(folder / "text_encoder")
        module.id_encoder.tokenizer.save_pretrained(folder / "tokenizer")
        return {}


def _load(cls, path: Path, step: str):
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is missing: run {step} of the recipe first (it exports there).")
    return cls.from_pretrained(path, use_safetensors=True).eval().requires_grad_(False)
