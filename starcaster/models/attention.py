"""Attention processors of the video UNet's spatial transformer blocks (paper §3.1, eqs. 2 and 3).

* `MultiSourceCrossAttnProcessor` on every spatial `attn2`: decoupled multi-source cross-attention. The ID stream uses
  the pre-trained to_k/to_v; audio and camera streams share the query and own their K/V (`StreamProjections`, kept on
  the attention module); outputs are summed, each times its scale (eq. 2).
* `ReferenceAttnProcessor` on every spatial `attn1`: extended self-attention. Keys/values come from the frame's tokens
  concatenated with the reference bank's tokens for that layer, queries from the frame only (eq. 3).

Per-call inputs that diffusers' UNet does not know about (per-frame audio/camera tokens, the bank, the scales) reach
the processors through `cross_attention_kwargs={"conditions": AttentionConditions(...)}`; the UNetMotionModel hands
these to the spatial blocks only, never to the motion modules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from diffusers.models.attention_processor import Attention

    from .reference import ReferenceBank


@dataclass(frozen=True)
class StreamScales:
    """Strength of each conditioning stream; 0 switches a stream off exactly (it is not computed at all).

    Frozen so that one instance can safely serve as a default argument.
    """

    id: float = 1.0
    audio: float = 1.0
    camera: float = 1.0
    reference: float = 1.0

    def __post_init__(self):
        for name in ("id", "audio", "camera", "reference"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"StreamScales.{name} must be a finite number, got {value}")
            object.__setattr__(self, name, value)
        if self.reference < 0:
            raise ValueError(
                f"StreamScales.reference weights attention to the bank and must be >= 0, got {self.reference}"
            )


@dataclass
class AttentionConditions:
    """What one forward call gives the processors. Token tensors are per frame: (B*F, T, D), frame-major per row."""

    num_frames: int
    audio: torch.Tensor | None = None
    camera: torch.Tensor | None = None
    bank: "ReferenceBank | None" = None
    scales: StreamScales = field(default_factory=StreamScales)


def attend(attn: "Attention", query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias=None) -> torch.Tensor:
    """Multi-head SDPA on already projected tokens: (B, N, inner), (B, M, inner) x2 -> (B, N, inner)."""
    batch, inner = query.shape[0], key.shape[-1]
    head_dim = inner // attn.heads
    q, k, v = (x.reshape(batch, -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value))
    if attn.norm_q is not None:
        q = attn.norm_q(q)
    if attn.norm_k is not None:
        k = attn.norm_k(k)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    return out.transpose(1, 2).reshape(batch, -1, inner).to(query.dtype)


def project_out(attn: "Attention", hidden_states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """The tail every diffusers processor shares: output projection, dropout, optional residual and rescale."""
    hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
    if attn.residual_connection:
        hidden_states = hidden_states + residual
    return hidden_states / attn.rescale_output_factor


def check_plain_call(attn: "Attention", hidden_states: torch.Tensor, attention_mask) -> None:
    # The UNet's transformer blocks hand us (B, N, C) tokens and no mask; anything else is a different architecture.
    if hidden_states.ndim != 3:
        raise ValueError(f"expected (batch, tokens, channels) hidden states, got shape {tuple(hidden_states.shape)}")
    if attention_mask is not None:
        raise ValueError("STARCaster attention processors take no attention_mask (the UNet passes none)")
    if attn.group_norm is not None or attn.spatial_norm is not None:
        raise ValueError("STARCaster attention processors expect attention layers without group/spatial norm")


class StreamProjections(nn.Module):
    """The audio and camera streams' own K/V projections of one cross-attention layer (eq. 2).

    They live on the `Attention` module (as ``attn.streams``), not in its processor, so that they are ordinary
    parameters of the UNet and survive ``set_attn_processor``. The new V projections start at zero, so at
    initialisation the streams add exactly nothing and the layer reproduces the base model; the new K projections
    start as copies of the ID K, so the streams begin with the base model's notion of which tokens a query looks at.
    """

    STREAMS = ("audio", "camera")

    def __init__(self, cross_attention_dim: int, inner_dim: int):
        super().__init__()
        self.to_k = nn.ModuleDict({s: nn.Linear(cross_attention_dim, inner_dim, bias=False) for s in self.STREAMS})
        self.to_v = nn.ModuleDict({s: nn.Linear(cross_attention_dim, inner_dim, bias=False) for s in self.STREAMS})

    @classmethod
    def from_attention(cls, attn: "Attention") -> "StreamProjections":
        to_k = attn.to_k
        streams = cls(to_k.in_features, to_k.out_features).to(device=to_k.weight.device, dtype=to_k.weight.dtype)
        with torch.no_grad():
            for s in cls.STREAMS:
                streams.to_k[s].weight.copy_(to_k.weight)
                streams.to_v[s].weight.zero_()
        return streams


class MultiSourceCrossAttnProcessor:
    """Decoupled multi-source cross-attention (eq. 2): ID + audio + camera streams sharing one query.

    The ID stream uses the layer's pre-trained to_k/to_v; the audio and camera streams use ``attn.streams``
    (`StreamProjections`); the outputs are summed, each times its scale.
    """

    def __call__(
        self,
        attn: "Attention",
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        conditions: AttentionConditions | None = None,
    ) -> torch.Tensor:
        check_plain_call(attn, hidden_states, attention_mask)
        if encoder_hidden_states is None:
            raise ValueError("multi-source cross-attention needs the ID tokens as encoder_hidden_states")
        scales = conditions.scales if conditions is not None else StreamScales()
        query = attn.to_q(hidden_states)

        out = torch.zeros_like(query)
        if scales.id != 0:
            ehs = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
            out = out + scales.id * attend(attn, query, attn.to_k(ehs), attn.to_v(ehs))
        if conditions is not None:
            streams = (("audio", conditions.audio, scales.audio), ("camera", conditions.camera, scales.camera))
            for name, tokens, scale in streams:
                if tokens is None or scale == 0:
                    continue  # absent and switched-off streams are not computed: exactly the base model
                if tokens.shape[0] != query.shape[0]:
                    raise ValueError(
                        f"{name} tokens have {tokens.shape[0]} rows but the UNet runs {query.shape[0]} "
                        "(batch x frames); give one set of tokens per frame"
                    )
                tokens = tokens.to(query.dtype)
                out = out + scale * attend(attn, query, attn.streams.to_k[name](tokens), attn.streams.to_v[name](tokens))
        return project_out(attn, out, hidden_states)


class ReferenceAttnProcessor:
    """Extended self-attention (eq. 3): K/V = concat(frame tokens, reference tokens), Q = frame tokens.

    `StreamScales.reference` multiplies the (unnormalised) attention weight every query puts on each reference token,
    i.e. adds log(scale) to those logits: 1 is plain eq. 3, values in (0, 1) lean on the frame itself, 0 is no bank.
    """

    def __init__(self, layer_name: str):
        self.layer_name = layer_name

    def __call__(
        self,
        attn: "Attention",
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        conditions: AttentionConditions | None = None,
    ) -> torch.Tensor:
        check_plain_call(attn, hidden_states, attention_mask)
        if encoder_hidden_states is not None:
            raise ValueError("ReferenceAttnProcessor belongs on self-attention (attn1) layers")
        query = attn.to_q(hidden_states)
        key, value = attn.to_k(hidden_states), attn.to_v(hidden_states)
        bias = None
        bank = conditions.bank if conditions is not None else None
        if bank is not None and conditions.scales.reference != 0:
            # K/V of [frame; reference] = [K/V of frame; K/V of reference]: the reference half is the same at every
            # denoising step of a segment, so the bank projects it once (ReferenceBank.key_values).
            rows, frames = hidden_states.shape[0], conditions.num_frames
            ref_key, ref_value = bank.key_values(self.layer_name, attn)
            key = torch.cat([key, bank.rows(ref_key, rows, frames).to(key.dtype)], dim=1)
            value = torch.cat([value, bank.rows(ref_value, rows, frames).to(value.dtype)], dim=1)
            ref_bias = bank.logit_bias(self.layer_name)
            if conditions.scales.reference != 1:
                log_scale = math.log(conditions.scales.reference)
                ref_bias = log_scale if ref_bias is None else ref_bias + log_scale
            if ref_bias is not None:
                bias = query.new_zeros(key.shape[1])  # broadcast over batch, heads and queries
                bias[hidden_states.shape[1]:] = ref_bias if torch.is_tensor(ref_bias) else float(ref_bias)
                bias = bias.to(query.dtype).view(1, 1, 1, -1)
        out = attend(attn, query, key, value, bias)
        return project_out(attn, out, hidden_states)
