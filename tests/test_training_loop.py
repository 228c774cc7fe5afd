"""The shared training loop (Accelerate): resume continues identically, loss falls, state retention, configs."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from starcaster.synthetic.dataset import make_clip
from starcaster.training import TrainConfig, recipe_configs, step_rng, train
from starcaster.training.frame_pool import crop_boxes, frame_pool, mouth_box
from starcaster.training.recipe import run_config
from starcaster.training.trainer import latest_state
from starcaster.training.vae import VAETask, psnr

SMALL_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                 down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                 layers_per_block=1, norm_num_groups=4, sample_size=32)


def vae_config(steps=4, **kw):
    args = dict(vae_config=SMALL_VAE, train_clips=6, eval_clips=2, frames_per_clip=2, crop=16)
    return TrainConfig(task="vae", steps=steps, batch_size=4, lr=3e-3, save_every=2, keep_states=2, log_every=1,
                       task_args=args, **kw)


def _params(folder):
    vae = AutoencoderKL.from_pretrained(folder / "vae")
    return torch.cat([p.detach().flatten() for p in vae.parameters()])


def test_resume_continues_identically(tmp_path):
    straight = run_config(vae_config(steps=4), tmp_path / "a", progress=False)
    # The same run, stopped after 2 steps (a 4-step schedule capped at 2 is not the same run: cut by hand instead).
    config = vae_config(steps=4)
    task_args = dict(config.task_args)
    from starcaster.training.tasks import build_task

    out = tmp_path / "b"
    task = build_task(config, out, out / "cache")

    class Interrupt(Exception):
        pass

    real_loss = task.loss
    calls = {"n": 0}

    def loss(module, batch, generator):
        if calls["n"] == 2:
            raise Interrupt
        calls["n"] += 1
        return real_loss(module, batch, generator)

    task.loss = loss
    with pytest.raises(Interrupt):
        train(task, config, out / "train" / "vae", export_to=out, progress=False)
    assert latest_state(out / "train" / "vae").name == "step-00000002"
    resumed = run_config(replace(config, task_args=task_args), out, resume=True, progress=False)
    assert straight["steps"] == resumed["steps"] == 4
    assert torch.allclose(_params(tmp_path / "a"), _params(out), atol=1e-6)
    rows = [json.loads(l) for l in (out / "train" / "vae" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]  # no duplicate lines from the interrupted run


def test_loss_falls_on_a_fixed_batch_and_states_are_pruned(tmp_path):
    config = vae_config(steps=30)
    from starcaster.training.tasks import build_task

    task = build_task(config, tmp_path, tmp_path / "cache")
    fixed = task.batch(0, 0, "cpu")
    task.batch = lambda step, micro, device: fixed
    losses = []
    real_loss = task.loss

    def loss(module, batch, generator):
        value, logs = real_loss(module, batch, generator)
        losses.append(float(value.detach()))
        return value, logs

    task.loss = loss
    report = train(task, config, tmp_path / "state", export_to=tmp_path, progress=False)
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    assert len(list((tmp_path / "state" / "states").glob("step-*"))) == 2  # keep_states
    assert {"psnr", "psnr_mouth", "scaling_factor"} <= set(report)
    assert AutoencoderKL.from_pretrained(tmp_path / "vae").config.scaling_factor == report["scaling_factor"]


def test_refuses_to_overwrite_state_without_resume(tmp_path):
    run_config(vae_config(steps=2), tmp_path, progress=False)
    with pytest.raises(ValueError, match="--resume"):
        run_config(vae_config(steps=2), tmp_path, progress=False)


def test_batches_are_a_function_of_seed_and_step(tmp_path):
    task = VAETask(vae_config(), tmp_path, tmp_path / "cache", **vae_config().task_args)
    assert torch.equal(task.batch(3, 0, "cpu")["images"], task.batch(3, 0, "cpu")["images"])
    assert not torch.equal(task.batch(3, 0, "cpu")["images"], task.batch(4, 0, "cpu")["images"])
    assert not torch.equal(task.batch(3, 0, "cpu")["images"], task.batch(3, 1, "cpu")["images"])


def test_mouth_crops_contain_the_mouth():
    clip = make_clip(5, seed=1, num_frames=3, size=64)
    rng = step_rng(0, 0)
    corners = crop_boxes(rng, clip.mouth_xy, 64, 16, mouth_fraction=1.0, jitter=0.0)
    for (x, y), (mx, my) in zip(corners, clip.mouth_xy):
        assert x <= mx <= x + 16 and y <= my <= y + 16
    rows, cols = mouth_box((2.0, 63.0), 64, 8)  # near a corner: the box stays inside the frame
    assert (rows.start, rows.stop, cols.start, cols.stop) == (48, 64, 0, 16)


def test_frame_pool_is_cached_and_deterministic(tmp_path):
    a = frame_pool("eval", 2, 2, 32, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    b = frame_pool("eval", 2, 2, 32)
    assert np.array_equal(a.frames, b.frames) and np.allclose(a.mouth_xy, b.mouth_xy)


def test_psnr():
    a = np.zeros((4, 4, 3), np.uint8)
    assert psnr(a, a + 255) == pytest.approx(0.0)
    assert psnr(a, a) > 90


def test_shipped_configs_parse_and_unknown_fields_are_refused():
    configs = recipe_configs("tiny")
    assert configs[0].task == "vae"
    with pytest.raises(ValueError, match="unknown fields"):
        TrainConfig.from_dict({"task": "vae", "stepz": 3})
    with pytest.raises(ValueError, match="no recipe"):
        recipe_configs("huge")


def test_sd15_recipe_holds_the_papers_values():
    stage1, stage2, stage3 = recipe_configs("sd15")
    assert all(c.lr == 1e-4 and c.batch_size == 2 and c.grad_accum == 4 for c in (stage1, stage2, stage3))
    assert (stage1.steps, stage1.task_args["lip_loss_from"], stage1.task_args["lip_loss_weight"]) == (200_000, 100_000, 1.0)
    assert (stage2.steps, stage2.task_args["window"]) == (6_000, 2) and stage3.steps == 10_000
    assert [c.task_args["stage"] for c in (stage1, stage2, stage3)] == [1, 2, 3]


def test_training_hours_add_up_each_run_of_a_resumed_log(tmp_path):
    from starcaster.training.recipe import training_hours

    log = tmp_path / "train" / "stage1" / "metrics.jsonl"
    log.parent.mkdir(parents=True)
    # 100 steps at 1 it/s, a validation line, then (after a resume) 200 more at 0.5 it/s: 100 s + 400 s.
    rows = [{"step": 50, "it_per_s": 1.0}, {"step": 100, "it_per_s": 1.0}, {"step": 100, "val/loss": 0.1},
            {"step": 200, "it_per_s": 0.5}, {"step": 300, "it_per_s": 0.5}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert training_hours(tmp_path) == {"stage1": pytest.approx(500 / 3600)}


def test_a_state_cut_short_mid_save_is_not_resumed_from(tmp_path):
    """_save writes trainer_state.json last: a step folder without it (a session ended during the save) is skipped."""
    states = tmp_path / "states"
    (states / "step-00000400").mkdir(parents=True)
    (states / "step-00000400" / "trainer_state.json").write_text('{"step": 400}\n')
    (states / "step-00000600").mkdir()  # accelerate's files half written, no trainer_state.json
    assert latest_state(tmp_path).name == "step-00000400"
    (states / "step-00000600" / "trainer_state.json").write_text('{"step": 600}\n')
    assert latest_state(tmp_path).name == "step-00000600"
