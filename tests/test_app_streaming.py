"""Segments -> streamed chunks and the final mp4 (``ui/streaming.py``), with a stand-in segment source (no model)."""

from types import SimpleNamespace

import numpy as np
import pytest

from starcaster.video import probe
from ui.streaming import stream_segments

FPS, RATE, SEG = 25, 16000, 16


def _segments(num_frames, log, silent=False):
    total = -(-num_frames // SEG)
    t = np.arange(int(num_frames * RATE / FPS)) / RATE
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    for k in range(total):
        start, end = k * SEG, min(num_frames, (k + 1) * SEG)
        log.append(k)
        frames = np.full((end - start, 32, 32, 3), 40 * k, np.uint8)
        yield SimpleNamespace(index=k, num_segments=total, start_frame=start, frames=frames, fps=FPS, sample_rate=RATE,
                              audio=None if silent else audio[start * RATE // FPS:end * RATE // FPS])


def test_chunks_hold_a_second_or_more_each_with_its_audio(tmp_path):
    log = []
    updates = list(stream_segments(_segments(70, log), str(tmp_path)))
    assert [u.segment for u in updates] == [1, 2, 3, 4, 5] and all(u.num_segments == 5 for u in updates)
    chunks = [u.chunk for u in updates if u.chunk]
    assert [u.chunk is not None for u in updates] == [False, True, False, True, True]  # 32, 32, then the 6 left
    for chunk, frames in zip(chunks, (32, 32, 6)):
        info = probe(chunk)
        assert info["num_frames"] == frames
        assert info["has_audio"], "a chunk without audio makes the whole stream silent"
    assert [u.final is not None for u in updates] == [False] * 4 + [True]
    final = probe(updates[-1].final)
    assert final["num_frames"] == 70 and final["audio_duration"] == pytest.approx(70 / FPS, abs=0.05)


def test_silent_segments_still_get_an_audio_track(tmp_path):
    update = list(stream_segments(_segments(20, [], silent=True), str(tmp_path)))[-1]
    assert probe(update.final)["audio_duration"] == pytest.approx(20 / FPS, abs=0.05)


def test_without_ffmpeg_only_the_final_video_is_written(tmp_path):
    updates = list(stream_segments(_segments(40, []), str(tmp_path), streaming=False))
    assert all(u.chunk is None for u in updates) and updates[-1].final
    assert probe(updates[-1].final)["num_frames"] == 40


def test_stop_closes_the_sampler_between_segments(tmp_path):
    log = []
    stream = stream_segments(_segments(100, log), str(tmp_path))
    next(stream)
    stream.close()  # what Gradio does when the visitor presses Stop
    assert log == [0]


def test_no_segments_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        list(stream_segments(iter([]), str(tmp_path)))
