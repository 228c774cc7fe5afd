"""`python -m starcaster ...` on the lent GPU machine, whose image has no ffmpeg binary.

The machine reaches no registry, and imageio-ffmpeg's wheel (its ffmpeg inside) is larger than what may travel
there, so training's validation videos are written as .npz frame stacks instead of mp4 when no ffmpeg is found.
Everything else is the repository's own CLI, unchanged: `python docs/gpu/gpu_train.py train --ablation full ...`.
"""

import shutil
import sys

import numpy as np

from starcaster import pipeline
from starcaster.cli import main


def _save_npz(self, path):
    np.savez_compressed(str(path) + ".npz", frames=self.frames, audio=self.audio, fps=self.fps)


if __name__ == "__main__":
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        if shutil.which("ffmpeg") is None:
            pipeline.Video.save = _save_npz
    sys.exit(main(sys.argv[1:]))
