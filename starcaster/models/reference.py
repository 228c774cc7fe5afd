"""Reference network (paper §3.1 "Reference Network", §3.2): a frozen 2D UNet that writes a feature bank.

The reference UNet encodes the reference portrait and/or the last n context frames once per segment, at timestep 0.
Its self-attention processors record the hidden states entering each `attn1` (after norm1) into a `ReferenceBank`,
keyed by layer name; the video UNet's `ReferenceAttnProcessor` on the same-named layer reads them back at every
denoising step. Spatial layer names are identical in `UNet2DConditionModel` and diffusers' `UNetMotionModel`
(e.g. `down_blocks.0.attentions.0.transformer_blocks.0.attn1`), which is what pairs writer and reader.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch

from .attention import attend, check_plain_call, project_out

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import Attention


class ReferenceBank:
    """Reference features per self-attention layer: name -> (B, R*h*w, C), R = number of reference images.

    Built by `STARCasterModel.encode_reference`, then read unchanged by every denoising step of the segment.
    """

    def __init__(self, batch_size: int, num_references: int):
        self.batch_size = batch_size
        self.num_references = num_references
        self.features: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.features)

    def __contains__(self, layer_name: str) -> bool:
        return layer_name in self.features

    def __repr__(self) -> str:
        return f"ReferenceBank(batch_size={self.batch_size}, num_references={self.num_references}, layers={len(self)})"

    def write(self, layer_name: str, hidden_states: torch.Tensor) -> None:
        """Stores (B*R, h*w, C) tokens, reference-major within each batch row, as (B, R*h*w, C)."""
        rows, tokens, channels = hidden_states.shape
        if rows != self.batch_size * self.num_references:
            raise ValueError(
                f"layer {layer_name}: got {rows} reference rows, expected batch {self.batch_size} x "
                f"{self.num_references} references"
            )
        self.features[layer_name] = hidden_states.reshape(self.batch_size, self.num_references * tokens, channels)

    def read(self, layer_name: str, rows: int, num_frames: int) -> torch.Tensor:
        """Returns (rows, R*h*w, C) for a video UNet running `rows` = B*F frames: every frame of a batch row sees
        all of that row's references; a bank of batch 1 serves every row."""
        if layer_name not in self.features:
            raise ValueError(
                f"the reference bank has no features for layer {layer_name!r}: it was encoded by a reference UNet "
                "whose layers differ from the video UNet's"
            )
        features = self.features[layer_name]
        if rows % num_frames != 0:
            raise ValueError(f"{rows} rows is not a whole number of {num_frames}-frame videos")
        batch = rows // num_frames
        if self.batch_size == batch:
            return features.repeat_interleave(num_frames, dim=0)
        if self.batch_size == 1:
            return features.expand(rows, -1, -1)
        raise ValueError(
            f"the reference bank has batch size {self.batch_size} but the sample has {batch}; encode the reference "
            "with the sample's batch size (or 1), or use bank.repeat(n) for stacked CFG rows"
        )

    def repeat(self, times: int) -> "ReferenceBank":
        """A bank whose batch is this one tiled `times` times, matching `torch.cat([x] * times)` of the sample."""
        bank = ReferenceBank(self.batch_size * times, self.num_references)
        bank.features = {name: f.repeat(times, 1, 1) for name, f in self.features.items()}
        return bank

    def to(self, *args, **kwargs) -> "ReferenceBank":
        bank = ReferenceBank(self.batch_size, self.num_references)
        bank.features = {name: f.to(*args, **kwargs) for name, f in self.features.items()}
        return bank


class ReferenceWriterAttnProcessor:
    """Plain SDPA attention for the reference UNet that, on `attn1` layers, also records its input into the bank.

    It is installed on every attention of the reference UNet (attn2 with `layer_name=None`) so that all of them accept
    the `reference_bank` keyword that `encode_reference` passes through `cross_attention_kwargs`.
    """

    def __init__(self, layer_name: str | None):
        self.layer_name = layer_name

    def __call__(
        self,
        attn: "Attention",
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        reference_bank: ReferenceBank | None = None,
    ) -> torch.Tensor:
        check_plain_call(attn, hidden_states, attention_mask)
        if reference_bank is not None and self.layer_name is not None:
            # The block has already applied norm1: these are exactly the tokens the self-attention sees.
            reference_bank.write(self.layer_name, hidden_states)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query = attn.to_q(hidden_states)
        out = attend(attn, query, attn.to_k(context), attn.to_v(context))
        return project_out(attn, out, hidden_states)


def self_attention_layers(unet: torch.nn.Module) -> list[str]:
    """Names of the spatial self-attention layers (`...attn1`), skipping any temporal `motion_modules`."""
    return [
        name.removesuffix(".processor")
        for name in unet.attn_processors
        if name.endswith("attn1.processor") and "motion_modules" not in name
    ]


def make_reference_unet(unet2d: "UNet2DConditionModel") -> "UNet2DConditionModel":
    """A frozen copy of the 2D UNet whose self-attention layers write into a `ReferenceBank`."""
    reference_unet = copy.deepcopy(unet2d)
    reference_unet.requires_grad_(False)
    reference_unet.eval()
    writers = {f"{layer}.processor": layer for layer in self_attention_layers(reference_unet)}
    processors = {name: ReferenceWriterAttnProcessor(writers.get(name)) for name in reference_unet.attn_processors}
    reference_unet.set_attn_processor(processors)
    return reference_unet


def encode_reference(
    reference_unet: "UNet2DConditionModel", ref_latents: torch.Tensor, id_tokens: torch.Tensor
) -> ReferenceBank:
    """Runs the reference UNet once at timestep 0 on clean latents (B, C, R, H, W) and returns the filled bank."""
    if ref_latents.ndim != 5:
        raise ValueError(
            f"reference latents must be (batch, channels, references, height, width), got {tuple(ref_latents.shape)}"
        )
    batch, channels, refs, height, width = ref_latents.shape
    if id_tokens.ndim != 3 or id_tokens.shape[0] != batch:
        raise ValueError(f"id_tokens must be (batch={batch}, tokens, dim), got {tuple(id_tokens.shape)}")
    images = ref_latents.permute(0, 2, 1, 3, 4).reshape(batch * refs, channels, height, width)
    timestep = torch.zeros(batch * refs, device=ref_latents.device, dtype=torch.long)
    bank = ReferenceBank(batch, refs)
    reference_unet(
        images,
        timestep,
        encoder_hidden_states=id_tokens.repeat_interleave(refs, dim=0),
        cross_attention_kwargs={"reference_bank": bank},
    )
    expected = self_attention_layers(reference_unet)
    if len(bank) != len(expected):
        raise ValueError(f"the reference UNet wrote {len(bank)} of its {len(expected)} self-attention layers")
    return bank
