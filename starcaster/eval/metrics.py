"""The benchmark's metrics (paper Tabs. 1-3, adapted to the synthetic world's ground truth), each on one clip.

Numbers from the project's own evaluators are not comparable with published LSE, CSIM or Pose Std values; PSNR and
SSIM are the usual ones.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ..image_io import to_model_range
from .evaluators import SYNC_WINDOW, crops_of

MAX_OFFSET = 15


def bootstrap(values, samples: int = 2000, seed: int = 0) -> dict:
    """Mean and a 95% bootstrap confidence interval over clips."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(values) == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    rng = np.random.default_rng(seed)
    means = values[rng.integers(len(values), size=(samples, len(values)))].mean(1)
    return {"mean": float(values.mean()), "low": float(np.quantile(means, 0.025)),
            "high": float(np.quantile(means, 0.975)), "n": int(len(values))}


def lagged_correlation(predicted: np.ndarray, truth: np.ndarray, max_offset: int = MAX_OFFSET) -> tuple[float, int]:
    """(Pearson r at offset 0, the offset in frames maximising r). Offset > 0: the video lags the audio."""
    def r(offset):
        a, b = (predicted[offset:], truth[:len(truth) - offset]) if offset >= 0 else (predicted[:offset], truth[-offset:])
        if len(a) < 3 or np.std(a) < 1e-8 or np.std(b) < 1e-8:
            return -np.inf
        return float(np.corrcoef(a, b)[0, 1])

    offsets = list(range(-max_offset, max_offset + 1))
    values = [r(o) for o in offsets]
    at_zero = values[offsets.index(0)]
    return (at_zero if np.isfinite(at_zero) else float("nan")), offsets[int(np.argmax(values))]


@torch.no_grad()
def mouth_opening(mouth_net, frames: np.ndarray, mouth_xy: np.ndarray) -> np.ndarray:
    """Jaw opening per frame read by the evaluator from uint8 frames (T, H, W, 3)."""
    crops = crops_of(torch.from_numpy(frames)[:, None], torch.from_numpy(mouth_xy).float()[:, None])[:, :, 0]
    return torch.cat([mouth_net(crops[i:i + 128]) for i in range(0, len(crops), 128)]).numpy()


@torch.no_grad()
def sync_scores(sync_net, frames: np.ndarray, mouth_xy: np.ndarray, features: torch.Tensor) -> tuple[float, float]:
    """SyncNet's procedure: mean distance of video windows to audio windows at each offset in +-15 frames;
    LSE-D = the minimum over offsets, LSE-C = median minus minimum (higher is better)."""
    crops = crops_of(torch.from_numpy(frames)[None], torch.from_numpy(mouth_xy).float()[None])  # (1, 1, T, h, w)
    count = len(frames) - SYNC_WINDOW + 1
    video = torch.cat([sync_net.embed_video(crops[:, :, t:t + SYNC_WINDOW]) for t in range(count)])
    audio = torch.cat([sync_net.embed_audio(features[None, t:t + SYNC_WINDOW]) for t in range(count)])
    distances = []
    for offset in range(-MAX_OFFSET, MAX_OFFSET + 1):
        pairs = [(t, t + offset) for t in range(count) if 0 <= t + offset < count]
        if pairs:
            v, a = zip(*pairs)
            distances.append(float((video[list(v)] - audio[list(a)]).norm(dim=-1).mean()))
    distances = np.asarray(distances)
    return float(distances.min()), float(np.median(distances) - distances.min())


def view_scores(generated: np.ndarray, truth: np.ndarray, mouth_xy: np.ndarray) -> dict:
    """PSNR / SSIM over whole frames and over the face region (a box above and around the true mouth)."""
    size = truth.shape[1]
    whole = [peak_signal_noise_ratio(t, g, data_range=255) for t, g in zip(truth, generated)]
    ssim = [structural_similarity(t, g, channel_axis=-1, data_range=255) for t, g in zip(truth, generated)]
    face_psnr, face_ssim = [], []
    half = size // 4
    for t, g, (x, y) in zip(truth, generated, mouth_xy):
        cx, cy = int(np.clip(x, half, size - half)), int(np.clip(y - size * 0.12, half, size - half))
        box = (slice(cy - half, cy + half), slice(cx - half, cx + half))
        face_psnr.append(peak_signal_noise_ratio(t[box], g[box], data_range=255))
        face_ssim.append(structural_similarity(t[box], g[box], channel_axis=-1, data_range=255))
    return {"psnr": float(np.mean(whole)), "ssim": float(np.mean(ssim)), "face_psnr": float(np.mean(face_psnr)),
            "face_ssim": float(np.mean(face_ssim))}


@torch.no_grad()
def identity_similarity(embedder, frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine similarity of each frame's embedding to the reference portrait's (T,)."""
    def embed(images):
        x = to_model_range(torch.from_numpy(images).permute(0, 3, 1, 2))
        return torch.cat([embedder(x[i:i + 64]) for i in range(0, len(x), 64)])

    return (embed(frames) @ embed(reference[None])[0]).numpy()


@torch.no_grad()
def apparent_poses(pose_net, frames: np.ndarray) -> np.ndarray:
    """(T, 3) apparent head pose read from the frames (degrees: yaw, pitch, roll relative to the camera)."""
    x = to_model_range(torch.from_numpy(frames).permute(0, 3, 1, 2))
    return torch.cat([pose_net(x[i:i + 64]) for i in range(0, len(x), 64)]).numpy()


def view_error(pose_net, generated: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute difference of the apparent pose read from generated and true frames (degrees, over yaw, pitch
    and roll): whether the head is seen from where the camera is. PSNR mixes this with blur and texture; a head that
    stays frontal while the camera orbits scores about the orbit's own angle here, whatever its sharpness."""
    return float(np.abs(apparent_poses(pose_net, generated) - apparent_poses(pose_net, truth)).mean())


@torch.no_grad()
def pose_std(pose_net, frames: np.ndarray) -> float:
    """Standard deviation over time of the apparent head pose (degrees, mean over yaw, pitch, roll)."""
    return float(apparent_poses(pose_net, frames).std(0).mean())
