"""The sd15 checkpoint folder end to end, with small models saved in the real formats (checkpoints/README.md).

The folder holds exactly what a user assembles from the public releases (Arc2Face UNet + ID encoder, SD VAE, CLIP
tokenizer, wav2vec2, antelopev2 with ArcFace, an AnimateDiff motion adapter) and nothing of this project: no
`starcaster/` adapters and no `starcaster_pipeline.json`. Every model is small, but each is written by its own
library's `save_pretrained` (or as an ONNX graph with the real model's signature) and read back through the public
`load_pipeline(folder)`.

Sizes: the text encoder is 512 wide, so ArcFace's 512-d embedding fills the "id" token exactly (Arc2Face pads
512 -> 768; the padding itself is tested in test_identity.py). The UNet's sample_size (8 latents) times the VAE's
downsampling (2) gives 16 px frames: the folder's own native size, as 64 x 8 = 512 px is Arc2Face's.
"""

import json
import os
import warnings

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from starcaster import CameraPath, load_pipeline
from starcaster.conditioning.identity import build_tiny_tokenizer
from starcaster.loading import build_random_pipeline
from starcaster.presets import PIPELINE_CONFIG_NAME, SD15, resolve
from fakes import tiny_wav2vec2_config, write_fake_arcface, write_fake_scrfd
from ui.capabilities import capability_notice

pytest.importorskip("insightface")

HIDDEN = 512
FOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "wav2vec2", "antelopev2", "motion_adapter")


def write_sd15_folder(folder):
    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=HIDDEN, attention_head_dim=4, norm_num_groups=8,
    ).save_pretrained(folder / "unet")
    AutoencoderKL(
        block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=8, sample_size=16,
    ).save_pretrained(folder / "vae")
    tokenizer = build_tiny_tokenizer(folder / "tokenizer")
    CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=256, num_hidden_layers=1,
        num_attention_heads=8, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )).save_pretrained(folder / "text_encoder")
    Wav2Vec2Model(tiny_wav2vec2_config()).save_pretrained(folder / "wav2vec2")
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(folder / "wav2vec2")
    (folder / "antelopev2").mkdir()
    write_fake_arcface(folder / "antelopev2" / "arcface.onnx")
    write_fake_scrfd(folder / "antelopev2" / "scrfd_10g_bnkps.onnx")
    adapter = MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1, motion_num_attention_heads=4,
                            motion_norm_num_groups=8, motion_max_seq_length=32, use_motion_mid_block=True)
    adapter.save_pretrained(folder / "motion_adapter")
    return adapter.state_dict()


def linked_copy(src, dst, skip=(), extra=None):
    """A folder whose subfolders are links to `src`'s (minus `skip`): variants without copying weights."""
    dst.mkdir()
    for name in FOLDERS:
        if name not in skip:
            os.symlink(src / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd15")
    adapter_weights = write_sd15_folder(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete public folder loads without a warning
        pipe = load_pipeline(folder)
    return folder, pipe, adapter_weights


def face_photo():
    """A bright textured photo: the stand-in SCRFD finds one face in it (its confidence is the brightness)."""
    rng = np.random.default_rng(0)
    return np.clip(230 + rng.normal(0, 12, (320, 320, 3)), 0, 255).astype(np.uint8)


def speech(seconds=0.4, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 5 * t))).astype(np.float32), rate


def test_public_folder_loads_with_the_sd15_defaults(sd15):
    folder, pipe, _ = sd15
    assert not (folder / PIPELINE_CONFIG_NAME).exists()
    assert pipe.settings.preset == "sd15" and pipe.settings.audio_encoder == "wav2vec2"
    assert pipe.resolution == 8 * 2  # the UNet's native size, not the preset's 512
    assert pipe.audio_encoder.feature_dim == 3 * 32  # all hidden layers of the folder's wav2vec2
    assert pipe.face_embedder.model_file.name == "arcface.onnx"
    assert pipe.face_embedder.detector == str(folder / "antelopev2")  # faces are found with its SCRFD


def test_missing_adapters_are_reported_and_refused(sd15):
    folder, pipe, _ = sd15
    assert pipe.capabilities["identity"] is None
    for task in ("portrait", "orbit"):
        assert f"{folder / 'starcaster'}/" in pipe.capabilities[task]
    notice = capability_notice(pipe)
    assert "Portrait animation" in notice and "Free-viewpoint orbit" in notice and "ID-driven" in notice
    with pytest.raises(ValueError, match="Portrait animation needs.*starcaster/"):
        next(pipe.stream(task="portrait", image=face_photo(), audio=speech()))
    with pytest.raises(ValueError, match="Free-viewpoint orbit needs"):
        next(pipe.stream(task="orbit", image=face_photo()))


def test_identity_video_from_the_motion_prior(sd15):
    _, pipe, adapter_weights = sd15
    # The temporal blocks are the saved motion adapter's, bit for bit (not fresh zero-output blocks).
    unet_weights = pipe.model.unet.state_dict()
    assert all(torch.equal(unet_weights[k], v) for k, v in adapter_weights.items())
    assert any(k.endswith("proj_out.weight") and v.abs().sum() > 0 for k, v in adapter_weights.items())

    video = pipe.generate(task="identity", image=face_photo(), audio=None, num_frames=20, steps=2, seed=3)
    assert video.frames.shape == (20, 16, 16, 3) and video.frames.dtype == np.uint8
    assert video.audio.shape == (20 * 16000 // 25,) and not video.audio.any()  # silent
    # Sampled, not a fill: the same seed gives the same video, another seed another one, and so does another face.
    again = pipe.generate(task="identity", image=face_photo(), audio=None, num_frames=20, steps=2, seed=3)
    np.testing.assert_array_equal(again.frames, video.frames)
    other_seed = pipe.generate(task="identity", image=face_photo(), audio=None, num_frames=20, steps=2, seed=4)
    assert np.abs(other_seed.frames.astype(int) - video.frames).mean() > 1.0
    rng = np.random.default_rng(1)
    identities = [pipe.generate(task="identity", identity=rng.standard_normal(512), audio=None, num_frames=4, steps=2,
                                seed=3).frames for _ in range(2)]
    assert np.abs(identities[0].astype(int) - identities[1]).mean() > 0.2  # the ID tokens reach the frames


def test_with_adapters_all_three_tasks_run(sd15, tmp_path):
    folder, pipe, _ = sd15
    full = linked_copy(folder, tmp_path / "with_adapters")
    with torch.no_grad():  # stand-in for training: the audio/camera streams must add something once loaded
        for name, param in pipe.model.named_parameters():
            if "streams.to_v" in name:
                param.normal_(0, 0.05)
    pipe.model.save_adapters(full / "starcaster")
    trained = load_pipeline(full)
    assert all(reason is None for reason in trained.capabilities.values()) and capability_notice(trained) is None
    saved, loaded = pipe.model.adapter_state_dict(), trained.model.adapter_state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)

    image, audio = face_photo(), speech(0.4)
    videos = {
        "portrait": trained.generate(task="portrait", image=image, audio=audio, steps=2),
        "identity": trained.generate(task="identity", image=image, audio=audio, steps=2),
        "orbit": trained.generate(task="orbit", image=image, camera=CameraPath.orbit(10, fps=25.0), steps=2),
    }
    for task, video in videos.items():
        assert video.frames.shape == (10, 16, 16, 3), task
    assert np.abs(videos["portrait"].audio[:6400] - audio[0]).max() < 1e-4  # the speech is carried along
    # The audio stream is live: switching it off changes the portrait video, which is otherwise reproducible (so
    # the difference comes from the audio, not from sampling noise).
    again = trained.generate(task="portrait", image=image, audio=audio, steps=2)
    np.testing.assert_array_equal(again.frames, videos["portrait"].frames)
    mute = trained.generate(task="portrait", image=image, audio=audio, steps=2, strengths={"audio": 0.0})
    assert np.abs(mute.frames.astype(int) - videos["portrait"].frames).mean() > 1.0


def test_missing_arcface_or_wav2vec2_names_it(sd15, tmp_path):
    folder = sd15[0]
    no_arcface = linked_copy(folder, tmp_path / "no_arcface", skip=("antelopev2",))
    (no_arcface / "antelopev2").mkdir()
    os.symlink(folder / "antelopev2" / "scrfd_10g_bnkps.onnx", no_arcface / "antelopev2" / "scrfd_10g_bnkps.onnx")
    with pytest.raises(ValueError, match=r"antelopev2.*arcface\.onnx"):
        load_pipeline(no_arcface)

    no_wav2vec2 = linked_copy(folder, tmp_path / "no_wav2vec2", skip=("wav2vec2",))
    with pytest.raises(FileNotFoundError, match=r"wav2vec2/ .*wav2vec2-base"):
        load_pipeline(no_wav2vec2)
    (no_wav2vec2 / "wav2vec2").mkdir()
    for name in ("config.json", "preprocessor_config.json"):  # the weights file itself is missing
        os.symlink(folder / "wav2vec2" / name, no_wav2vec2 / "wav2vec2" / name)
    with pytest.raises(ValueError, match=r"wav2vec2.*model\.safetensors"):
        load_pipeline(no_wav2vec2)


def test_a_folder_may_set_some_fields_over_the_preset(sd15, tmp_path):
    folder = linked_copy(sd15[0], tmp_path / "partial")
    (folder / PIPELINE_CONFIG_NAME).write_text(json.dumps({"preset": "sd15", "resolution": 40, "steps": 12}))
    _, config = resolve(folder)
    assert (config.resolution, config.steps, config.audio_encoder, config.guidance) == (40, 12, "wav2vec2", 3.0)
    assert load_pipeline(folder).resolution == 40  # the file wins over the UNet's native size
    (folder / PIPELINE_CONFIG_NAME).write_text(json.dumps({"resolution": 40}))
    with pytest.raises(ValueError, match="names no known preset"):
        resolve(folder)


def test_full_size_random_build_on_the_meta_device():
    pipe = build_random_pipeline(SD15, device="meta")  # shapes only: nothing is allocated or initialised

    def count(module):
        return sum(p.numel() for p in module.parameters())

    # The public models' published sizes: SD-1.5 UNet, SD VAE, CLIP ViT-L/14 text model, wav2vec2-base.
    assert count(pipe.model.reference_unet) == 859_520_964
    assert count(pipe.vae) == 83_653_863
    assert count(pipe.id_encoder.text_encoder) == 123_060_480
    assert count(pipe.audio_encoder.model) == 94_371_712 and pipe.audio_encoder.feature_dim == 12 * 768
    motion = sum(p.numel() for n, p in pipe.model.unet.named_parameters() if ".motion_modules." in n)
    assert 0.40e9 < motion < 0.50e9  # AnimateDiff-shaped temporal blocks (~0.45 B)
    assert pipe.model.unet.device.type == "meta"

    # One denoising call of the video UNet at 512 px (64^2 latents), N + n = 18 frames, CFG batch, reference bank.
    model = pipe.model
    latents = torch.empty(2, 4, 18, 64, 64, device="meta")
    id_tokens = torch.empty(2, 77, 768, device="meta")
    audio = model.audio_proj(torch.empty(2, 18, 5, 9216, device="meta"))
    bank = model.encode_reference(torch.empty(1, 4, 3, 64, 64, device="meta"), id_tokens[:1])
    with torch.no_grad():
        out = model(latents, torch.tensor(999, device="meta"), id_tokens, audio, None, bank=bank)
    assert out.shape == latents.shape and len(bank) == len(model.spatial_self_attention_layers())


def test_bench_cli_random_weights(tmp_path, capsys):
    from starcaster.cli import main

    with pytest.raises(SystemExit) as exit_info:  # no weights: the error names what is missing and the way out
        main(["bench", "--preset", str(tmp_path), "--device", "cpu"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "wav2vec2/" in err and "add --random-weights" in err

    report_path = tmp_path / "bench.json"
    main(["bench", "--preset", "tiny", "--random-weights", "--device", "cpu", "--steps", "1", "--seconds", "0.2",
          "--no-naive", "--json", str(report_path)])
    out = capsys.readouterr().out
    assert out.startswith("random weights: speed only") and "weights random (speed only)" in out
    report = json.loads(report_path.read_text())
    assert report["weights"] == "random (speed only)" and report["results"][0]["frames"] == 5
