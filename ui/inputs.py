"""Checking what visitors upload before it reaches the sampler, so the message names the actual problem."""

from __future__ import annotations

import os

import numpy as np

ALIGNED_HINT = ('If the image is already an aligned, centred portrait (like the bundled examples), tick '
                '"Already an aligned portrait" to skip face detection.')
MAX_SECONDS_ENV = "STARCASTER_MAX_SECONDS"
DEFAULT_MAX_SECONDS = 30.0  # a shared demo: one visitor's ten-minute clip would hold the model slot for everyone


def operator_max_seconds() -> float:
    """The operator's cap (``STARCASTER_MAX_SECONDS``, default 30); a ValueError naming the variable when it is bad.

    Checked at start-up (``app.launch``): a bad value must stop the server with its name, not fail every visitor's
    request with a message about their input.
    """
    text = os.environ.get(MAX_SECONDS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise ValueError(f"{MAX_SECONDS_ENV}={text!r} is not a positive number of seconds (the longest audio the "
                         f"demo accepts; default {DEFAULT_MAX_SECONDS:g}).")
    return value


def max_seconds(pipe) -> float:
    """The longest audio (or silent orbit) the demo accepts: the pipeline's limit, capped for a shared server."""
    return min(float(pipe.max_audio_seconds), operator_max_seconds())


def for_visitor(message: str, path, label: str) -> str:
    """A library message about ``path`` (a server temp file) with the upload named as the visitor knows it."""
    if not path:
        return message
    path = str(path)
    for quoted in (f"Image file {path!r}", f"Image file '{path}'", f"Audio file {path!r}", f"audio file {path!r}"):
        message = message.replace(quoted, label)
    for quoted in (repr(path), f"'{path}'", f'"{path}"', path):
        message = message.replace(quoted, label)
    message = message.replace(f"The {label}", label)  # "The audio file 'x' ..." -> "the audio file ..."
    return message[:1].upper() + message[1:]


def face_crop(pipe, image, already_aligned: bool):
    """(crop the model sees, a one-line note); ``ValueError`` naming what went wrong with the photo."""
    if image is None:
        raise ValueError("Please upload a portrait photo.")
    try:
        portrait = pipe.prepare_portrait(image, already_aligned=bool(already_aligned))
    except ValueError as exc:
        message = for_visitor(str(exc), image, "the photo")
        if "no face" in message.lower():
            # The library's hint names its own argument; the visitor has a checkbox (several faces: crop instead).
            message = "No face found in the photo. Use a photo with one clearly visible, roughly frontal face."
            if not already_aligned:
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
    from starcaster.pipeline_inputs import check_audio_length

    try:
        samples = np.asarray(load_audio(audio, pipe.sample_rate, max_seconds(pipe)), dtype=np.float32)
    except ValueError as exc:
        # The library names its argument; a visitor can only trim the clip (the cap is the operator's).
        message = str(exc).replace(" (max_seconds)", " by this demo")
        raise ValueError(for_visitor(message, audio, "the audio file")) from None
    if samples.size == 0:
        raise ValueError("The audio file is empty.")
    if not np.all(np.isfinite(samples)):
        raise ValueError("The audio contains invalid (NaN or infinite) samples.")
    check_audio_length(samples, pipe.sample_rate, pipe.fps)  # the pipeline's own minimum: one video frame
    if not allow_silent and is_silent(samples):  # the pipeline's own test: the mouth would not move
        raise ValueError("The audio is silent: upload a recording with speech in it.")
    return samples, pipe.sample_rate


def read_identity(pipe, path):
    """An identity embedding from an uploaded ``.npy`` file (never unpickled), checked against the model's width."""
    if path is None:
        return None
    from starcaster.conditioning.identity import load_identity_embedding

    try:
        return load_identity_embedding(path, int(pipe.settings.face_encoder.get("embedding_dim", 512)))
    except ValueError as exc:
        message = str(exc).replace(f"'{os.path.basename(str(path))}'", "file").replace(f"'{path}'", "file")
        raise ValueError(for_visitor(message, path, "the embedding file")) from None
