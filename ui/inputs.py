"""Checking what visitors upload before it reaches the sampler, so the message names the actual problem."""

from __future__ import annotations

import os

import numpy as np

ALIGNED_HINT = ('If the image is already an aligned, centred portrait (like the bundled examples), tick '
                '"Already an aligned portrait" to skip face detection.')
MAX_SECONDS_ENV = "STARCASTER_MAX_SECONDS"
DEFAULT_MAX_SECONDS = 30.0  # a shared demo: one visitor's ten-minute clip would hold the model slot for everyone


def max_seconds(pipe) -> float:
    """The longest audio (or silent orbit) the demo accepts: the pipeline's limit, capped for a shared server."""
    cap = float(os.environ.get(MAX_SECONDS_ENV, DEFAULT_MAX_SECONDS))
    return min(float(pipe.max_audio_seconds), cap)


def face_crop(pipe, image, already_aligned: bool):
    """(crop the model sees, a one-line note); ``ValueError`` naming what went wrong with the photo."""
    if image is None:
        raise ValueError("Please upload a portrait photo.")
    try:
        portrait = pipe.prepare_portrait(image, already_aligned=bool(already_aligned))
    except ValueError as exc:
        message = str(exc)
        if not already_aligned and "no face" in message.lower():  # several faces: the visitor should crop instead
            message = f"{message} {ALIGNED_HINT}"
        raise ValueError(message) from None
    if already_aligned or portrait.face is None:
        note = "Used as given (no face detection)."
    else:
        note = "Face detected and aligned (FFHQ-style crop)."
    return portrait.image, note


def read_audio(pipe, audio, *, required: bool, allow_silent: bool = False):
    """``(samples, rate)`` for the pipeline, or None when optional and absent. Refuses empty/corrupt/too long/silent."""
    if audio is None:
        if required:
            raise ValueError("Please upload a speech recording (wav, mp3, flac...).")
        return None
    from starcaster.audio_io import is_silent, load_audio

    samples = np.asarray(load_audio(audio, pipe.sample_rate, max_seconds(pipe)), dtype=np.float32)
    if samples.size == 0:
        raise ValueError("The audio file is empty.")
    if not np.all(np.isfinite(samples)):
        raise ValueError("The audio contains invalid (NaN or infinite) samples.")
    min_samples = pipe.sample_rate / pipe.fps  # at least one video frame
    if samples.size < min_samples:
        raise ValueError(f"The audio is too short ({samples.size / pipe.sample_rate * 1000:.0f} ms): give at least a second.")
    if not allow_silent and is_silent(samples):  # the pipeline's own test: the mouth would not move
        raise ValueError("The audio is silent: upload a recording with speech in it.")
    return samples, pipe.sample_rate


def read_identity(pipe, path):
    """An identity embedding from an uploaded ``.npy`` file (never unpickled), checked against the model's width."""
    if path is None:
        return None
    from starcaster.conditioning.identity import load_identity_embedding

    return load_identity_embedding(path, int(pipe.settings.face_encoder.get("embedding_dim", 512)))
