"""Writing talking-portrait videos: H.264 mp4 with AAC audio, written incrementally, and short streaming chunks.

Frames go to ffmpeg (the binary bundled with `imageio-ffmpeg`) through a pipe one at a time, so a long video is never
held in memory. Audio follows the frame alignment of `audio_io`: a video of `F` frames carries exactly the samples of
those frames, `[0, frame_boundary(F))`, trimmed or zero-padded, so picture and sound end together.

Audio is encoded as AAC at 48 kHz: every browser and player takes it, and the encoder's start-up delay (1024 samples)
is 21 ms there instead of 64 ms at 16 kHz. In mp4 that delay is removed again on decode by the edit list ffmpeg writes;
MPEG-TS has no edit lists, so a `.ts` chunk decodes 1024 samples longer than its picture (players that follow the
timestamps still play it in sync). Where chunks' decoded audio is joined end to end, as Gradio 6's streaming `gr.Video`
does (it re-encodes every chunk's audio into one continuous track), those samples add up: write `.mp4` chunks there.

Reading (audio, `probe`) and frame alignment live in `audio_io` and are re-exported here, so `starcaster.video` is the
one module the pipeline, the CLI and the app need for media I/O.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .audio_io import (
    DEFAULT_SAMPLE_RATE,
    _fps_fraction,
    audio_slice,
    ffmpeg_exe,
    ffmpeg_path,
    frame_boundary,
    frame_count,
    is_silent,
    load_audio,
    probe,
)

__all__ = [
    "DEFAULT_SAMPLE_RATE",
    "VideoWriter",
    "audio_slice",
    "frame_boundary",
    "frame_count",
    "is_silent",
    "load_audio",
    "probe",
    "write_chunk",
    "write_mp4",
]

OUTPUT_AUDIO_RATE = 48_000
AUDIO_BITRATE = "128k"
# "fast" is within a few percent of "medium" in size at the same CRF and much kinder to a 2-core machine.
X264_PRESET = "fast"
_CONTAINERS = {".mp4": "mp4", ".ts": "mpegts"}


# --------------------------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------------------------


def _iter_frames(frames) -> Iterator[np.ndarray]:
    """Yield (H, W, 3) uint8 frames from an (F, H, W, 3) array, one frame, or an iterable of either."""
    if isinstance(frames, np.ndarray) or not isinstance(frames, Iterable):  # an array, or one PIL image
        frames = np.asarray(frames)
        if frames.ndim == 4:
            yield from (_as_rgb(frame) for frame in frames)
        else:
            yield _as_rgb(frames)
        return
    for item in frames:
        item = np.asarray(item)
        if item.ndim == 4:  # a segment inside a stream of segments
            yield from (_as_rgb(frame) for frame in item)
        else:
            yield _as_rgb(item)


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8:
        raise ValueError(
            f"Video frames must be uint8 RGB in [0, 255], got dtype {frame.dtype}. For float images in [0, 1] use "
            "(x * 255).round().clip(0, 255).astype(np.uint8)."
        )
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3 or frame.shape[-1] not in (1, 3, 4):
        raise ValueError(f"A video frame must be (H, W, 3) RGB (or gray / RGBA), got shape {frame.shape}")
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    elif frame.shape[-1] == 4:
        frame = frame[..., :3]  # alpha has no place in H.264
    return np.ascontiguousarray(frame)


def _even(frame: np.ndarray) -> np.ndarray:
    """yuv420p needs even width and height: repeat the last row / column once rather than refuse the video."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frame


def _fps_arg(fps) -> str:
    rate = _fps_fraction(fps)
    return f"{rate.numerator}/{rate.denominator}"


def _mono_audio(audio, sample_rate: int) -> np.ndarray:
    """Audio for a video: a path or any array `load_audio` takes, as float32 mono at `sample_rate` (no length cap)."""
    if isinstance(audio, (str, os.PathLike, tuple)):
        return load_audio(audio, sample_rate, max_seconds=float("inf"))
    return load_audio((np.asarray(audio), sample_rate), sample_rate, max_seconds=float("inf"))


def _fit_audio(audio: np.ndarray, num_frames: int, fps, sample_rate: int) -> np.ndarray:
    """Exactly the samples of `num_frames` frames: trimmed, or zero-padded past the end."""
    return _fit(audio, frame_boundary(num_frames, sample_rate, fps))


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length, np.float32)
    out[: min(length, len(audio))] = audio[:length]
    return out


# --------------------------------------------------------------------------------------------------------------------
# ffmpeg processes
# --------------------------------------------------------------------------------------------------------------------

_H264 = [
    "-c:v", "libx264", "-preset", X264_PRESET, "-pix_fmt", "yuv420p",
    # Convert and tag as BT.709, which is what browsers assume for untagged video; swscale's default is BT.601.
    "-vf", "scale=out_color_matrix=bt709:out_range=tv",
    "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
]  # fmt: skip
_AAC = ["-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", str(OUTPUT_AUDIO_RATE)]


def _container_args(container: str) -> list[str]:
    if container == "mp4":
        return ["-movflags", "+faststart", "-f", "mp4"]  # index first: the browser can start before the last byte
    # Timestamps from zero rather than the muxer's default 1.4 s, so a chunk probes as starting where it starts.
    return ["-muxdelay", "0", "-muxpreload", "0", "-f", "mpegts"]


def _raw_audio_input(audio_file: Path, sample_rate: int) -> list[str]:
    return ["-f", "f32le", "-ar", str(sample_rate), "-ch_layout", "mono", "-i", ffmpeg_path(audio_file)]


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, check=False)
    if result.returncode != 0:
        log = result.stderr.decode("utf-8", errors="replace").strip()
        raise RuntimeError(f"ffmpeg failed while {what} (exit {result.returncode}): {log[-2000:]}")


class _FrameEncoder:
    """One ffmpeg process turning RGB frames written to its stdin into H.264 (plus an optional audio file)."""

    def __init__(self, out: Path, first: np.ndarray, fps, crf: int, container: str, audio: tuple[Path, int] | None):
        self.height, self.width = first.shape[:2]
        size = f"{self.width + self.width % 2}x{self.height + self.height % 2}"  # what `_even` makes of each frame
        self.out = out
        self._log = open(out.with_name(out.name + ".log"), "w+b")  # a file, so a chatty ffmpeg never blocks on a pipe
        cmd = [
            ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", size,
            "-framerate", _fps_arg(fps), "-i", "pipe:0",
        ]  # fmt: skip
        if audio is not None:
            cmd += _raw_audio_input(*audio) + ["-map", "0:v:0", "-map", "1:a:0"] + _AAC
        cmd += _H264 + ["-crf", str(int(crf))] + _container_args(container) + [ffmpeg_path(out)]
        self._process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[:2] != (self.height, self.width):
            self.abort()
            raise ValueError(
                f"All frames of a video must have the same size: got {frame.shape[1]}x{frame.shape[0]} after "
                f"{self.width}x{self.height}. Resize the frames before writing."
            )
        try:
            self._process.stdin.write(_even(frame).data)
        except BrokenPipeError:
            self._process.wait()
            raise RuntimeError(f"ffmpeg stopped while encoding {self.out.name}: {self._error_text()}") from None

    def finish(self) -> None:
        self._process.stdin.close()
        code = self._process.wait()
        error = self._error_text()
        self._log.close()
        if code != 0:
            raise RuntimeError(f"ffmpeg failed while encoding {self.out.name} (exit {code}): {error}")

    def abort(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        if self._process.stdin and not self._process.stdin.closed:
            try:
                self._process.stdin.close()
            except BrokenPipeError:
                pass
        self._log.close()

    def _error_text(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", errors="replace").strip()[-2000:] or "no message"


# --------------------------------------------------------------------------------------------------------------------
# Public writers
# --------------------------------------------------------------------------------------------------------------------


class VideoWriter:
    """Write an mp4 segment by segment, as the autoregressive sampler produces them.

        with VideoWriter("out.mp4", fps=25, audio=speech) as writer:
            for segment in pipe.stream(...):
                writer.append(segment.frames)

    Frames are encoded as they arrive; `close()` adds the audio, trimmed or padded to the frames written, so the
    result is right however many frames came. Audio may instead come with each segment, `append(frames, audio=...)`:
    each piece is fitted to that call's frames, and a call without audio gets silence (a silent orbit segment).
    Until `close()` returns, `path` does not exist or holds its previous content: the finished file is moved into
    place in one step. A writer dropped without `close()` kills its ffmpeg and removes its temporary files.
    """

    def __init__(self, path, fps, audio=None, sample_rate: int = DEFAULT_SAMPLE_RATE, crf: int = 18):
        self.path = Path(path)
        self.fps = fps
        self.sample_rate = int(sample_rate)
        self.crf = int(crf)
        _fps_fraction(fps)  # validate now, not at the first frame
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be between 0 (lossless) and 51, got {crf}")
        self._audio = None if audio is None else _mono_audio(audio, self.sample_rate)
        self._audio_parts: list[tuple[int, int, np.ndarray]] = []  # (first frame, frames, samples) per append
        self._encoder: _FrameEncoder | None = None
        self._workdir: Path | None = None
        self._cleanup: weakref.finalize | None = None
        self.num_frames = 0
        self.closed = False

    def append(self, frames, audio=None) -> int:
        """Encode more frames (an (F, H, W, 3) array, one frame, or an iterable); returns the frames written so far."""
        if self.closed:
            raise ValueError(f"VideoWriter for {self.path} is already closed")
        if audio is not None:
            if self._audio is not None:
                raise ValueError("Audio was given to VideoWriter(...) already; do not also pass it to append().")
            audio = _mono_audio(audio, self.sample_rate)
        start = self.num_frames
        for frame in _iter_frames(frames):
            if self._encoder is None:
                self._open(frame)
            self._encoder.write(frame)
            self.num_frames += 1
        if audio is not None:
            self._audio_parts.append((start, self.num_frames - start, audio))
        return self.num_frames

    def _open(self, first: np.ndarray) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Beside the output, so the final move is a rename on the same file system.
        self._workdir = Path(tempfile.mkdtemp(prefix=f".{self.path.stem}-", dir=self.path.parent))
        self._encoder = _FrameEncoder(self._workdir / "video.mp4", first, self.fps, self.crf, "mp4", audio=None)
        self._cleanup = weakref.finalize(self, _discard, self._encoder, self._workdir)

    def close(self) -> Path:
        """Finish the video, mux the audio, and move the file to `path`."""
        if self.closed:
            return self.path
        self.closed = True
        if self._encoder is None:
            raise ValueError(f"No frames were written to {self.path}; a video needs at least one frame.")
        try:
            self._encoder.finish()
            audio = self._track()
            video = self._encoder.out
            if audio is not None:
                video = self._mux(video, audio)
            os.replace(video, self.path)
        finally:
            self._cleanup()  # the encoder has exited by now; this removes the temporary files
        return self.path

    def _track(self) -> np.ndarray | None:
        """The audio of all frames written: the whole track, or the per-append pieces each at its own frames."""
        if self._audio is not None:
            return _fit_audio(self._audio, self.num_frames, self.fps, self.sample_rate)
        if not self._audio_parts:
            return None
        track = np.zeros(frame_boundary(self.num_frames, self.sample_rate, self.fps), np.float32)
        for start, count, piece in self._audio_parts:
            begin = frame_boundary(start, self.sample_rate, self.fps)
            end = frame_boundary(start + count, self.sample_rate, self.fps)
            track[begin:end] = _fit(piece, end - begin)
        return track

    def _mux(self, video: Path, audio: np.ndarray) -> Path:
        audio_file = self._workdir / "audio.f32"
        audio.astype("<f4").tofile(audio_file)
        out = self._workdir / "muxed.mp4"
        cmd = [
            ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y", "-i", ffmpeg_path(video),
            *_raw_audio_input(audio_file, self.sample_rate),
            "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *_AAC, *_container_args("mp4"), ffmpeg_path(out),
        ]  # fmt: skip
        _run(cmd, f"adding the audio to {self.path.name}")
        return out

    def abort(self) -> None:
        """Stop without writing `path`."""
        self.closed = True
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()  # a half-written video is worse than none


def _discard(encoder: _FrameEncoder, workdir: Path) -> None:
    encoder.abort()
    shutil.rmtree(workdir, ignore_errors=True)


def write_mp4(path, frames, fps, audio=None, sample_rate: int = DEFAULT_SAMPLE_RATE, crf: int = 18) -> Path:
    """Write frames (an (F, H, W, 3) uint8 array or an iterable of frames/segments) as H.264 mp4, with AAC audio
    trimmed or padded to the video's length when `audio` (samples at `sample_rate`, or a path) is given."""
    with VideoWriter(path, fps, audio=audio, sample_rate=sample_rate, crf=crf) as writer:
        writer.append(frames)
    return writer.path


def write_chunk(path, frames, fps, audio, sample_rate: int = DEFAULT_SAMPLE_RATE, crf: int = 18) -> Path:
    """One streaming chunk: H.264 + AAC in MPEG-TS (`.ts`) or mp4 (`.mp4`), starting on a keyframe.

    `audio` is this chunk's own slice (`audio_slice(track, sr, fps, start, len(frames))`); it is fitted to the
    chunk's frames. `None` writes silence rather than no audio track: a stream whose first chunk has no audio
    track plays silent throughout in hls.js. Prefer `.mp4` when chunks are decoded and joined (see module notes).
    """
    path = Path(path)
    container = _CONTAINERS.get(path.suffix.lower())
    if container is None:
        raise ValueError(f"A streaming chunk must end in .ts or .mp4, got {path.name!r}")
    frames = list(_iter_frames(frames))  # a chunk is short; its length fixes its audio
    if not frames:
        raise ValueError("A streaming chunk needs at least one frame.")
    sample_rate = int(sample_rate)
    samples = np.zeros(0, np.float32) if audio is None else _mono_audio(audio, sample_rate)
    samples = _fit_audio(samples, len(frames), fps, sample_rate)

    path.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{path.stem}-", dir=path.parent))
    try:
        audio_file = workdir / "audio.f32"
        samples.astype("<f4").tofile(audio_file)
        out = workdir / f"chunk{path.suffix}"
        encoder = _FrameEncoder(out, frames[0], fps, crf, container, audio=(audio_file, sample_rate))
        try:
            for frame in frames:
                encoder.write(frame)
        except BaseException:
            encoder.abort()
            raise
        encoder.finish()
        os.replace(encoder.out, path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return path
