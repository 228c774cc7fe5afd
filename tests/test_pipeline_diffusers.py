"""STARCasterPipeline as a diffusers DiffusionPipeline: components, model_index.json, from_pretrained, progress bar,
VAE slicing, and the hooks that model CPU offload relies on."""

import json

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from starcaster import load_pipeline
from starcaster.pipeline import STARCasterPipeline


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("tiny", random_weights=True)  # the plumbing, whatever checkpoints/tiny holds


def clip(pipe, **kwargs):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (pipe.resolution, pipe.resolution, 3), dtype=np.uint8)
    t = np.arange(int(0.4 * pipe.sample_rate)) / pipe.sample_rate
    audio = (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), pipe.sample_rate
    return pipe.generate(task="portrait", image=image, audio=audio, steps=2, already_aligned=True, **kwargs).frames


def test_is_a_diffusion_pipeline_with_its_components(pipe):
    assert isinstance(pipe, DiffusionPipeline)
    assert set(pipe.components) == {"model", "vae", "scheduler", "id_encoder", "face_embedder", "audio_encoder",
                                    "fast_model", "fast_scheduler", "fast_decoder"}
    assert pipe.config["model"] == ("starcaster.models.unet", "STARCasterModel")
    assert pipe.config["fast_scheduler"] == ("diffusers", "LCMScheduler")
    assert pipe.settings.preset == "tiny"


def test_save_pretrained_writes_model_index_and_from_pretrained_reads_it_back(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "STARCasterPipeline" and index["vae"] == ["diffusers", "AutoencoderKL"]
    loaded = STARCasterPipeline.from_pretrained(tmp_path)
    # Same weights, same seed: the frames agree up to one grey level (float sums may round differently between two
    # loaded instances on some CPUs); a missed or wrong weight moves far more than that.
    a, b = clip(loaded).astype(int), clip(pipe).astype(int)
    assert np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-3
    with pytest.raises(ValueError, match="nothing is ever downloaded"):
        STARCasterPipeline.from_pretrained(tmp_path, revision="main")


def test_progress_bar_counts_every_denoising_step_and_can_be_silenced(pipe, capsys):
    pipe.set_progress_bar_config(disable=False)
    clip(pipe)  # 10 frames: one segment of 2 steps
    err = capsys.readouterr().err
    assert "2/2" in err
    pipe.set_progress_bar_config(disable=True)
    clip(pipe)
    assert "2/2" not in capsys.readouterr().err
    pipe.set_progress_bar_config(disable=False)


def test_vae_slicing_leaves_the_video_alone(pipe):
    base = clip(pipe)
    pipe.vae.enable_slicing()
    try:
        sliced = clip(pipe)
    finally:
        pipe.vae.disable_slicing()
    assert np.abs(sliced.astype(int) - base).max() <= 1


def test_calls_outside_forward_go_through_accelerate_hooks(pipe):
    """Model CPU offload moves a component to the accelerator in a hook before its forward; the sampler also calls
    encode_reference / project_audio / project_camera / unconditional, which must fire the same hook."""
    from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module

    class Count(ModelHook):
        def __init__(self):
            self.calls = 0

        def pre_forward(self, module, *args, **kwargs):
            self.calls += 1
            return args, kwargs

    counts = {name: Count() for name in ("model", "id_encoder")}
    for name, hook in counts.items():
        add_hook_to_module(getattr(pipe, name), hook)
    try:
        with torch.no_grad():
            pipe.id_encoder.unconditional(1)
            assert counts["id_encoder"].calls == 1
            latents = torch.zeros(1, 4, 1, 16, 16)
            pipe.model.encode_reference(latents, pipe.id_encoder.unconditional(1))
            pipe.model.project_audio(torch.zeros(1, 2, 5, pipe.model.config.feature_dim))
            pipe.model.project_camera(torch.zeros(1, 2, 25))
        assert counts["model"].calls == 3
    finally:
        for name in counts:
            remove_hook_from_module(getattr(pipe, name))
