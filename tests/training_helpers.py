"""Shared by the training tests: toy prerequisite components saved in the real formats, and a fixed-batch run."""

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from starcaster.conditioning.identity import TinyFaceEncoder
from starcaster.training import train


def save_toy_vae_and_face_encoder(root):
    torch.manual_seed(0)
    AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=4,
                  latent_channels=4).save_pretrained(root / "vae")
    TinyFaceEncoder(embedding_dim=16, block_out_channels=(8, 16), input_size=32,
                    norm_num_groups=4).save_pretrained(root / "face_encoder")


TOY_UNET = dict(sample_size=16, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), attention_head_dim=4,
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32)
TOY_TEXT_ENCODER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                        max_position_embeddings=77)


def save_toy_pipeline_folder(root):
    """What the recipe's prerequisite steps export, at toy sizes (128 px frames, 16x16 latents as the preset)."""
    from starcaster.training.arc2face import build_id_encoder
    from starcaster.training.lip_reading import LipReader

    save_toy_vae_and_face_encoder(root)
    UNet2DConditionModel(**TOY_UNET).save_pretrained(root / "unet")
    encoder = build_id_encoder(TOY_TEXT_ENCODER)
    encoder.text_encoder.save_pretrained(root / "text_encoder")
    encoder.tokenizer.save_pretrained(root / "tokenizer")
    LipReader(channels=(8, 8, 8), feature_dim=16).save_pretrained(root / "lip_reader")
    (root / "starcaster_pipeline.json").write_text('{"preset": "tiny"}')
    return root


def fixed_batch_run(task, config, folder, state_folder, fixed_noise=False):
    """Trains ``task`` on one batch (and, with ``fixed_noise``, one noise draw), so the loss can only fall by
    learning. Returns (losses, names of the parameters that moved, the run's report)."""
    fixed = task.batch(0, 0, "cpu")
    task.batch = lambda step, micro, device: fixed
    losses, real = [], task.loss

    def loss(module, batch, generator):
        value, logs = real(module, batch, torch.Generator().manual_seed(0) if fixed_noise else generator)
        losses.append(float(value.detach()))
        return value, logs

    task.loss = loss
    before, modules = {}, []

    def trainable():
        module = type(task).trainable(task)
        before.update({n: p.detach().clone() for n, p in module.named_parameters()})
        modules.append(module)
        return module

    task.trainable = trainable
    report = train(task, config, folder / state_folder, export_to=folder, progress=False)
    moved = {n for n, p in modules[0].named_parameters() if not torch.equal(p.detach(), before[n])}
    return losses, moved, report
