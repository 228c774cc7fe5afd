"""Glue between the pipeline's segments and the browser: chunk files for ``gr.Video(streaming=True)``, one final mp4.

Each segment is 16 frames (0.64 s at 25 fps). Players stall on chunks that short, so segments are buffered until a
chunk holds at least ``min_chunk_seconds``; the last chunk takes whatever is left. The first chunk also waits until
the stream can stay ahead of the player at the sampler's measured pace (its slowest segment so far, with a margin:
``lead_needed``, ``PACE_MARGIN``): a sampler at or above real time (Fast) starts after its first second of video, one
a little slower buffers a little more first rather than stalling every chunk, and one far slower (Quality on a CPU)
streams its progress as it comes. Every chunk carries its
own exact slice of the audio, the first included: Gradio builds the stream's audio track from the chunks, and a
silent first chunk makes the whole stream silent.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np

from . import torch_thread

OUTPUT_ROOT = os.path.join(tempfile.gettempdir(), "starcaster-ui")
# A run's folder (its chunks and mp4) is deleted as soon as the run ends: Gradio has copied every file it serves into
# its own cache by then (and deletes those itself, ``delete_cache``). Folders a crash left behind, and the camera
# editor's exported paths, go once they are this old.
OUTPUT_MAX_AGE_SECONDS = 3600
logger = logging.getLogger("starcaster.ui.streaming")
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


class SamplerAhead:
    """The sampler's segments, made on another thread while the caller encodes and sends the previous ones.

    Gradio asks a generator for its next value only once it has sent the last one (the chunk's encode, Gradio's
    ffprobe and mux, the browser's message), so a sampler run inside the handler idles through all of that; with Fast
    on a CPU that is the difference between streaming faster and slower than the video plays. ``start(stopped)``
    returns the segment iterator and must stop within a denoising step once ``stopped()`` is true (``pipe.stream``'s
    ``cancel``). At most ``depth`` finished segments wait here, so memory holds a segment or two, not the video.

    ``close()`` (Stop, or the run ending early) stops the sampler and waits for it: the model slot is free only once
    nothing samples in the background any more. ``sampled_at`` holds when each segment was finished, for the pace
    (the caller's own clock would see segments that waited here arrive back to back).
    """

    def __init__(self, start, depth: int = 1):
        self.sampled_at: list[float] = []
        self._finished = False
        self._stop = threading.Event()
        self._ready = queue.Queue(maxsize=depth)
        # On the main thread under ``python app.py`` (torch_thread.py says why), else in a thread of its own.
        self._job = torch_thread.start(self._run, start, name="starcaster-sampler")

    def _run(self, start) -> None:
        segments = None
        try:
            segments = start(self._stop.is_set)
            for segment in segments:
                self.sampled_at.append(time.monotonic())
                if not self._put(("segment", segment)):
                    break
            else:
                self._put(("end", None))
        except BaseException as exc:  # noqa: BLE001  (handed to the caller's thread, raised there)
            self._put(("error", exc))
            if not isinstance(exc, Exception):
                raise  # Ctrl+C on the main thread stops the app, not just this visitor's run
        finally:
            close = getattr(segments, "close", None)  # a generator ends here, in the thread that ran it
            if close is not None:
                close()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        return self

    def __next__(self):
        if self._finished:  # nothing more will come: do not wait for it
            raise StopIteration
        kind, value = self._ready.get()
        self._finished = kind != "segment"
        if kind == "error":
            raise value
        if kind == "end":
            raise StopIteration
        return value

    def close(self) -> None:
        self._stop.set()
        self._job.join()


# The first chunk waits for the lead the player needs, unless it would have to hold more than this much video or wait
# more than this long for it: then the sampler is so far behind real time (Quality on a CPU, or a long clip) that
# stalls cannot be avoided at a bearable wait, and seeing progress is better. Judged on where the lead will be met,
# not on the lead needed now, which shrinks as the clip's rest does: a short clip a little under real time waits.
MAX_LEAD_SECONDS = 6.0
MAX_WAIT_SECONDS = 10.0
# The lead is planned for the slowest segment so far, this much slower again: once the stream starts, the chunks'
# encodes (and Gradio's ffprobe and mux) share the CPU with the sampler. Measured with the Fast sampler in the app, on
# the 2-core dev box with Chromium beside it (tests/e2e/test_fast_streaming.py prints them): segments took 1.17-1.28 s
# before the stream started and up to 1.50 s after (1.17x), and planning on the first one alone let the player run
# dry under load.
PACE_MARGIN = 1.25
# Gradio's stream encoder keeps the last 0.3-0.5 s of each chunk's audio until the next chunk comes (measured in
# Chromium: a 1.92 s first chunk buffers 1.45 s), and a player plays only what has both audio and video.
HELD_BACK_SECONDS = 0.5


def lead_needed(remaining_frames: int, fps: float, rate: float | None, segment_frames: int) -> float:
    """Seconds of video to hold before the stream starts so that playback does not catch up with the sampler: what the
    sampler will fall behind the player over the rest of the clip, plus one segment's sampling time (the next chunk
    arrives a segment at a time) and the audio Gradio holds back. ``rate``: the frames per second to plan on (the
    caller's pessimistic reading of the sampler's pace; None: not known yet)."""
    if not rate:
        return math.inf
    return remaining_frames * max(0.0, 1 / rate - 1 / fps) + segment_frames / rate + HELD_BACK_SECONDS


def lead_met_at(buffered: float, remaining_frames: int, fps: float, rate: float | None, segment_frames: int) -> float:
    """Seconds of video that will be held when the lead is first met, sampling on at ``rate`` from ``buffered``
    seconds held and ``remaining_frames`` still to sample (at the latest: all of it, once the last segment is in)."""
    if not rate:
        return math.inf
    while remaining_frames > 0 and buffered < lead_needed(remaining_frames, fps, rate, segment_frames):
        step = min(segment_frames, remaining_frames)
        buffered, remaining_frames = buffered + step / fps, remaining_frames - step
    return buffered


# Why the first chunk went out (the stream's debug line names it; tests/e2e/test_fast_streaming.py reads it).
LEAD_MET, LEAD_CAPPED, WAIT_CAPPED = "lead met", "lead over the cap", "wait over the cap"


def start_reason(buffered: float, lead: float, met_at: float, wait: float) -> str | None:
    """Why the first chunk goes out now, or None to hold on: its lead is met (``LEAD_MET``: playback will not catch
    up), or the lead would mean holding more than ``MAX_LEAD_SECONDS`` of video or waiting more than
    ``MAX_WAIT_SECONDS`` (``LEAD_CAPPED``, ``WAIT_CAPPED``: the sampler is too far behind real time on this machine
    to stream without stalls at a bearable wait, so the stream shows progress and the player may run dry)."""
    if buffered >= lead:
        return LEAD_MET
    if met_at > MAX_LEAD_SECONDS:
        return LEAD_CAPPED
    if wait > MAX_WAIT_SECONDS:
        return WAIT_CAPPED
    return None


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
    The sampler's pace is taken from ``segments.sampled_at`` where it has one (:class:`SamplerAhead`), else from when
    the segments arrive here.
    """
    from starcaster.video import VideoWriter, write_chunk

    # The full video is encoded as segments arrive (VideoWriter), so memory holds one chunk, not the whole clip.
    writer = None
    pending_frames, pending_audio = [], []
    frames_done, started, slowest = 0, False, 0.0
    arrived, start_info = [], None  # for the debug log: the pace the stream saw, and when it started
    try:
        for seg in segments:
            sampled_at = getattr(segments, "sampled_at", ())
            now = sampled_at[seg.index] if seg.index < len(sampled_at) else time.monotonic()
            arrived.append(now)
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
            if len(arrived) > 1:  # the pace is measured from the first segment on (its set-up time left out)
                slowest = max(slowest, now - arrived[-2])
            if not started and len(arrived) > 1 and buffered >= min_chunk_seconds:
                rate = len(frames) / (slowest * PACE_MARGIN) if slowest > 0 else None
                remaining = (seg.num_segments - seg.index - 1) * len(frames)
                lead = lead_needed(remaining, seg.fps, rate, len(frames))
                met_at = lead_met_at(buffered, remaining, seg.fps, rate, len(frames))
                wait = (met_at - buffered) * seg.fps / rate if rate else math.inf
                reason = start_reason(buffered, lead, met_at, wait)
                started = reason is not None
                if started:
                    start_info = (seg.index, rate, lead, reason)
            if streaming and (last or started and buffered >= min_chunk_seconds):
                update.chunk = os.path.join(out_dir, f"chunk_{seg.index:04d}.mp4")
                write_chunk(update.chunk, np.concatenate(pending_frames), seg.fps, np.concatenate(pending_audio),
                            seg.sample_rate)
                pending_frames, pending_audio = [], []
            if last:
                update.final = str(writer.close())
            yield update
    finally:
        if arrived and logger.isEnabledFor(logging.DEBUG):
            steps = ", ".join(f"{b - a:.2f}" for a, b in zip(arrived, arrived[1:]))
            logger.debug("streamed %d segments, sampled %s s apart; first chunk %s", len(arrived), steps or "-",
                         "after segment %d (pace %s frames/s, lead %.2f s, %s)" % (
                             start_info[0], f"{start_info[1]:.1f}" if start_info[1] else "?", start_info[2],
                             start_info[3])
                         if start_info else "with the last segment")
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
