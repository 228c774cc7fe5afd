"""The settings of the STARCaster additions to a 2D UNet (paper §3.1, Supp. B).

Everything the 2D base already knows (channels, heads, cross-attention width) is read from the base UNet; this config
holds only what the additions add, so it is small enough to live in the adapters folder's `config.json`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class STARCasterConfig:
    # Audio stream (paper §3.1 "Audio Encoder"): per video frame, `audio_window` neighbouring frames of
    # `feature_dim` features (wav2vec2-base: 12 layers x 768 = 9216) become `audio_tokens` cross-attention tokens.
    feature_dim: int = 9216
    audio_window: int = 5
    audio_tokens: int = 32
    audio_hidden_dim: int = 1024
    # Camera stream (paper §3.1 "Camera Encoder"): 4x4 extrinsics + 3x3 intrinsics = 25 values per frame.
    camera_dim: int = 25
    camera_tokens: int = 4
    camera_hidden_dim: int = 256
    # LoRA on the video UNet's spatial self-attention q/k/v (Supp. B: rank 64). 0 = no LoRA.
    lora_rank: int = 64
    # Temporal transformers (AnimateDiff-shaped). Ignored in favour of the adapter's own config when a
    # MotionAdapter is given; `motion_max_seq_length` must cover N + n frames (16 + 2).
    motion_num_attention_heads: int = 8
    motion_max_seq_length: int = 32
    motion_transformer_layers_per_block: int = 1
    use_motion_mid_block: bool = True

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "int" and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"STARCasterConfig.{field.name} must be an integer, got {value!r}")
        positive = [f.name for f in dataclasses.fields(self) if f.type == "int" and f.name != "lora_rank"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"STARCasterConfig.{name} must be positive, got {getattr(self, name)}")
        if self.lora_rank < 0:
            raise ValueError(f"STARCasterConfig.lora_rank must be >= 0 (0 disables LoRA), got {self.lora_rank}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "STARCasterConfig":
        """Builds a config from `to_dict()` output; keys starting with `_` are metadata and skipped."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if not k.startswith("_")}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown STARCasterConfig keys {unknown}; expected a subset of {sorted(known)}")
        return cls(**values)
