"""Segments -> streamed chunks and the final mp4 (``ui/streaming.py``), with a stand-in segment source (no model); the
sampler running ahead in its own thread; the first chunk waiting for the lead the player needs."""

from types import SimpleNamespace

import numpy as np
import pytest

from starcaster.video import probe
from ui.streaming import (HELD_BACK_SECONDS, LEAD_CAPPED, LEAD_MET, MAX_LEAD_SECONDS, MAX_WAIT_SECONDS, SamplerAhead,
                          WAIT_CAPPED, lead_met_at, lead_needed, start_reason, stream_segments)

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


class _Paced:
    """Stand-in segments that say when each was sampled (as ``SamplerAhead`` does): ``seconds`` apart (one number, or
    one per segment after the first)."""

    def __init__(self, num_frames, seconds):
        self.segments = list(_segments(num_frames, []))
        steps = seconds if isinstance(seconds, list) else [seconds] * (len(self.segments) - 1)
        self.sampled_at = list(np.cumsum([0.0] + steps))

    def __iter__(self):
        return iter(self.segments)


def test_the_lead_a_stream_needs_grows_as_the_sampler_falls_behind_real_time():
    held = HELD_BACK_SECONDS
    assert lead_needed(1000, FPS, 2 * FPS, SEG) == pytest.approx(SEG / (2 * FPS) + held)  # ahead: one segment's time
    assert lead_needed(1000, FPS, FPS, SEG) < 2 * SEG / FPS  # real time: the first 1-s chunk (two segments) will do
    assert lead_needed(68, FPS, 20.0, SEG) == pytest.approx(68 * (1 / 20 - 1 / 25) + 16 / 20 + held)
    assert lead_needed(10, FPS, None, SEG) == float("inf")  # the pace is not known yet


@pytest.mark.parametrize("seconds_per_segment, chunks", [
    (0.5, [False, True, False, True, False, True, True]),  # faster than real time: a chunk every 32 frames
    (0.64, [False, False, False, True, False, True, True]),  # real time: waits, for the slow-down once it streams
    (0.8, [False, False, False, False, True, False, True]),  # 20 frames/s: the first chunk waits for a longer lead
    (1.2, [False, False, False, False, False, True, True]),  # Fast in the app, half real time: a short clip waits
    (9.4, [False, True, False, True, False, True, True]),  # Quality on a CPU: no lead would do, progress shows
])
def test_the_first_chunk_waits_until_the_stream_can_stay_ahead(tmp_path, seconds_per_segment, chunks):
    updates = list(stream_segments(_Paced(100, seconds_per_segment), str(tmp_path)))
    assert [u.chunk is not None for u in updates] == chunks


def test_the_lead_is_judged_where_it_will_be_met():
    # Under half real time: 4 s of speech meet their lead within the clip (the lead needed shrinks with what is
    # left), so the stream waits rather than stalls; a 40 s clip would have to hold more than MAX_LEAD_SECONDS.
    assert lead_needed(84, FPS, 11.0, SEG) > MAX_LEAD_SECONDS
    assert 2 * SEG / FPS < lead_met_at(2 * SEG / FPS, 84, FPS, 11.0, SEG) <= 100 / FPS
    assert lead_met_at(2 * SEG / FPS, 968, FPS, 11.0, SEG) > MAX_LEAD_SECONDS
    assert lead_met_at(2.0, 84, FPS, 50.0, SEG) == 2.0  # already met
    assert lead_met_at(1.0, 84, FPS, None, SEG) == float("inf")


def test_the_first_chunk_says_why_it_went_out():
    assert start_reason(2.0, 1.5, 2.0, 0.0) == LEAD_MET
    assert start_reason(1.28, 9.0, MAX_LEAD_SECONDS + 1, 3.0) == LEAD_CAPPED  # a long clip far behind real time
    assert start_reason(1.28, 9.0, 4.48, MAX_WAIT_SECONDS + 1) == WAIT_CAPPED  # a short one, but a long wait
    assert start_reason(1.28, 3.0, 2.5, 4.0) is None  # a lead within reach: hold on


@pytest.mark.parametrize("seconds_per_segment, reason", [
    (0.5, LEAD_MET),  # faster than real time
    (1.2, LEAD_MET),  # half real time: the short clip waits for its lead
    (1.85, WAIT_CAPPED),  # CI's loaded box once (1.85-2.52 s a segment): waiting would take 11.6 s, so it streams
])
def test_the_stream_logs_why_its_first_chunk_went_out(tmp_path, caplog, seconds_per_segment, reason):
    # tests/e2e/test_fast_streaming.py reads this line: stalls after a capped start are this design's trade-off on a
    # box too slow for real time, stalls after a met lead are a planning fault.
    import logging

    with caplog.at_level(logging.DEBUG, logger="starcaster.ui.streaming"):
        list(stream_segments(_Paced(100, seconds_per_segment), str(tmp_path)))
    assert reason in caplog.text and "first chunk after segment" in caplog.text


def test_the_first_chunk_plans_for_the_slowest_segment_so_far(tmp_path):
    # One slow segment, then quick ones: on the average pace (27 frames/s by segment 2) the stream would start there
    # and the player would run dry at the next slow segment; planned on the slowest one it waits for more lead.
    paced = _Paced(100, [0.8, 0.4, 0.4, 0.4, 0.4, 0.4])
    assert [u.chunk is not None for u in stream_segments(paced, str(tmp_path))] == [
        False, False, False, False, True, False, True]


def test_the_sampler_runs_ahead_while_the_caller_is_busy_and_stops_when_closed():
    import threading
    import time

    sampled, stopped = [], threading.Event()

    def start(is_stopped):
        def segments():
            try:
                for k in range(100):
                    if is_stopped():  # the pipeline's cancel check, after every denoising step
                        return
                    sampled.append(k)
                    yield k
            finally:  # ended by the cancel check or closed where it waits: either way in its own thread
                stopped.set()
        return segments()

    ahead = SamplerAhead(start)
    assert next(ahead) == 0
    time.sleep(0.3)  # the caller encodes and sends segment 0 meanwhile
    assert sampled[:3] == [0, 1, 2] and len(sampled) == 3, "one segment waits, the next is being made"
    ahead.close()
    assert stopped.is_set() and ahead._job.done
    assert len(ahead.sampled_at) == len(sampled)


def test_the_samplers_errors_reach_the_caller():
    def start(is_stopped):
        raise ValueError("The audio is silent.")

    with pytest.raises(ValueError, match="silent"):
        next(SamplerAhead(start))
