"""How high can orbit PSNR go? Ceilings from the synthetic world itself, on the eval's own orbit clips (issue #11).

    python docs/eval/dev/orbit_oracle.py [--split eval] [--clips 20] [--vae checkpoints/tiny/vae] [--json OUT]

An orbit clip is a still head seen along a camera path; its head sits at a small random pose (about 3 degrees a
axis) and its light is the clip's own, while the reference portrait the model gets is the same head, same light,
neutral pose, frontal camera. Rows, each scored by the eval's own `view_scores` against the ground truth:

* ``world, reference's pose``: the renderer itself draws the reference's head (neutral pose) from the clip's true
  cameras: what a model that had learnt the world perfectly could render from the portrait, since the clip's hidden
  head pose is nowhere in its inputs. No generator that sees only the portrait and the cameras should beat it by
  much.
* ``ground truth through the VAE``: the true frames encoded and decoded by the shipped VAE, the ceiling that the
  latent space itself sets.
* ``copy reference`` and ``warp (ellipsoid proxy)``: the eval's baselines, for the floor (copy + 3 dB).

Nothing here is tuned: no model is trained or chosen by it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from starcaster.eval.metrics import bootstrap, view_scores
from starcaster.eval.run import eval_clips, warp_reference
from starcaster.synthetic.dataset import SPLIT_TAG, SyntheticTalkingHeads, _light, render_reference
from starcaster.synthetic.expression import FaceState
from starcaster.synthetic.head import HeadIdentity, build_scene
from starcaster.synthetic.renderer import render


def reference_pose_render(clip, data: SyntheticTalkingHeads, index: int) -> np.ndarray:
    """The clip's head at the reference's neutral pose, under the clip's light, from the clip's cameras."""
    # make_clip draws the light first from rng([identity, clip seed, 0xC11F]); the same draw gives the same light.
    clip_seed = int(np.random.default_rng([data.seed, int(index), SPLIT_TAG[data.split]]).integers(2**31))
    light = _light(np.random.default_rng([int(clip.identity_id), clip_seed, 0xC11F]))
    ident = HeadIdentity.from_vector(clip.identity)
    # The reconstruction is right only if it redraws the clip's own reference portrait exactly.
    assert np.array_equal(render_reference(ident, clip.frames.shape[1], light), clip.reference), "light not recovered"
    scene = build_scene(ident, FaceState.neutral(len(clip.frames)), light=light)
    return render(scene, clip.extrinsics, clip.intrinsics, size=clip.frames.shape[1])


@torch.no_grad()
def vae_roundtrip(vae, frames: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    out = []
    for chunk in x.split(16):
        latents = vae.encode(chunk).latent_dist.mode()
        out.append(vae.decode(latents).sample)
    y = torch.cat(out).clamp(-1, 1)
    return ((y + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="eval", choices=("eval", "val"))
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--segments", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae", default="checkpoints/tiny/vae")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(args.vae).eval()
    num_frames = args.segments * 16
    clips = eval_clips("orbit", args.clips, args.seed, num_frames, split=args.split)
    data = SyntheticTalkingHeads(args.split, num_frames=num_frames, size=128, mode="orbit", seed=args.seed,
                                 length=args.clips)
    per_row: dict[str, list[dict]] = {}
    for index, clip in enumerate(clips):
        rows = {
            "copy reference": np.repeat(clip.reference[None], len(clip.frames), 0),
            "warp (ellipsoid proxy)": warp_reference(clip.reference, clip.extrinsics, clip.intrinsics),
            "world, reference's pose": reference_pose_render(clip, data, index),
            "ground truth through the VAE": vae_roundtrip(vae, clip.frames),
        }
        for name, frames in rows.items():
            per_row.setdefault(name, []).append(view_scores(frames, clip.frames, clip.mouth_xy))
        print(index, {name: round(v[-1]["psnr"], 2) for name, v in per_row.items()}, flush=True)
    results = {name: {k: bootstrap([v[k] for v in values], seed=args.seed) | {"clips": [v[k] for v in values]}
                      for k in values[0]} for name, values in per_row.items()}
    for name, scores in results.items():
        print(f"{name:32s} PSNR {scores['psnr']['mean']:.2f} [{scores['psnr']['low']:.2f}, {scores['psnr']['high']:.2f}]"
              f"  SSIM {scores['ssim']['mean']:.3f}  face PSNR {scores['face_psnr']['mean']:.2f}")
    if args.json:
        meta = {"command": "python docs/eval/dev/orbit_oracle.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None)}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
