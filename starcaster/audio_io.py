"""Reading media: speech audio from users, cut into per-video-frame slices, and `probe` for videos we wrote.

Everything is decoded by the ffmpeg binary that ships with `imageio-ffmpeg`, so any container ffmpeg reads (wav, mp3,
m4a, ogg, flac, or the audio track of a video) works without a system ffmpeg, and there is no ffprobe to rely on.
Audio always comes back as mono float32 in [-1, 1] at the model's rate (16 kHz, as wav2vec2 and our mel features use).

Alignment convention (shared with the sampler and the video writers): video frame `k` at `fps` owns the audio samples
`[round(k * sr / fps), round((k + 1) * sr / fps))`. Because every frame boundary is a pure function of `k`, slices of
consecutive segments tile the track exactly, with no sample lost or repeated, even at 29.97 fps.
"""

from __future__ import annotations

import functools
import math
import os
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

DEFAULT_SAMPLE_RATE = 16_000

# A decoded file may run a few ms past its nominal length (mp3/aac frame padding); that is not "too long".
_LENGTH_GRACE_S = 0.05
# Decode this much past `max_seconds`, enough to see that a file is too long without decoding all of it.
_DECODE_MARGIN_S = 0.5


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (honours `IMAGEIO_FFMPEG_EXE`)."""
    try:
        import imageio_ffmpeg
    except ImportError as err:  # pragma: no cover - it is a hard dependency
        message = "starcaster needs the `imageio-ffmpeg` package for audio and video: pip install imageio-ffmpeg"
        raise RuntimeError(message) from err
    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_path(path) -> str:
    """A local path as ffmpeg must read it: `file:` first, so a name like `take:2.wav` or `http:x` is never taken for
    a protocol (and nothing is ever fetched from a network)."""
    return f"file:{Path(path)}"


# --------------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------------


def load_audio(src, sample_rate: int = DEFAULT_SAMPLE_RATE, max_seconds: float = 300.0) -> np.ndarray:
    """Load speech as mono float32 in [-1, 1] at `sample_rate`.

    Args:
        src: a path to anything ffmpeg decodes (wav, mp3, m4a, ogg, flac, a video with sound), or a `(samples, rate)`
            tuple as numpy users write it. `(rate, samples)`, the order `gr.Audio(type="numpy")` returns, is accepted
            too. Samples may be int (int16, int32, uint8, ...) or float, mono `(N,)` or multichannel `(N, ch)` /
            `(ch, N)`; channels are averaged.
        sample_rate: rate of the returned samples.
        max_seconds: refuse longer audio. Files are decoded only up to a little past this limit.

    Raises:
        ValueError: with a message saying what is wrong with the input and what to do about it.
    """
    sample_rate = _check_rate(sample_rate, "sample_rate")
    if max_seconds is None or not max_seconds > 0:
        raise ValueError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")

    if isinstance(src, (str, os.PathLike)):
        samples, source_seconds = _decode_file(Path(src), sample_rate, max_seconds)
        what = f"audio file {str(src)!r}"
    elif isinstance(src, (tuple, list)) and len(src) == 2:
        samples = _from_tuple(src, sample_rate)
        source_seconds = samples.size / sample_rate
        what = "audio array"
    else:
        raise ValueError(
            f"audio must be a file path or a (samples, sample_rate) tuple, got {type(src).__name__}. "
            "For a bare numpy array, pass (array, its_sample_rate)."
        )

    if samples.size == 0:
        raise ValueError(f"The {what} contains no audio samples (zero length). Provide a recording with speech in it.")
    seconds = samples.size / sample_rate
    if seconds > max_seconds + _LENGTH_GRACE_S:
        length = f"{source_seconds:.1f} s long" if source_seconds else f"longer than {max_seconds:g} s"
        raise ValueError(
            f"The {what} is {length}; at most {max_seconds:g} s is accepted (max_seconds). Trim it to a shorter clip."
        )
    return np.clip(samples, -1.0, 1.0, out=samples)


def _check_rate(rate, name: str) -> int:
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number of samples per second, got {rate!r}") from None
    if not math.isfinite(value) or value <= 0 or value != round(value):
        raise ValueError(f"{name} must be a positive whole number of samples per second, got {rate!r}")
    return int(value)


def _decode_file(path: Path, sample_rate: int, max_seconds: float) -> tuple[np.ndarray, float | None]:
    """Decode a file's first audio stream to mono float32; also return the container's stated length, if any."""
    if not path.exists():
        raise ValueError(f"Audio file not found: {str(path)!r}. Check the path (relative to {os.getcwd()!r}).")
    if path.is_dir():
        raise ValueError(f"Audio path {str(path)!r} is a folder; give the path of an audio file inside it.")
    if path.stat().st_size == 0:
        raise ValueError(f"Audio file {str(path)!r} is empty (0 bytes). Re-export or re-upload the recording.")

    # As an input option, -t stops reading there: an hour-long upload is refused after decoding a few seconds of it.
    limit = ["-t", f"{max_seconds + _DECODE_MARGIN_S:.3f}"] if math.isfinite(max_seconds) else []
    cmd = [
        ffmpeg_exe(), "-nostdin", "-hide_banner", "-nostats", *limit,
        "-i", ffmpeg_path(path),
        "-map", "0:a:0", "-vn", "-sn", "-dn",
        # Average the channels: ffmpeg's default downmix adds them at -3 dB each, which overshoots 1.0 for stereo.
        "-ac", "1", "-rematrix_maxval", "1.0", "-ar", str(sample_rate),
        "-f", "f32le", "pipe:1",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, check=False)
    log = result.stderr.decode("utf-8", errors="replace")
    if result.returncode != 0:
        if "matches no streams" in log or "does not contain any stream" in log:
            raise ValueError(
                f"{str(path)!r} has no audio stream (a silent video or an image?). "
                "Give a file with sound: wav, mp3, m4a, ogg, flac, or a video with an audio track."
            )
        raise ValueError(
            f"Could not decode {str(path)!r} as audio ({_last_error_line(log)}). The file is corrupt or not an audio "
            "file; export it again as wav or mp3."
        )
    samples = np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)
    return samples, _parse_duration(log)


def _last_error_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else "ffmpeg gave no reason"


def _parse_duration(log: str) -> float | None:
    match = re.search(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)", log)
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _from_tuple(src, sample_rate: int) -> np.ndarray:
    first, second = src
    # numpy users write (samples, rate); Gradio hands out (rate, samples). The rate is the scalar one.
    if np.ndim(first) == 0 and np.ndim(second) > 0:
        first, second = second, first
    if np.ndim(second) != 0:
        raise ValueError("An audio tuple must be (samples, sample_rate) with a scalar sample rate.")
    rate = _check_rate(second, "The audio tuple's sample rate")
    samples = _to_float(np.asarray(first))
    samples = _to_mono(samples)
    bad = ~np.isfinite(samples)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"The audio array contains NaN or infinite values ({int(bad.sum())} samples, first at sample {index}, "
            f"{index / rate:.3f} s). Fix or drop them before passing the audio in."
        )
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak > 1.0:
        # Float audio past full scale is usually int samples stored as float; scaling keeps the waveform intact.
        samples = samples / peak
    return _resample(samples.astype(np.float32), rate, sample_rate)


def _to_float(samples: np.ndarray) -> np.ndarray:
    """Integer PCM to float in [-1, 1] by the full scale of its type; floats pass through."""
    if samples.dtype.kind == "f":
        return samples.astype(np.float64)
    if samples.dtype.kind == "i":
        scale = float(2 ** (8 * samples.dtype.itemsize - 1))
        return samples.astype(np.float64) / scale
    if samples.dtype.kind == "u":
        middle = float(2 ** (8 * samples.dtype.itemsize - 1))
        return (samples.astype(np.float64) - middle) / middle
    raise ValueError(f"Audio samples must be int or float numbers, got dtype {samples.dtype}.")


def _to_mono(samples: np.ndarray) -> np.ndarray:
    if samples.ndim == 1:
        return samples
    if samples.ndim == 2:
        # The channel axis is the short one: (N, ch) from soundfile/scipy, (ch, N) from torchaudio/librosa.
        channel_axis = 1 if samples.shape[1] <= samples.shape[0] else 0
        if samples.shape[channel_axis] <= 16:
            return samples.mean(axis=channel_axis)
    raise ValueError(
        f"Audio array has shape {samples.shape}; expected mono (N,) or multichannel (N, channels) / (channels, N)."
    )


def _resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target or samples.size == 0:
        return samples
    from scipy.signal import resample_poly  # polyphase: exact rational ratio, anti-aliased, fast

    ratio = Fraction(target, rate)
    return resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)


# --------------------------------------------------------------------------------------------------------------------
# Silence and frame alignment
# --------------------------------------------------------------------------------------------------------------------


def is_silent(samples, threshold_db: float = -50.0) -> bool:
    """True when the RMS level of `samples` (float, full scale 1.0) is below `threshold_db` dBFS, or there are none."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.size == 0:
        return True
    rms = math.sqrt(float(np.mean(np.square(samples))))
    return rms == 0.0 or 20.0 * math.log10(rms) < threshold_db


def _fps_fraction(fps) -> Fraction:
    """fps as an exact fraction: 25 -> 25, 29.97 -> 2997/100, 30000/1001 (as a float) -> 30000/1001."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
    return Fraction(value).limit_denominator(1001)


def frame_boundary(frame: int, sample_rate: int, fps) -> int:
    """First audio sample of video frame `frame` (round half up of `frame * sample_rate / fps`)."""
    return math.floor(Fraction(frame) * sample_rate / _fps_fraction(fps) + Fraction(1, 2))


def frame_count(num_samples: int, sample_rate: int, fps) -> int:
    """Number of video frames needed to cover `num_samples` of audio.

    This is ceil(num_samples * fps / sample_rate) measured on the frame boundaries above, so that
    `audio_slice(..., 0, frame_count(...))` holds every sample and ends in less than one frame of padding.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    sample_rate = _check_rate(sample_rate, "sample_rate")
    count = math.ceil(Fraction(num_samples) * _fps_fraction(fps) / sample_rate)
    while count > 0 and frame_boundary(count - 1, sample_rate, fps) >= num_samples:
        count -= 1  # rounding of the boundary can make the last frame unnecessary
    return count


def audio_slice(samples, sample_rate: int, fps, start_frame: int, num_frames: int) -> np.ndarray:
    """The audio owned by video frames `[start_frame, start_frame + num_frames)`, zero-padded past the end.

    Its length is always `frame_boundary(start + n) - frame_boundary(start)`, so consecutive slices concatenate to
    the whole track (padded to a whole number of frames).
    """
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"audio_slice expects mono samples of shape (N,), got {samples.shape}")
    if start_frame < 0 or num_frames < 0:
        raise ValueError(f"start_frame and num_frames must be >= 0, got {start_frame} and {num_frames}")
    sample_rate = _check_rate(sample_rate, "sample_rate")
    begin = frame_boundary(start_frame, sample_rate, fps)
    end = frame_boundary(start_frame + num_frames, sample_rate, fps)
    out = np.zeros(end - begin, dtype=samples.dtype if samples.dtype.kind == "f" else np.float32)
    available = samples[begin:end]
    out[: available.size] = available
    return out


# --------------------------------------------------------------------------------------------------------------------
# Probing (no ffprobe: `ffmpeg -i` for the header, a decode pass for exact counts)
# --------------------------------------------------------------------------------------------------------------------


def probe(path) -> dict:
    """Describe a video file: duration, fps, num_frames, width, height, has_audio, audio_duration, audio_rate.

    `num_frames` and `audio_duration` come from decoding, so they are what a player gets, not what a header claims.
    Also reports `video_codec`, `audio_codec` and `pix_fmt`.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No video file at {str(path)!r}")
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", ffmpeg_path(path)]
    header = subprocess.run(command, capture_output=True, check=False)  # exits 1 (no output given) after the header
    log = header.stderr.decode("utf-8", errors="replace")
    if "Input #0" not in log:
        raise ValueError(f"Could not read {str(path)!r} as a media file: {log.strip()[-300:]}")

    info: dict = {"video_codec": None, "audio_codec": None, "pix_fmt": None}
    info["duration"] = _parse_duration(log)
    video = re.search(r"Stream #0:\d+\S*: Video: (.*)", log)
    if video:
        desc = video.group(1)
        info["video_codec"] = desc.split()[0].rstrip(",")
        size = re.search(r", (\d+)x(\d+)[\s,]", desc)  # not the "0x31637661" of the codec tag
        info["width"], info["height"] = (int(size.group(1)), int(size.group(2))) if size else (None, None)
        rate = re.search(r"([\d.]+)(k?) fps", desc) or re.search(r"([\d.]+)(k?) tbr", desc)
        info["fps"] = float(rate.group(1)) * (1000 if rate.group(2) else 1) if rate else None
        pix = re.search(r"\b(yuv\w+|rgb\w+|gray\w*|nv12)\b", desc)
        info["pix_fmt"] = pix.group(1) if pix else None
        info["num_frames"] = len(_decode(path, ["-map", "0:v:0", "-fps_mode", "passthrough", "-vf", "scale=1:1",
                                                "-pix_fmt", "gray", "-f", "rawvideo"]))  # fmt: skip
    else:
        info.update(width=None, height=None, fps=None, num_frames=0)

    audio = re.search(r"Stream #0:\d+\S*: Audio: (.*)", log)
    info["has_audio"] = audio is not None
    if audio:
        info["audio_codec"] = audio.group(1).split()[0].rstrip(",")
        rate = re.search(r"(\d+) Hz", audio.group(1))
        info["audio_rate"] = int(rate.group(1)) if rate else None
        pcm = _decode(path, ["-map", "0:a:0", "-ac", "1", "-f", "s16le"])
        info["audio_duration"] = len(pcm) / 2 / info["audio_rate"] if info["audio_rate"] else None
    else:
        info.update(audio_rate=None, audio_duration=None)
    if info["duration"] is None and info["fps"]:
        info["duration"] = info["num_frames"] / info["fps"]
    return info


def _decode(path: Path, output_args: list[str]) -> bytes:
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-i", ffmpeg_path(path), *output_args, "pipe:1"]
    result = subprocess.run(cmd, capture_output=True, check=False)
    if result.returncode != 0:
        raise ValueError(f"Could not decode {str(path)!r}: {result.stderr.decode(errors='replace').strip()[-300:]}")
    return result.stdout
