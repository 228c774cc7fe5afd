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

    ``log_weights`` (R,) adds a logit bias to every token of each reference: a reference banked once with bias
    log(k) draws exactly the attention that k identical copies of it would (softmax over duplicated keys), which is
    how segment 0 of the portrait task banks the portrait once instead of three times (reference + n context).
    Under no_grad (inference) each layer's reference K/V are projected once and reused by every denoising step and
    both CFG rows; with gradients (training, where LoRA moves) they are projected at each call.
    """

    def __init__(self, batch_size: int, num_references: int, log_weights: torch.Tensor | None = None):
        self.batch_size = batch_size
        self.num_references = num_references
        self.log_weights = log_weights
        self.features: dict[str, torch.Tensor] = {}
        self.kv_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.features)

    def __repr__(self) -> str:
        return f"ReferenceBank(batch_size={self.batch_size}, num_references={self.num_references}, layers={len(self)})"

    def fresh_cache(self) -> "ReferenceBank":
        """The same features with an empty K/V cache. The cache holds the projections of the one video UNet that
        read the bank first; another UNet (distillation's teacher, student and target) needs its own."""
        bank = ReferenceBank(self.batch_size, self.num_references, self.log_weights)
        bank.features = self.features
        return bank

    def write(self, layer_name: str, hidden_states: torch.Tensor) -> None:
        """Stores (B*R, h*w, C) tokens, reference-major within each batch row, as (B, R*h*w, C)."""
        rows, tokens, channels = hidden_states.shape
        if rows != self.batch_size * self.num_references:
            raise ValueError(
                f"layer {layer_name}: got {rows} reference rows, expected batch {self.batch_size} x "
                f"{self.num_references} references"
            )
        self.features[layer_name] = hidden_states.reshape(self.batch_size, self.num_references * tokens, channels)

    def key_values(self, layer_name: str, attn) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's projected reference keys and values (B, R*h*w, inner), cached when no gradient is needed."""
        if layer_name not in self.features:
            raise ValueError(
                f"the reference bank has no features for layer {layer_name!r}: it was encoded by a reference UNet "
                "whose layers differ from the video UNet's"
            )
        cached = self.kv_cache.get(layer_name)
        if cached is not None and not torch.is_grad_enabled():
            return cached
        features = self.features[layer_name].to(attn.to_k.weight.dtype)
        kv = attn.to_k(features), attn.to_v(features)
        if not torch.is_grad_enabled():
            self.kv_cache[layer_name] = kv
        return kv

    def logit_bias(self, layer_name: str) -> torch.Tensor | None:
        """(R*h*w,) per-token bias from ``log_weights`` (None when every reference counts once)."""
        if self.log_weights is None:
            return None
        tokens = self.features[layer_name].shape[1] // self.num_references
        return self.log_weights.repeat_interleave(tokens)

    def rows(self, tensor: torch.Tensor, rows: int, num_frames: int) -> torch.Tensor:
        """(B, M, C) bank-batch tensor -> (rows, M, C) for a video UNet running `rows` = B'*F frames: every frame of
        a batch row sees all of that row's references; a bank of batch B serves B' = k*B rows (k stacked CFG
        copies of the batch, as `torch.cat([x] * k)`)."""
        if rows % num_frames != 0:
            raise ValueError(f"{rows} rows is not a whole number of {num_frames}-frame videos")
        batch = rows // num_frames
        if batch % self.batch_size != 0:
            raise ValueError(
                f"the reference bank has batch size {self.batch_size} but the sample has {batch}; encode the "
                "reference with the sample's batch size (or 1)"
            )
        tiles = batch // self.batch_size
        if tiles > 1:
            tensor = tensor.repeat(tiles, 1, 1)
        return tensor.repeat_interleave(num_frames, dim=0)


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
    reference_unet: "UNet2DConditionModel", ref_latents: torch.Tensor, id_tokens: torch.Tensor,
    log_weights: torch.Tensor | None = None,
) -> ReferenceBank:
    """Runs the reference UNet once at timestep 0 on clean latents (B, C, R, H, W) and returns the filled bank.

    ``log_weights`` (R,): see `ReferenceBank` (each reference counted as that many identical copies)."""
    if ref_latents.ndim != 5:
        raise ValueError(
            f"reference latents must be (batch, channels, references, height, width), got {tuple(ref_latents.shape)}"
        )
    batch, channels, refs, height, width = ref_latents.shape
    if id_tokens.ndim != 3 or id_tokens.shape[0] != batch:
        raise ValueError(f"id_tokens must be (batch={batch}, tokens, dim), got {tuple(id_tokens.shape)}")
    images = ref_latents.permute(0, 2, 1, 3, 4).reshape(batch * refs, channels, height, width)
    timestep = torch.zeros(batch * refs, device=ref_latents.device, dtype=torch.long)
    if log_weights is not None and tuple(log_weights.shape) != (refs,):
        raise ValueError(f"log_weights must have one value per reference ({refs}), got {tuple(log_weights.shape)}")
    bank = ReferenceBank(batch, refs, log_weights)
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
