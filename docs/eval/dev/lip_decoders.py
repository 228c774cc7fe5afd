"""Lip-loss bias of each decoder on ground-truth latents of 3 val clips: the VAE full decode, the tiny decoder, and
the VAE decoding only the 8x8 / 10x10 latent window around the mouth (`mouth_window`), against a 3-frame shift."""
import torch
from diffusers import AutoencoderKL, AutoencoderTiny
from starcaster.training.lip_reading import LipReader, lip_features, lip_loss
from starcaster.eval.run import eval_clips
torch.set_num_threads(1)
vae = AutoencoderKL.from_pretrained("checkpoints/tiny/vae").eval()
tiny = AutoencoderTiny.from_pretrained("checkpoints/tiny/fast_decoder").eval()
reader = LipReader.from_pretrained("checkpoints/tiny/lip_reader").eval()
clips = eval_clips("portrait", 3, 0, 8, split="val")
for clip in clips:
    fr = torch.from_numpy(clip.frames)[None]; mxy = torch.from_numpy(clip.mouth_xy).float()[None]
    truth = lip_features(reader, fr, mxy)
    x = fr[0].permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        kl = vae.decode(z).sample.clamp(-1, 1)[None]
        tn = tiny.decode(z * vae.config.scaling_factor).sample.clamp(-1, 1)[None]
        other = torch.roll(kl, 3, dims=1)
        print(f"lip loss: KL recon {float(lip_loss(reader, kl, truth, mxy)):.3f}  tiny recon {float(lip_loss(reader, tn, truth, mxy)):.3f}  "
              f"KL shifted 3 frames {float(lip_loss(reader, other, truth, mxy)):.3f}")
print("crop decode")
for size in (8, 10):
    for clip in clips:
        fr = torch.from_numpy(clip.frames)[None]; mxy = torch.from_numpy(clip.mouth_xy).float()[None]
        truth = lip_features(reader, fr, mxy)
        x = fr[0].permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mode()
            c = (mxy[0] / 8).round().long() - size // 2
            c = c.clamp(0, 16 - size)
            patches = torch.stack([vae.decode(z[i:i+1, :, c[i,1]:c[i,1]+size, c[i,0]:c[i,0]+size]).sample[0] for i in range(len(z))])
            local = mxy - 8 * c[None].float()
            print(size, f"crop recon lip loss {float(lip_loss(reader, patches.clamp(-1,1)[None], truth, local)):.3f}")
