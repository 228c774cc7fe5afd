"""The autoregressive streaming sampler on the tiny preset (random weights are enough: these test the plumbing)."""

import warnings

import numpy as np
import pytest
import torch

from starcaster import CameraPath, load_pipeline
from starcaster.pipeline import STARCasterPipeline, SamplerOptions

STEPS = 2


@pytest.fixture(scope="module")
def pipe():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_pipeline("tiny")


def portrait(pipe, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (pipe.resolution, pipe.resolution, 3), dtype=np.uint8)


def speech(pipe, seconds, seed=0):
    t = np.arange(int(seconds * pipe.sample_rate)) / pipe.sample_rate
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
            + 0.01 * rng.standard_normal(t.shape)).astype(np.float32), pipe.sample_rate


def run(pipe, **kwargs):
    args = dict(task="portrait", image=portrait(pipe), audio=speech(pipe, 1.0), steps=STEPS, seed=0,
                already_aligned=True)
    args.update(kwargs)
    return list(pipe.stream(**args))


def count_calls(module, monkeypatch):
    calls = []
    original = module.forward

    def counted(*args, **kwargs):
        calls.append(args[0].shape if args else None)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "forward", counted)
    return calls


def test_segments_line_up_with_frames_and_audio(pipe):
    samples, rate = speech(pipe, 1.0)  # 25 frames: one full segment of 16 and a partial one of 9
    segments = run(pipe, audio=(samples, rate))
    assert [s.index for s in segments] == [0, 1]
    assert [s.start_frame for s in segments] == [0, 16]
    assert [len(s.frames) for s in segments] == [16, 9]
    assert segments[0].frames.shape[1:] == (pipe.resolution, pipe.resolution, 3)
    assert segments[0].frames.dtype == np.uint8
    samples_per_frame = rate / pipe.fps
    for s in segments:
        assert len(s.audio) == round((s.start_frame + len(s.frames)) * samples_per_frame) - round(
            s.start_frame * samples_per_frame)
    np.testing.assert_array_equal(np.concatenate([s.audio for s in segments]), samples)


def test_same_seed_same_video_and_seed_matters(pipe):
    a = np.concatenate([s.frames for s in run(pipe, seed=3)])
    b = np.concatenate([s.frames for s in run(pipe, seed=3)])
    c = np.concatenate([s.frames for s in run(pipe, seed=4)])
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1.0


def test_first_segment_is_yielded_before_the_rest_is_computed(pipe, monkeypatch):
    calls = count_calls(pipe.model, monkeypatch)
    stream = pipe.stream(task="portrait", image=portrait(pipe), audio=speech(pipe, 2.0), steps=STEPS,
                         already_aligned=True)
    first = next(stream)
    assert first.index == 0 and first.num_segments == 4
    assert len(calls) == STEPS  # exactly one segment's denoising, CFG rows batched in one call per step
    assert calls[0][0] == 2  # conditional + unconditional rows
    assert calls[0][2] == pipe.segment_frames + pipe.context_frames  # N + n frames through the temporal layers
    stream.close()  # cancelling between segments: nothing more is computed
    assert len(calls) == STEPS


def test_reference_is_encoded_once_per_segment_not_per_step(pipe, monkeypatch):
    calls = count_calls(pipe.model.reference_unet, monkeypatch)
    run(pipe, steps=3)
    assert len(calls) == 2  # two segments
    calls.clear()
    run(pipe, steps=3, sampler=SamplerOptions(batch_cfg=False, cache_reference=False))
    assert len(calls) == 2 * 3


def test_naive_sampler_gives_the_same_video(pipe):
    fast = np.concatenate([s.frames for s in run(pipe)]).astype(int)
    naive = np.concatenate([s.frames for s in run(pipe, sampler=SamplerOptions(False, False))]).astype(int)
    assert np.abs(fast - naive).max() <= 1  # same maths, batched differently: float rounding only


def test_second_segment_uses_the_last_context_frames(pipe, monkeypatch):
    base = run(pipe)
    original = STARCasterPipeline._next_context

    def perturbed(self, latents):
        return original(self, latents) + 2.0

    monkeypatch.setattr(STARCasterPipeline, "_next_context", perturbed)
    changed = run(pipe)
    np.testing.assert_array_equal(changed[0].frames, base[0].frames)
    # Untrained temporal blocks start at zero, so here the context reaches segment 2 through the reference bank.
    diff = np.abs(changed[1].frames.astype(int) - base[1].frames.astype(int))
    assert diff.mean() > 0.05


def test_context_fed_to_the_unet_is_the_previous_segments_last_latents(pipe, monkeypatch):
    finals = []
    original_next = STARCasterPipeline._next_context

    def record(self, latents):
        finals.append(latents.clone())
        return original_next(self, latents)

    monkeypatch.setattr(STARCasterPipeline, "_next_context", record)
    calls = []
    original_forward = pipe.model.forward
    monkeypatch.setattr(pipe.model, "forward",
                        lambda x, *a, **k: (calls.append(x[:1, :, :2].clone()), original_forward(x, *a, **k))[1])
    run(pipe)
    n = pipe.context_frames
    torch.testing.assert_close(calls[STEPS], finals[0][:1, :, -n:])  # first step of segment 2


@pytest.mark.parametrize("task", ["identity", "orbit"])
def test_other_tasks_run_and_differ(pipe, task, monkeypatch):
    calls = count_calls(pipe.model.reference_unet, monkeypatch)
    kwargs = dict(task=task)
    if task == "orbit":
        kwargs["camera"] = CameraPath.orbit(25)
    segments = run(pipe, **kwargs)
    assert sum(len(s.frames) for s in segments) == 25
    # Identity: no reference for the first segment (ID + audio only), then the generated context (§3.4).
    assert len(calls) == (1 if task == "identity" else 2)


def test_orbit_feeds_each_frame_its_own_camera(pipe, monkeypatch):
    # The camera stream's V projection starts at zero (an untrained model ignores cameras by design), so check
    # what reaches the network: per-frame camera vectors, the context frames reusing the first camera.
    seen = []
    original = pipe.model.camera_proj.forward
    monkeypatch.setattr(pipe.model.camera_proj, "forward", lambda cams: (seen.append(cams.clone()), original(cams))[1])
    path = CameraPath.orbit(25)
    run(pipe, task="orbit", camera=path)
    expected = torch.from_numpy(path.vectors())
    n, N = pipe.context_frames, pipe.segment_frames
    assert [c.shape[1] for c in seen] == [N + n, N + n]
    torch.testing.assert_close(seen[0][0, :n], expected[:1].expand(n, -1))
    torch.testing.assert_close(seen[0][0, n:], expected[:N])
    torch.testing.assert_close(seen[1][0, :n + 9], expected[N - n:])  # the last segment clamps past the end
    assert not torch.equal(seen[0][0, n], seen[0][0, n + 5])


def test_identity_embedding_instead_of_a_photo(pipe):
    dim = pipe.config.face_encoder["embedding_dim"]
    segments = run(pipe, task="identity", image=None, identity=np.ones(dim, np.float32))
    assert sum(len(s.frames) for s in segments) == 25
    with pytest.raises(ValueError, match="identity embedding must hold"):
        run(pipe, task="identity", image=None, identity=np.ones(dim + 1, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        run(pipe, task="identity", image=None, identity=np.full(dim, np.nan, np.float32))


def test_audio_features_are_computed_per_segment(pipe, monkeypatch):
    lengths = []
    encoder = pipe.audio_encoder
    original = type(encoder).__call__
    monkeypatch.setattr(type(encoder), "__call__", lambda self, s, *a: (lengths.append(len(s)), original(self, s, *a))[1])
    run(pipe, audio=speech(pipe, 4.0), steps=1)
    assert len(lengths) == 7  # one encoder call per segment
    assert max(lengths) < 2.0 * pipe.sample_rate  # a window around the segment, not the whole clip


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(audio=None), "audio"),
        (dict(audio=(np.zeros(16000, np.float32), 16000)), "silent"),
        (dict(task="dance"), "task must be"),
        (dict(steps=0), "steps"),
        (dict(guidance=float("nan")), "guidance"),
        (dict(strengths={"audio": -1}), "between 0 and 3"),
        (dict(image=None), "needs a portrait"),
    ],
)
def test_bad_input_raises_before_sampling(pipe, kwargs, match, monkeypatch):
    calls = count_calls(pipe.model, monkeypatch)
    with pytest.raises(ValueError, match=match):
        run(pipe, **kwargs)
    assert not calls


def test_bfloat16_pipeline_runs(pipe):
    # bf16 is the GPU default (CLI, app): check the dtype plumbing on CPU, where CI runs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = load_pipeline("tiny", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    segments = run(half, audio=speech(half, 0.4), steps=1)
    frames = np.concatenate([s.frames for s in segments])
    assert frames.shape == (10, half.resolution, half.resolution, 3) and frames.std() > 1.0
