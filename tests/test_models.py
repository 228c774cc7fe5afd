"""The STARCaster network (paper §3.1) on a tiny 2D UNet: inflation, multi-source cross-attention, reference bank,
LoRA, motion adapters, stages, and adapter save/load."""

import pytest
import torch
from diffusers import UNet2DConditionModel

from starcaster.models import (
    AudioProjection,
    CameraProjection,
    STARCasterConfig,
    STARCasterModel,
    ReferenceBank,
    StreamScales,
    build_motion_adapter,
)
from starcaster.models.unet import adapter_group

BATCH, FRAMES, SIZE, DIM = 2, 3, 8, 32


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_unet2d(seed=0, **overrides):
    config = dict(
        sample_size=SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=DIM,
        norm_num_groups=8,
        attention_head_dim=4,
    )
    with torch.random.fork_rng():  # seeded weights without touching the global RNG
        torch.manual_seed(seed)
        return UNet2DConditionModel(**{**config, **overrides}).eval()


CONFIG = STARCasterConfig(
    feature_dim=16, audio_window=3, audio_tokens=2, audio_hidden_dim=32, camera_tokens=2, camera_hidden_dim=16,
    lora_rank=4,
)


@pytest.fixture(scope="module")
def unet2d():
    return tiny_unet2d()


def build(unet2d, config=CONFIG, **kwargs):
    return STARCasterModel.from_unet2d(unet2d, config, **kwargs).eval()


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    return dict(
        sample=torch.randn(BATCH, 4, FRAMES, SIZE, SIZE, generator=g),
        timestep=torch.tensor([10, 500]),
        id_tokens=torch.randn(BATCH, 5, DIM, generator=g),
        audio_tokens=torch.randn(BATCH, FRAMES, 2, DIM, generator=g),
        camera_tokens=torch.randn(BATCH, FRAMES, 2, DIM, generator=g),
        ref_latents=torch.randn(BATCH, 4, 2, SIZE, SIZE, generator=g),
    )


def randomize(model, groups, std=0.2, seed=0):
    """Moves the chosen additions away from their identity-preserving initial values, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if adapter_group(name) in groups:
                param.copy_(torch.randn(param.shape, generator=g) * std)


@torch.no_grad()
def run(model, inputs, streams=("audio", "camera"), **kwargs):
    for stream in streams:
        kwargs.setdefault(f"{stream}_tokens", inputs[f"{stream}_tokens"])
    return model(inputs["sample"], inputs["timestep"], inputs["id_tokens"], **kwargs)


# --------------------------------------------------------------------------------------------------------------------
def test_inflated_model_reproduces_2d_unet_frame_by_frame(unet2d, inputs):
    model = build(unet2d)
    video = run(model, inputs)  # audio and camera tokens present, every addition at its initial value, no bank
    with torch.no_grad():
        frames = [
            unet2d(inputs["sample"][:, :, f], inputs["timestep"], inputs["id_tokens"]).sample for f in range(FRAMES)
        ]
    expected = torch.stack(frames, dim=2)
    assert video.shape == inputs["sample"].shape
    assert (video - expected).abs().max() <= 1e-4
    assert (expected[:, :, 0] - expected[:, :, 1]).abs().max() > 1e-2  # frames really differ: not a trivial match


def test_stream_at_scale_zero_equals_stream_absent(unet2d, inputs):
    model = build(unet2d)
    randomize(model, {"audio", "camera"})
    both = run(model, inputs)
    assert torch.equal(run(model, inputs, scales=StreamScales(audio=0.0)), run(model, inputs, streams=("camera",)))
    assert torch.equal(run(model, inputs, scales=StreamScales(camera=0.0)), run(model, inputs, streams=("audio",)))
    assert not torch.allclose(both, run(model, inputs, streams=("camera",)), atol=1e-4)  # audio does something
    assert not torch.allclose(both, run(model, inputs, scales=StreamScales(id=0.0)), atol=1e-4)


def test_audio_acts_only_through_its_own_kv(unet2d, inputs):
    model = build(unet2d)
    base = run(model, inputs, streams=())
    randomize(model, {"audio"})
    assert not torch.allclose(run(model, inputs, streams=("audio",)), base, atol=1e-4)

    model.set_trainable({"audio", "camera"})
    out = model(inputs["sample"], inputs["timestep"], inputs["id_tokens"], audio_tokens=inputs["audio_tokens"])
    out.square().mean().backward()
    grads = {n: p.grad for n, p in model.unet.named_parameters() if ".streams." in n}
    audio = [g for n, g in grads.items() if ".audio." in n]
    camera = [g for n, g in grads.items() if ".camera." in n]
    assert audio and camera and len(audio) + len(camera) == len(grads)
    assert all(g is not None and g.abs().sum() > 0 for g in audio)
    assert all(g is None or g.abs().sum() == 0 for g in camera)

    with torch.no_grad():  # switching the audio V projections back to zero restores the base model
        for name, param in model.unet.named_parameters():
            if "streams.to_v.audio" in name:
                param.zero_()
    assert torch.allclose(run(model, inputs, streams=("audio",)), base, atol=1e-5)


def test_audio_tokens_are_per_frame(unet2d, inputs):
    model = build(unet2d)
    randomize(model, {"audio"})
    before = run(model, inputs, streams=("audio",))
    audio = inputs["audio_tokens"].clone()
    audio[:, 1] = torch.randn(audio[:, 1].shape, generator=torch.Generator().manual_seed(5))
    after = run(model, inputs, streams=(), audio_tokens=audio)
    # The temporal blocks start as identities, so frames are independent: only frame 1 may change.
    assert (after[:, :, 1] - before[:, :, 1]).abs().max() > 1e-3
    assert torch.allclose(after[:, :, [0, 2]], before[:, :, [0, 2]], atol=1e-5)


def test_reference_bank_is_written_once_and_read_every_step(unet2d, inputs):
    model = build(unet2d)
    calls = []
    hook = model.reference_unet.register_forward_hook(lambda *_: calls.append(1))
    norm1 = model.reference_unet.down_blocks[0].attentions[0].transformer_blocks[0].norm1
    seen = []
    norm_hook = norm1.register_forward_hook(lambda module, args, out: seen.append(out))
    with torch.no_grad():
        bank = model.encode_reference(inputs["ref_latents"], inputs["id_tokens"])
    hook.remove(), norm_hook.remove()

    layer = "down_blocks.0.attentions.0.transformer_blocks.0.attn1"
    assert len(bank) == len(model.spatial_self_attention_layers())
    assert bank.features[layer].shape == (BATCH, 2 * SIZE * SIZE, 32)  # (B, R*h*w, C)
    assert torch.equal(bank.features[layer], seen[0].reshape(BATCH, 2 * SIZE * SIZE, 32))  # written after norm1

    snapshot = {k: v.clone() for k, v in bank.features.items()}
    no_bank = run(model, inputs)
    first, second = run(model, inputs, bank=bank), run(model, inputs, bank=bank)
    assert len(calls) == 1  # denoising steps reuse the bank; the reference UNet does not run again
    assert all(torch.equal(snapshot[k], bank.features[k]) for k in snapshot)
    assert torch.equal(first, second)
    assert not torch.allclose(first, no_bank, atol=1e-4)
    assert torch.equal(run(model, inputs, bank=bank, scales=StreamScales(reference=0.0)), no_bank)
    half = run(model, inputs, bank=bank, scales=StreamScales(reference=0.5))
    assert (half - no_bank).abs().mean() < (first - no_bank).abs().mean()  # the scale weights the bank


def test_reference_bank_batch_rules(unet2d, inputs):
    model = build(unet2d)
    randomize(model, {"lora"}, std=0.05)  # reference K/V go through LoRA too
    with torch.no_grad():
        single = model.encode_reference(inputs["ref_latents"][:1], inputs["id_tokens"][:1])
        both = model.encode_reference(inputs["ref_latents"][:1].repeat(2, 1, 1, 1, 1), inputs["id_tokens"][:1].repeat(2, 1, 1))
    shared = run(model, inputs, bank=single)  # a batch-1 bank serves every row
    assert torch.allclose(shared, run(model, inputs, bank=both), atol=1e-5)
    assert torch.allclose(shared[:1], run(model, {k: v[:1] for k, v in inputs.items()}, bank=single), atol=1e-5)
    with pytest.raises(ValueError, match="batch size"):  # 3 rows cannot be tiled from a bank of 2
        model(inputs["sample"].repeat(3, 1, 1, 1, 1)[:3], 10, inputs["id_tokens"].repeat(3, 1, 1)[:3], bank=both)
    with pytest.raises(ValueError):
        StreamScales(reference=-1.0)


def test_one_reference_with_log_count_bias_equals_its_copies(unet2d, inputs):
    """Segment 0 of the portrait task banks the portrait once with bias log(1 + n) instead of 1 + n copies."""
    model = build(unet2d)
    randomize(model, {"lora"}, std=0.05)
    portrait = inputs["ref_latents"][:, :, :1]
    with torch.no_grad():
        copies = model.encode_reference(portrait.repeat(1, 1, 3, 1, 1), inputs["id_tokens"])
        once = model.encode_reference(portrait, inputs["id_tokens"], log_weights=torch.tensor([3.0]).log())
        plain = model.encode_reference(portrait, inputs["id_tokens"])
    assert torch.allclose(run(model, inputs, bank=once), run(model, inputs, bank=copies), atol=1e-5)
    assert not torch.allclose(run(model, inputs, bank=plain), run(model, inputs, bank=copies), atol=1e-4)
    mixed = run(model, inputs, bank=once, scales=StreamScales(reference=0.5))  # the scale composes with the count
    assert torch.allclose(mixed, run(model, inputs, bank=copies, scales=StreamScales(reference=0.5)), atol=1e-5)


def test_reference_key_values_are_projected_once_per_segment(unet2d, inputs):
    model = build(unet2d)
    layer = "down_blocks.0.attentions.0.transformer_blocks.0.attn1"
    to_k = model.unet.get_submodule(layer).to_k
    sizes = []
    hook = to_k.register_forward_hook(lambda module, args, out: sizes.append(args[0].shape[:2]))
    with torch.no_grad():
        bank = model.encode_reference(inputs["ref_latents"], inputs["id_tokens"])
        first = run(model, inputs, bank=bank)
        second = run(model, inputs, bank=bank)
    hook.remove()
    reference_calls = [s for s in sizes if s == (BATCH, 2 * SIZE * SIZE)]
    assert len(reference_calls) == 1 and len(bank.kv_cache) == len(model.spatial_self_attention_layers())
    assert torch.equal(first, second)
    uncached = ReferenceBank(bank.batch_size, bank.num_references)
    uncached.features = bank.features
    # With gradients (training: LoRA moves) the cache is bypassed.
    with_grad = model(inputs["sample"], inputs["timestep"], inputs["id_tokens"], inputs["audio_tokens"],
                      inputs["camera_tokens"], bank=uncached)
    assert torch.allclose(with_grad, first, atol=1e-6)
    assert not uncached.kv_cache


def test_lora_only_on_spatial_self_attention(unet2d, inputs):
    model = build(unet2d)
    lora_layers = {n.removesuffix(".lora_A") for n, _ in model.unet.named_modules() if n.endswith(".lora_A")}
    spatial = model.spatial_self_attention_layers()
    assert lora_layers == {f"{layer}.to_{p}" for layer in spatial for p in "qkv"}
    assert not any("motion_modules" in n for n, _ in model.unet.named_parameters() if ".lora_" in n)
    assert all(p.abs().sum() == 0 for n, p in model.unet.named_parameters() if ".lora_B" in n)  # identity at init
    base = run(model, inputs)
    randomize(model, {"lora"}, std=0.05)
    assert not torch.allclose(run(model, inputs), base, atol=1e-4)  # the LoRA is live once trained


def test_saved_motion_adapter_loads_into_temporal_blocks(unet2d, tmp_path):
    adapter = build_motion_adapter(dict(unet2d.config), CONFIG)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)  # nonzero proj_out too: a trained prior is kept
    adapter.save_pretrained(tmp_path / "motion")
    model = build(unet2d, motion_adapter=tmp_path / "motion")
    unet_motion = {k: v for k, v in model.unet.state_dict().items() if ".motion_modules." in k}
    adapter_state = adapter.state_dict()
    assert set(unet_motion) == set(adapter_state)
    assert all(torch.equal(unet_motion[k], adapter_state[k]) for k in adapter_state)

    wrong = build_motion_adapter(dict(unet2d.config, block_out_channels=(64, 128)), CONFIG)
    with pytest.raises(ValueError, match="block_out_channels"):
        build(unet2d, motion_adapter=wrong)
    with pytest.raises(FileNotFoundError, match="motion adapter"):
        build(unet2d, motion_adapter=tmp_path / "nowhere")


def test_sd15_shaped_temporal_blocks_are_animatediff_sized():
    sd15 = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, norm_num_groups=32)
    with torch.device("meta"):  # shapes only: no memory, no time
        adapter = build_motion_adapter(sd15, STARCasterConfig())
    assert 0.40e9 < sum(p.numel() for p in adapter.parameters()) < 0.50e9


def test_trainable_parameters_per_stage(unet2d):
    model = build(unet2d)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {s: {adapter_group(names[id(p)]) for p in model.trainable_parameters(s)} for s in (1, 2, 3)}
    assert groups == {1: {"motion", "audio"}, 2: {"motion", "audio", "lora"}, 3: {"motion", "camera", "lora"}}
    stage1 = {names[id(p)] for p in model.trainable_parameters(1)}
    assert any(n.startswith("audio_proj.") for n in stage1) and any("streams.to_k.audio" in n for n in stage1)
    assert not any(p.requires_grad for p in model.reference_unet.parameters())
    assert not any(p.requires_grad for n, p in model.unet.named_parameters() if adapter_group("unet." + n) is None)
    with pytest.raises(ValueError, match="stage"):
        model.trainable_parameters(4)


def test_save_and_load_adapters_round_trip(unet2d, inputs, tmp_path):
    model = build(unet2d)
    randomize(model, {"motion", "audio", "camera", "lora"}, std=0.05)
    model.save_adapters(tmp_path)
    loaded = STARCasterModel.from_adapters(tmp_path, tiny_unet2d()).eval()
    saved = model.adapter_state_dict()
    assert all(torch.equal(saved[k], v) for k, v in loaded.adapter_state_dict().items())
    with torch.no_grad():
        bank = model.encode_reference(inputs["ref_latents"], inputs["id_tokens"])
    assert torch.equal(run(loaded, inputs, bank=bank), run(model, inputs, bank=bank))
    # one file per group, holding exactly that group's additions and none of the 2D base
    from safetensors import safe_open

    for group in ("motion", "audio", "camera", "lora"):
        with safe_open(tmp_path / f"{group}.safetensors", "pt") as f:
            keys = list(f.keys())
        assert keys and all(adapter_group(k) == group and "base_layer" not in k for k in keys)
        assert set(keys) == set(model.adapter_state_dict([group]))


def test_whole_model_round_trips_through_save_pretrained(unet2d, inputs, tmp_path):
    model = build(unet2d)
    randomize(model, {"motion", "audio", "camera", "lora"}, std=0.05)
    model.save_pretrained(tmp_path)
    loaded = STARCasterModel.from_pretrained(tmp_path, low_cpu_mem_usage=False).eval()
    assert loaded.config.lora_rank == CONFIG.lora_rank and loaded.config.unet_config["block_out_channels"] == [32, 64]
    with torch.no_grad():
        bank = model.encode_reference(inputs["ref_latents"], inputs["id_tokens"])
    torch.testing.assert_close(run(loaded, inputs, bank=bank), run(model, inputs, bank=bank))


def test_a_stage_1_folder_loads_into_a_stage_2_model(unet2d, inputs, tmp_path):
    stage1 = build(unet2d)
    randomize(stage1, {"motion", "audio"}, std=0.05)
    stage1.save_adapters(tmp_path, groups=("motion", "audio"))
    assert not (tmp_path / "lora.safetensors").exists()
    stage2 = STARCasterModel.from_adapters(tmp_path, unet2d)
    assert all(torch.equal(v, stage1.adapter_state_dict(["motion", "audio"])[k])
               for k, v in stage2.adapter_state_dict(["motion", "audio"]).items())
    lora_b = [v for k, v in stage2.adapter_state_dict(["lora"]).items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() == 0 for v in lora_b)  # not in the folder: LoRA still at its identity start
    groups = stage2.parameter_groups(["motion", "audio", "lora"])
    assert [g["name"] for g in groups] == ["motion", "audio", "lora"]
    names = {id(p): n for n, p in stage2.named_parameters()}
    assert all(adapter_group(names[id(p)]) == g["name"] for g in groups for p in g["params"])
    trainable = {n for n, p in stage2.named_parameters() if p.requires_grad}
    assert trainable == {names[id(p)] for g in groups for p in g["params"]}


def test_stream_weights_survive_set_attn_processor(unet2d, inputs):
    from starcaster.models.unet import install_processors

    model = build(unet2d)
    randomize(model, {"audio"})
    before = model.adapter_state_dict(["audio"])
    out = run(model, inputs, streams=("audio",))
    from diffusers.models.attention_processor import AttnProcessor2_0

    model.unet.set_attn_processor(AttnProcessor2_0())  # e.g. a user trying diffusers' processors, then back
    after = model.adapter_state_dict(["audio"])
    assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)
    install_processors(model.unet)
    assert torch.equal(run(model, inputs, streams=("audio",)), out)


def test_broken_adapters_folder_gives_clear_errors(unet2d, tmp_path):
    build(unet2d).save_adapters(tmp_path)
    weights = tmp_path / "audio.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="audio.safetensors.*truncated or corrupt"):
        STARCasterModel.from_adapters(tmp_path, unet2d)
    weights.write_bytes(data)
    other_base = tiny_unet2d(cross_attention_dim=16)
    with pytest.raises(ValueError, match="cross_attention_dim"):
        STARCasterModel.from_adapters(tmp_path, other_base)
    for group in ("motion", "audio", "camera", "lora"):
        (tmp_path / f"{group}.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no adapter weights"):
        STARCasterModel.from_adapters(tmp_path, unet2d)

    build(unet2d, STARCasterConfig(**{**CONFIG.to_dict(), "lora_rank": 2})).save_adapters(tmp_path / "rank2")
    config_path = tmp_path / "rank2" / "config.json"
    config_path.write_text(config_path.read_text().replace('"lora_rank": 2', '"lora_rank": 4'))
    with pytest.raises(ValueError, match="wrong shape"):
        STARCasterModel.from_adapters(tmp_path / "rank2", unet2d)
    config_path.write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        STARCasterModel.from_adapters(tmp_path / "rank2", unet2d)


def test_projections_shapes_and_bad_input():
    audio = AudioProjection(feature_dim=16, window=3, num_tokens=2, out_dim=DIM, hidden_dim=8)
    tokens = audio(torch.randn(2, 5, 3, 16))
    assert tokens.shape == (2, 5, 2, DIM)
    assert torch.allclose(tokens.mean(-1), torch.zeros(2, 5, 2), atol=1e-5)  # LayerNorm-ed tokens
    camera = CameraProjection(num_tokens=3, out_dim=DIM)
    assert camera(torch.randn(2, 5, 25)).shape == (2, 5, 3, DIM)
    with pytest.raises(ValueError, match="window"):
        audio(torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match="25"):
        camera(torch.randn(2, 5, 16))


def test_forward_rejects_bad_shapes(unet2d, inputs):
    model = build(unet2d)
    with pytest.raises(ValueError, match="frames"):
        model(inputs["sample"][:, :, 0], 10, inputs["id_tokens"])
    with pytest.raises(ValueError, match="audio_tokens"):
        run(model, inputs, streams=(), audio_tokens=inputs["audio_tokens"][:, :2])
    with pytest.raises(ValueError, match="id_tokens"):
        model(inputs["sample"], 10, inputs["id_tokens"][:1])
    with pytest.raises(ValueError, match="lora_rank"):
        STARCasterConfig(lora_rank=-1)
    with pytest.raises(ValueError, match="unknown"):
        STARCasterConfig.from_dict({"feature_dim": 3, "nope": 1})
