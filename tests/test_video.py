"""Audio input and video output: decoding user audio, frame alignment, mp4 / streaming-chunk writing, probing."""

import gc
import re
import subprocess
import tracemalloc

import numpy as np
import pytest
import scipy.io.wavfile

import starcaster.audio_io as audio_io
from starcaster.video import (
    VideoWriter,
    audio_slice,
    frame_boundary,
    frame_count,
    is_silent,
    load_audio,
    probe,
    write_chunk,
    write_mp4,
)

FFMPEG = audio_io.ffmpeg_exe()
SR = 16_000


def sine(freq, seconds, rate, amplitude=0.5):
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(samples, rate):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)]


def ffmpeg(*args):
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", *map(str, args)], check=True)


def decode_frames(path):
    """All frames of a video as (F, H, W, 3) uint8, decoded independently of the code under test."""
    out = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    info = probe(path)
    return np.frombuffer(out, np.uint8).reshape(-1, info["height"], info["width"], 3)


def decode_audio(path, rate=SR):
    out = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(rate),
         "-f", "f32le", "pipe:1"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return np.frombuffer(out, np.float32)


def talking_frames(num, height=48, width=64, start=0):
    """Smooth moving gradients (compress well, so decoded pixels can be compared to the input)."""
    y, x = np.mgrid[0:height, 0:width]
    frames = [
        np.stack([(x * 3 + 7 * k) % 256, (y * 4 + 5 * k) % 256, np.full_like(x, (40 + 9 * k) % 256)], -1)
        for k in range(start, start + num)
    ]
    return np.asarray(frames, dtype=np.uint8)


# --------------------------------------------------------------------------------------------------------------------
# load_audio
# --------------------------------------------------------------------------------------------------------------------


def test_wav_stereo_44k_comes_back_mono_16k(tmp_path):
    left, right = sine(440, 1.0, 44_100, 0.6), sine(440, 1.0, 44_100, 0.2)
    stereo = (np.stack([left, right], axis=1) * 32767).astype(np.int16)
    scipy.io.wavfile.write(tmp_path / "speech.wav", 44_100, stereo)

    audio = load_audio(tmp_path / "speech.wav")

    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SR) <= 1
    assert abs(peak_hz(audio, SR) - 440) <= 2
    # channels are averaged, not summed: amplitude (0.6 + 0.2) / 2
    assert np.abs(audio[1000:-1000]).max() == pytest.approx(0.4, abs=0.02)


def test_tuple_inputs_any_layout_and_order():
    tone = sine(300, 0.5, 8_000, 0.8)
    by_rows = load_audio((np.stack([tone, tone], axis=1), 8_000))  # (N, ch)
    by_channels = load_audio((np.stack([tone, tone]), 8_000))  # (ch, N)
    gradio_order = load_audio((8_000, (tone * 32767).astype(np.int16)))  # gr.Audio(type="numpy") gives (rate, data)

    for audio in (by_rows, by_channels, gradio_order):
        assert audio.dtype == np.float32 and len(audio) == 8_000
        assert abs(peak_hz(audio, SR) - 300) <= 2
        assert np.abs(audio).max() == pytest.approx(0.8, abs=0.03)
    # float input past full scale is scaled back into [-1, 1], not clipped
    loud = load_audio((tone * 1000, 8_000))
    assert np.abs(loud).max() == pytest.approx(1.0, abs=0.03) and abs(peak_hz(loud, SR) - 300) <= 2


@pytest.mark.parametrize(
    "suffix, codec", [(".mp3", "libmp3lame"), (".m4a", "aac"), (".ogg", "libvorbis"), (".flac", "flac")]
)
def test_compressed_files_decode(tmp_path, suffix, codec):
    src = tmp_path / "tone.wav"
    scipy.io.wavfile.write(src, 22_050, sine(500, 1.0, 22_050))
    ffmpeg("-i", src, "-c:a", codec, tmp_path / f"take:1{suffix}")  # a colon, which ffmpeg reads as a protocol

    audio = load_audio(tmp_path / f"take:1{suffix}")

    assert abs(len(audio) / SR - 1.0) < 0.06  # codec frame padding only
    assert abs(peak_hz(audio, SR) - 500) <= 2


def _bad_inputs(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "garbage.wav").write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, np.uint8).tobytes())
    (tmp_path / "notes.wav").write_text("this is a text file, renamed\n" * 50)
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-t", "0.4", "-pix_fmt", "yuv420p", tmp_path / "mute.mp4")
    scipy.io.wavfile.write(tmp_path / "zero.wav", SR, np.zeros(0, np.int16))
    return {
        "missing.wav": "not found",
        "empty.wav": "empty",
        "garbage.wav": "decode",
        "notes.wav": "decode",
        "mute.mp4": "no audio stream",
        "zero.wav": "no audio samples",
    }


def test_bad_files_raise_value_error_naming_the_problem(tmp_path):
    for name, problem in _bad_inputs(tmp_path).items():
        with pytest.raises(ValueError, match=problem):
            load_audio(tmp_path / name)


def test_bad_arrays_raise_value_error():
    with pytest.raises(ValueError, match="NaN"):
        load_audio((np.array([0.0, 0.1, np.nan, 0.2]), SR))
    with pytest.raises(ValueError, match="infinite"):
        load_audio((np.array([0.0, np.inf]), SR))
    with pytest.raises(ValueError, match="no audio samples"):
        load_audio((np.zeros(0, np.float32), SR))
    with pytest.raises(ValueError, match="path or a"):
        load_audio(np.zeros(100))


def test_too_long_is_refused_without_decoding_it_all(tmp_path, monkeypatch):
    scipy.io.wavfile.write(tmp_path / "long.wav", 8_000, (sine(200, 60.0, 8_000) * 127 + 128).astype(np.uint8))
    decoded_bytes = []
    run = audio_io.subprocess.run

    def recording_run(*args, **kwargs):
        result = run(*args, **kwargs)
        decoded_bytes.append(len(result.stdout))
        return result

    monkeypatch.setattr(audio_io.subprocess, "run", recording_run)
    with pytest.raises(ValueError, match=r"60\.0 s long.*max_seconds"):
        load_audio(tmp_path / "long.wav", max_seconds=1.0)
    assert decoded_bytes and max(decoded_bytes) < 2.0 * SR * 4  # ~1.5 s of float32 decoded, not 60 s

    assert len(load_audio(tmp_path / "long.wav", max_seconds=61.0)) == 60 * SR
    with pytest.raises(ValueError, match="max_seconds"):
        load_audio((np.zeros(3 * SR, np.float32), SR), max_seconds=2.0)


def test_is_silent():
    rng = np.random.default_rng(0)
    assert is_silent(np.zeros(SR))
    assert is_silent(np.zeros(0))
    assert is_silent(1e-4 * rng.standard_normal(SR))  # about -80 dBFS
    assert not is_silent(sine(200, 1.0, SR, 0.1))  # about -23 dBFS
    assert is_silent(sine(200, 1.0, SR, 0.1), threshold_db=-10.0)


# --------------------------------------------------------------------------------------------------------------------
# Frame alignment
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps, per_frame", [(25, 640), (16, 1000), (29.97, None)])
def test_audio_slices_tile_the_padded_track(fps, per_frame):
    samples = np.random.default_rng(1).standard_normal(40_123).astype(np.float32)
    total = frame_count(len(samples), SR, fps)
    segment = 16

    slices = [audio_slice(samples, SR, fps, start, segment) for start in range(0, total, segment)]

    for index, piece in enumerate(slices):
        start = index * segment
        assert len(piece) == frame_boundary(start + segment, SR, fps) - frame_boundary(start, SR, fps)
        if per_frame:
            assert len(piece) == per_frame * segment
    joined = np.concatenate(slices)
    assert np.array_equal(joined[: len(samples)], samples)
    assert not joined[len(samples) :].any()
    # frame_count is the smallest number of frames that holds every sample
    assert len(audio_slice(samples, SR, fps, 0, total)) >= len(samples)
    assert len(audio_slice(samples, SR, fps, 0, total - 1)) < len(samples)


def test_frame_count_is_ceil():
    assert frame_count(SR, SR, 25) == 25
    assert frame_count(SR + 1, SR, 25) == 26
    assert frame_count(0, SR, 25) == 0
    assert frame_count(48_000, 48_000, 29.97) == 30


# --------------------------------------------------------------------------------------------------------------------
# Writing and probing
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("audio_seconds", [0.3, 1.0])  # shorter than the video (padded) and longer (trimmed)
def test_write_mp4_probe(tmp_path, audio_seconds):
    frames = talking_frames(10)
    path = write_mp4(tmp_path / "talk.mp4", frames, 25, audio=sine(440, audio_seconds, SR))

    info = probe(path)
    assert (info["num_frames"], info["width"], info["height"]) == (10, 64, 48)
    assert info["fps"] == pytest.approx(25)
    assert info["video_codec"] == "h264" and info["pix_fmt"].startswith("yuv420p")
    assert info["has_audio"] and info["audio_codec"] == "aac"
    assert abs(info["audio_duration"] - 10 / 25) < 1 / 25
    assert abs(info["duration"] - 10 / 25) < 1 / 25
    assert np.abs(decode_frames(path).astype(int) - frames).mean() < 3  # colours survive the yuv round trip
    sound = decode_audio(path)
    assert abs(peak_hz(sound[: int(0.25 * SR)], SR) - 440) <= 8
    assert abs(peak_hz(load_audio(path)[: int(0.25 * SR)], SR) - 440) <= 8  # a video with sound is valid audio input


def test_write_mp4_without_audio_pads_odd_sizes_and_takes_fractional_fps(tmp_path):
    frames = (talking_frames(6, height=47, width=63) for _ in range(1))  # a generator of one segment
    info = probe(write_mp4(tmp_path / "odd.mp4", frames, 29.97))
    assert (info["num_frames"], info["width"], info["height"]) == (6, 64, 48)
    assert info["fps"] == pytest.approx(29.97)
    assert not info["has_audio"] and info["audio_duration"] is None


def test_video_writer_segments_equal_one_write(tmp_path):
    frames = talking_frames(3 * 8)
    audio = sine(220, 24 / 16, SR)
    whole = write_mp4(tmp_path / "whole.mp4", frames, 16, audio=audio)
    with VideoWriter(tmp_path / "parts.mp4", 16, audio=audio) as writer:
        for start in range(0, 24, 8):
            writer.append(frames[start : start + 8])
        assert not (tmp_path / "parts.mp4").exists()  # nothing at the path until it is complete
    assert writer.num_frames == 24

    assert probe(whole) == probe(writer.path)
    assert np.array_equal(decode_frames(whole), decode_frames(writer.path))
    assert np.array_equal(decode_audio(whole), decode_audio(writer.path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts.mp4", "whole.mp4"]  # no temporary files left


def test_video_writer_takes_audio_per_segment(tmp_path):
    audio = sine(330, 2.0, SR)
    with VideoWriter(tmp_path / "seg.mp4", 25) as writer:
        for start in (0, 16, 32):
            piece = None if start == 16 else audio_slice(audio, SR, 25, start, 16)  # a silent segment in the middle
            writer.append(talking_frames(16, start=start), audio=piece)
    info = probe(writer.path)
    assert info["num_frames"] == 48 and abs(info["audio_duration"] - 48 / 25) < 1 / 25
    sound = decode_audio(writer.path)
    first, middle, last = (sound[a * 10240 + 1500 : (a + 1) * 10240 - 1500] for a in range(3))
    assert abs(peak_hz(first, SR) - 330) <= 4 and abs(peak_hz(last, SR) - 330) <= 4
    assert not is_silent(first) and is_silent(middle) and not is_silent(last)


def test_audio_may_be_a_file(tmp_path):
    scipy.io.wavfile.write(tmp_path / "voice.wav", 22_050, sine(250, 2.0, 22_050))  # longer than the video: trimmed
    info = probe(write_mp4(tmp_path / "v.mp4", talking_frames(20), 25, audio=tmp_path / "voice.wav"))
    assert info["num_frames"] == 20 and abs(info["audio_duration"] - 0.8) < 1 / 25
    assert abs(peak_hz(decode_audio(tmp_path / "v.mp4"), SR) - 250) <= 4


def test_dropped_writer_cleans_up(tmp_path):
    writer = VideoWriter(tmp_path / "dropped.mp4", 25)
    writer.append(talking_frames(4))
    assert len(list(tmp_path.iterdir())) == 1  # its working folder
    del writer
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_bad_frames_raise_and_leave_nothing(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "f.mp4", np.zeros((2, 16, 16, 3), np.float32), 25)
    with pytest.raises(ValueError, match="same size"):
        write_mp4(tmp_path / "s.mp4", [talking_frames(2), talking_frames(2, height=32)], 25)
    with pytest.raises(ValueError, match="at least one frame"):
        write_mp4(tmp_path / "e.mp4", [], 25)
    with pytest.raises(ValueError, match=r"\.ts or \.mp4"):
        write_chunk(tmp_path / "c.avi", talking_frames(2), 25, None)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="notes.mp4"):
        probe(tmp_path / "notes.mp4")


def test_frames_are_streamed_not_held(tmp_path):
    frame_bytes, count = 256 * 256 * 3, 64

    def generated():
        for k in range(count):
            yield np.full((256, 256, 3), 4 * k, np.uint8)

    tracemalloc.start()
    try:
        write_mp4(tmp_path / "long.mp4", generated(), 25)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * frame_bytes  # holding the video would take 64 frames
    assert probe(tmp_path / "long.mp4")["num_frames"] == count


def _first_frame_is_key(path):
    log = subprocess.run(
        [FFMPEG, "-hide_banner", "-i", str(path), "-map", "0:v:0", "-vf", "showinfo", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    first = next(line for line in log.splitlines() if re.search(r"\bn:\s*0\b", line))
    return "iskey:1" in first


@pytest.mark.parametrize("suffix", [".ts", ".mp4"])
def test_write_chunk_carries_its_audio_slice(tmp_path, suffix):
    track = np.concatenate([sine(300, 0.64, SR), sine(600, 0.64, SR)])
    second = audio_slice(track, SR, 25, 16, 16)  # the second segment's own audio: 600 Hz
    path = write_chunk(tmp_path / f"chunk{suffix}", talking_frames(16, start=16), 25, second)

    info = probe(path)
    assert info["num_frames"] == 16 and info["video_codec"] == "h264"
    assert info["has_audio"] and info["audio_codec"] == "aac"
    assert _first_frame_is_key(path)
    sound = decode_audio(path)
    assert abs(peak_hz(sound, SR) - 600) <= 4
    # mp4 trims the AAC encoder delay (edit list); MPEG-TS keeps its 1024 samples at 48 kHz
    slack = 0.001 if suffix == ".mp4" else 1024 / 48_000 + 0.001
    assert 0.64 - 0.001 <= info["audio_duration"] <= 0.64 + slack


def test_silent_chunk_still_has_an_audio_track(tmp_path):
    info = probe(write_chunk(tmp_path / "quiet.ts", talking_frames(8), 16, None))
    assert info["has_audio"] and info["num_frames"] == 8
    assert is_silent(decode_audio(tmp_path / "quiet.ts"))
