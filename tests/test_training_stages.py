"""The three stages on small stand-in components saved in the real formats: losses fall, only the stage's groups
move, self-forcing feeds the model its own rollout, the lip loss, and an exported stage loads as a pipeline."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch
import training_helpers
from training_helpers import save_toy_pipeline_folder

from starcaster import load_pipeline
from starcaster.models.unet import adapter_group
from starcaster.training import TrainConfig, train
from starcaster.training.lip_reading import LipReader, lip_features, lip_loss, mouth_window
from starcaster.training.stages import high_noise_timesteps
from starcaster.training.tasks import build_task

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_toy_pipeline_folder(tmp_path_factory.mktemp("pipeline"))


def stage_config(stage, **task_args):
    args = dict(stage=stage, clips=2, eval_clips=1, rollout_steps=1) | task_args
    return TrainConfig(task="stage", name=f"stage{stage}", steps=12, batch_size=1, lr=1e-2, save_every=12,
                       log_every=1, lr_schedule="constant", task_args=args)


def fixed_batch_run(task, config, folder, name):
    losses, moved, _ = training_helpers.fixed_batch_run(task, config, folder, f"train/{name}", fixed_noise=True)
    return losses, moved


def groups_of(names):
    """Which additions the names belong to ("base" for anything that is not an addition of the video model)."""
    return {adapter_group(n.removeprefix("model.")) if n.startswith("model.") else "base" for n in names}


def test_stage_1_learns_with_the_lip_loss_and_moves_only_its_groups(folder):
    config = stage_config(1, lip_loss_from=0, lip_frames=6)
    task = build_task(config, folder, folder / "cache")
    losses, moved = fixed_batch_run(task, config, folder, "stage1")
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3])  # fixed batch and noise: only learning lowers it
    # Only stage 1's groups move: not the 2D UNet, the reference UNet, the ID encoder, the VAE or the lip reader.
    assert groups_of(moved) == {"motion", "audio"}


def test_stage_2_self_forcing_feeds_its_own_rollout(folder, monkeypatch):
    from starcaster.training import stages

    config = stage_config(2, first_segment_probability=0.0)
    task = build_task(config, folder, folder / "cache")
    module = task.trainable()
    batch = task.batch(0, 0, "cpu")
    rolled, contexts = [], []
    real_denoise, real_output = stages.denoise_segment, stages.model_output
    monkeypatch.setattr(stages, "denoise_segment", lambda *a, **k: rolled.append(real_denoise(*a, **k)) or rolled[-1])
    monkeypatch.setattr(stages, "model_output", lambda model, x, *a, **k: contexts.append(x[:, :, :2].clone())
                        or real_output(model, x, *a, **k))
    self_forcing = torch.Generator().manual_seed(0)
    task.loss(module, batch, self_forcing)
    truth = batch["latents"]
    assert len(rolled) == 1  # window 2: one rollout, then the trained segment
    trained_context = contexts[-1]
    torch.testing.assert_close(trained_context, rolled[0][:, :, -2:])
    assert not torch.allclose(trained_context, truth[:, :, 16:18], atol=1e-3)

    task.teacher_forcing = True  # the ablation: ground truth every segment, no rollout
    rolled.clear(), contexts.clear()
    teacher = torch.Generator().manual_seed(0)
    task.loss(module, batch, teacher)
    assert not rolled and torch.equal(contexts[-1], truth[:, :, 16:18])
    # The ablation draws the same random numbers: its trained segment gets the full recipe's noise and timestep.
    assert torch.equal(teacher.get_state(), self_forcing.get_state())


def test_stage_2_first_segment_starts_as_inference_does(folder, monkeypatch):
    from starcaster.training import stages

    task = build_task(stage_config(2, first_segment_probability=1.0), folder, folder / "cache")
    module = task.trainable()
    batch = task.batch(0, 0, "cpu")
    assert batch["first_segment"]
    seen = []
    real_encode = module.model.encode_reference
    monkeypatch.setattr(module.model, "encode_reference", lambda ref, ids, w=None: seen.append((ref, w))
                        or real_encode(ref, ids, w))
    monkeypatch.setattr(stages, "denoise_segment", lambda *a, **k: pytest.fail("no rollout for a first segment"))
    task.loss(module, batch, torch.Generator().manual_seed(0))
    reference, weights = seen[-1]
    assert reference.shape[2] == 1 and torch.allclose(weights, torch.tensor([3.0]).log())  # the portrait, once


def test_stage_3_exports_a_pipeline_that_runs_orbits(folder):
    expected = {2: {"motion", "audio", "lora"}, 3: {"motion", "camera", "lora"}}
    for stage in (2, 3):  # stage 3 starts from stage 2's additions, as in the recipe
        config = stage_config(stage, first_segment_probability=0.5)
        config.steps = 8
        task = build_task(config, folder, folder / "cache")
        assert task.pool.audio_features is None if stage == 3 else task.pool.audio_features is not None
        losses, moved = fixed_batch_run(task, config, folder, f"stage{stage}")
        assert groups_of(moved) == expected[stage]
        assert np.mean(losses[-2:]) < np.mean(losses[:2])  # fixed batch, noise and rollout: learning lowers it
    from starcaster.video import probe

    sample = folder / "train" / "stage3" / "validation" / "stage3-00000008.mp4"  # a sample through the real pipeline
    assert probe(sample)["num_frames"] == 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = load_pipeline(folder)
    assert pipe.trained and all(reason is None for reason in pipe.capabilities.values())
    from starcaster import CameraPath

    video = pipe.generate(task="orbit", image=np.full((128, 128, 3), 120, np.uint8), already_aligned=True,
                          camera=CameraPath.preset("orbit", 4), steps=1)
    assert video.frames.shape == (4, 128, 128, 3)


def test_mouth_window_picks_the_latents_around_the_mouth():
    latents = torch.randn(3, 4, 16, 16, requires_grad=True)
    mouth = torch.tensor([[64.0, 90.0], [3.0, 5.0], [127.0, 127.0]])  # centre-low, top-left corner, bottom-right
    windows, local = mouth_window(latents, mouth, 8, 8)
    assert windows.shape == (3, 4, 8, 8)
    torch.testing.assert_close(windows[0], latents[0, :, 7:15, 4:12])  # rows round(90/8)-4, cols round(64/8)-4
    torch.testing.assert_close(windows[1], latents[1, :, :8, :8])  # clamped into the frame
    torch.testing.assert_close(windows[2], latents[2, :, 8:, 8:])
    torch.testing.assert_close(local, mouth - 8 * torch.tensor([[4.0, 7.0], [0.0, 0.0], [8.0, 8.0]]))
    windows.sum().backward()
    assert latents.grad[0, :, 7:15, 4:12].eq(1).all() and latents.grad[0].sum() == 4 * 64  # only the window
    with pytest.raises(ValueError, match="larger than"):
        mouth_window(latents, mouth, 20, 8)


def test_stage_2_keeps_the_lip_loss_on_a_window_around_the_mouth(folder):
    """The recipe's stage 2 keeps stage 1's lip supervision, decoding only the latents around the mouth."""
    task = build_task(stage_config(2, lip_loss_from=0, lip_frames=6, lip_window=8, lip_alpha_weighting=True,
                                   first_segment_probability=0.0), folder, folder / "cache")
    task.config.batch_size = 2
    module = task.trainable()
    decoded, real_decode = [], module.vae.decode
    module.vae.decode = lambda z, *a, **k: decoded.append(tuple(z.shape)) or real_decode(z, *a, **k)
    seen, real_lip = {}, task._lip_loss
    task._lip_loss = lambda *a: seen.setdefault("lips", (real_lip(*a), a[4]))[0]
    loss, logs = task.loss(module, task.batch(0, 0, "cpu"), torch.Generator().manual_seed(0))
    assert decoded == [(12, 4, 8, 8)]  # two clips of six frames, each an 8 x 8 latent window (a 64 px patch)
    lips, t = seen["lips"]
    abar = task.noise.alphas_cumprod[t]  # each clip's lip term weighted by its noise level's alpha-bar
    assert float(logs["lip"]) == pytest.approx(float(lips.mean())) and float(logs["lip"]) > 0
    assert float(loss.detach() - logs["diffusion"]) == pytest.approx(float((abar * lips.detach()).mean()), rel=1e-4)
    loss.backward()
    audio = [p.grad for n, p in module.model.named_parameters() if adapter_group(n) == "audio" and p.grad is not None]
    assert audio and any(g.abs().sum() > 0 for g in audio)  # the lip term reaches the audio stream
    assert build_task(stage_config(3, lip_loss_from=0), folder, folder / "cache").lip_reader is None  # no audio


def test_stage_3_rehearses_talking_clips_among_its_orbits(folder):
    """With talk_fraction, some stage-3 batches are stage 2's talking clips: audio and lip loss on, camera off."""
    task = build_task(stage_config(3, talk_fraction=0.5, lip_loss_from=0, lip_frames=6, lip_window=8,
                                   first_segment_probability=0.0), folder, folder / "cache")
    batches = [task.batch(step, 0, "cpu") for step in range(12)]
    assert {b["talk"] for b in batches} == {True, False}
    module = task.trainable()
    for batch in (next(b for b in batches if b["talk"]), next(b for b in batches if not b["talk"])):
        module.zero_grad()
        loss, logs = task.loss(module, batch, torch.Generator().manual_seed(0))
        loss.backward()
        grads = {}
        for n, p in module.model.named_parameters():
            grads.setdefault(adapter_group(n), []).append(p.grad is not None and bool(p.grad.abs().sum() > 0))
        assert ("lip" in logs) == batch["talk"]  # the lip loss only where there is speech
        assert any(grads["camera"]) != batch["talk"]  # the camera stream only for orbits
        assert any(grads["motion"]) and any(grads["lora"])
    assert all(b["audio_features"].abs().sum() > 0 for b in batches if b["talk"])
    with pytest.raises(ValueError, match="talk_fraction"):
        build_task(stage_config(2, talk_fraction=0.5), folder, folder / "cache")


def test_orbit_batches_take_their_own_first_segment_probability(folder):
    """orbit_first_segment_probability starts orbit batches as inference does, talking batches keep theirs, and every
    other draw (which clips, talk or orbit) stays the recipe's."""
    args = dict(talk_fraction=0.5, first_segment_probability=0.0)
    recipe = build_task(stage_config(3, **args), folder, folder / "cache")
    first = build_task(stage_config(3, orbit_first_segment_probability=1.0, **args), folder, folder / "cache")
    for step in range(12):
        a, b = recipe.batch(step, 0, "cpu"), first.batch(step, 0, "cpu")
        assert a["talk"] == b["talk"] and torch.equal(a["latents"], b["latents"])
        assert not a["first_segment"] and b["first_segment"] == (not b["talk"])
    with pytest.raises(ValueError, match="stage 3"):
        build_task(stage_config(2, orbit_first_segment_probability=1.0), folder, folder / "cache")


def test_high_noise_timesteps_lean_high_and_keep_order():
    t = torch.arange(1000)
    assert torch.equal(high_noise_timesteps(t, 1000, 1.0), t)  # power 1: the recipe's own timesteps
    mapped = high_noise_timesteps(t, 1000, 2.0)
    assert mapped.dtype == t.dtype and int(mapped.min()) >= 0 and int(mapped.max()) <= 999
    assert bool((mapped[1:] >= mapped[:-1]).all()) and bool((mapped >= t).all())  # monotone, never lower
    assert float((mapped >= 500).float().mean()) == pytest.approx(0.75, abs=0.01)  # 3 in 4 above T/2, not 1 in 2


def test_orbit_timestep_power_moves_only_orbit_timesteps(folder, monkeypatch):
    """With orbit_timestep_power, orbit batches are noised at the recipe's draw mapped towards high noise; talking
    batches and validation keep their timesteps."""
    args = dict(talk_fraction=0.5, first_segment_probability=0.0, lip_loss_from=None)
    recipe = build_task(stage_config(3, **args), folder, folder / "cache")
    leaning = build_task(stage_config(3, orbit_timestep_power=2.0, **args), folder, folder / "cache")
    module = recipe.trainable()
    seen = []
    for task in (recipe, leaning):
        real = task.noise.add_noise
        monkeypatch.setattr(task.noise, "add_noise", lambda x, n, t, real=real: seen.append(t.clone()) or real(x, n, t))
    batches = [recipe.batch(step, 0, "cpu") for step in range(12)]
    for batch in (next(b for b in batches if b["talk"]), next(b for b in batches if not b["talk"])):
        for training in (True, False):
            seen.clear()
            for task in (recipe, leaning):
                with torch.no_grad():
                    task.compute_loss(module, dict(batch), torch.Generator().manual_seed(3), training=training)
            t_recipe, t_leaning = seen[-2], seen[-1]  # the trained segment's (a rollout adds draws before it)
            if training and not batch["talk"]:
                assert torch.equal(t_leaning, high_noise_timesteps(t_recipe, 1000, 2.0))
                assert not torch.equal(t_leaning, t_recipe)
            else:
                assert torch.equal(t_leaning, t_recipe)
    with pytest.raises(ValueError, match="stage 3"):
        build_task(stage_config(2, orbit_timestep_power=2.0), folder, folder / "cache")


def test_stage_3_validation_says_whether_the_camera_steers(folder, tmp_path):
    """The first segment's held-out loss with another clip's cameras: equal to the true cameras' for a model whose
    camera stream is silent (zero V projections, as initialised), different once the stream adds something."""
    task = build_task(stage_config(3, first_segment_probability=0.0, eval_clips=2), folder, folder / "cache")
    task.synthetic = False  # no sample video: only the numbers
    module = task.trainable()  # the folder may hold another test's trained additions: silence the camera first
    camera_v = [p for n, p in module.model.named_parameters() if ".streams.to_v.camera." in n]
    with torch.no_grad():
        for p in camera_v:
            p.zero_()
    logs = task.validate(module, 0, tmp_path)
    assert logs["heldout_first_segment"] == logs["heldout_first_segment_other_camera"]  # exactly: V is zero
    assert logs["heldout_first_segment_t800"] == logs["heldout_first_segment_t800_other_camera"]
    assert logs["heldout_first_segment_t800"] != pytest.approx(logs["heldout_first_segment"], abs=1e-7)  # fixed t
    assert logs["heldout_first_segment"] != pytest.approx(logs["heldout_diffusion"], abs=1e-7)  # other context
    with torch.no_grad():
        for p in camera_v:
            p.normal_(0, 0.5)
    logs = task.validate(module, 0, tmp_path)
    assert abs(logs["heldout_first_segment"] - logs["heldout_first_segment_other_camera"]) > 1e-6
    assert abs(logs["heldout_first_segment_t800"] - logs["heldout_first_segment_t800_other_camera"]) > 1e-6


def test_train_groups_trains_a_subset_of_the_stage_and_freezes_the_rest(folder):
    """train_groups=["camera"]: only the camera stream is handed to the optimizer and has gradients; a group the stage
    does not train, or none at all, is refused."""
    task = build_task(stage_config(3, train_groups=["camera"], first_segment_probability=1.0), folder, folder / "cache")
    module = task.trainable()
    assert [g["name"] for g in task.parameter_groups(module)] == ["camera"]
    loss, _ = task.loss(module, task.batch(0, 0, "cpu"), torch.Generator().manual_seed(0))
    loss.backward()
    moved = {adapter_group(n) for n, p in module.model.named_parameters()
             if p.grad is not None and p.grad.abs().sum() > 0}
    assert moved == {"camera"}
    with pytest.raises(ValueError, match="audio"):
        build_task(stage_config(3, train_groups=["camera", "audio"]), folder, folder / "cache")
    with pytest.raises(ValueError, match="empty"):
        build_task(stage_config(3, train_groups=[]), folder, folder / "cache")


def test_group_lr_scale_gives_one_stream_its_own_learning_rate(folder, tmp_path):
    """Stage 3's camera stream at 10x the shared rate: its parameters take 10x larger first Adam steps (Adam's first
    step is about lr * sign(grad)), while the groups it joins keep the config's rate."""
    config = stage_config(3, group_lr_scale={"camera": 10.0}, first_segment_probability=0.0)
    config = dataclasses.replace(config, steps=1, save_every=1, lr=1e-4)
    task = build_task(config, folder, folder / "cache")
    groups = {g["name"]: g for g in task.parameter_groups(task.trainable())}
    assert groups["camera"]["lr"] == pytest.approx(1e-3)
    assert "lr" not in groups["motion"] and "lr" not in groups["lora"]  # the optimizer's default: config.lr
    from accelerate.utils import set_seed
    from safetensors.torch import load_file

    set_seed(config.seed)  # as the trainer does before building the module: the same initial additions
    before = dict(task.trainable().model.named_parameters())
    train(task, config, tmp_path / "train" / "stage3", export_to=None, progress=False)
    state = load_file(next((tmp_path / "train" / "stage3").glob("states/step-*/model.safetensors")))
    steps = {}
    for name, value in state.items():
        key = name.removeprefix("model.")
        if key in before and before[key].requires_grad:
            delta = (value - before[key].detach()).abs().max().item()
            steps.setdefault(adapter_group(key), []).append(delta)
    assert 5e-4 < max(steps["camera"]) < 2e-3 and max(steps["motion"]) < 2e-4
    with pytest.raises(ValueError, match="does not train"):
        build_task(stage_config(3, group_lr_scale={"audio": 2.0}), folder, folder / "cache")


def test_lip_loss_is_zero_for_identical_clips_and_has_a_gradient():
    torch.manual_seed(0)
    reader = LipReader(channels=(8, 8, 8), feature_dim=16).eval()
    frames = torch.randint(0, 255, (1, 6, 64, 64, 3), dtype=torch.uint8)
    mouth = torch.full((1, 6, 2), 32.0)
    truth = lip_features(reader, frames, mouth)
    same = (frames.permute(0, 1, 4, 2, 3).float() / 127.5 - 1).requires_grad_(True)
    assert float(lip_loss(reader, same, truth, mouth)) < 1e-10
    other = (same.detach() + 0.3 * torch.randn_like(same)).requires_grad_(True)
    loss = lip_loss(reader, other, truth, mouth)
    loss.backward()
    assert loss > 1e-4 and other.grad.abs().sum() > 0
    # only the mouth region gets gradient: a pixel far from the crop does not affect the loss
    assert other.grad[..., :4, :4].abs().sum() == 0


def test_the_no_lip_ablation_draws_the_same_batches_without_the_lip_loss(folder):
    """Weight 0 (the no_lip ablation) keeps the lip reader, so its batches are the full recipe's, but adds no loss."""
    with_lip = build_task(stage_config(1, lip_loss_from=0, lip_frames=6), folder, folder / "cache")
    without = build_task(stage_config(1, lip_loss_from=0, lip_frames=6, lip_loss_weight=0.0), folder, folder / "cache")
    a, b = with_lip.batch(3, 0, "cpu"), without.batch(3, 0, "cpu")
    assert a["lip_start"] == b["lip_start"] and torch.equal(a["latents"], b["latents"])
    module = with_lip.trainable()
    _, logs = with_lip.loss(module, a, torch.Generator().manual_seed(0))
    loss, logs_without = without.loss(module, b, torch.Generator().manual_seed(0))
    assert "lip" in logs and "lip" not in logs_without
    assert float(loss.detach()) == pytest.approx(float(logs["diffusion"]))  # same noise: only the lip term differed


def test_preprocess_real_videos_and_train_on_them(folder, tmp_path):
    """Seconds of 'real' video (synthetic renders in an mp4 with speech) through preprocess, then stage 1 on it."""
    import shutil

    from starcaster.audio_io import audio_slice, load_audio
    from starcaster.conditioning.audio import clip_audio_features
    from starcaster.face import Face, ffhq_template
    from starcaster.synthetic.dataset import make_clip
    from starcaster.training.preprocess import load_preprocessed, preprocess
    from starcaster.video import write_mp4

    class MarkedFaces:
        """Stand-in detector: one face on the FFHQ template of a 256 px frame, none where the corner is black."""

        def detect(self, image):
            if image[:16, :16].mean() < 20:
                return []
            return [Face(np.array([0, 0, 256, 256]), ffhq_template(256), 1.0)]

    clip = make_clip(1000007, 2, num_frames=40, size=256, mode="talk")
    frames = clip.frames.copy()
    frames[16:20, :16, :16] = 0  # frames 16-19 "have no face": runs 0-15 and 20-39
    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(videos / "a.mp4", frames, 25.0, audio=clip.audio, sample_rate=clip.sample_rate)
    shutil.copy(videos / "a.mp4", videos / "b.mp4")
    (videos / "notes.txt").write_text("not a video")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = load_pipeline(folder)
    summary = preprocess(videos, tmp_path / "clips", pipe, clip_frames=16, detector=MarkedFaces())
    assert summary == {"videos": 2, "clips": 4, "frames_kept": 72, "frames_read": 80}
    pool = load_preprocessed(tmp_path / "clips")
    assert pool.latents.shape == (4, 4, 16, 16, 16) and pool.frames.shape == (4, 16, 128, 128, 3)
    assert torch.allclose(pool.identity.norm(dim=-1), torch.ones(4), atol=1e-4)
    # Audio features: the inference function of each clip's own stretch of the video's audio (clip 1: frames 20-35).
    samples = load_audio(videos / "a.mp4", sample_rate=pipe.sample_rate)
    for index, start in ((0, 0), (1, 20)):
        audio = audio_slice(samples, pipe.sample_rate, 25.0, start, 16)
        torch.testing.assert_close(pool.audio_features[index], clip_audio_features(pipe.audio_encoder, audio, 16, 25.0))
    # The mouth is carried into the aligned crop: the template's mouth, since the landmarks are the template's.
    template_mouth = torch.from_numpy(ffhq_template(128)[3:5].mean(0)).float()
    torch.testing.assert_close(pool.mouth_xy, template_mouth.expand_as(pool.mouth_xy), atol=1e-3, rtol=0)

    config = TrainConfig(task="stage", name="real", steps=1, batch_size=1, save_every=1,
                         task_args=dict(stage=1, data=str(tmp_path / "clips"), eval_clips=1))
    task = build_task(config, folder, folder / "cache")
    assert len(task.pool) == 3 and torch.equal(task.eval_pool.latents, pool.latents[-1:])
    report = train(task, config, tmp_path / "train", export_to=tmp_path / "out", progress=False)
    assert np.isfinite(report["heldout_diffusion"])
    with pytest.raises(ValueError, match="real videos"):
        build_task(TrainConfig(task="stage", task_args=dict(stage=1, preset="sd15")), folder, folder / "cache")
