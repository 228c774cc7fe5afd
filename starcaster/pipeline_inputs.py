"""Turn what a user hands the pipeline (photo, audio, camera path, identity embedding) into model inputs.

Everything here validates first: bad input is a ValueError a person can act on, raised before any sampling starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .conditioning.audio import clip_audio_features
from .conditioning.camera import CameraPath
from .conditioning.identity import load_identity_embedding
from .image_io import to_model_range
from .video import audio_slice, frame_count, is_silent, load_audio

DEFAULT_SILENT_SECONDS = 4.0  # length of an orbit with neither audio nor a frame count

# The sampling settings a caller may choose, as (low, high), inclusive. The demo's sliders use the same ranges, so a
# value the UI cannot produce is refused by the API with the same message.
SAMPLING_LIMITS = {"steps": (1, 100), "guidance": (1.0, 10.0), "strength": (0.0, 3.0)}
STREAMS = ("audio", "identity", "camera", "reference")


def _number(name: str, value, low, high) -> float:
    """``value`` as a float within [low, high]; a ValueError that names NaN, infinities and non-numbers as such."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between {low:g} and {high:g}, got {value!r}.") from None
    if math.isnan(number):
        raise ValueError(f"{name} must be a number between {low:g} and {high:g}, got NaN (not a number).")
    if not low <= number <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {number:g}.")
    return number


def check_audio_length(samples, sample_rate: int, fps: float) -> None:
    """Refuse audio shorter than one video frame (it would make no video): a ValueError giving both lengths."""
    minimum = sample_rate / fps
    if len(samples) < minimum:
        raise ValueError(f"The audio is too short ({len(samples) / sample_rate * 1000:.0f} ms): it must last at least "
                         f"{1000 / fps:.0f} ms (one video frame).")


def check_sampling(steps, guidance, strengths=None) -> tuple[int, float, dict]:
    """(steps, guidance, {stream: strength}) checked against ``SAMPLING_LIMITS``; ValueError saying what is wrong."""
    steps_value = _number("steps", steps, *SAMPLING_LIMITS["steps"])
    if steps_value != int(steps_value):
        raise ValueError(f"steps must be a whole number, got {steps_value:g}.")
    guidance_value = _number("guidance", guidance, *SAMPLING_LIMITS["guidance"])
    checked = {}
    for name, value in (strengths or {}).items():
        stream = "identity" if name == "id" else name
        if stream not in STREAMS:
            raise ValueError(f"Unknown stream '{name}' in strengths; use audio, identity, camera or reference.")
        checked[stream] = _number(f"Stream strength '{name}'", value, *SAMPLING_LIMITS["strength"])
    return int(steps_value), guidance_value, checked


@dataclass
class PreparedInputs:
    num_frames: int
    identity: torch.Tensor  # (1, E) identity embedding
    portrait: object | None  # face.Portrait: the crop the model sees (shown by the app)
    portrait_latent: torch.Tensor | None  # (1, C, 1, h, w)
    audio_features: torch.Tensor | None  # (num_frames, D) whole-clip features (`clip_audio_features`)
    camera: np.ndarray | None  # (num_frames, 25)
    samples: np.ndarray  # the audio (zeros when silent), padded to whole frames
    sample_rate: int
    fps: float

    def audio_slice(self, start: int, count: int) -> np.ndarray:
        return audio_slice(self.samples, self.sample_rate, self.fps, start, count)


def prepare_inputs(pipe, task, image=None, audio=None, camera=None, identity=None, num_frames=None,
                   already_aligned=False) -> PreparedInputs:
    cfg = pipe.settings
    if task in ("portrait", "orbit") and image is None:
        raise ValueError(f"The {task} task needs a portrait photo.")
    if task == "identity" and image is None and identity is None:
        raise ValueError("ID-driven generation needs a photo or an identity embedding (.npy).")
    if task == "portrait" and audio is None:
        raise ValueError("Portrait animation is driven by speech: please give an audio file.")

    samples = None
    if audio is not None:
        samples = load_audio(audio, sample_rate=cfg.sample_rate, max_seconds=cfg.max_audio_seconds)
        check_audio_length(samples, cfg.sample_rate, cfg.fps)  # before the silence test: too short is not silent
        if is_silent(samples):
            if task != "orbit":
                raise ValueError("The audio is silent: there is no speech to drive the lips. Upload speech audio, "
                                 "or leave the audio empty for a silent video.")
            samples = None  # an orbit over silence is an orbit without audio

    if num_frames is None:
        if samples is not None:
            num_frames = frame_count(len(samples), cfg.sample_rate, cfg.fps)
        elif camera is not None:
            num_frames = len(camera)
        else:
            num_frames = int(round(DEFAULT_SILENT_SECONDS * cfg.fps))
    num_frames = int(num_frames)
    max_frames = int(cfg.max_audio_seconds * cfg.fps)
    if not 1 <= num_frames <= max_frames:
        raise ValueError(f"The video must be between 1 and {max_frames} frames long, got {num_frames}.")

    portrait = None
    if image is not None:
        portrait = pipe.prepare_portrait(image, already_aligned=already_aligned)

    if identity is not None:
        embedding = torch.from_numpy(load_identity_embedding(identity, cfg.face_encoder.get("embedding_dim", 512)))[None]
    else:
        embedding = embed_face(pipe.face_embedder, portrait)

    # The identity task animates a new video of the person, not a copy of the photo: no reference image.
    portrait_latent = pipe.encode_image(portrait.image) if portrait is not None and task != "identity" else None

    cam = None
    if task == "orbit":
        path = camera if camera is not None else CameraPath.preset("orbit", num_frames, fps=cfg.fps)
        if not isinstance(path, CameraPath):
            raise ValueError("camera must be a CameraPath (see CameraPath.orbit / CameraPath.from_json).")
        cam = path.resample(num_frames).vectors()

    total_samples = int(round(num_frames * cfg.sample_rate / cfg.fps))
    padded = np.zeros(total_samples, dtype=np.float32)
    features = None
    if samples is not None:
        padded[: min(len(samples), total_samples)] = samples[:total_samples]
        features = clip_audio_features(pipe.audio_encoder, padded, num_frames, cfg.fps)

    return PreparedInputs(
        num_frames=num_frames, identity=embedding, portrait=portrait, portrait_latent=portrait_latent,
        audio_features=features, camera=cam, samples=padded, sample_rate=cfg.sample_rate, fps=cfg.fps,
    )


def embed_face(face_embedder, portrait) -> torch.Tensor:
    """(1, E) embedding of the portrait's face: ArcFace for sd15, the tiny face encoder for tiny."""
    if isinstance(face_embedder, torch.nn.Module):
        param = next(face_embedder.parameters())
        x = to_model_range(torch.from_numpy(portrait.image).permute(2, 0, 1)[None]).to(param)
        return face_embedder(x).float().cpu()
    # Landmarks in the aligned crop's coordinates (not the original photo's), which is the image ArcFace sees.
    return torch.from_numpy(np.asarray(face_embedder(portrait.image, portrait.landmarks), dtype=np.float32))[None]
