"""``python -m starcaster preprocess VIDEOS_DIR OUT_DIR``: talking-face videos -> training clips for stages 1-2.

Per video: frames at the preset's frame rate (25 fps), kept only where exactly one face is found, each aligned
FFHQ-style to the preset's resolution (paper Supp. A); runs of consecutive kept frames are cut into clips. Per clip,
everything is computed with the functions inference uses: VAE latents (`encode_frames`), whole-clip audio features
(`clip_audio_features`), the face embedder's (ArcFace's, for sd15) embedding of a random frame, which also serves as
the clip's reference image. The mouth position per frame is the mouth corners' midpoint carried into the aligned
crop (the lip loss crops there). Real videos have no camera: every frame gets the input camera.

The output folder holds ``clips-NNNNN.pt`` shards of `ClipPool` tensors and ``preprocess.json``; a stage config
reads it with ``"task_args": {"data": OUT_DIR}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..audio_io import audio_slice, load_audio
from ..autoregression import input_camera_vector
from ..conditioning.audio import clip_audio_features
from ..face import Portrait, align_face, detect_faces, ffhq_template, similarity_transform
from ..pipeline_inputs import embed_face
from .clip_pool import ClipPool, encode_frames

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")


def read_video(path: Path, fps: float):
    """uint8 frames (T, H, W, 3) resampled to ``fps`` by ffmpeg."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), output_params=["-vf", f"fps={fps}"])
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]
    return np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8)


@torch.no_grad()
def preprocess(videos_dir: str | Path, out_dir: str | Path, pipe, clip_frames: int | None = None, seed: int = 0,
               shard_clips: int = 64, detector=None) -> dict:
    """Writes the clips of every video in ``videos_dir`` (see module docstring); returns a summary.

    ``detector``: as `face.detect_faces` takes it; default the pipeline's (SCRFD for sd15)."""
    videos = sorted(p for p in Path(videos_dir).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise ValueError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {videos_dir}.")
    settings = pipe.settings
    clip_frames = clip_frames or settings.context_frames + 2 * settings.segment_frames  # a stage-2 window
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    detector = detector or getattr(pipe.face_embedder, "detector", "auto")
    rows, shards, summary = [], 0, {"videos": len(videos), "clips": 0, "frames_kept": 0, "frames_read": 0}
    for video in videos:
        frames = read_video(video, settings.fps)
        samples = load_audio(video, sample_rate=settings.sample_rate, max_seconds=3600)
        summary["frames_read"] += len(frames)
        for first, items in aligned_runs(frames, settings.resolution, detector):
            summary["frames_kept"] += len(items)
            for offset in range(0, len(items) - clip_frames + 1, clip_frames):
                part = items[offset:offset + clip_frames]
                rows.append(_clip(pipe, part, samples, first + offset, clip_frames, rng))
                summary["clips"] += 1
                if len(rows) == shard_clips:
                    _write(rows, out, shards)
                    rows, shards = [], shards + 1
    if rows:
        _write(rows, out, shards)
    (out / "preprocess.json").write_text(json.dumps({**summary, "clip_frames": clip_frames,
                                                     "settings": json.loads(settings.to_json())}, indent=2) + "\n")
    return summary


def aligned_runs(frames: np.ndarray, size: int, detector="auto"):
    """Runs of consecutive frames with exactly one face, as (index of the run's first frame, [(aligned frame, mouth
    position in the crop), ...])."""
    runs, current, first = [], [], 0
    template = ffhq_template(size)
    for index, frame in enumerate(frames):
        faces = detect_faces(frame, detector)
        if len(faces) != 1:
            if current:
                runs.append((first, current))
            current = []
            continue
        if not current:
            first = index
        landmarks = faces[0].landmarks
        matrix = similarity_transform(landmarks, template)
        mouth = landmarks[3:5].mean(0)
        current.append((align_face(frame, landmarks, size), matrix[:, :2] @ mouth + matrix[:, 2]))
    if current:
        runs.append((first, current))
    return runs


def _clip(pipe, part, samples, first_frame, count, rng) -> dict:
    settings = pipe.settings
    frames = torch.from_numpy(np.stack([image for image, _ in part]))
    audio = audio_slice(samples, settings.sample_rate, settings.fps, first_frame, count)
    pick = int(rng.integers(len(part)))
    reference = part[pick][0]
    return dict(
        frames=frames,
        mouth_xy=torch.from_numpy(np.stack([m for _, m in part]).astype(np.float32)),
        visemes=torch.zeros(count, dtype=torch.int64),  # unknown on real data
        cameras=torch.from_numpy(np.tile(input_camera_vector(), (count, 1))),
        latents=encode_frames(pipe.vae, frames),
        audio_features=clip_audio_features(pipe.audio_encoder, audio, count, settings.fps),
        identity=embed_face(pipe.face_embedder, Portrait(image=reference, face=None))[0],
        reference_latent=encode_frames(pipe.vae, torch.from_numpy(reference)[None]),
    )


def _write(rows, out: Path, shard: int) -> None:
    torch.save({k: torch.stack([r[k] for r in rows]) for k in rows[0]}, out / f"clips-{shard:05d}.pt")


def load_preprocessed(folder: str | Path) -> ClipPool:
    """The clips ``preprocess`` wrote (all shards, in memory)."""
    shards = sorted(Path(folder).glob("clips-*.pt"))
    if not shards:
        raise FileNotFoundError(f"no preprocessed clips (clips-*.pt) in {folder}: run python -m starcaster "
                                "preprocess VIDEOS_DIR OUT_DIR first.")
    parts = [torch.load(path, weights_only=True) for path in shards]  # tensors only, never pickled objects
    return ClipPool(**{k: torch.cat([p[k] for p in parts]) for k in parts[0]})
