"""A pool of still frames rendered once from the synthetic world, for the image-level prerequisites (the VAE).

Rendering is cheap (a few hundred frames a second) but not free next to a 0.3 s training step on two cores, and
frames of one clip are nearly alike; a pool of a few frames from each of thousands of clips gives more variety per
second. It is deterministic in its arguments and cached as one .npz.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..synthetic.dataset import SyntheticTalkingHeads


@dataclass
class FramePool:
    frames: np.ndarray  # uint8 (P, H, W, 3)
    mouth_xy: np.ndarray  # float32 (P, 2) pixel (column, row)
    identity_id: np.ndarray  # int64 (P,)

    def __len__(self) -> int:
        return len(self.frames)


def cached_arrays(path: Path | None, build) -> dict:
    """``build()`` (a dict of arrays) once, kept in an .npz at ``path`` (written atomically) when one is given."""
    if path is not None and path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    arrays = build()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
    return arrays


def frame_pool(split: str, clips: int, frames_per_clip: int = 4, size: int = 128, seed: int = 0,
               cache_dir: str | Path | None = None, mode: str = "mixed") -> FramePool:
    """``frames_per_clip`` frames from each of ``clips`` clips of ``split`` ("train" or "eval")."""
    def build():
        data = SyntheticTalkingHeads(split, num_frames=frames_per_clip, size=size, mode=mode, seed=seed, length=clips)
        rendered = [data.clip(i) for i in range(clips)]
        return dict(frames=np.concatenate([c.frames for c in rendered]),
                    mouth_xy=np.concatenate([c.mouth_xy for c in rendered]).astype(np.float32),
                    identity_id=np.concatenate([np.full(len(c.frames), c.identity_id) for c in rendered]))

    name = f"frames-{split}-{mode}-c{clips}x{frames_per_clip}-p{size}-s{seed}.npz"
    return FramePool(**cached_arrays(Path(cache_dir) / name if cache_dir is not None else None, build))


def crop_boxes(rng: np.random.Generator, mouth_xy: np.ndarray, size: int, crop: int, mouth_fraction: float,
               jitter: float) -> np.ndarray:
    """(B, 2) top-left corners of ``crop``-pixel squares: a ``mouth_fraction`` of them centred near the mouth
    (where lip sync lives, so the VAE spends its capacity there), the rest uniform over the frame."""
    count = len(mouth_xy)
    uniform = rng.integers(0, size - crop + 1, size=(count, 2))
    near = np.round(mouth_xy - crop / 2 + rng.normal(0, jitter, size=(count, 2))).astype(np.int64)
    corners = np.where((rng.random(count) < mouth_fraction)[:, None], near, uniform)
    return np.clip(corners, 0, size - crop)


def mouth_box(mouth_xy, size: int, half: int) -> tuple[slice, slice]:
    """Row and column slices of the square of side 2*half around a mouth position, kept inside the frame."""
    x, y = (int(round(float(v))) for v in mouth_xy)
    x, y = min(max(x, half), size - half), min(max(y, half), size - half)
    return slice(y - half, y + half), slice(x - half, x + half)
