"""Glue between the pipeline's segments and the browser: chunk files for ``gr.Video(streaming=True)``, one final mp4.

Each segment is 16 frames (0.64 s at 25 fps). Players stall on chunks that short, so segments are buffered until a
chunk holds at least ``min_chunk_seconds``; the last chunk takes whatever is left. Every chunk carries its own exact
slice of the audio, the first included: Gradio builds the stream's audio track from the chunks, and a silent first
chunk makes the whole stream silent.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass

import numpy as np

OUTPUT_ROOT = os.path.join(tempfile.gettempdir(), "starcaster-ui")
# A run's folder (its chunks and mp4) is deleted as soon as the run ends: Gradio has copied every file it serves into
# its own cache by then (and deletes those itself, ``delete_cache``). Folders a crash left behind, and the camera
# editor's exported paths, go once they are this old.
OUTPUT_MAX_AGE_SECONDS = 3600
_RUN_FOLDER = re.compile(r"^[0-9a-f]{32}$")  # new_output_dir's names; examples/ and anything else are left alone

FALLBACK_NOTE = (
    "ffmpeg/ffprobe were not found on this machine, so the video is shown when it is finished instead of being "
    "streamed segment by segment (install ffmpeg to stream)."
)


def can_stream() -> bool:
    """Gradio probes and re-muxes streamed chunks with the system ffmpeg and ffprobe (imageio-ffmpeg has no ffprobe)."""
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def new_output_dir() -> str:
    prune_outputs()
    path = os.path.join(OUTPUT_ROOT, uuid.uuid4().hex)
    os.makedirs(path, exist_ok=True)
    return path


def remove_output_dir(path: str) -> None:
    """Delete a run's folder (once Gradio no longer needs it: the run has ended)."""
    if os.path.dirname(os.path.abspath(path)) == os.path.abspath(OUTPUT_ROOT) and _RUN_FOLDER.match(os.path.basename(path)):
        shutil.rmtree(path, ignore_errors=True)


def prune_outputs(max_age: float | None = None) -> None:
    """Delete run folders older than ``max_age`` seconds (``OUTPUT_MAX_AGE_SECONDS``)."""
    max_age = OUTPUT_MAX_AGE_SECONDS if max_age is None else max_age
    try:
        names = os.listdir(OUTPUT_ROOT)
    except FileNotFoundError:
        return
    now = time.time()
    for name in names:
        path = os.path.join(OUTPUT_ROOT, name)
        try:
            old = now - os.path.getmtime(path) > max_age
        except OSError:
            continue
        if old and _RUN_FOLDER.match(name):
            shutil.rmtree(path, ignore_errors=True)


@dataclass
class StreamUpdate:
    """What one finished segment changes in the UI."""

    segment: int  # 1-based, for "segment k of K"
    num_segments: int
    chunk: str | None = None  # a new .mp4 chunk to stream, when enough frames are buffered
    final: str | None = None  # the complete mp4, on the last update only
    frames_done: int = 0


def stream_segments(segments, out_dir: str, *, streaming: bool = True, min_chunk_seconds: float = 1.0):
    """Consume the pipeline's segment iterator; yield one :class:`StreamUpdate` per segment.

    Closing this generator (the visitor pressed Stop) closes ``segments`` too, so the sampler stops between segments.
    """
    from starcaster.video import VideoWriter, write_chunk

    # The full video is encoded as segments arrive (VideoWriter), so memory holds one chunk, not the whole clip.
    writer = None
    pending_frames, pending_audio = [], []
    frames_done = 0
    try:
        for seg in segments:
            frames = np.asarray(seg.frames)
            audio = _segment_audio(seg, len(frames))
            if writer is None:
                writer = VideoWriter(os.path.join(out_dir, "starcaster.mp4"), fps=seg.fps, sample_rate=seg.sample_rate)
            writer.append(frames, audio=audio)
            frames_done += len(frames)
            pending_frames.append(frames)
            pending_audio.append(audio)

            last = seg.index + 1 >= seg.num_segments
            update = StreamUpdate(seg.index + 1, seg.num_segments, frames_done=frames_done)
            buffered = sum(len(f) for f in pending_frames) / seg.fps
            if streaming and (buffered >= min_chunk_seconds or last):
                update.chunk = os.path.join(out_dir, f"chunk_{seg.index:04d}.mp4")
                write_chunk(update.chunk, np.concatenate(pending_frames), seg.fps, np.concatenate(pending_audio),
                            seg.sample_rate)
                pending_frames, pending_audio = [], []
            if last:
                update.final = str(writer.close())
            yield update
    finally:
        close = getattr(segments, "close", None)  # a generator: stops the sampler where it is
        if close is not None:
            close()
        if writer is not None and not writer.closed:
            writer.abort()  # stopped early: no half-written mp4 left behind
    if writer is None:
        raise ValueError("The model produced no frames: is the audio or the requested length empty?")


def _segment_audio(seg, num_frames: int) -> np.ndarray:
    """The segment's audio; silence of the right length for a silent orbit (players want a steady audio track)."""
    if seg.audio is None:
        return np.zeros(int(round(num_frames * seg.sample_rate / seg.fps)), dtype=np.float32)
    return np.asarray(seg.audio, dtype=np.float32)
