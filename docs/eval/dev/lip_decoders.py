"""Lip-loss bias of each decoder on ground-truth latents of 3 val clips: the VAE full decode, the tiny decoder, and
the VAE decoding only the 8x8 / 10x10 latent window around the mouth (`mouth_window`, as stage 2 does), against the
full decode shifted by 3 frames. Run from the repository root: python docs/eval/dev/lip_decoders.py"""
import torch
from diffusers import AutoencoderKL, AutoencoderTiny

from starcaster.eval.run import eval_clips
from starcaster.training.lip_reading import LipReader, lip_features, lip_loss, mouth_window

torch.set_num_threads(1)
vae = AutoencoderKL.from_pretrained("checkpoints/tiny/vae").eval()
tiny = AutoencoderTiny.from_pretrained("checkpoints/tiny/fast_decoder").eval()
reader = LipReader.from_pretrained("checkpoints/tiny/lip_reader").eval()
for index, clip in enumerate(eval_clips("portrait", 3, 0, 8, split="val")):
    frames, mouth = torch.from_numpy(clip.frames)[None], torch.from_numpy(clip.mouth_xy).float()[None]
    truth = lip_features(reader, frames, mouth)

    def loss(decoded, where=mouth):
        return float(lip_loss(reader, decoded.clamp(-1, 1)[None], truth, where))

    with torch.no_grad():
        z = vae.encode(frames[0].permute(0, 3, 1, 2).float() / 127.5 - 1).latent_dist.mode()
        full = vae.decode(z).sample
        row = {"VAE full": loss(full), "tiny decoder": loss(tiny.decode(z * vae.config.scaling_factor).sample),
               "VAE full, shifted 3 frames": loss(torch.roll(full, 3, dims=0))}
        for size in (8, 10):
            windows, local = mouth_window(z, mouth[0], size, 8)
            row[f"VAE {size}x{size} window"] = loss(vae.decode(windows).sample, local[None])
    print(f"clip {index}: " + ", ".join(f"{name} {value:.3f}" for name, value in row.items()), flush=True)
