"""The fast sampler (issue #12): the distilled model runs one UNet row per step (no CFG batch) and the tiny decoder
decodes; its parts round-trip through a folder in the real formats; distillation and the decoder's training learn."""

import threading
import warnings

import numpy as np
import pytest
import torch
from diffusers import AutoencoderTiny
from safetensors.torch import save_file
from training_helpers import fixed_batch_run, save_toy_pipeline_folder, save_toy_vae_and_face_encoder

from starcaster import load_pipeline
from starcaster.fast_sampler import STUDENT_FILE, load_fast_decoder, load_fast_model
from starcaster.loading import save_pipeline
from starcaster.training import TrainConfig
from starcaster.training.tasks import build_task

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("tiny", random_weights=True)


def run(pipe, seconds=1.0, seed=0, **kwargs):
    t = np.arange(int(seconds * pipe.sample_rate)) / pipe.sample_rate
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    image = np.random.default_rng(0).integers(0, 255, (pipe.resolution, pipe.resolution, 3), dtype=np.uint8)
    args = dict(task="portrait", image=image, audio=(audio, pipe.sample_rate), seed=seed, already_aligned=True)
    return list(pipe.stream(**(args | kwargs)))


def counted(obj, name, monkeypatch):
    calls, original = [], getattr(obj, name)

    def wrapper(*args, **kwargs):
        calls.append(args[0].shape if args else None)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapper)
    return calls


def test_fast_sampler_runs_the_student_one_row_per_step_and_the_tiny_decoder(pipe, monkeypatch):
    teacher = counted(pipe.model, "forward", monkeypatch)
    student = counted(pipe.fast_model, "forward", monkeypatch)
    vae = counted(pipe.vae, "decode", monkeypatch)
    tiny = counted(pipe.fast_decoder, "decode", monkeypatch)
    segments = run(pipe, sampler="fast")
    assert len(segments) == 2 and sum(len(s.frames) for s in segments) == 25
    assert not teacher and not vae  # neither the shipped model nor the KL decoder runs
    assert len(student) == 2 * pipe.settings.fast_steps  # steps per segment, one call each
    assert all(shape[0] == 1 for shape in student)  # one row: no unconditional CFG row
    assert sum(shape[0] for shape in tiny) == 25


def test_fast_sampler_keeps_the_trained_context_while_the_quality_sampler_widens_it(pipe, monkeypatch):
    """The tiny preset samples with 6 context frames (``sampling_context_frames``, 2 of them banked); the student
    was distilled with the trained n and its real-time budget pays for every frame, so it keeps that n."""
    N, trained = pipe.segment_frames, pipe.settings.context_frames
    assert pipe.context_frames == pipe.settings.sampling_context_frames == 6 != trained
    student = counted(pipe.fast_model, "forward", monkeypatch)
    teacher = counted(pipe.model, "forward", monkeypatch)
    run(pipe, sampler="fast")
    run(pipe, steps=1)
    assert {shape[2] for shape in student} == {N + trained}
    assert {shape[2] for shape in teacher} == {N + 6}


def test_fast_sampler_is_seeded_and_refuses_what_does_not_apply(pipe, monkeypatch):
    first, again, other = (np.concatenate([s.frames for s in run(pipe, seed=s, sampler="fast")]) for s in (3, 3, 4))
    assert np.array_equal(first, again) and not np.array_equal(first, other)  # LCM's injected noise is seeded too
    with pytest.raises(ValueError, match="guidance"):
        run(pipe, sampler="fast", guidance=3.0)
    with pytest.raises(ValueError, match="sampler must be one of"):
        run(pipe, sampler="turbo")
    monkeypatch.setattr(pipe, "fast_model", None)
    with pytest.raises(ValueError, match="fast_model/"):
        run(pipe, sampler="fast")


def test_bench_and_eval_give_a_fast_row_per_step_count(pipe, monkeypatch):
    """``--fast-steps 1 2``: one fast row per setting, each sampled at its own steps (the student's calls say so)."""
    from starcaster.eval.benchmark import format_report, run_benchmark
    from starcaster.eval.run import generate

    student_forward = pipe.fast_model.forward
    student = counted(pipe.fast_model, "forward", monkeypatch)
    report = run_benchmark(pipe, seconds=0.2, steps=1, naive=False, warmup=False, fast=True, fast_steps=[1, 2])
    assert [r["sampler"] for r in report["results"]] == ["streaming", "fast-1", "fast-2"]
    assert len(student) == 1 + 2  # one segment each: one call at 1 step, two at 2
    assert set(report["fast_speedups"]) == {"fast-1", "fast-2"} and "fast sampler (1 step," in format_report(report)

    tone = 0.3 * np.sin(2 * np.pi * 180 * np.arange(pipe.sample_rate) / pipe.sample_rate)
    clip = type("Clip", (), {"reference": np.zeros((pipe.resolution,) * 2 + (3,), np.uint8), "frames": [0] * 5,
                             "audio": tone.astype(np.float32), "sample_rate": pipe.sample_rate})()
    student.clear()
    assert len(generate(pipe, "portrait", clip, 25, 3.0, 0, "fast", fast_steps=3)) == 5 and len(student) == 3

    sampled_in = []  # --app-threads: the fast sampler in a worker thread, as the demo runs it, at that thread count
    monkeypatch.setattr(pipe.fast_model, "forward", lambda *a, **k: sampled_in.append(
        (threading.current_thread() is threading.main_thread(), torch.get_num_threads())) or student_forward(*a, **k))
    threads = torch.get_num_threads()
    report = run_benchmark(pipe, seconds=0.2, steps=1, naive=False, warmup=False, fast=True, app_threads=[2])
    assert report["results"][-1]["sampler"] == "fast-app-2t" and report["app_threads"] == [2]
    assert sampled_in[-2:] == [(False, 2)] * 2 and torch.get_num_threads() == threads  # restored afterwards


def test_fast_parts_round_trip_through_a_folder(pipe, tmp_path):
    save_pipeline(pipe, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_pipeline(tmp_path)
    assert loaded.has_fast_sampler and type(loaded.fast_decoder).__name__ == "AutoencoderTiny"
    assert loaded.fast_model.reference_unet is loaded.model.reference_unet  # shared, not a second copy
    name, weight = next((n, p) for n, p in pipe.fast_model.named_parameters() if n.startswith("unet."))
    torch.testing.assert_close(dict(loaded.fast_model.named_parameters())[name], weight.half().float())
    student_bytes = (tmp_path / "fast_model" / STUDENT_FILE).stat().st_size
    reference = sum(p.numel() for p in pipe.model.reference_unet.parameters())
    assert student_bytes < 2 * (sum(p.numel() for p in pipe.model.parameters()) - reference) * 1.05  # fp16, no ref


def test_truncated_or_foreign_student_is_a_clear_error(pipe, tmp_path):
    save_pipeline(pipe, tmp_path)
    path = tmp_path / "fast_model" / STUDENT_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_fast_model(pipe.model, tmp_path / "fast_model")
    save_file({"something.else": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="does not fit this model"):
        load_fast_model(pipe.model, tmp_path / "fast_model")
    path.unlink()
    with pytest.raises(FileNotFoundError, match="distill"):
        load_fast_model(pipe.model, tmp_path / "fast_model")


def test_distillation_learns_moves_only_the_student_and_exports_a_fast_sampler(tmp_path):
    folder = save_toy_pipeline_folder(tmp_path / "pipeline")
    config = TrainConfig(task="distill", name="distill", steps=10, batch_size=1, lr=3e-3, save_every=10,
                         log_every=1, lr_schedule="constant",
                         task_args=dict(clips=2, eval_clips=1, orbit_fraction=0.0, identity_fraction=0.0,
                                        first_segment_probability=0.0))
    task = build_task(config, folder, folder / "cache")
    assert task.batch(0, 0, "cpu")["kind"] == "portrait"
    losses, moved, report = fixed_batch_run(task, config, folder, "train/distill", fixed_noise=True)
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    assert {n.split(".")[0] for n in moved} == {"student", "target"}  # the target follows by EMA, the teacher stays
    assert not any(".reference_unet." in n for n in moved)
    assert np.isfinite(report["heldout_x0_mse_1step"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = load_pipeline(folder)
    assert pipe.has_fast_sampler and pipe.fast_scheduler.__class__.__name__ == "LCMScheduler"
    video = pipe.generate(task="identity", image=np.full((128, 128, 3), 120, np.uint8), already_aligned=True,
                          num_frames=4, sampler="fast", steps=1)
    assert video.frames.shape == (4, 128, 128, 3)


def test_distillation_mixes_the_inference_shapes(tmp_path):
    folder = save_toy_pipeline_folder(tmp_path / "pipeline")
    config = TrainConfig(task="distill", batch_size=1, task_args=dict(clips=2, eval_clips=1, orbit_fraction=0.4,
                                                                      identity_fraction=0.3))
    task = build_task(config, folder, folder / "cache")
    kinds = [task.batch(step, 0, "cpu")["kind"] for step in range(30)]
    assert set(kinds) == {"portrait", "identity", "orbit"}
    module = task.trainable()
    for step, kind in enumerate(kinds[:12]):  # every shape goes through the loss, with a finite value
        if kind in kinds[:step]:
            continue
        loss, _ = task.loss(module, task.batch(step, 0, "cpu"), torch.Generator().manual_seed(0))
        assert torch.isfinite(loss) and loss.requires_grad


def test_fast_decoder_learns_and_loads(tmp_path):
    save_toy_vae_and_face_encoder(tmp_path)
    config = TrainConfig(task="fast_decoder", steps=20, batch_size=8, lr=3e-3, save_every=20, log_every=5,
                         task_args=dict(train_clips=2, eval_clips=1, frames_per_clip=2, crop=16,
                                        decoder_config=dict(decoder_block_out_channels=(8,) * 4,
                                                            num_decoder_blocks=(1, 1, 1, 0),
                                                            encoder_block_out_channels=(8,) * 4,
                                                            num_encoder_blocks=(1, 1, 1, 1))))
    task = build_task(config, tmp_path, tmp_path / "cache")
    assert task.batch(0, 0, "cpu")["latents"].shape[-1] * 8 == task.batch(0, 0, "cpu")["images"].shape[-1]
    losses, _, report = fixed_batch_run(task, config, tmp_path, "state")
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert report["vae_psnr"] > 0 and np.isfinite(report["psnr"])
    decoder = load_fast_decoder(tmp_path / "fast_decoder")
    assert decoder.config.scaling_factor == 1.0  # reads the UNet's scaled latents as they are
    assert decoder.decode(torch.zeros(1, 4, 4, 4)).sample.shape == (1, 3, 32, 32)
    latents = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    reference = AutoencoderTiny.from_pretrained(tmp_path / "fast_decoder")  # diffusers' own loader, same weights
    assert torch.equal(decoder.decode(latents).sample, reference.decode(latents).sample)
    weights = tmp_path / "fast_decoder" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="missing or truncated"):
        load_fast_decoder(tmp_path / "fast_decoder")
