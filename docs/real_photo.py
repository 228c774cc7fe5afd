"""What the tiny default does with a real photo: ``python docs/real_photo.py docs/real_photo``.

The tiny model has only ever seen the synthetic world (flat-shaded heads, ``starcaster.synthetic``), so a real photo
is far outside what it learnt. This makes the picture the README shows: scikit-image's bundled astronaut portrait
(public domain, NASA), its 128 px aligned crop, and frames of a portrait video driven by a held-out synthetic
utterance, next to the same for a held-out synthetic identity. It writes ``astronaut.png`` (strip), ``astronaut.mp4``
and ``synthetic.png`` into the folder given.
"""

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from starcaster import load_pipeline
from starcaster.face import prepare_portrait
from starcaster.synthetic.dataset import SyntheticTalkingHeads


def strip(reference: np.ndarray, frames: np.ndarray, every: int = 4) -> np.ndarray:
    """The aligned input on the left, then every ``every``-th generated frame."""
    return np.concatenate([reference] + list(frames[::every]), axis=1)


def main(out: str) -> None:
    import skimage

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline("tiny")
    if not pipe.trained:
        sys.exit("checkpoints/tiny holds no trained model: this picture would only show noise.")
    pipe.set_progress_bar_config(disable=True)
    clip = SyntheticTalkingHeads("eval", num_frames=32, size=pipe.settings.resolution, mode="talk", length=1).clip(0)
    speech = (clip.audio, clip.sample_rate)

    photo = os.path.join(os.path.dirname(skimage.__file__), "data", "astronaut.png")
    aligned = prepare_portrait(photo, pipe.settings.resolution).image
    video = pipe.generate(task="portrait", image=photo, audio=speech, seed=0)
    video.save(out_dir / "astronaut.mp4")
    Image.fromarray(strip(np.asarray(aligned), video.frames)).save(out_dir / "astronaut.png")

    synthetic = pipe.generate(task="portrait", image=clip.reference, already_aligned=True, audio=speech, seed=0)
    Image.fromarray(strip(clip.reference, synthetic.frames)).save(out_dir / "synthetic.png")
    print(f"wrote {out_dir}/astronaut.png, astronaut.mp4 and synthetic.png")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/real_photo")
