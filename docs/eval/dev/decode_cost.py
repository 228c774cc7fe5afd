"""Forward + backward seconds of decoding 16 latent frames on one thread: the VAE, the tiny decoder, an 8x8 window."""
import time, torch
from diffusers import AutoencoderKL, AutoencoderTiny
torch.set_num_threads(1)
vae = AutoencoderKL.from_pretrained("checkpoints/tiny/vae").requires_grad_(False)
tiny = AutoencoderTiny.from_pretrained("checkpoints/tiny/fast_decoder").requires_grad_(False)
z = torch.randn(16, 4, 16, 16, requires_grad=True)
for name, dec in [("kl", lambda x: vae.decode(x).sample), ("tiny", lambda x: tiny.decode(x).sample),
                  ("kl-crop8", lambda x: vae.decode(x[:, :, 4:12, 4:12]).sample)]:
    for rep in range(3):
        t = time.time(); out = dec(z); out.square().mean().backward(); dt = time.time() - t
    print(name, f"{dt:.2f} s fwd+bwd 16 frames (1 thread)", out.shape)
