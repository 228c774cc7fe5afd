"""The autoregressive streaming sampler on the tiny preset (random weights are enough: these test the plumbing)."""

import numpy as np
import pytest
import torch

from starcaster import CameraPath, load_pipeline
from starcaster.pipeline import SamplerOptions

STEPS = 2


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("tiny", random_weights=True)  # the plumbing, whatever checkpoints/tiny holds


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


def record_segments(monkeypatch):
    """Wraps the sampler's denoise_segment: records (context, conditions, returned latents) of every segment."""
    import starcaster.pipeline as pipeline_module

    seen = []
    original = pipeline_module.denoise_segment

    def recorded(model, scheduler, noise, conditions, unconditional_id, context, *args, **kwargs):
        latents = original(model, scheduler, noise, conditions, unconditional_id, context, *args, **kwargs)
        seen.append(dict(context=None if context is None else context.clone(), conditions=conditions,
                         unconditional_id=unconditional_id, latents=latents.clone()))
        return latents

    monkeypatch.setattr(pipeline_module, "denoise_segment", recorded)
    return seen


def test_second_segment_uses_the_last_context_frames(pipe, monkeypatch):
    import starcaster.pipeline as pipeline_module

    base = run(pipe)
    original = pipeline_module.plan_segment

    def perturbed(task, index, portrait_latent, previous, *rest):
        return original(task, index, portrait_latent, None if previous is None else previous + 2.0, *rest)

    monkeypatch.setattr(pipeline_module, "plan_segment", perturbed)
    changed = run(pipe)
    np.testing.assert_array_equal(changed[0].frames, base[0].frames)
    # Untrained temporal blocks start at zero, so here the context reaches segment 2 through the reference bank.
    diff = np.abs(changed[1].frames.astype(int) - base[1].frames.astype(int))
    assert diff.mean() > 0.05


def test_context_fed_to_the_unet_is_the_previous_segments_last_latents(pipe, monkeypatch):
    segments = record_segments(monkeypatch)
    calls = []
    n = pipe.context_frames
    original_forward = pipe.model.forward
    monkeypatch.setattr(pipe.model, "forward",
                        lambda x, *a, **k: (calls.append(x[:1, :, :n].clone()), original_forward(x, *a, **k))[1])
    run(pipe)
    torch.testing.assert_close(segments[1]["context"], segments[0]["latents"][:, :, -n:])
    torch.testing.assert_close(calls[STEPS].float(), segments[0]["latents"][:1, :, -n:])  # first step of segment 2
    # Segment 0's context is the portrait itself.
    portrait_latent = pipe.encode_image(portrait(pipe))
    torch.testing.assert_close(segments[0]["context"], portrait_latent.expand(-1, -1, n, -1, -1))


def test_sampling_context_frames_widen_the_context_and_leave_training_n(pipe, monkeypatch):
    """``settings.sampling_context_frames``: the sampler prepends that many of the previous segment's last latents
    (and the temporal layers see N + that many frames), while ``context_frames``, what training reads, stays."""
    trained = pipe.settings.context_frames
    monkeypatch.setattr(pipe.settings, "sampling_context_frames", trained + 2)
    segments = record_segments(monkeypatch)
    calls = count_calls(pipe.model, monkeypatch)
    run(pipe)
    assert pipe.context_frames == trained + 2 and pipe.settings.context_frames == trained
    assert calls[0][2] == pipe.segment_frames + trained + 2
    torch.testing.assert_close(segments[1]["context"], segments[0]["latents"][:, :, -(trained + 2):])


def test_sampling_bank_context_frames_keep_the_bank_in_its_trained_shape(pipe, monkeypatch):
    """``settings.sampling_bank_context_frames``: the temporal layers see the wider context, while the reference
    bank holds the portrait and only the last that many context latents (all n when unset)."""
    trained = pipe.settings.context_frames
    monkeypatch.setattr(pipe.settings, "sampling_context_frames", trained + 2)
    for bank_frames, references in ((None, 1 + trained + 2), (trained, 1 + trained)):
        monkeypatch.setattr(pipe.settings, "sampling_bank_context_frames", bank_frames)
        segments = record_segments(monkeypatch)
        run(pipe)
        assert segments[1]["context"].shape[2] == trained + 2
        assert segments[1]["conditions"].bank.num_references == references


@pytest.mark.parametrize("name", ["sampling_context_frames", "sampling_bank_context_frames"])
@pytest.mark.parametrize("value", [0, 17, 2.5, "4", True])
def test_sampling_context_frames_outside_one_segment_are_refused(name, value):
    from starcaster.presets import PipelineConfig

    with pytest.raises(ValueError, match=name):
        PipelineConfig.from_dict({"preset": "tiny", name: value})
    assert getattr(PipelineConfig.from_dict({"preset": "tiny", name: 16}), name) == 16


def test_bank_per_task_and_segment(pipe, monkeypatch):
    """Portrait/orbit: the portrait banked once with log(1 + k) in segment 0, then portrait + the last k context
    frames; identity: no bank in segment 0, then the last generated frame + the last k context frames (one distinct
    copy each). k is ``sampling_bank_context_frames`` where the folder sets it (the tiny one: 2 of 6), else n."""
    banks = []
    original = pipe.model.encode_reference
    monkeypatch.setattr(pipe.model, "encode_reference", lambda ref, ids, log_weights=None: (
        banks.append((ref.clone(), None if log_weights is None else log_weights.clone())),
        original(ref, ids, log_weights))[1])
    segments = record_segments(monkeypatch)
    n = pipe.settings.sampling_bank_context_frames or pipe.context_frames
    run(pipe)
    (ref0, w0), (ref1, w1) = banks
    portrait_latent = pipe.encode_image(portrait(pipe))
    assert ref0.shape[2] == 1 and torch.allclose(w0, torch.tensor([float(np.log(1 + n))]))
    torch.testing.assert_close(ref0.float(), portrait_latent)
    assert ref1.shape[2] == 1 + n and w1 is None
    torch.testing.assert_close(ref1[:, :, 1:].float(), segments[0]["latents"][:, :, -n:])

    banks.clear(), segments.clear()
    run(pipe, task="identity")
    assert len(banks) == 1 and segments[0]["conditions"].bank is None and segments[0]["context"] is None
    ref, weights = banks[0]
    last = segments[0]["latents"][:, :, -1:]
    torch.testing.assert_close(ref[:, :, :1].float(), last)  # the last generated frame, counted twice (it is also
    # the last context frame)
    assert torch.allclose(weights, torch.tensor([np.log(2.0)] + [0.0] * (n - 1), dtype=torch.float32))


def test_unconditional_row_and_guidance_formula(pipe, monkeypatch):
    """CFG drops identity (empty prompt) and audio (zero tokens) in the unconditional row, keeps camera and bank,
    and combines the rows as uncond + g (cond - uncond)."""
    rows = []
    original = pipe.model.forward

    def forward(x, t, id_tokens, audio_tokens=None, camera_tokens=None, bank=None, scales=None):
        out = original(x, t, id_tokens, audio_tokens, camera_tokens, bank=bank, scales=scales)
        rows.append(dict(id=id_tokens.clone(), audio=audio_tokens.clone(), bank=bank, out=out.clone()))
        return out

    monkeypatch.setattr(pipe.model, "forward", forward)
    segments = record_segments(monkeypatch)
    run(pipe, steps=1, guidance=2.5, audio=speech(pipe, 0.4))
    first = rows[0]
    assert first["id"].shape[0] == 2 and first["bank"] is not None
    torch.testing.assert_close(first["id"][0], pipe.id_encoder.unconditional(1)[0])
    assert first["audio"][0].abs().max() == 0 and first["audio"][1].abs().max() > 0
    torch.testing.assert_close(first["id"][1], segments[0]["conditions"].id_tokens[0])
    # Guidance formula: one DPM-Solver++ step from sigma_max with the combined prediction.
    uncond, cond = first["out"][:, :, -pipe.segment_frames:].float().chunk(2)
    guided = uncond + 2.5 * (cond - uncond)
    rows.clear()
    run(pipe, steps=1, guidance=1.0, audio=speech(pipe, 0.4))
    assert rows[0]["id"].shape[0] == 1  # no guidance: one row
    torch.testing.assert_close(rows[0]["out"][:, :, -pipe.segment_frames:].float(), cond, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(guided, cond, atol=1e-3)


def test_camera_guidance_is_a_setting_that_reaches_the_unconditional_row(pipe, monkeypatch):
    """With ``settings.camera_guidance`` an orbit's unconditional CFG row sees the input camera on every frame (and
    its conditional row the path); without it both rows see the path. A portrait has no path either way."""
    from starcaster.autoregression import still_camera_tokens

    cameras = []
    original = pipe.model.forward

    def forward(x, t, id_tokens, audio_tokens=None, camera_tokens=None, bank=None, scales=None):
        cameras.append(None if camera_tokens is None else camera_tokens.clone())
        return original(x, t, id_tokens, audio_tokens, camera_tokens, bank=bank, scales=scales)

    monkeypatch.setattr(pipe.model, "forward", forward)

    def first_rows(task, on):
        monkeypatch.setattr(pipe.settings, "camera_guidance", on)
        cameras.clear()
        run(pipe, task=task, num_frames=8, steps=1, guidance=2.0)
        return cameras[0]

    uncond, cond = first_rows("orbit", True).chunk(2)
    assert torch.equal(uncond, still_camera_tokens(pipe.model, cond)) and not torch.equal(uncond, cond)
    uncond, cond = first_rows("orbit", False).chunk(2)
    assert torch.equal(uncond, cond)
    assert first_rows("portrait", True) is None


def test_audio_tokens_line_up_with_whole_clip_features(pipe, monkeypatch):
    """The audio is encoded once per clip; segment k's tokens are the windows of frames [kN - n, kN + N) of the
    whole-clip features (context frames before 0 repeat frame 0)."""
    from starcaster.conditioning.audio import audio_windows

    calls = []
    encoder = pipe.audio_encoder
    original = type(encoder).__call__
    monkeypatch.setattr(type(encoder), "__call__", lambda self, s, *a: (calls.append(len(s)), original(self, s, *a))[1])
    segments = record_segments(monkeypatch)
    samples, rate = speech(pipe, 1.6)
    run(pipe, audio=(samples, rate), steps=1)
    assert len(calls) == 1  # one encoder call for the whole clip
    frames = 40
    whole = original(encoder, samples, frames, pipe.fps)
    N, n, r = pipe.segment_frames, pipe.context_frames, pipe.settings.audio_radius
    for k, segment in enumerate(segments):
        first = k * N - n
        expected = pipe.model.project_audio(audio_windows(whole, first, N + n, r)[None])
        torch.testing.assert_close(segment["conditions"].audio_tokens, expected)


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
    portrait_frames = np.concatenate([s.frames for s in run(pipe)]).astype(int)
    frames = np.concatenate([s.frames for s in segments]).astype(int)
    if task == "identity":  # no portrait bank in segment 0: a different video from the same noise
        assert np.abs(frames[:16] - portrait_frames[:16]).mean() > 1.0
    else:
        # The camera stream's V projections start at zero: an untrained orbit is the portrait video exactly, and
        # once they move (as training moves them) the cameras change it.
        np.testing.assert_array_equal(frames, portrait_frames)
        values = [p for name, p in pipe.model.named_parameters() if "streams.to_v.camera" in name]
        saved = [v.detach().clone() for v in values]
        try:
            with torch.no_grad():
                for v in values:
                    v.normal_(0, 0.2, generator=torch.Generator().manual_seed(0))
            moved = np.concatenate([s.frames for s in run(pipe, **kwargs)]).astype(int)
        finally:
            with torch.no_grad():
                for v, old in zip(values, saved):
                    v.copy_(old)
        assert np.abs(moved - portrait_frames).mean() > 0.5


def test_orbit_feeds_each_frame_its_own_camera(pipe, monkeypatch):
    # The camera stream's V projection starts at zero (an untrained model ignores cameras by design), so check
    # what reaches the network: per-frame camera vectors; segment 0's context frames are the portrait, seen from the
    # input (frontal) camera, not from the path's first camera.
    from starcaster.autoregression import input_camera_vector

    monkeypatch.setattr(pipe.settings, "camera_guidance", False)  # which projects the still camera too (tested above)
    seen = []
    original = pipe.model.camera_proj.forward
    monkeypatch.setattr(pipe.model.camera_proj, "forward", lambda cams: (seen.append(cams.clone()), original(cams))[1])
    path = CameraPath.from_keyframes([dict(frame=0, azimuth=40.0, elevation=10.0), dict(frame=24, azimuth=-40.0, elevation=-10.0)], 25, fps=25)
    run(pipe, task="orbit", camera=path)
    expected = torch.from_numpy(path.vectors())
    n, N = pipe.context_frames, pipe.segment_frames
    assert [c.shape[1] for c in seen] == [N + n, N + n]
    frontal = torch.from_numpy(input_camera_vector())
    torch.testing.assert_close(seen[0][0, :n], frontal.expand(n, -1))
    assert not torch.allclose(seen[0][0, n], frontal, atol=1e-3)  # this path does not start at the input view
    torch.testing.assert_close(seen[0][0, n:], expected[:N])
    torch.testing.assert_close(seen[1][0, :n + 9], expected[N - n:])  # the last segment clamps past the end
    assert not torch.equal(seen[0][0, n], seen[0][0, n + 5])


def test_identity_embedding_instead_of_a_photo(pipe):
    dim = pipe.settings.face_encoder["embedding_dim"]
    segments = run(pipe, task="identity", image=None, identity=np.ones(dim, np.float32))
    assert sum(len(s.frames) for s in segments) == 25
    with pytest.raises(ValueError, match="identity embedding must hold"):
        run(pipe, task="identity", image=None, identity=np.ones(dim + 1, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        run(pipe, task="identity", image=None, identity=np.full(dim, np.nan, np.float32))


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


def test_bfloat16_pipeline_matches_float32(pipe):
    # bf16 is the GPU default (CLI, app): check the dtype plumbing on CPU, where CI runs.
    half = load_pipeline("tiny", dtype=torch.bfloat16, random_weights=True)
    assert half.dtype == torch.bfloat16
    audio = speech(half, 0.4)
    frames = np.concatenate([s.frames for s in run(half, audio=audio, steps=1)]).astype(int)
    full = np.concatenate([s.frames for s in run(pipe, audio=audio, steps=1)]).astype(int)
    other_seed = np.concatenate([s.frames for s in run(pipe, audio=audio, steps=1, seed=1)]).astype(int)
    assert frames.shape == (10, half.resolution, half.resolution, 3)
    # bf16 rounding moves pixels a little; another seed is another video.
    assert np.abs(frames - full).mean() < 0.25 * np.abs(other_seed - full).mean()
