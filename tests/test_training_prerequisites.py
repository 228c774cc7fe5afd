"""The tiny world's prerequisites: face encoder (angular margin) and the Arc2Face analogue, on small data."""

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from training_helpers import (
    TOY_TEXT_ENCODER,
    TOY_UNET,
    fixed_batch_run,
    save_toy_vae_and_face_encoder,
)

from starcaster.conditioning.identity import TinyFaceEncoder
from starcaster.training import TrainConfig
from starcaster.training.face_encoder import AngularMarginHead, verification_accuracy
from starcaster.training.recipe import run_config
from starcaster.training.tasks import build_task

pytestmark = pytest.mark.usefixtures("one_thread")


def losses_on_a_fixed_batch(task, config, folder):
    losses, _, report = fixed_batch_run(task, config, folder, "state")
    return losses, report


def test_angular_margin_pulls_the_true_class_and_verification_scores():
    head = AngularMarginHead(4, 3, scale=10.0, margin=0.5)
    with torch.no_grad():
        head.centres.copy_(torch.eye(3, 4))
    on_centre = torch.eye(3, 4)
    labels = torch.arange(3)
    assert head(on_centre, labels) < head(on_centre, labels.roll(1))
    no_margin = AngularMarginHead(4, 3, scale=10.0, margin=0.0)
    no_margin.centres = head.centres
    assert head(on_centre, labels) > no_margin(on_centre, labels)  # the margin makes the true class harder

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(20), 5)
    clustered = np.eye(20)[labels] + 0.05 * rng.standard_normal((100, 20))
    clustered /= np.linalg.norm(clustered, axis=1, keepdims=True)
    accuracy, threshold = verification_accuracy(clustered, labels)
    assert accuracy > 0.95
    random = rng.standard_normal((100, 20))
    random /= np.linalg.norm(random, axis=1, keepdims=True)
    assert verification_accuracy(random, labels, threshold)[0] < 0.75


def test_face_encoder_learns_on_a_fixed_batch(tmp_path):
    config = TrainConfig(task="face_encoder", steps=25, batch_size=16, lr=2e-3, save_every=25, log_every=5,
                         task_args=dict(identities=4, clips_per_identity=2, frames_per_clip=2, eval_identities=3,
                                        size=32, encoder_config=dict(embedding_dim=16, block_out_channels=(8, 16),
                                                                     input_size=32, norm_num_groups=4)))
    task = build_task(config, tmp_path, tmp_path / "cache")
    losses, report = losses_on_a_fixed_batch(task, config, tmp_path)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert 0.0 <= report["verification_accuracy"] <= 1.0
    encoder = TinyFaceEncoder.from_pretrained(tmp_path / "face_encoder")
    assert encoder.config.embedding_dim == 16


def test_arc2face_needs_its_prerequisites_and_learns(tmp_path, monkeypatch):
    config = TrainConfig(task="arc2face", steps=20, batch_size=8, lr=1e-3, save_every=20, log_every=5,
                         task_args=dict(clips=4, frames_per_clip=2, eval_identities=2))
    with pytest.raises(FileNotFoundError, match="VAE step"):
        build_task(config, tmp_path, tmp_path / "cache")

    # Small stand-ins in the real formats, as the recipe's earlier steps would have exported them.
    from starcaster.training import arc2face

    save_toy_vae_and_face_encoder(tmp_path)
    monkeypatch.setattr(arc2face, "TINY", arc2face.TINY.__class__(
        **{**arc2face.TINY.__dict__, "unet": TOY_UNET, "text_encoder": TOY_TEXT_ENCODER}))
    task = build_task(config, tmp_path, tmp_path / "cache")
    assert task.latents.shape == (8, 4, 16, 16) and task.embeddings.shape == (8, 16)
    losses, report = losses_on_a_fixed_batch(task, config, tmp_path)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert -1.0 <= report["id_similarity"] <= 1.0
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    assert unet.config.cross_attention_dim == 32
    from starcaster.conditioning.identity import Arc2FaceEncoder

    encoder = Arc2FaceEncoder.from_pretrained(tmp_path)  # the exported ID encoder loads the way pipelines load it
    assert encoder(torch.ones(1, 16)).shape == (1, 77, 32)


def test_smoke_args_apply_only_to_capped_runs():
    config = TrainConfig(task="vae", steps=100, task_args=dict(train_clips=2000), smoke_args=dict(train_clips=4))
    assert config.capped(None).task_args["train_clips"] == 2000
    assert config.capped(3).task_args["train_clips"] == 4 and config.capped(3).steps == 3


def test_run_config_exports_into_the_pipeline_folder(tmp_path):
    config = TrainConfig(task="vae", steps=1, batch_size=2, task_args=dict(
        vae_config=dict(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), layers_per_block=1, norm_num_groups=4,
                        sample_size=32), train_clips=2, eval_clips=1, frames_per_clip=1, crop=16))
    run_config(config, tmp_path, progress=False)
    assert (tmp_path / "vae" / "config.json").is_file() and (tmp_path / "train" / "vae" / "done.json").is_file()


def test_lip_reader_learns_visemes_on_a_fixed_batch(tmp_path):
    config = TrainConfig(task="lip_reader", steps=15, batch_size=2, lr=3e-3, save_every=15, log_every=5,
                         task_args=dict(clips=2, eval_clips=1, num_frames=8, channels=(8, 8, 8), feature_dim=16))
    task = build_task(config, tmp_path, tmp_path / "cache")
    losses, report = losses_on_a_fixed_batch(task, config, tmp_path)
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    assert 0.0 <= report["viseme_accuracy"] <= 1.0 and report["chance"] > 0
    from starcaster.training.lip_reading import LipReader

    assert LipReader.from_pretrained(tmp_path / "lip_reader").config.feature_dim == 16


def test_clip_pools_render_in_worker_processes_to_the_same_clips(tmp_path):
    """The pools render in forked workers on a fresh machine; a clip is a function of its index, so any number of
    workers gives the same pool, in the same order (and the cache holds that pool)."""
    from starcaster.training.clip_pool import clip_pool

    args = dict(split="train", clips=6, num_frames=3, mode="talk", size=32, seed=3)
    serial = clip_pool(**args, workers=1)
    parallel = clip_pool(**args, workers=2, cache_dir=tmp_path)
    for name in ("frames", "mouth_xy", "visemes", "cameras", "pose"):
        assert torch.equal(getattr(serial, name), getattr(parallel, name)), name
    assert len({bytes(f.numpy()) for f in serial.frames[:, 0]}) == 6  # six different clips, not one repeated
    assert torch.equal(clip_pool(**args, workers=2, cache_dir=tmp_path).frames, serial.frames)  # read back


def test_render_workers_follow_the_environment(monkeypatch):
    """A machine with many cores (the GPU machine) sets STARCASTER_RENDER_WORKERS; a bad value is a clear error, not
    a silent fallback to one worker."""
    from starcaster.training.clip_pool import default_render_workers

    monkeypatch.delenv("STARCASTER_RENDER_WORKERS", raising=False)
    assert 1 <= default_render_workers() <= 4
    monkeypatch.setenv("STARCASTER_RENDER_WORKERS", "12")
    assert default_render_workers() == 12
    for bad in ("0", "-3", "many"):
        monkeypatch.setenv("STARCASTER_RENDER_WORKERS", bad)
        with pytest.raises(ValueError, match="STARCASTER_RENDER_WORKERS"):
            default_render_workers()
